-- Replay: every event of one task, all families, in seq order, with a one-line summary.
--
--   SELECT * FROM task_replay(task_id = {task_id:String}) ORDER BY tenant, seq
--
-- A parameterised view: the task id is bound by the driver, never spliced into SQL.
-- Each branch filters its family table on task_id, the second column of the tables'
-- ORDER BY (tenant, task_id, seq); tenant is low-cardinality, so the primary index
-- still narrows each table to the task's granules (an index range, not a scan). Add
-- WHERE tenant = … when one task id exists in several tenants.
--
-- Summaries are whitespace-collapsed and cut to 100 characters (… marks a cut); the
-- full text of a step is in llm_calls (see `agenttrail replay TASK --step N`).

CREATE VIEW IF NOT EXISTS task_replay AS
SELECT tenant, task_id, seq, step, ts, family, span_id, parent_span_id, ok,
       if(lengthUTF8(line) > 100, concat(leftUTF8(line, 99), '…'), line) AS summary
FROM
(
    SELECT
        tenant, task_id, seq, step, ts, 'llm_call' AS family, span_id, parent_span_id,
        success AS ok,
        concat(
            toString(model), ' ',
            toString(input_tokens), '→', toString(output_tokens), ' tokens, ',
            toString(round(latency_ms, 1)), ' ms',
            if(success,
               concat(if(finish_reason IS NULL, '', concat(' (', assumeNotNull(finish_reason), ')')),
                      ': ', ifNull(response_text, '')),
               concat(' FAILED ', ifNull(error_type, ''), ': ', ifNull(error_detail, ''))),
            if(tool_calls_json IS NULL, '', concat(' ⇒ ', assumeNotNull(tool_calls_json)))
        ) AS raw_line,
        replaceRegexpAll(raw_line, '\\s+', ' ') AS line
    FROM llm_calls
    WHERE task_id = {task_id:String}

    UNION ALL

    SELECT
        tenant, task_id, seq, step, ts, 'tool_span' AS family, span_id, parent_span_id,
        success AS ok,
        concat(
            toString(tool), '(', args_json, ')',
            if(attempt > 1, concat(' attempt ', toString(attempt)), ''),
            if(declared, '', ' [undeclared]'),
            if(side_effect = 'read', '', concat(' [', toString(side_effect), ']')),
            ' ', toString(round(latency_ms, 1)), ' ms',
            if(success,
               concat(' → ', ifNull(result_summary, '')),
               concat(' FAILED ', ifNull(error_type, ''), ': ', ifNull(error_detail, '')))
        ) AS raw_line,
        replaceRegexpAll(raw_line, '\\s+', ' ') AS line
    FROM tool_spans
    WHERE task_id = {task_id:String}

    UNION ALL

    SELECT
        tenant, task_id, seq, step, ts, 'state_transition' AS family, span_id, parent_span_id,
        to_state NOT IN ('failed', 'limit_exceeded', 'killed') AS ok,
        concat(
            ifNull(from_state, '∅'), ' → ', toString(to_state),
            if(reason IS NULL, '', concat(' (', assumeNotNull(reason), ')')),
            if(error_type IS NULL, '',
               concat(' ', assumeNotNull(error_type), ': ', ifNull(error_detail, ''))),
            if(has_boundary,
               concat(' entry ', ifNull(boundary_entry_json, '{}'),
                      if(empty(boundary_declared_tools), '',
                         concat(' tools ', arrayStringConcat(boundary_declared_tools, ',')))),
               '')
        ) AS raw_line,
        replaceRegexpAll(raw_line, '\\s+', ' ') AS line
    FROM state_transitions
    WHERE task_id = {task_id:String}

    UNION ALL

    SELECT
        tenant, task_id, seq, step, ts, 'agent_message' AS family, span_id, parent_span_id,
        true AS ok,
        concat(
            toString(sender), ' → ', toString(recipient), ' ',
            toString(contract_name), '@', toString(contract_version),
            ' (', toString(direction), ') ', payload_json
        ) AS raw_line,
        replaceRegexpAll(raw_line, '\\s+', ' ') AS line
    FROM agent_messages
    WHERE task_id = {task_id:String}

    UNION ALL

    SELECT
        tenant, task_id, seq, step, ts, 'guard_event' AS family, span_id, parent_span_id,
        kind NOT IN ('limit_exceeded', 'confirmation_denied', 'input_rejected',
                     'injection_suspected', 'kill_requested') AS ok,
        concat(
            toString(kind),
            if(limit_name IS NULL, '',
               concat(' ', assumeNotNull(limit_name), ' ', toString(observed_value), '/',
                      toString(limit_value))),
            if(action IS NULL, '', concat(' action ', assumeNotNull(action))),
            if(decision IS NULL, '', concat(' → ', assumeNotNull(decision))),
            if(decided_by IS NULL, '', concat(' by ', assumeNotNull(decided_by))),
            if(detail IS NULL, '', concat(': ', assumeNotNull(detail)))
        ) AS raw_line,
        replaceRegexpAll(raw_line, '\\s+', ' ') AS line
    FROM guard_events
    WHERE task_id = {task_id:String}
)
ORDER BY tenant, seq;
