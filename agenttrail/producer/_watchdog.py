"""The wall-clock watchdog: stops a task at its ``max_wall_clock_s`` even mid-call.

Without it a wall-clock limit binds only when the agent next calls the SDK; a task stuck
inside a long LLM or tool call would run past it. One daemon thread per recorder keeps
the deadlines in a heap and, at each deadline, calls the task's ``expire`` (which stops
it through the ``on_stop`` path: the limit is recorded, the hooks cancel or tell the
running code, the next SDK call raises). It never fires before the deadline: it waits
until ``time.monotonic()`` has reached it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from typing import Protocol

log = logging.getLogger("agenttrail.producer")


class Expirable(Protocol):
    def expire(self) -> None:
        """The task's wall-clock deadline has passed: stop it (must not raise)."""


class Watchdog:
    """Deadlines of running tasks. Thread-safe; the thread starts with the first task."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Expirable]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, task: Expirable, deadline: float) -> None:
        """Call ``task.expire()`` once ``time.monotonic()`` reaches ``deadline``."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (deadline, next(self._counter), weakref.ref(task)))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agenttrail-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._closed:
                    return
                _, _, ref = heapq.heappop(self._heap)
            task = ref()
            if task is not None:
                try:
                    task.expire()
                except Exception:
                    log.exception("agenttrail: stopping a task at its wall-clock limit failed")
