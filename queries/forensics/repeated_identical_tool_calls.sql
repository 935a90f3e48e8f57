-- purpose: Tool calls repeated with identical arguments in one task where a write or irreversible tool ran again without one shared idempotency key.
-- why: The field note: "Idempotency is non-negotiable. If your agent retries a failed
--   step (and it will), a non-idempotent tool can double-charge a customer, send a
--   duplicate email, or create two records." Calls to the same tool with the same
--   args_hash in one task are a retry or a repeat. They are a risk when the tool has
--   side effects (write or irreversible) and the calls did not all carry one and the
--   same idempotency key. Safe repeats (reads only, or one key on every call) are listed
--   only with include_safe = true; repeats of reads are what tool_loops looks at.
-- param: min_calls UInt32 = 2 -- calls with the same tool and arguments in one task that make a group
-- param: include_safe Bool = false -- also list safe groups: reads only, or every call carried the same idempotency key
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only calls at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the task
-- column: task_type LowCardinality(String) -- the task's type
-- column: tool LowCardinality(String) -- the tool called more than once
-- column: args_hash String -- SHA-256 of the canonical arguments the calls share
-- column: arguments String -- the (sanitised) arguments
-- column: calls UInt64 -- calls in the group
-- column: failed_calls UInt64 -- calls of the group that failed
-- column: max_attempt Int32 -- highest attempt number recorded; 2 or more means the agent retried on purpose
-- column: side_effect String -- most severe side-effect class among the calls: irreversible, write or read
-- column: calls_without_key UInt64 -- calls that carried no idempotency key
-- column: risky Bool -- true when a repeat may have acted twice on the outside world
-- column: risk String -- why the group is dangerous, or why it is safe
-- column: first_ts DateTime64(6, 'UTC') -- first call of the group
-- column: last_ts DateTime64(6, 'UTC') -- last call of the group
WITH groups AS
(
    SELECT
        tenant,
        task_id,
        task_type,
        tool,
        args_hash,
        any(args_json) AS args_text,
        count() AS n_calls,
        countIf(NOT success) AS n_failed,
        max(attempt) AS top_attempt,
        multiIf(
            countIf(side_effect = 'irreversible') > 0, 'irreversible',
            countIf(side_effect = 'write') > 0, 'write',
            'read') AS worst_effect,
        countIf(idempotency_key IS NULL OR idempotency_key = '') AS n_without_key,
        uniqExact(idempotency_key) AS n_keys,
        min(ts) AS first_call,
        max(ts) AS last_call
    FROM tool_spans
    WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
    GROUP BY tenant, task_id, task_type, tool, args_hash
    HAVING n_calls >= greatest({min_calls:UInt32}, 2)
),
classified AS
(
    SELECT
        *,
        toBool(NOT (worst_effect = 'read' OR (n_without_key = 0 AND n_keys = 1))) AS is_risky
    FROM groups
)
SELECT
    tenant,
    task_id,
    task_type,
    tool,
    args_hash,
    args_text AS arguments,
    n_calls AS calls,
    n_failed AS failed_calls,
    top_attempt AS max_attempt,
    worst_effect AS side_effect,
    n_without_key AS calls_without_key,
    is_risky AS risky,
    multiIf(
        worst_effect = 'read', 'safe: reads only',
        n_without_key = 0 AND n_keys = 1, 'safe: one idempotency key on every call',
        n_without_key = n_calls, concat(worst_effect, ' tool repeated without an idempotency key'),
        concat(worst_effect, ' tool repeated with missing or differing idempotency keys')) AS risk,
    first_call AS first_ts,
    last_call AS last_ts
FROM classified
WHERE is_risky OR {include_safe:Bool}
ORDER BY is_risky DESC, worst_effect = 'irreversible' DESC, n_calls DESC, last_call DESC
LIMIT {limit:UInt32}
