-- purpose: Tool calls to tools the task never declared, or that failed because the tool does not exist: hallucinated tools.
-- why: The field note's first failure mode: "the model invents arguments or calls tools
--   that don't exist". The SDK marks a span declared = false when the task declared its
--   tools (Recorder.task(tools=...)) and the agent called another one; a task that
--   declared nothing is caught when the call failed with an unknown-tool error, matched
--   by unknown_pattern against error_type and error_detail. Ordinary failures of real
--   tools ("order 7294 was not found") do not match.
-- param: unknown_pattern String = (?i)unknown tool|no tool named|no such tool|tool not found|not a valid tool|unknown function -- RE2 pattern of errors that mean the tool does not exist
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only calls at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the task
-- column: task_type LowCardinality(String) -- the task's type
-- column: agent_name LowCardinality(String) -- the agent that made the call
-- column: step Int32 -- step of the call
-- column: seq Int64 -- position of the call in the task's events
-- column: ts DateTime64(6, 'UTC') -- when the call started
-- column: tool LowCardinality(String) -- the tool the agent called
-- column: arguments String -- the (sanitised) arguments it invented
-- column: declared Bool -- whether the task declared the tool
-- column: success Bool -- whether the call succeeded
-- column: reason String -- undeclared, failed as unknown tool, or both
-- column: error_detail Nullable(String) -- the error the call returned
WITH calls AS
(
    SELECT
        tenant, task_id, task_type, agent_name, step, seq, ts, tool, args_json, declared,
        success, error_detail,
        NOT success AND match(
            concat(coalesce(error_type, ''), ': ', coalesce(error_detail, '')),
            {unknown_pattern:String}) AS unknown_tool
    FROM tool_spans
    WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
)
SELECT
    tenant,
    task_id,
    task_type,
    agent_name,
    step,
    seq,
    ts,
    tool,
    args_json AS arguments,
    declared,
    success,
    multiIf(
        NOT declared AND unknown_tool, 'undeclared and failed as unknown tool',
        NOT declared, 'undeclared',
        'failed as unknown tool') AS reason,
    error_detail
FROM calls
WHERE NOT declared OR unknown_tool
ORDER BY ts DESC, seq DESC
LIMIT {limit:UInt32}
