-- purpose: Agent messages whose contract version disagrees: a reply in another version than its request, or an agent sending several versions of one contract.
-- why: The field note: "Version your agent contracts. When you upgrade the coding agent,
--   the QA agent should not break silently." Two signs of a silent break are reported:
--   reply_differs_from_request — a message answering another (in_reply_to) carries a
--   different contract_version than the request it answers (e.g. ReviewAgent answers
--   review.result 0.9 to a review.request 1.0); agent_uses_several_versions — one sender
--   used more than one version of one contract in the window: one row per version other
--   than its usual (most used) one, pointing at the latest task that used it.
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only messages at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: kind String -- reply_differs_from_request or agent_uses_several_versions
-- column: tenant String -- the tenant
-- column: task_id String -- the task of the reply, or the latest task that used the odd version
-- column: task_type String -- that task's type
-- column: sender String -- the agent that sent the message
-- column: recipient String -- the agent it was sent to (the latest one, for several versions)
-- column: contract_name String -- the contract of the message
-- column: contract_version String -- the version it used
-- column: expected_contract String -- the request's contract, or the same contract
-- column: expected_version String -- the request's version, or the sender's usual version
-- column: messages UInt64 -- messages in this disagreement
-- column: last_ts DateTime64(6, 'UTC') -- the latest such message
WITH msgs AS
(
    SELECT
        CAST(tenant AS String) AS m_tenant,
        task_id AS m_task,
        CAST(task_type AS String) AS m_type,
        message_id AS m_id,
        in_reply_to AS m_reply_to,
        CAST(sender AS String) AS m_sender,
        CAST(recipient AS String) AS m_recipient,
        CAST(contract_name AS String) AS m_contract,
        CAST(contract_version AS String) AS m_version,
        ts AS m_ts
    FROM agent_messages
    WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
),
replies AS
(
    SELECT
        'reply_differs_from_request' AS kind,
        r.m_tenant AS tenant,
        r.m_task AS task_id,
        r.m_type AS task_type,
        r.m_sender AS sender,
        r.m_recipient AS recipient,
        r.m_contract AS contract_name,
        r.m_version AS contract_version,
        q.m_contract AS expected_contract,
        q.m_version AS expected_version,
        toUInt64(1) AS messages,
        r.m_ts AS last_ts
    FROM msgs AS r
    INNER JOIN msgs AS q ON r.m_tenant = q.m_tenant AND r.m_reply_to = q.m_id
    WHERE r.m_version != q.m_version
),
per_version AS
(
    SELECT
        m_tenant, m_sender, m_contract, m_version,
        count() AS n,
        argMax(m_task, m_ts) AS latest_task,
        argMax(m_type, m_ts) AS latest_type,
        argMax(m_recipient, m_ts) AS latest_recipient,
        max(m_ts) AS latest_ts
    FROM msgs
    GROUP BY m_tenant, m_sender, m_contract, m_version
),
usual AS
(
    SELECT
        m_tenant, m_sender, m_contract,
        argMax(m_version, (n, m_version)) AS usual_version
    FROM per_version
    GROUP BY m_tenant, m_sender, m_contract
    HAVING count() > 1
),
several AS
(
    SELECT
        'agent_uses_several_versions' AS kind,
        p.m_tenant AS tenant,
        p.latest_task AS task_id,
        p.latest_type AS task_type,
        p.m_sender AS sender,
        p.latest_recipient AS recipient,
        p.m_contract AS contract_name,
        p.m_version AS contract_version,
        p.m_contract AS expected_contract,
        u.usual_version AS expected_version,
        p.n AS messages,
        p.latest_ts AS last_ts
    FROM per_version AS p
    INNER JOIN usual AS u
        ON p.m_tenant = u.m_tenant AND p.m_sender = u.m_sender AND p.m_contract = u.m_contract
    WHERE p.m_version != u.usual_version
)
SELECT * FROM
(
    SELECT * FROM replies
    UNION ALL
    SELECT * FROM several
)
ORDER BY last_ts DESC, kind
LIMIT {limit:UInt32}
