-- Replay and tail show a tool span's tool_call_id (tool_span v2, migration 0070), the
-- id the model gave the call, so a tool span can be matched by eye to the LLM call whose
-- tool calls (shown after ⇒) asked for it: `get_order({"order_id":"7294"}) [call_7Qx…] …`.
--
-- Both views are 0008's and 0050's with that one addition to the tool-span line; they
-- are replaced whole (a view has no ALTER for its query). Their summaries stay equal to
-- each other: a test compares tail's with replay's for the same events.

CREATE OR REPLACE VIEW task_replay AS
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
            if(tool_call_id IS NULL, '', concat(' [', assumeNotNull(tool_call_id), ']')),
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

CREATE OR REPLACE VIEW event_timeline AS
SELECT tenant, task_id, task_type, agent_name, event_id, seq, step, ts, ingested_at, family,
       span_id, parent_span_id, ok, new_state,
       if(lengthUTF8(line) > 100, concat(leftUTF8(line, 99), '…'), line) AS summary
FROM
(
    SELECT
        tenant, task_id, task_type, agent_name, event_id, seq, step, ts, ingested_at,
        'llm_call' AS family, span_id, parent_span_id,
        CAST(NULL AS Nullable(String)) AS new_state,
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

    UNION ALL

    SELECT
        tenant, task_id, task_type, agent_name, event_id, seq, step, ts, ingested_at,
        'tool_span' AS family, span_id, parent_span_id,
        CAST(NULL AS Nullable(String)) AS new_state,
        success AS ok,
        concat(
            toString(tool), '(', args_json, ')',
            if(tool_call_id IS NULL, '', concat(' [', assumeNotNull(tool_call_id), ']')),
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

    UNION ALL

    SELECT
        tenant, task_id, task_type, agent_name, event_id, seq, step, ts, ingested_at,
        'state_transition' AS family, span_id, parent_span_id,
        CAST(toString(to_state) AS Nullable(String)) AS new_state,
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

    UNION ALL

    SELECT
        tenant, task_id, task_type, agent_name, event_id, seq, step, ts, ingested_at,
        'agent_message' AS family, span_id, parent_span_id,
        CAST(NULL AS Nullable(String)) AS new_state,
        true AS ok,
        concat(
            toString(sender), ' → ', toString(recipient), ' ',
            toString(contract_name), '@', toString(contract_version),
            ' (', toString(direction), ') ', payload_json
        ) AS raw_line,
        replaceRegexpAll(raw_line, '\\s+', ' ') AS line
    FROM agent_messages

    UNION ALL

    SELECT
        tenant, task_id, task_type, agent_name, event_id, seq, step, ts, ingested_at,
        'guard_event' AS family, span_id, parent_span_id,
        CAST(NULL AS Nullable(String)) AS new_state,
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
);
