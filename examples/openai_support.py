"""A support agent on the OpenAI client, recorded and bound by agenttrail.

Run beside `agenttrail up` (or with AGENTTRAIL_BOOTSTRAP set); the client reads
OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible server) as usual:

    pip install 'agenttrail[openai]'
    python examples/openai_support.py
    agenttrail runs --task-type support
"""

import json

from openai import OpenAI

from agenttrail.integrations.openai import instrument, run_tool_call
from agenttrail.producer import Limits, Recorder

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look an order up by its id.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]


def get_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "shipped"}


rec = Recorder.from_env(tenant="acme", agent="support")
client = instrument(OpenAI())  # only this client; nothing global
msgs = [{"role": "user", "content": "Where is order 7294?"}]
with rec.task("support", limits=Limits(max_steps=8)):
    reply = client.chat.completions.create(model="gpt-4.1", messages=msgs, tools=TOOLS)
    msgs.append(reply.choices[0].message.model_dump(exclude_none=True))
    for call in reply.choices[0].message.tool_calls or []:
        result = run_tool_call(call, {"get_order": get_order})  # a tool span with its call id
        msgs.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    answer = client.chat.completions.create(model="gpt-4.1", messages=msgs)
    print(answer.choices[0].message.content)
rec.close()
