"""Errors the stack commands turn into a message and exit code 2."""

from __future__ import annotations

from agenttrail.embedded import BrokerError, StackError
from agenttrail.store import StoreError

STACK_ERRORS: tuple[type[Exception], ...] = (BrokerError, StackError, StoreError)
