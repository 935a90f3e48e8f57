"""The demo's simulated agents.

Two workloads from the field note, recorded through the real SDK:

* ``invoice_generation`` — get_order (read) → create_invoice (write) → notify_finance
  (irreversible), one LLM call per step, the message history growing as it would.
* ``software_delivery`` — an orchestrator and PlanningAgent, CodingAgent, ReviewAgent
  and DeployAgent exchanging versioned agent messages; deploying to production waits
  for a confirmation.

Mixed in, at rates chosen by the seed: a hallucinated tool, a retried non-idempotent
tool call, a loop that hits its step limit, a tool error that cascades, and an agent
answering with an older contract version. The same seed gives the same tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from agenttrail.producer import (
    CallbackPolicy,
    Decision,
    LimitExceeded,
    Limits,
    Recorder,
    RulePolicy,
    Task,
)

# Simulated deciders: finance's rule approves every notification (amounts over 10k wait
# for it first), the release manager approves production deploys.
_FINANCE_RULE = RulePolicy(lambda request: True, name="policy:auto")
_RELEASE_MANAGER = CallbackPolicy(
    lambda request: Decision(True, "release-manager"), "release-manager"
)

# Prices per million tokens (input, output) used to give each simulated call a cost.
_PRICES = {"gpt-4.1": (2.0, 8.0), "gpt-4.1-mini": (0.4, 1.6), "claude-sonnet-4": (3.0, 15.0)}
_INVOICE_TOOLS = ("get_order", "create_invoice", "notify_finance")
_DELIVERY_TOOLS = ("read_repo", "write_diff", "run_tests", "deploy")


class ToolFailure(RuntimeError):
    """A simulated tool error, with the context a good tool gives."""


@dataclass
class DemoPlan:
    """What a demo run did, counted as it went (tests compare the store against it)."""

    tasks: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failure_kinds: dict[str, int] = field(default_factory=dict)

    def note(self, outcome: str, failure: str | None) -> None:
        self.tasks += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if failure:
            self.failure_kinds[failure] = self.failure_kinds.get(failure, 0) + 1


class _Conversation:
    """A growing message history with token counts that grow with it."""

    def __init__(self, rng: random.Random, system: str, user: str):
        self.rng = rng
        self.messages: list[dict[str, str]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]

    def ask(self, task: Task, model: str, reply: str, tool_call: str | None = None) -> None:
        tokens_in = sum(len(m["content"]) for m in self.messages) // 3 + self.rng.randint(200, 600)
        tokens_out = self.rng.randint(40, 400)
        price_in, price_out = _PRICES[model]
        with task.llm_call(
            model=model,
            messages=self.messages,
            provider="openai" if model.startswith("gpt") else "anthropic",
            params={"temperature": 0, "tools": list(task.tools or ())},
            model_version=f"{model}-2026-04-14",
            prompt_version="v3",
            context_window=128_000,
        ) as call:
            call.respond(
                content=reply,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cached_tokens=min(tokens_in, self.rng.choice((0, 0, 256))),
                finish_reason="tool_calls" if tool_call else "stop",
                tool_calls=[{"name": tool_call, "arguments": "{}"}] if tool_call else None,
                cost_usd=round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6),
            )
        self.messages.append({"role": "assistant", "content": reply})

    def observe(self, text: str) -> None:
        self.messages.append({"role": "tool", "content": text})


def invoice_task(rec: Recorder, rng: random.Random, n: int) -> tuple[str, str | None]:
    """One invoice generation; returns (outcome, failure kind or None)."""
    roll = rng.random()
    failure = (
        "hallucinated_tool"
        if roll < 0.06
        else "non_idempotent_retry"
        if roll < 0.12
        else "step_limit_loop"
        if roll < 0.17
        else "cascading_error"
        if roll < 0.23
        else None
    )
    order_id = f"{7000 + n}"
    amount = round(rng.uniform(50, 20_000), 2)
    model = rng.choice(("gpt-4.1", "gpt-4.1-mini"))
    task = rec.task(
        "invoice_generation",
        task_id=f"inv-{n:05d}",
        entry={"order_id": order_id, "customer": f"cust-{rng.randint(1, 90)}"},
        limits=Limits(max_steps=8, max_tokens=60_000, max_wall_clock_s=120),
        tools=_INVOICE_TOOLS,
        exit_condition="a draft invoice exists and finance was notified",
        side_effect_budget=["billing.invoices", "finance.notifications"],
        escalation_path="finance-oncall",
    )
    convo = _Conversation(
        rng,
        "You generate invoices. Use only the tools you are given.",
        f"Create the invoice for order {order_id}.",
    )
    try:
        with task:
            convo.ask(task, model, "I will look the order up.", "get_order")
            if failure == "step_limit_loop":
                # A malformed observation sends the agent round in circles.
                while True:
                    with task.tool("get_order", args={"order_id": order_id}) as span:
                        span.result({"order": None, "note": "<html>maintenance</html>"})
                    convo.observe("<html>maintenance</html>")
                    convo.ask(task, model, "The order did not load; trying again.", "get_order")
            if failure == "cascading_error":
                with task.tool("get_order", args={"order_id": order_id}) as span:
                    span.fail(f"Order {order_id} was not found in the staging database.")
                    span.result({"order": None})
                convo.observe("order: null")
                convo.ask(task, model, "Creating the invoice with what I have.", "create_invoice")
                with task.tool(
                    "create_invoice",
                    args={"order_id": order_id, "line_items": []},
                    side_effect="write",
                ):
                    raise ToolFailure(f"create_invoice: order {order_id} has no line items")
            with task.tool("get_order", args={"order_id": order_id}) as span:
                span.result({"order_id": order_id, "amount": amount, "status": "confirmed"})
            convo.observe(f"order {order_id}: {amount}")
            if failure == "hallucinated_tool":
                convo.ask(task, model, "Checking the customer's credit first.", "lookup_credit")
                with task.tool("lookup_credit", args={"customer": "unknown"}) as span:
                    span.fail(
                        "No tool named lookup_credit; available: " + ", ".join(_INVOICE_TOOLS)
                    )
                convo.observe("error: unknown tool lookup_credit")
            convo.ask(task, model, "Creating the draft invoice.", "create_invoice")
            args = {"order_id": order_id, "line_items": [{"sku": "A1", "quantity": 1}]}
            if failure == "non_idempotent_retry":
                with task.tool("create_invoice", args=args, side_effect="write") as span:
                    span.fail("timeout after 30 s (the invoice may have been created)")
                with task.tool("create_invoice", args=args, side_effect="write", attempt=2) as span:
                    span.result({"invoice_id": f"inv_{n}_b", "status": "draft"})
            else:
                with task.tool(
                    "create_invoice", args=args, side_effect="write", idempotency_key=order_id
                ) as span:
                    span.result({"invoice_id": f"inv_{n}", "status": "draft"})
            if amount > 10_000:
                task.transition("waiting_confirmation", reason="amount over 10k")
            task.confirm("notify_finance", {"order_id": order_id}, policy=_FINANCE_RULE)
            if amount > 10_000:
                task.transition("running", reason="confirmed")
            convo.ask(task, model, "Notifying finance.", "notify_finance")
            with task.tool(
                "notify_finance", args={"order_id": order_id}, side_effect="irreversible"
            ) as span:
                span.result({"sent": True})
            convo.ask(task, model, "Done: the draft invoice exists and finance knows.")
    except LimitExceeded:
        return "limit_exceeded", failure
    except ToolFailure:
        return "failed", failure
    return "succeeded", failure


def delivery_task(rec: Recorder, rng: random.Random, n: int) -> tuple[str, str | None]:
    """One software delivery through the orchestrator and its four agents."""
    failure = "contract_mismatch" if rng.random() < 0.15 else None
    model = rng.choice(("claude-sonnet-4", "gpt-4.1"))
    task = rec.task(
        "software_delivery",
        task_id=f"dlv-{n:05d}",
        entry={"ticket": f"ENG-{1000 + n}"},
        limits=Limits(max_steps=12, max_tokens=150_000),
        tools=_DELIVERY_TOOLS,
        exit_condition="the change is deployed to staging, or to production once confirmed",
        side_effect_budget=["git", "staging", "production"],
        escalation_path="release-manager",
    )
    convo = _Conversation(rng, "You are the orchestrator.", f"Deliver ENG-{1000 + n}.")
    with task:
        plan = task.agent_message(
            sender="orchestrator",
            recipient="PlanningAgent",
            contract="planning.request",
            version="1.2",
            payload={"ticket": f"ENG-{1000 + n}"},
        )
        convo.ask(task, model, "Plan: one endpoint, one test.")
        task.agent_message(
            sender="PlanningAgent",
            recipient="orchestrator",
            contract="planning.result",
            version="1.2",
            payload={"subtasks": ["endpoint", "test"]},
            direction="received",
            in_reply_to=plan,
        )
        code = task.agent_message(
            sender="orchestrator",
            recipient="CodingAgent",
            contract="coding.request",
            version="2.1",
            payload={"spec": "add /invoices/{id}/pdf"},
        )
        convo.ask(task, model, "Reading the repository.", "read_repo")
        with task.tool("read_repo", args={"path": "api/invoices.py"}) as span:
            span.result("def get_invoice(...): ...\n" * rng.randint(5, 40))
        convo.ask(task, model, "Writing the diff.", "write_diff")
        with task.tool("write_diff", args={"files": 2}, side_effect="write") as span:
            span.result({"diff": "+42 -3"})
        task.agent_message(
            sender="CodingAgent",
            recipient="orchestrator",
            contract="coding.result",
            version="2.1",
            payload={"diff": "+42 -3"},
            direction="received",
            in_reply_to=code,
        )
        review = task.agent_message(
            sender="orchestrator",
            recipient="ReviewAgent",
            contract="review.request",
            version="1.0",
            payload={"diff": "+42 -3"},
        )
        convo.ask(task, model, "Running the tests.", "run_tests")
        with task.tool("run_tests", args={"suite": "api"}) as span:
            span.result({"passed": 128, "failed": 0})
        task.agent_message(
            sender="ReviewAgent",
            recipient="orchestrator",
            contract="review.result",
            # An agent that was not upgraded answers with the old contract.
            version="0.9" if failure == "contract_mismatch" else "1.0",
            payload={"approved": True},
            direction="received",
            in_reply_to=review,
        )
        target = "production" if rng.random() < 0.4 else "staging"
        deploy = task.agent_message(
            sender="orchestrator",
            recipient="DeployAgent",
            contract="deploy.request",
            version="1.1",
            payload={"target": target},
        )
        if target == "production":
            task.transition("waiting_confirmation", reason="deploy to production")
            task.confirm("deploy", {"target": target}, policy=_RELEASE_MANAGER)
            task.transition("running", reason="release manager approved")
        with task.tool(
            "deploy",
            args={"target": target},
            side_effect="irreversible" if target == "production" else "write",
        ) as span:
            span.result({"deployed": True, "target": target})
        task.agent_message(
            sender="DeployAgent",
            recipient="orchestrator",
            contract="deploy.result",
            version="1.1",
            payload={"ok": True},
            direction="received",
            in_reply_to=deploy,
        )
        convo.ask(task, model, f"Deployed to {target}.")
    return "succeeded", failure


WORKLOADS: dict[str, Callable[[Recorder, random.Random, int], tuple[str, str | None]]] = {
    "invoice_generation": invoice_task,
    "software_delivery": delivery_task,
}


def run_workloads(
    rec: Recorder,
    tasks: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DemoPlan:
    """Run ``tasks`` simulated tasks (two invoices for each delivery) through ``rec``.

    Deterministic: the same ``tasks`` and ``seed`` give the same tasks, events and
    outcomes (ids and timings aside). ``progress`` is called after each task with 1.
    ``should_stop`` is asked before each task; when it answers True the run ends there,
    between two whole tasks, and the plan counts the tasks that ran.
    """
    rng = random.Random(seed)
    plan = DemoPlan()
    for n in range(tasks):
        if should_stop is not None and should_stop():
            break
        kind = "software_delivery" if n % 3 == 2 else "invoice_generation"
        outcome, failure = WORKLOADS[kind](rec, rng, n)
        plan.note(outcome, failure)
        if progress is not None:
            progress(1)
    return plan
