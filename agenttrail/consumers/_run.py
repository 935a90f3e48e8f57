"""Run the ingest consumer as a library call (``agenttrail consume``, ``agenttrail up``)."""

from __future__ import annotations

import threading

from agenttrail.consumers._config import ConsumerConfig
from agenttrail.consumers._pipeline import IngestPipeline
from agenttrail.consumers._stats import IngestStats
from agenttrail.store import MigrationError, Store, StoreConfig, migrate, open_store, pending


def prepare_store(store: Store, apply_migrations: bool) -> None:
    """Make sure the store has every table the consumer writes.

    Raises:
        MigrationError: migrations are pending and ``apply_migrations`` is false, or
            applying one failed.
        StoreUnavailable: the store cannot be reached.
    """
    if apply_migrations:
        migrate(store)
        return
    missing = pending(store)
    if missing:
        names = ", ".join(m.path.name for m in missing)
        raise MigrationError(
            f"Store {store.location} lacks migrations {names}; run `agenttrail migrate` "
            "against it first (or let the consumer apply them with AGENTTRAIL_MIGRATE=1)."
        )
    store.use_database()


def run_consumer(
    config: ConsumerConfig,
    stop: threading.Event,
    *,
    store: Store | None = None,
    store_config: StoreConfig | None = None,
    stats: IngestStats | None = None,
) -> IngestStats:
    """Ingest until ``stop`` is set; return the final counters. Blocks; run it in a
    thread to keep going (``stats`` can be read from any thread meanwhile).

    Args:
        config: consumer settings.
        stop: set it to stop after storing and committing what was fetched.
        store: an open store to use (left open); else one is opened from ``store_config``
            (or the environment) and closed on return.
        store_config: where the store is, when ``store`` is not given.
        stats: counters to update, e.g. shared with a status line.

    Raises:
        StoreConfigError, StoreLocked, StoreUnavailable: the store cannot be opened.
        MigrationError: the store's schema is not (and may not be made) current.
        BrokerUnavailable: the Kafka consumer could not be created.
        SchemaRegistryError: with ``config.schema_registry``, the registry refused a
            lookup or did not answer (at start, or for 60 s about an unknown id).
    """
    own = store is None
    store = store or open_store(config=store_config or StoreConfig())
    try:
        prepare_store(store, config.migrate)
        codec = None
        if config.schema_registry:
            from agenttrail.consumers._registry import registry_codec

            codec = registry_codec(config, stop)
        pipeline = IngestPipeline(config, store, stats=stats, codec=codec)
        pipeline.run(stop)
        return pipeline.stats
    finally:
        if own:
            store.close()
