"""The same support agent on Anthropic's Messages API, recorded and bound by agenttrail.

The client reads ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL) as usual:

    pip install 'agenttrail[anthropic]'
    python examples/anthropic_support.py
    agenttrail runs --task-type support-claude
"""

import json

from anthropic import Anthropic

from agenttrail.integrations.anthropic import instrument, run_tool_use
from agenttrail.producer import Limits, Recorder

MODEL = "claude-sonnet-4"
SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}}
TOOLS = [
    {"name": "get_order", "description": "Look an order up by its id.", "input_schema": SCHEMA}
]


def get_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "shipped"}


rec = Recorder.from_env(tenant="acme", agent="support")
client = instrument(Anthropic())
msgs = [{"role": "user", "content": "Where is order 7294?"}]
with rec.task("support-claude", limits=Limits(max_steps=8)):
    reply = client.messages.create(model=MODEL, max_tokens=512, messages=msgs, tools=TOOLS)
    results = []
    for block in reply.content:
        if block.type == "tool_use":
            result = run_tool_use(block, {"get_order": get_order})
            content = json.dumps(result)
            results.append({"type": "tool_result", "tool_use_id": block.id, "content": content})
    msgs += [{"role": "assistant", "content": reply.content}, {"role": "user", "content": results}]
    answer = client.messages.create(model=MODEL, max_tokens=512, messages=msgs)
    print(answer.content[0].text)
rec.close()
