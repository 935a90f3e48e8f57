"""Several consumers of one group in one process, with members leaving and joining.

The one-machine store (chdb) admits one process per store directory, so consumers that
share it share a process, as threads of ``agenttrail up`` would; each has its own store
handle, Kafka consumer and ledger identity. Run as::

    python -m tests.reliability.group_host --bootstrap B --data DIR --group G \
        --members 3 --churn 4 --churn-every 2.5

Once the group owns all ``--partitions``, every ``--churn-every`` seconds (``--churn``
times) the oldest member is stopped and a new one started, so the group rebalances while
the others hold buffered records. One JSON line per 0.3 s reports every live member's
snapshot (``partitions``, ``lag``, ``events_total``). SIGTERM stops every member
cleanly (its batches stored and committed) and prints ``{"status": "stopped", "rebalances": n}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from agenttrail.consumers import ConsumerConfig, IngestPipeline
from agenttrail.store import Store, migrate, open_store


class Member:
    """One pipeline on its own thread and store handle."""

    def __init__(self, cfg: ConsumerConfig, store: Store, name: str):
        self.name = name
        self.store = store
        self.stop = threading.Event()
        self.pipeline = IngestPipeline(cfg, store)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.pipeline.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def close(self) -> None:
        """Stop the pipeline (its batches stored and committed); the store handle stays
        open: handles of one process share the engine, closed together at the end."""
        self.stop.set()
        self.thread.join(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--churn", type=int, default=0)
    parser.add_argument("--churn-every", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    from tests.reliability.harness import KAFKA_OPTIONS

    cfg = ConsumerConfig(
        bootstrap=args.bootstrap, group=args.group, batch_size=args.batch_size, batch_ms=200,
        backoff_initial_s=0.1, backoff_max_s=0.5, kafka_options=dict(KAFKA_OPTIONS),
    )  # fmt: skip
    first = open_store(data=args.data)
    migrate(first)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    handles = [first]
    members = [Member(cfg, first, "m0")]
    for i in range(1, args.members):
        handles.append(open_store(data=args.data))
        members.append(Member(cfg, handles[-1], f"m{i}"))
    started = len(members)
    churned = 0
    next_churn = time.monotonic() + args.churn_every
    partitions = int(args.partitions)

    def formed() -> bool:
        owned = {p for m in members for p in m.pipeline.stats.snapshot().partitions}
        return len(owned) == partitions

    while not stopping.wait(0.3):
        if not formed():
            # A churn only once the group owns every partition again: each one is then a
            # rebalance of a working group, not one more member of a forming one.
            next_churn = time.monotonic() + args.churn_every
        elif churned < args.churn and time.monotonic() >= next_churn:
            leaving = members.pop(0)
            leaving.close()
            handles.append(open_store(data=args.data))
            members.append(Member(cfg, handles[-1], f"m{started}"))
            started += 1
            churned += 1
            next_churn = time.monotonic() + args.churn_every
        status: dict[str, Any] = {"status": "running", "churned": churned, "members": {}}
        for m in members:
            s = m.pipeline.stats.snapshot()
            status["members"][m.name] = {"partitions": list(s.partitions), "lag": s.lag,
                                         "highwater": {str(k): v for k, v in s.highwater.items()},
                                         "events_total": s.events_total,
                                         "error": repr(m.error) if m.error else None}  # fmt: skip
        print(json.dumps(status), flush=True)
    errors = [repr(m.error) for m in members if m.error]
    for m in members:
        m.close()
    for h in reversed(handles):
        h.close()
    print(json.dumps({"status": "stopped", "rebalances": churned, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
