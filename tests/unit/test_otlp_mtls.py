"""Mutual TLS on the OTLP receiver: a client certificate decides the tenant.

Certificates are made in the test (a CA, the receiver's certificate, clients' ones, and a
rogue CA's), the receiver serves HTTPS on a free loopback port, and real TLS clients talk
to it: the OpenTelemetry OTLP/HTTP exporter with its client-certificate options, and
httpx. What was written is read from the MemorySink the receiver produced into.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agenttrail.cli import main
from agenttrail.otlp import (
    Authenticator,
    MemorySink,
    OtlpHttpServer,
    OtlpIngestor,
    ReceiverState,
    Unauthenticated,
    WrongTenant,
    cert_identities,
    load_identities,
    server_context,
)
from tests.certs import Issued, TestCA
from tests.unit.test_otlp_receiver import PB, decoded, full_trace, traces

IDENTITIES = {
    "CN=invoicer": "acme",
    "DNS:agents.globex.example": "globex",
    "URI:spiffe://initech.example/agent/refunds": "initech",
}


@dataclass
class Pki:
    ca: TestCA
    server: Issued
    acme: Issued  # CN=invoicer
    globex: Issued  # SAN DNS:agents.globex.example
    initech: Issued  # SAN URI:spiffe://…
    stranger: Issued  # CN=stranger: genuine, mapped to nothing
    rogue: Issued  # CN=invoicer, but signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder / "ca")
    rogue_ca = TestCA(folder / "rogue", name="someone else's CA")
    return Pki(
        ca,
        ca.server(),
        ca.client("acme", "invoicer"),
        ca.client("globex", "globex-agent", dns="agents.globex.example"),
        ca.client("initech", "refunds", uri="spiffe://initech.example/agent/refunds"),
        ca.client("stranger", "stranger"),
        rogue_ca.client("rogue", "invoicer"),
    )


@dataclass
class Receiver:
    server: OtlpHttpServer
    sink: MemorySink

    @property
    def traces_url(self) -> str:
        return self.server.url + "/v1/traces"


def _receiver(pki: Pki, tmp_path: Path, tokens: dict[str, str] | None = None) -> Receiver:
    sink = MemorySink()
    auth = Authenticator.from_tokens(tokens or {}, identities=IDENTITIES)
    ingestor = OtlpIngestor(sink, ReceiverState(tmp_path / "state.db"), auth=auth)
    tls = server_context(pki.server.cert, pki.server.key, pki.ca.cert)
    server = OtlpHttpServer(ingestor, port=0, tls=tls).start()
    return Receiver(server, sink)


@pytest.fixture
def receiver(pki: Pki, tmp_path: Path) -> Iterator[Receiver]:
    r = _receiver(pki, tmp_path)
    yield r
    r.server.stop()


def client(pki: Pki, who: Issued | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if who is not None:
        context.load_cert_chain(who.cert, who.key)
    return httpx.Client(verify=context, timeout=30)


def post(
    pki: Pki, r: Receiver, who: Issued | None, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    with client(pki, who) as c:
        return c.post(r.traces_url, content=body, headers={"Content-Type": PB, **(headers or {})})


def body(resource: dict[str, Any] | None = None) -> bytes:
    return traces(*full_trace(), resource=resource).SerializeToString()


def test_the_otel_exporter_with_a_client_certificate_writes_into_its_tenant(
    pki: Pki, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own CA file
    # (the exporter's certificate_file); machines that set them would hide our CA.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "invoicer"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoice_generation"):
        with tracer.start_as_current_span(
            "chat gpt-4.1",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1"},
        ):
            pass
    spans = memory.get_finished_spans()
    assert len(spans) == 2
    exporter = OTLPSpanExporter(
        endpoint=receiver.traces_url,
        certificate_file=str(pki.ca.cert),
        client_certificate_file=str(pki.acme.cert),
        client_key_file=str(pki.acme.key),
        timeout=30,
    )
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    events = decoded(receiver.sink)
    assert events and {e["tenant"] for e in events} == {"acme"}
    assert any(e["event_type"] == "llm_call" and e["model"] == "gpt-4.1" for e in events)


def test_each_certificate_identity_kind_names_its_tenant(pki: Pki, receiver: Receiver) -> None:
    for who, tenant in ((pki.globex, "globex"), (pki.initech, "initech"), (pki.acme, "acme")):
        before = len(receiver.sink.records)
        # The resource may name the certificate's own tenant; it may not name another.
        answer = post(pki, receiver, who, body({"agenttrail.tenant": tenant, "n": tenant}))
        assert answer.status_code == 200, answer.text
        written = decoded(receiver.sink)[before:]
        assert written and {e["tenant"] for e in written} == {tenant}


def test_requests_without_a_mapped_certificate_are_refused_and_write_nothing(
    pki: Pki, receiver: Receiver
) -> None:
    no_cert = post(pki, receiver, None, body())
    assert no_cert.status_code == 401 and b"client certificate" in no_cert.content
    unmapped = post(pki, receiver, pki.stranger, body())
    assert unmapped.status_code == 401 and b"CN=stranger" in unmapped.content
    other_tenant = post(pki, receiver, pki.acme, body({"agenttrail.tenant": "globex"}))
    assert other_tenant.status_code == 403 and b"'acme'" in other_tenant.content
    # A bearer token is no way in when the receiver has none configured.
    token = post(pki, receiver, None, body(), {"Authorization": "Bearer tok-acme"})
    assert token.status_code == 401
    assert receiver.sink.records == []


def test_a_certificate_from_another_ca_fails_the_handshake(pki: Pki, receiver: Receiver) -> None:
    with pytest.raises(httpx.TransportError):
        post(pki, receiver, pki.rogue, body())
    with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
        httpx.post(
            receiver.traces_url.replace("https://", "http://"),
            content=body(),
            headers={"Content-Type": PB},
            timeout=30,
        )
    assert receiver.sink.records == []
    # The receiver still serves genuine clients afterwards.
    assert post(pki, receiver, pki.acme, body()).status_code == 200


def test_tokens_and_certificates_together_must_agree(pki: Pki, tmp_path: Path) -> None:
    r = _receiver(pki, tmp_path, tokens={"tok-acme": "acme", "tok-globex": "globex"})
    try:
        globex, acme = {"Authorization": "Bearer tok-globex"}, {"Authorization": "Bearer tok-acme"}
        assert post(pki, r, None, body(), globex).status_code == 200
        assert post(pki, r, pki.stranger, body(), acme).status_code == 200  # the token decides
        before = len(r.sink.records)
        mixed = post(pki, r, pki.acme, body(), globex)
        assert mixed.status_code == 403 and len(r.sink.records) == before
        assert post(pki, r, pki.stranger, body()).status_code == 401
        assert post(pki, r, pki.acme, body(), {"Authorization": "Bearer nope"}).status_code == 401
        assert len(r.sink.records) == before
        tenants = [e["tenant"] for e in decoded(r.sink)]
        assert tenants.count("globex") > 0 and tenants.count("acme") > 0
    finally:
        r.server.stop()


def test_identities_are_read_from_the_certificate_not_guessed() -> None:
    peer = {
        "subject": ((("countryName", "DE"),), (("commonName", "invoicer"),)),
        "subjectAltName": (
            ("DNS", "a.example"),
            ("URI", "spiffe://x/y"),
            ("IP Address", "10.0.0.1"),
        ),
    }
    assert cert_identities(peer) == (
        "CN=invoicer",
        "DNS:a.example",
        "URI:spiffe://x/y",
        "IP:10.0.0.1",
    )
    assert cert_identities({}) == ()
    auth = Authenticator.from_tokens({}, identities={"CN=a": "t1", "DNS:b": "t2"})
    assert auth.tenant_of(None, ("CN=a",)) == "t1"
    with pytest.raises(WrongTenant):
        auth.tenant_of(None, ("CN=a", "DNS:b"))
    with pytest.raises(Unauthenticated):
        auth.tenant_of(None, ("CN=c",))


def test_an_identity_file_without_field_prefixes_is_refused_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "ids.json"
    bad.write_text(json.dumps({"invoicer": "acme"}))
    with pytest.raises(ValueError, match="start it with one of CN="):
        load_identities(bad)
    bad.write_text("[]")
    with pytest.raises(ValueError, match="identity → tenant"):
        load_identities(bad)


def test_the_command_refuses_incomplete_tls_options(pki: Pki, tmp_path: Path) -> None:
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(IDENTITIES))
    base = ["otlp", "--bootstrap", "127.0.0.1:1", "--state", str(tmp_path / "s.db")]
    cases = {
        "--tls-cert and --tls-key go together": ["--tls-cert", str(pki.server.cert)],
        "--client-ca and --client-identities go together": [
            "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
            "--client-ca", str(pki.ca.cert),
        ],
        "client certificates need TLS": [
            "--client-ca", str(pki.ca.cert), "--client-identities", str(ids),
        ],
        "Cannot load the receiver's TLS certificate": [
            "--tls-cert", str(pki.ca.cert), "--tls-key", str(pki.acme.key),
            "--client-ca", str(pki.ca.cert), "--client-identities", str(ids),
        ],
        "no --tokens-file or --client-identities given": [],
    }  # fmt: skip
    for expected, args in cases.items():
        result = CliRunner().invoke(main, [*base, *args])
        assert result.exit_code == 2, (expected, result.output)
        assert expected in result.output, result.output
