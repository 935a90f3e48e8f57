"""What a span records when its event could not be built.

A span's event dict is built by the pipeline's worker after the span ended (see
``Deferred`` in :mod:`._pipeline`), under the ``seq`` the span took when it ended. If
building it raises — an SDK bug, or a user's detector failing on the error text it
scrubs there — the span is still recorded under that ``seq``: a record of the same
family with ``success`` false, ``error_type`` :data:`BUILD_FAILED` and the build error
in ``error_detail``. So ``seq`` stays gapless (``agenttrail verify`` finds no hole), the
span still counts in its task, and the error is in the store, not only in a log.

Each field is taken from the span only when it has the type the schema wants, and is a
neutral value otherwise; nothing here calls user code except the scrubber on the error
message, and a failure there withholds the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from agenttrail.events import SideEffect
from agenttrail.producer._json import to_json

if TYPE_CHECKING:
    from agenttrail.producer._spans import Span

log = logging.getLogger("agenttrail.producer")

BUILD_FAILED = "event_build_failed"
"""``error_type`` of a span recorded without the event it should have had."""

_DETAIL_CHARS = 4000
_EMPTY_HASH = sha256(b"").hexdigest()
_SIDE_EFFECTS = frozenset(s.value for s in SideEffect)
_logged: set[str] = set()


def _text(value: Any, default: str) -> str:
    return value if type(value) is str else default


def _maybe_text(value: Any) -> str | None:
    return value if type(value) is str else None


def _count(value: Any, default: int = 0, least: int = 0) -> int:
    return value if type(value) is int and value >= least else default


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _texts(value: Any) -> list[str]:
    if type(value) is list and all(type(v) is str for v in value):
        return list(value)
    return []


def _tool_fields(span: Any) -> dict[str, Any]:
    args_json = span.args_json
    if type(args_json) is not str:
        args = span._args
        args_json = to_json(args, sort_keys=True) if type(args) is dict else "{}"
    name = _text(span.name, "unknown")
    tools = span.task.tools
    side_effect = span.side_effect
    return {
        "tool": name,
        "tool_version": _maybe_text(span.tool_version),
        "args_json": args_json,
        "args_hash": _maybe_text(span.args_hash),
        "idempotency_key": _maybe_text(span.idempotency_key),
        "attempt": _count(span.attempt, 1, 1),
        "side_effect": side_effect if side_effect in _SIDE_EFFECTS else "read",
        "declared": tools is None or name in tools,
        "result_summary": _maybe_text(span._result_summary),
        "result_size": _count(span._result_size),
        "redactions": _texts(span.redactions),
        "tool_call_id": _maybe_text(span.tool_call_id),
    }


def _llm_fields(span: Any) -> dict[str, Any]:
    return {
        "provider": _text(span.provider, "unknown"),
        "model": _text(span.model, "unknown"),
        "model_version": _maybe_text(span.model_version),
        "system_prompt_hash": _maybe_text(span.system_prompt_hash),
        "prompt_version": _maybe_text(span.prompt_version),
        "prompt_hash": _text(span.prompt_hash, _EMPTY_HASH),
        "messages_json": _text(span.messages_json, "[]"),
        "message_count": _count(span.message_count),
        "params_json": _text(span.params_json, "{}"),
        "response_text": _maybe_text(span.response_text),
        "response_json": _maybe_text(span.response_json),
        "tool_calls_json": _maybe_text(span.tool_calls_json),
        "finish_reason": _maybe_text(span.finish_reason),
        "input_tokens": _count(span.input_tokens),
        "output_tokens": _count(span.output_tokens),
        "cached_tokens": _count(span.cached_tokens),
        "context_window": span.context_window if type(span.context_window) is int else None,
        "cost_usd": _number(span.cost_usd),
        "ttft_ms": _number(span.ttft_ms),
        "redactions": _texts(span.redactions),
    }


_FAMILY_FIELDS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "tool_span": _tool_fields,
    "llm_call": _llm_fields,
}


def _detail(span: Span, exc: BaseException) -> str:
    """What failed, for ``error_detail``: the build error (scrubbed), and the span's own."""
    try:
        message = span.task.redact_error(str(exc)) or ""
    except Exception:  # the scrubber may be what failed: then say nothing of the message
        message = "(message withheld: scrubbing it failed too)"
    own = span.error_type if type(span.error_type) is str else None
    detail = f"agenttrail could not build this span's event: {type(exc).__name__}: {message}"
    if own is not None:
        detail += f" (the span itself ended with {own})"
    return detail[:_DETAIL_CHARS]


def fallback_event(
    span: Span, event_type: str, latency_ms: float, seq: int, exc: BaseException
) -> dict[str, Any]:
    """The record of a span whose event could not be built (see the module docstring).

    Called by the pipeline's worker in place of the failed build, with its arguments
    and the error. Logs the first failure of each error type with its traceback.

    Raises:
        BaseException: ``exc`` again, if even this record cannot be made (the worker
            then logs and skips the event, as for any failed build).
    """
    key = f"{event_type}:{type(exc).__name__}"
    if key not in _logged:
        _logged.add(key)
        log.error(
            "agenttrail could not build %s seq %d of task %s; it is recorded as %s "
            "(logged once per error type)",
            event_type,
            seq,
            getattr(span.task, "task_id", "?"),
            BUILD_FAILED,
            exc_info=exc,
        )
    try:
        step = _count(getattr(span, "step", 0))
        ts = _count(getattr(span, "ts", 0))
        return {
            **span.task.base,
            "seq": seq,
            "event_type": event_type,
            "step": step,
            "span_id": span.span_id,
            "parent_span_id": _maybe_text(span.parent_span_id),
            "ts": ts,
            **_FAMILY_FIELDS[event_type](span),
            "latency_ms": latency_ms if type(latency_ms) is float and latency_ms >= 0 else 0.0,
            "success": False,
            "error_type": BUILD_FAILED,
            "error_detail": _detail(span, exc),
        }
    except Exception:
        log.exception("agenttrail could not make the fallback record of seq %d either", seq)
        raise exc from None
