"""Ready integrations that record through the SDK, so limits, kills and confirmations apply.

Each lives in its own module and imports its client library only there (an optional
extra): ``agenttrail.integrations.openai`` (the ``openai`` client, sync, async,
streaming, tool calls) and ``agenttrail.integrations.langchain`` (a LangChain /
LangGraph callback handler, sync and async). Each records into the task current in the
caller's context (``with rec.task(...)``) and does nothing outside one.
"""
