"""``agenttrail otlp``: the OTLP/HTTP receiver in the foreground (production)."""

from __future__ import annotations

import json
import signal
import ssl
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click

from agenttrail.events import EVENTS_TOPIC
from agenttrail.otlp import (
    DEFAULT_PORT,
    LOOPBACK,
    Authenticator,
    KafkaSink,
    OtlpHttpServer,
    OtlpIngestor,
    ReceiverState,
    load_identities,
    load_tokens,
    server_context,
)

DEFAULT_STATE = Path.home() / ".local" / "state" / "agenttrail" / "otlp" / "state.db"
_LOOPBACKS = ("127.0.0.1", "::1", "localhost")


def _input_file(
    flag: str, env: str, help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option naming an existing file, also read from ``env`` (named in its help)."""
    return click.option(
        flag,
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar=env,
        default=None,
        help=f"{help} [env {env}]",
    )


@click.command("otlp")
@click.option(
    "--bootstrap",
    metavar="HOST:PORT",
    envvar="AGENTTRAIL_BOOTSTRAP",
    required=True,
    help="Kafka bootstrap servers. [env AGENTTRAIL_BOOTSTRAP]",
)
@click.option("--topic", default=EVENTS_TOPIC, show_default=True, help="Events topic.")
@click.option(
    "--host",
    default=None,
    help="Address to listen on; 0.0.0.0 with tokens or client certificates, 127.0.0.1 "
    "without. [default: by auth]",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@_input_file(
    "--tokens-file",
    "AGENTTRAIL_OTLP_TOKENS_FILE",
    'JSON {"<token>": "<tenant>"}: bearer tokens and the tenant each writes into.',
)
@_input_file(
    "--tls-cert",
    "AGENTTRAIL_OTLP_TLS_CERT",
    "PEM certificate (chain) of the receiver: serve HTTPS.",
)
@_input_file("--tls-key", "AGENTTRAIL_OTLP_TLS_KEY", "PEM private key of --tls-cert.")
@_input_file(
    "--client-ca",
    "AGENTTRAIL_OTLP_CLIENT_CA",
    "PEM CA bundle that signs client certificates (mutual TLS; needs --tls-cert and "
    "--client-identities).",
)
@_input_file(
    "--client-identities",
    "AGENTTRAIL_OTLP_CLIENT_IDENTITIES",
    'JSON {"CN=<name>" or "DNS:<san>" / "URI:<san>": "<tenant>"}: the tenant each '
    "client certificate writes into.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Accept requests without a token (tenant from the resource); loopback only.",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AGENTTRAIL_OTLP_STATE",
    default=DEFAULT_STATE,
    show_default=True,
    help="The receiver's state database (task numbering, hash chains, pending log records).",
)
@click.option(
    "--schema-registry",
    metavar="URL",
    envvar="AGENTTRAIL_SCHEMA_REGISTRY",
    default=None,
    help="Frame events with this Schema Registry's ids (as the SDK does with the same "
    "setting). [env AGENTTRAIL_SCHEMA_REGISTRY]",
)
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON lines.")
def command(
    bootstrap: str,
    topic: str,
    host: str | None,
    port: int,
    tokens_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    client_identities: Path | None,
    no_auth: bool,
    state: Path,
    schema_registry: str | None,
    as_json: bool,
) -> None:
    """Receive OpenTelemetry GenAI spans and logs over OTLP/HTTP and record them as events.

    Serves POST /v1/traces and /v1/logs (protobuf or JSON, gzip) and writes the events
    to the same topic as the SDK; `agenttrail consume` stores them. Every request must
    prove its tenant: 'Authorization: Bearer <token>' from --tokens-file, or a client
    certificate signed by --client-ca whose identity --client-identities maps to a
    tenant (mutual TLS, with --tls-cert/--tls-key). Without either (--no-auth) it
    listens on loopback only.

    \b
    Example:
      agenttrail otlp --bootstrap kafka:9092 --tokens-file /etc/agenttrail/otlp-tokens.json
      OTEL_EXPORTER_OTLP_ENDPOINT=http://receiver:4318 \\
      OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20<token>" python my_app.py
    \b
    Mutual TLS instead of tokens:
      agenttrail otlp --bootstrap kafka:9092 --tls-cert server.pem --tls-key server.key \\
        --client-ca clients-ca.pem --client-identities identities.json
      OTEL_EXPORTER_OTLP_ENDPOINT=https://receiver:4318 \\
      OTEL_EXPORTER_OTLP_CERTIFICATE=server-ca.pem \\
      OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=agent.pem \\
      OTEL_EXPORTER_OTLP_CLIENT_KEY=agent.key python my_app.py
    """
    auth, tls = _auth_and_tls(tokens_file, tls_cert, tls_key, client_ca, client_identities, no_auth)
    if host is None:
        host = "0.0.0.0" if auth.required else LOOPBACK
    if not auth.required and host not in _LOOPBACKS:
        click.echo(
            f"agenttrail otlp: refusing to listen on {host} without authentication; "
            "give --tokens-file or --client-identities, or keep the default loopback address.",
            err=True,
        )
        sys.exit(2)
    try:
        receiver_state = ReceiverState(state)
    except Exception as exc:
        click.echo(f"agenttrail otlp: cannot open the state database {state}: {exc}", err=True)
        sys.exit(2)
    sink: Any = KafkaSink(bootstrap, topic)
    if schema_registry:
        from agenttrail.events._registry_ids import RegistryIds
        from agenttrail.events._schema_registry import SchemaRegistryClient, SchemaRegistryError
        from agenttrail.otlp._registry_sink import RegistryFramingSink

        try:
            ids = RegistryIds(SchemaRegistryClient(schema_registry), topic=topic)
        except SchemaRegistryError as exc:
            click.echo(f"agenttrail otlp: {exc}", err=True)
            sys.exit(2)
        sink = RegistryFramingSink(sink, ids)
    ingestor = OtlpIngestor(sink, receiver_state, auth=auth)
    try:
        server = OtlpHttpServer(ingestor, host=host, port=port, tls=tls)
    except OSError as exc:
        click.echo(f"agenttrail otlp: cannot listen on {host}:{port}: {exc}", err=True)
        sys.exit(2)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    server.start()
    ready = {
        "status": "ready",
        "otlp": server.url,
        "bootstrap": bootstrap,
        "auth": auth.required,
        "mtls": bool(auth.identities),
    }
    click.echo(
        json.dumps(ready) if as_json else f"OTLP/HTTP receiver on {server.url} → {bootstrap}"
    )
    while not stop.wait(10.0):
        c = ingestor.counters
        if as_json:
            click.echo(json.dumps({"status": "running", **c.__dict__}))
    server.stop()
    sink.close()
    receiver_state.close()
    c = ingestor.counters
    click.echo(
        json.dumps({"status": "stopped", **c.__dict__})
        if as_json
        else f"stopped: {c.spans} spans, {c.logs} log records → {c.events} events"
    )


def _usage_error(message: str) -> NoReturn:
    click.echo(f"agenttrail otlp: {message}", err=True)
    sys.exit(2)


def _auth_and_tls(
    tokens_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    client_identities: Path | None,
    no_auth: bool,
) -> tuple[Authenticator, ssl.SSLContext | None]:
    """The authenticator and SSL context the options ask for; exits 2 on a bad combination."""
    if (tls_cert is None) != (tls_key is None):
        _usage_error("--tls-cert and --tls-key go together; give both, or neither.")
    if (client_ca is None) != (client_identities is None):
        _usage_error(
            "--client-ca and --client-identities go together: the CA decides which "
            "certificates are genuine, the identity file which tenant each writes into."
        )
    if client_ca is not None and tls_cert is None:
        _usage_error("client certificates need TLS: give --tls-cert and --tls-key too.")
    if tokens_file is None and client_identities is None and not no_auth:
        _usage_error(
            "no --tokens-file or --client-identities given. Production receivers require "
            "bearer tokens or client certificates; pass one, or --no-auth to listen on "
            "loopback only."
        )
    try:
        tokens = load_tokens(tokens_file) if tokens_file is not None else {}
        identities = load_identities(client_identities) if client_identities else {}
        auth = Authenticator.from_tokens(tokens, identities=identities)
        tls = server_context(tls_cert, tls_key, client_ca) if tls_cert and tls_key else None
    except ValueError as exc:
        _usage_error(str(exc))
    return auth, tls
