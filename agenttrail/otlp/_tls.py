"""TLS for the receiver, and client certificates as the alternative to bearer tokens.

With a server certificate the receiver speaks HTTPS. With a client CA as well it asks
every client for a certificate (mutual TLS): one signed by that CA is accepted at the
handshake, one signed by anyone else is refused there (no HTTP exchange at all), and a
client that sends none still completes the handshake so that it can be answered 401.

Which tenant a certificate writes into is configured, never guessed: a JSON file maps
identities of the certificate to tenants::

    {"CN=invoicer": "acme", "DNS:agents.globex.example": "globex",
     "URI:spiffe://acme.example/agent/refunds": "acme"}

``CN=`` is the subject's common name; ``DNS:``, ``URI:``, ``email:`` and ``IP:`` are
subject alternative names. A certificate whose identities map to no tenant is refused
with 401, one whose identities map to two different tenants with 403.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PREFIXES = ("CN=", "DNS:", "URI:", "email:", "IP:")
_SAN_PREFIX = {"DNS": "DNS:", "URI": "URI:", "email": "email:", "IP Address": "IP:"}


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """An SSL context serving ``cert``/``key``; with ``client_ca``, asking for client certs.

    Raises:
        ValueError: a file is missing or is not what it should be (named in the message).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"Cannot load the receiver's TLS certificate {cert} with key {key}: {exc}. "
            "Give a PEM certificate (chain) and its unencrypted PEM private key."
        ) from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"Cannot load the client CA bundle {client_ca}: {exc}. Give the PEM "
                "certificate(s) of the CA that signs the clients' certificates."
            ) from exc
        # OPTIONAL, not REQUIRED: a certificate that is sent must verify against the CA
        # (else the handshake fails), but a client without one is still let through the
        # handshake so that it gets an HTTP 401 naming what is missing.
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def cert_identities(peer: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The identities of a verified peer certificate (``ssl.SSLSocket.getpeercert()``).

    ``CN=<common name>`` for each common name of the subject, then each subject
    alternative name as ``DNS:``/``URI:``/``email:``/``IP:``. Empty without a certificate.
    """
    if not peer:
        return ()
    out: list[str] = []
    for rdn in peer.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                out.append(f"CN={value}")
    for kind, value in peer.get("subjectAltName", ()):
        prefix = _SAN_PREFIX.get(kind)
        if prefix is not None:
            out.append(f"{prefix}{value}")
    return tuple(out)


def load_identities(path: Path) -> dict[str, str]:
    """Certificate identity → tenant from a JSON file (see the module's docstring).

    Raises:
        ValueError: the file cannot be read, is not such an object, or has a key
            without one of the known prefixes.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read the client identity file {path}: {exc}") from exc
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in doc.items()
    ):
        raise ValueError(
            f"The client identity file {path} must be a JSON object of identity → tenant, "
            'e.g. {"CN=invoicer": "acme"}.'
        )
    for identity in doc:
        if not identity.startswith(PREFIXES) or identity in PREFIXES:
            raise ValueError(
                f"The client identity {identity!r} in {path} names no certificate field; "
                f"start it with one of {', '.join(PREFIXES)} (e.g. 'CN=invoicer', "
                "'DNS:agents.acme.example')."
            )
    return doc
