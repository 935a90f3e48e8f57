-- tool_span v2 (schemas/tool_span/v2.avsc) carries tool_call_id: the id the model gave
-- the tool call in its response (OpenAI tool_calls[].id, Anthropic tool_use id, OTLP
-- gen_ai.tool.call.id). It joins a tool span to the LLM call that asked for it, whose
-- tool_calls_json holds the same id:
--
--   SELECT t.tool, t.tool_call_id, l.span_id AS asked_by
--   FROM tool_spans AS t
--   JOIN llm_calls AS l ON l.tenant = t.tenant AND l.task_id = t.task_id
--   WHERE t.tool_call_id IS NOT NULL
--     AND position(ifNull(l.tool_calls_json, ''), t.tool_call_id) > 0
--
-- Rows of v1 events, and of v2 events whose call had no id, hold NULL.

ALTER TABLE tool_spans ADD COLUMN IF NOT EXISTS tool_call_id Nullable(String) AFTER redactions;
