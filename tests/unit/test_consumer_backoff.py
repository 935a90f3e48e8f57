"""Backoff: doubles per failure, capped, and never sleeps itself."""

from __future__ import annotations

from agenttrail.consumers import Backoff


def test_waits_double_up_to_the_cap_and_reset_clears_them() -> None:
    b = Backoff(initial_s=1.0, max_s=5.0)
    waits = [b.failed(now=0.0) for _ in range(6)]
    assert 0.8 <= waits[0] <= 1.0
    assert 1.6 <= waits[1] <= 2.0
    assert all(w <= 5.0 for w in waits) and waits[-1] >= 4.0
    assert b.active and not b.ready(now=0.0) and b.ready(now=5.0)
    b.reset()
    assert not b.active and b.ready(now=0.0)


def test_jitter_leaves_the_shared_random_sequence_alone() -> None:
    import random

    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    Backoff(initial_s=1.0, max_s=5.0).failed(now=0.0)
    assert [random.random() for _ in range(3)] == expected
