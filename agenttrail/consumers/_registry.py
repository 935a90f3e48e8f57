"""The consumer's codec when producers frame with a Schema Registry's ids.

Every schema id is then the registry's: an id not seen before is resolved through it
(``GET /schemas/ids/<id>``) and cached, its record must be an agenttrail family, and it
is read with the newest packaged version of that family. The newest versions are looked
up at start, so events written with them take the fast paths (and the store-side
decoder is keyed by their registry ids, never by the packaged ids, which other
producers of a shared registry own).
"""

from __future__ import annotations

import threading

from agenttrail.consumers._config import ConsumerConfig
from agenttrail.events import EventCodec
from agenttrail.events._registry_ids import RegistryResolvedSchemas
from agenttrail.events._schema_registry import SchemaRegistryClient

REGISTRY_WAIT_S = 60.0
"""How long an unknown id waits for an unavailable registry before the consumer stops
(without committing that batch: a restart reads it again)."""


def registry_codec(config: ConsumerConfig, stop: threading.Event) -> EventCodec:
    """A codec resolving ids through ``config.schema_registry``.

    Blocks for the lookups of the newest versions (one request per family).

    Raises:
        SchemaRegistryError: the URL is unusable, or the registry refused a lookup.
        SchemaRegistryUnavailable: the registry does not answer.
    """
    assert config.schema_registry
    schemas = RegistryResolvedSchemas(
        SchemaRegistryClient(config.schema_registry),
        topic=config.topic,
        unavailable_wait_s=REGISTRY_WAIT_S,
        stop=stop,
    )
    schemas.resolve_latest()
    return EventCodec(schemas, max_payload_bytes=config.max_payload_bytes)
