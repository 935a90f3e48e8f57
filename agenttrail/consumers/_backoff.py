"""The consumers' backoff is the shared one in :mod:`agenttrail.events` (kept importable here)."""

from agenttrail.events._backoff import Backoff

__all__ = ["Backoff"]
