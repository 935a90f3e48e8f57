"""Frame outgoing events with a Schema Registry's ids: an exporter around the real one.

Events are sealed with the packaged schema ids (so a spooled event needs no registry to
be written to disk); on the way out each is re-framed with the id the registry holds
its schema under, looked up once per schema and cached. The Avro body, and so the
event's hash, is unchanged. When the registry is away, or the schema is not registered
yet, :meth:`export` raises :class:`ExporterUnavailable` before handing anything over,
so the pipeline spools the events like any undeliverable event and replays them later.
"""

from __future__ import annotations

import logging

from agenttrail.events import DecodeError
from agenttrail.events._registry_ids import RegistryIds
from agenttrail.events._schema_registry import (
    SchemaRegistryClient,
    SchemaRegistryError,
    redact_url,
)
from agenttrail.producer._config import RecorderConfigError
from agenttrail.producer._exporter import (
    AckCallback,
    Exporter,
    ExporterUnavailable,
    OutRecord,
    report_acked,
)

log = logging.getLogger("agenttrail.producer.registry")


class RegistryFramingExporter:
    """Re-frames records with registry ids, then hands them to ``inner``.

    Args:
        inner: the exporter that delivers (Kafka, memory, ...).
        ids: the registry's ids of the packaged schemas.

    Thread-safe as far as ``inner`` is; the id cache is locked.
    """

    def __init__(self, inner: Exporter, ids: RegistryIds):
        self.inner = inner
        self.ids = ids
        self._warned = ""

    @property
    def destination(self) -> str:
        """The inner destination (spools are keyed by it), with the registry named."""
        inner = str(getattr(self.inner, "destination", type(self.inner).__name__))
        return f"{inner}?schema-registry={self.ids.client.url}"

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        """Re-frame every record, then export them all; raises before handing any over.

        Raises:
            ExporterUnavailable: the registry does not answer or lacks a schema (the
                pipeline spools the records), or ``inner`` cannot take them.
        """
        try:
            framed = [OutRecord(key=r.key, value=self.ids.reframe(r.value)) for r in records]
        except SchemaRegistryError as exc:
            if str(exc) != self._warned:  # say it once per distinct problem, not per batch
                self._warned = str(exc)
                log.warning("agenttrail: events are spooled until the registry answers: %s", exc)
            raise ExporterUnavailable(str(exc)) from exc
        except DecodeError as exc:  # not framed with a packaged id: a bug, never data loss
            raise ExporterUnavailable(f"cannot re-frame an event for the registry: {exc}") from exc
        originals = {id(f): r for f, r in zip(framed, records, strict=True)}
        self.inner.export(framed, _Originals(originals, on_done))

    def probe(self, timeout: float) -> bool:
        return self.inner.probe(timeout)

    def flush(self, timeout: float) -> bool:
        return self.inner.flush(timeout)

    def reset(self) -> None:
        """Pass a reset (after a failed delivery) on: the inner exporter rebuilds its client."""
        reset = getattr(self.inner, "reset", None)
        if callable(reset):
            reset()

    def shutdown(self) -> None:
        self.inner.shutdown()


class _Originals:
    """The ack callback of one re-framed batch: reports the records it was given."""

    __slots__ = ("_on_done", "_originals")

    def __init__(self, originals: dict[int, OutRecord], on_done: AckCallback):
        self._originals = originals
        self._on_done = on_done

    def __call__(self, record: OutRecord, error: BaseException | None) -> None:
        self._on_done(self._originals.pop(id(record), record), error)

    def acked(self, records: list[OutRecord]) -> None:
        """Acknowledgements together, passed on together when ``on_done`` takes them so."""
        report_acked(self._on_done, [self._originals.pop(id(r), r) for r in records])


def registry_framed(inner: Exporter, url: str, topic: str) -> RegistryFramingExporter:
    """``inner`` behind a :class:`RegistryFramingExporter` for the registry at ``url``.

    Contacts nothing: the first lookup happens on the pipeline thread at the first export.

    Raises:
        RecorderConfigError: ``url`` is not an http(s) URL.
    """
    try:
        client = SchemaRegistryClient(url)
    except SchemaRegistryError as exc:
        raise RecorderConfigError(
            f"AGENTTRAIL_SCHEMA_REGISTRY={redact_url(url)!r} is not usable: {exc}"
        ) from exc
    return RegistryFramingExporter(inner, RegistryIds(client, topic=topic))
