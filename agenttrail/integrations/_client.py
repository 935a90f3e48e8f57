"""What the client integrations share: wrapping ``create``, streams, parameters, tool runs.

A provider module (``openai``, ``anthropic``) supplies only what differs: how a request
opens an LLM call, how a whole response is recorded, and how a stream's items rebuild
the answer (a :class:`StreamAccumulator`). Wrapping, the sync / async split, error
handling and stream pass-through live here once, so every client behaves the same:
a stopped task raises before the request leaves, a failed request ends the call with
its error, a stream is recorded when it ends, is closed, or fails.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from agenttrail.producer import LlmCall, current_task

OpenCall = Callable[[Mapping[str, Any]], LlmCall | None]
Respond = Callable[..., None]  # (call, response, *, ttft_ms=None)


class StreamAccumulator:
    """Rebuilds one streamed answer from its items; records the call once, at the end.

    Subclasses implement :meth:`add` (one chunk or event; call :meth:`first_token` when
    it carries output) and :meth:`respond` (``call.respond(...)`` with what was rebuilt).
    """

    def __init__(self, call: LlmCall, t0: float):
        self.call = call
        self.t0 = t0
        self.ttft_ms: float | None = None
        self.done = False

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.t0) * 1000.0

    def add(self, item: Any) -> None:
        raise NotImplementedError

    def respond(self) -> None:
        raise NotImplementedError

    def finish_call(self, error: BaseException | None = None) -> None:
        """End the call: with ``error`` as failed, else with the rebuilt answer. Once."""
        if self.done:
            return
        self.done = True
        if error is not None:
            self.call.end(error=error)
            return
        self.respond()
        self.call.end()


Accumulate = Callable[[LlmCall, float], StreamAccumulator]


class SyncStream:
    """Iterates the client's stream unchanged; records the call when it ends or closes."""

    def __init__(self, stream: Any, acc: StreamAccumulator):
        self._stream = stream
        self._acc = acc

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self._stream:
                self._acc.add(item)
                yield item
        except BaseException as exc:
            self._acc.finish_call(exc)
            raise
        self._acc.finish_call()

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._acc.finish_call()
        close = getattr(self._stream, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncStream:
    """Async-iterates the client's stream unchanged; records the call when it ends or closes."""

    def __init__(self, stream: Any, acc: StreamAccumulator):
        self._stream = stream
        self._acc = acc

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            async for item in self._stream:
                self._acc.add(item)
                yield item
        except BaseException as exc:
            self._acc.finish_call(exc)
            raise
        self._acc.finish_call()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._acc.finish_call()
        close = getattr(self._stream, "close", None)
        if callable(close):
            await close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def wrap_create(
    owner: Any,
    client: Any,
    open_call: OpenCall,
    respond: Respond,
    accumulate: Accumulate,
    method: str = "create",
) -> None:
    """Replace ``owner.<method>`` (of ``client``; ``Async…`` clients get a coroutine) with
    a recording one. Idempotent: a method already wrapped is left alone; a client
    without the method is left as it is."""
    original = getattr(owner, method, None)
    if original is None:
        return
    if getattr(original, "__agenttrail__", False):
        return

    def settle(call: LlmCall, kwargs: Mapping[str, Any], response: Any, t0: float) -> Any:
        if kwargs.get("stream"):
            return accumulate(call, t0)
        respond(call, response)
        call.end()
        return None

    def create(*args: Any, **kwargs: Any) -> Any:
        call = open_call(kwargs)
        if call is None:
            return original(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            response = original(*args, **kwargs)
        except BaseException as exc:
            call.end(error=exc)
            raise
        acc = settle(call, kwargs, response, t0)
        return response if acc is None else SyncStream(response, acc)

    async def acreate(*args: Any, **kwargs: Any) -> Any:
        call = open_call(kwargs)
        if call is None:
            return await original(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            response = await original(*args, **kwargs)
        except BaseException as exc:
            call.end(error=exc)
            raise
        acc = settle(call, kwargs, response, t0)
        return response if acc is None else AsyncStream(response, acc)

    wrapper: Any = acreate if type(client).__name__.startswith("Async") else create
    wrapper.__agenttrail__ = True
    setattr(owner, method, wrapper)


def wrap_stream_helper(
    owner: Any, open_call: OpenCall, respond: Respond, snapshot: str, first_event: str
) -> None:
    """Record ``owner.stream(...)``, the SDKs' streaming helper (a context manager, sync or
    async), as well as ``create``; see :class:`RecordedStreamManager`."""
    original = getattr(owner, "stream", None)
    if original is None or getattr(original, "__agenttrail__", False):
        return

    def stream(*args: Any, **kwargs: Any) -> RecordedStreamManager:
        manager = original(*args, **kwargs)
        return RecordedStreamManager(manager, kwargs, open_call, respond, snapshot, first_event)

    stream.__agenttrail__ = True  # type: ignore[attr-defined]
    owner.stream = stream


def request_params(
    kwargs: Mapping[str, Any], recorded_elsewhere: tuple[str, ...]
) -> dict[str, Any]:
    """The request's parameters worth keeping: all but those recorded in their own fields
    (model, messages …) and unset ones; the offered tools and ``stream`` when given."""
    params = {k: v for k, v in kwargs.items() if k not in recorded_elsewhere and v is not None}
    if kwargs.get("tools"):
        params["tools"] = kwargs["tools"]
    if kwargs.get("stream"):
        params["stream"] = True
    return params


def run_tool(
    name: str,
    args: dict[str, Any],
    call_id: str | None,
    tools: Mapping[str, Callable[..., Any]],
    side_effect: str,
) -> Any:
    """Run ``tools[name](**args)`` as a tool span with ``call_id`` of the current task.

    Outside a task it just runs. Raises KeyError for a tool the agent does not have
    (recorded as a failed span first) and TaskStopped when the task is stopped.
    """
    task = current_task.get()
    if task is None:
        return tools[name](**args)
    with task.tool(name, args=args, side_effect=side_effect, tool_call_id=call_id) as span:
        if name not in tools:
            raise KeyError(f"the model asked for tool {name!r}, which this agent does not have")
        result = tools[name](**args)
        span.result(result)
        return result


class _Timing(StreamAccumulator):
    """Time to first token and the once-only end of a helper stream's call."""


class RecordedStreamManager:
    """Wraps what an SDK's ``stream(...)`` helper returns (a sync or async context manager).

    The request leaves on enter, so the task is checked there (a stopped task raises and
    nothing is sent). The answer is recorded on exit from the SDK's own accumulated
    snapshot (attribute ``snapshot`` of the stream), however the stream was read
    (iterated, ``text_stream``, ``get_final_…()``); time to first token is taken from
    the first event of type ``first_event``.
    """

    def __init__(
        self,
        manager: Any,
        kwargs: Mapping[str, Any],
        open_call: OpenCall,
        respond: Respond,
        snapshot: str,
        first_event: str,
    ):
        self._manager = manager
        self._kwargs = {**kwargs, "stream": True}
        self._open_call = open_call
        self._respond = respond
        self._snapshot = snapshot
        self._first_event = first_event
        self._stream: Any = None
        self._acc: _Timing | None = None

    def _opened(self, stream: Any) -> Any:
        self._stream = stream
        acc, first = self._acc, self._first_event
        inner = getattr(stream, "_iterator", None)
        if acc is None or inner is None:
            return stream
        # Every way of reading the SDKs' helper streams goes through their _iterator;
        # timing the first event there sees them all. (A stream without one: no ttft.)
        if hasattr(inner, "__anext__"):

            async def timed_async() -> AsyncIterator[Any]:
                async for event in inner:
                    if event.type == first:
                        acc.first_token()
                    yield event

            stream._iterator = timed_async()
        else:

            def timed() -> Iterator[Any]:
                for event in inner:
                    if event.type == first:
                        acc.first_token()
                    yield event

            stream._iterator = timed()
        return stream

    def _start(self) -> None:
        call = self._open_call(self._kwargs)
        if call is not None:
            self._acc = _Timing(call, time.perf_counter())

    def _finish(self, error: BaseException | None) -> None:
        acc = self._acc
        if acc is None or acc.done:
            return
        acc.done = True
        if error is not None:
            acc.call.end(error=error)
            return
        try:
            snapshot = getattr(self._stream, self._snapshot)
        except (AssertionError, AttributeError):
            snapshot = None  # closed before the first event: the call ends without an answer
        if snapshot is not None:
            self._respond(acc.call, snapshot, ttft_ms=acc.ttft_ms)
        acc.call.end()

    def __enter__(self) -> Any:
        self._start()
        try:
            return self._opened(self._manager.__enter__())
        except BaseException as exc:
            self._finish(exc)
            raise

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._manager.__exit__(*exc)
        finally:
            self._finish(exc[1])

    async def __aenter__(self) -> Any:
        self._start()
        try:
            return self._opened(await self._manager.__aenter__())
        except BaseException as exc:
            self._finish(exc)
            raise

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self._manager.__aexit__(*exc)
        finally:
            self._finish(exc[1])
