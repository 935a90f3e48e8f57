"""A LangChain tool-calling loop, recorded by agenttrail's callback handler.

ChatOpenAI reads OPENAI_API_KEY (and OPENAI_BASE_URL) as usual; any LangChain chat
model or LangGraph graph takes the same `callbacks` config:

    pip install 'agenttrail[langchain]' langchain-openai
    python examples/langchain_agent.py
    agenttrail runs --task-type research
"""

import json

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from agenttrail.integrations.langchain import AgenttrailCallbackHandler
from agenttrail.producer import Limits, Recorder


@tool
def get_order(order_id: str) -> str:
    """Look an order up by its id."""
    return json.dumps({"order_id": order_id, "status": "shipped"})


rec = Recorder.from_env(tenant="acme", agent="research")
model = ChatOpenAI(model="gpt-4.1").bind_tools([get_order])
with rec.task("research", limits=Limits(max_steps=8)) as task:
    config = {"callbacks": [AgenttrailCallbackHandler(task)]}
    messages = [HumanMessage("Where is order 7294?")]
    reply = model.invoke(messages, config=config)
    messages.append(reply)
    for call in reply.tool_calls:
        messages.append(get_order.invoke(call, config=config))  # a ToolMessage with the call id
    print(model.invoke(messages, config=config).content)
    # async graphs: AsyncAgenttrailCallbackHandler(task) with await graph.ainvoke(...)
rec.close()
