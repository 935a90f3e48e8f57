"""An OpenAI Agents SDK agent whose every Runner.run is an agenttrail task.

The Agents SDK reads OPENAI_API_KEY (and OPENAI_BASE_URL) as usual:

    pip install 'agenttrail[openai-agents]'
    python examples/openai_agents_triage.py
    agenttrail runs --task-type triage
"""

import asyncio
import json

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
from openai import AsyncOpenAI

from agenttrail.integrations.openai_agents import install
from agenttrail.producer import Limits, Recorder


@function_tool
def get_order(order_id: str) -> str:
    """Look an order up by its id."""
    return json.dumps({"order_id": order_id, "status": "shipped"})


rec = Recorder.from_env(tenant="acme", agent="triage")
install(rec, task_type="triage", limits=Limits(max_steps=8))  # replaces OpenAI's trace export
model = OpenAIChatCompletionsModel(model="gpt-4.1", openai_client=AsyncOpenAI())
agent = Agent(name="triage", instructions="Answer order questions.", model=model, tools=[get_order])
result = asyncio.run(Runner.run(agent, "Where is order 7294?"))
print(result.final_output)
rec.close()
