"""The OTLP receiver inside ``agenttrail up``: loopback only, no token, state in DATA."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agenttrail.embedded import LocalStack
from agenttrail.otlp import (
    DEFAULT_PORT,
    LOOPBACK,
    KafkaSink,
    OtlpHttpServer,
    OtlpIngestor,
    ReceiverState,
)


@dataclass
class LocalReceiver:
    """A running receiver of the local stack; :meth:`stop` before the stack drains."""

    server: OtlpHttpServer
    sink: KafkaSink
    state: ReceiverState

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.sink.close()
        self.state.close()


def start_local_receiver(stack: LocalStack, port: int | None) -> LocalReceiver:
    """Serve OTLP/HTTP on 127.0.0.1:``port`` into the stack's broker; add ``otlp`` to up.json.

    ``None`` means the OTLP default 4318, or a free port when that one is taken (the
    URL is in up.json and printed either way).

    Raises:
        OSError: the port asked for is taken (the message names it).
    """
    state = ReceiverState(stack.data / "otlp" / "state.db")
    sink: Any = KafkaSink(stack.bootstrap)
    if stack.schema_registry:
        from agenttrail.events._registry_ids import RegistryIds
        from agenttrail.events._schema_registry import SchemaRegistryClient
        from agenttrail.otlp._registry_sink import RegistryFramingSink

        sink = RegistryFramingSink(sink, RegistryIds(SchemaRegistryClient(stack.schema_registry)))
    ingestor = OtlpIngestor(sink, state)
    try:
        try:
            server = OtlpHttpServer(
                ingestor, host=LOOPBACK, port=DEFAULT_PORT if port is None else port
            )
        except OSError:
            if port is not None:
                raise
            server = OtlpHttpServer(ingestor, host=LOOPBACK, port=0)
    except OSError as exc:
        state.close()
        raise OSError(
            f"OTLP port {LOOPBACK}:{port} is not free ({exc.strerror}); pass --otlp-port 0 "
            "for a free one, or --otlp-port -1 to run without the receiver."
        ) from exc
    server.start()
    info = json.loads(stack.up_file.read_text())
    info["otlp"] = server.url
    stack.up_file.write_text(json.dumps(info, indent=2))
    return LocalReceiver(server, sink, state)
