"""Ready integrations that record through the SDK, so limits, kills and confirmations apply.

Each lives in its own module and imports its client library only there (an optional
extra): ``agenttrail.integrations.openai`` (the ``openai`` client: sync, async,
streaming, tool calls), ``agenttrail.integrations.anthropic`` (the same for the
``anthropic`` client), ``agenttrail.integrations.langchain`` (a LangChain / LangGraph
callback handler, sync and async) and ``agenttrail.integrations.openai_agents`` (an
OpenAI Agents SDK tracing processor; each run its own task). The client wrappers and
the handler record into the task current in the caller's context
(``with rec.task(...)``) and do nothing outside one.
"""
