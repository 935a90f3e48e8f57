"""Close a recorder and wait until a local stack stored everything delivered to it.

Counts what was delivered to each stack (keyed by its data directory) over all the
recorders a test module closed: a snapshot of the stored count taken at close time
would already include events stored while the task ran, and so wait for too many.
"""

from __future__ import annotations

from agenttrail.embedded import LocalStack
from agenttrail.producer import Recorder

_DELIVERED: dict[str, int] = {}


def close_and_store(stack: LocalStack, rec: Recorder, timeout: float = 120.0) -> None:
    """Close ``rec`` (nothing spooled or unsaved), then wait until the stack stored all."""
    report = rec.close()
    assert report.spooled == 0 and report.unsaved == 0, report
    key = str(stack.data)
    _DELIVERED[key] = _DELIVERED.get(key, 0) + report.delivered
    stack.wait_stored(_DELIVERED[key], timeout=timeout)
