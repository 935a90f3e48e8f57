"""Sample events for tests and benchmarks of the ingest pipeline.

Builds complete, valid records of every family's newest schema version and seals them
into framed bytes exactly as an agenttrail producer would, without needing the SDK.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from agenttrail.events import (
    EventType,
    SchemaRegistry,
    default_registry,
    new_span_id,
    new_trace_id,
    seal,
    uuid7,
)

_T0 = datetime(2026, 1, 15, 10, 22, 44, tzinfo=UTC)


def _envelope(event_type: str, task_id: str, seq: int, tenant: str) -> dict[str, Any]:
    return {
        "event_id": uuid7(),
        "event_type": event_type,
        "schema_version": 1,
        "tenant": tenant,
        "task_id": task_id,
        "task_type": "invoice_generation",
        "agent_name": "billing-agent",
        "agent_version": "1.4.2",
        "trace_id": new_trace_id(),
        "span_id": new_span_id(),
        "parent_span_id": None,
        "step": seq // 3,
        "seq": seq,
        "ts": _T0 + timedelta(milliseconds=seq),
        "producer_id": f"producer-{task_id}",
        "producer_seq": seq,
    }


def sample_record(
    event_type: str,
    *,
    task_id: str = "tsk_8f2c1a",
    seq: int = 0,
    tenant: str = "acme",
    text_bytes: int = 200,
) -> dict[str, Any]:
    """A valid, unsealed record of ``event_type``; ``text_bytes`` sizes its big text field."""
    r = _envelope(event_type, task_id, seq, tenant)
    filler = ("lorem ipsum dolor sit amet " * (text_bytes // 27 + 1))[:text_bytes]
    if event_type == EventType.LLM_CALL:
        messages = f'[{{"role":"user","content":"{filler}"}}]'
        r.update(
            provider="openai", model="gpt-4o", model_version="2024-08-06",
            system_prompt_hash=hashlib.sha256(b"system").hexdigest(), prompt_version="v3",
            prompt_hash=hashlib.sha256(messages.encode()).hexdigest(), messages_json=messages,
            message_count=1, params_json='{"temperature":0}', response_text="Done.",
            response_json=None, tool_calls_json=None, finish_reason="stop", input_tokens=1840,
            output_tokens=512, cached_tokens=0, context_window=128000, cost_usd=0.0123,
            latency_ms=812.5, ttft_ms=120.0, success=True, error_type=None,
            error_detail=None, redactions=[],
        )  # fmt: skip
    elif event_type == EventType.TOOL_SPAN:
        r.update(
            tool="create_invoice", tool_version="2", args_json=f'{{"order_id":"{filler}"}}',
            args_hash=hashlib.sha256(filler.encode()).hexdigest(), idempotency_key=f"k-{seq}",
            attempt=1, side_effect="write", declared=True, result_summary='{"ok":true}',
            result_size=11, latency_ms=118.0, success=True, error_type=None,
            error_detail=None, redactions=["$.email"],
        )  # fmt: skip
    elif event_type == EventType.STATE_TRANSITION:
        boundary = None
        if seq == 0:
            boundary = {
                "entry_json": '{"order_id":"7294"}', "exit_condition": "invoice drafted",
                "max_tokens": 20000, "max_steps": 12, "max_wall_clock_s": 60.0,
                "max_spend_usd": 1.5, "side_effect_budget": ["billing"],
                "escalation_path": "finance-oncall", "declared_tools": ["create_invoice"],
            }  # fmt: skip
        r.update(
            from_state=None if seq == 0 else "running",
            to_state="started" if seq == 0 else "running",
            reason=filler[:40], error_type=None, error_detail=None, boundary=boundary,
        )  # fmt: skip
    elif event_type == EventType.AGENT_MESSAGE:
        r.update(
            message_id=f"m-{seq}", in_reply_to=None, sender="orchestrator",
            recipient="CodingAgent", direction="sent", contract_name="coding.request",
            contract_version="1.0", payload_json=f'{{"spec":"{filler}"}}',
            payload_size=len(filler) + 11,
        )  # fmt: skip
    elif event_type == EventType.GUARD_EVENT:
        r.update(
            kind="limit_exceeded", limit_name="tokens", limit_value=20000.0,
            observed_value=20480.0, action=None, decision="stop", decided_by="limits",
            detail=filler[:60], original_hash=None,
        )  # fmt: skip
    elif event_type == EventType.CHECKPOINT:
        r.update(
            task_type="checkpoint", final=False, interval_s=5.0, head_tenants=[tenant],
            head_task_ids=["tsk_other"], head_task_types=["invoice_generation"],
            head_seqs=[seq], head_hashes=[hashlib.sha256(filler.encode()).hexdigest()],
            head_ts=[1_768_472_564_000_000], head_closed=[False], key_id=None, signature=None,
        )  # fmt: skip
    else:
        raise ValueError(f"No sample for event type {event_type!r}.")
    newest = default_registry().latest(event_type)
    r["schema_version"] = newest.version
    for f in newest.schema["fields"]:  # fields later versions added
        r.setdefault(f["name"], f.get("default"))
    if r.get("tool_call_id", "absent") is None:
        r["tool_call_id"] = f"call_{seq}"
    return r


def sealed(
    record: dict[str, Any], prev_hash: str = "", registry: SchemaRegistry | None = None
) -> bytes:
    """Seal ``record`` (sets its hash fields) and return its framed bytes."""
    entry = (registry or default_registry()).latest(str(record["event_type"]))
    return seal(entry, record, prev_hash)


__all__ = ["sample_record", "sealed"]
