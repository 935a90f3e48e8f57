"""The receiver's sink behind a Schema Registry: events framed with the registry's ids.

The receiver seals events with the packaged schema ids; this sink re-frames each with
the id the registry holds its schema under (looked up once per schema) before the real
sink produces it. When the registry is away or lacks a schema, it raises
:class:`SinkUnavailable` before producing anything: the receiver answers 503 and the
OTLP client sends again, exactly as when Kafka is away.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agenttrail.events import DecodeError
from agenttrail.events._registry_ids import RegistryIds
from agenttrail.events._schema_registry import SchemaRegistryError
from agenttrail.otlp._sink import SinkUnavailable


class RegistryFramingSink:
    """Re-frames (key, framed bytes) records with registry ids, then hands them to ``inner``."""

    def __init__(self, inner: Any, ids: RegistryIds):
        self.inner = inner
        self.ids = ids

    @property
    def destination(self) -> str:
        return f"{self.inner.destination}?schema-registry={self.ids.client.url}"

    def produce(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Re-frame every record, then produce them all (nothing when one cannot be).

        Raises:
            SinkUnavailable: the registry is away or lacks a schema, or ``inner`` failed.
        """
        try:
            framed = [(key, self.ids.reframe(value)) for key, value in records]
        except (SchemaRegistryError, DecodeError) as exc:
            raise SinkUnavailable(f"events cannot be framed for the registry: {exc}") from exc
        self.inner.produce(framed)

    def close(self) -> None:
        self.inner.close()
