"""Errors of the consumers. Each names what failed and what to do.

:class:`ConsumerError` is the root of every error raised by ``agenttrail.consumers``
itself; store failures keep their own root (:class:`agenttrail.store.StoreError`), so a
caller tells the broker side from the store side by type, never by message text.
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Base class of every error raised by ``agenttrail.consumers`` (not the store's)."""


class BrokerUnavailable(ConsumerError):
    """The Kafka broker could not be reached, or refused the consumer, when it started.

    Attributes:
        bootstrap: the bootstrap servers that were tried.
    """

    def __init__(self, message: str, bootstrap: str):
        super().__init__(message)
        self.bootstrap = bootstrap


class BrokerRefused(ConsumerError):
    """The Kafka broker refused the running consumer for good (authorization,
    authentication, an unsupported setting): retrying cannot help.

    Attributes:
        bootstrap: the bootstrap servers of the broker.
    """

    def __init__(self, message: str, bootstrap: str):
        super().__init__(message)
        self.bootstrap = bootstrap
