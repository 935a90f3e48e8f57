"""What a disabled recorder hands out: objects with the SDK's shape that record nothing."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any


class NullSpan:
    """A span that records nothing."""

    def __enter__(self) -> NullSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def result(self, value: Any) -> None:
        return None

    def fail(self, error: Any) -> None:
        return None

    def respond(self, content: Any = None, **usage: Any) -> None:
        return None


_SPAN = NullSpan()


class NullTask:
    """A task that records nothing and enforces nothing."""

    def __init__(self, recorder: Any, task_type: str, task_id: str | None):
        self.recorder = recorder
        self.task_type = task_type
        self.task_id = task_id or f"tsk_{uuid.uuid4().hex[:16]}"
        self.state: str | None = None
        self.step = 0

    def __enter__(self) -> NullTask:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def llm_call(self, *args: Any, **kwargs: Any) -> NullSpan:
        return _SPAN

    def tool(self, *args: Any, **kwargs: Any) -> NullSpan:
        return _SPAN

    def transition(self, *args: Any, **kwargs: Any) -> None:
        return None

    def end(self, *args: Any, **kwargs: Any) -> None:
        return None

    def start(self) -> None:
        return None

    def guard(self, *args: Any, **kwargs: Any) -> None:
        return None

    def agent_message(self, *args: Any, **kwargs: Any) -> str:
        return kwargs.get("message_id") or f"msg_{uuid.uuid4().hex[:16]}"
