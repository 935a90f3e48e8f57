"""Who may write, and into which tenant.

In production every request proves who sends it, in one of two ways, and that names
exactly one tenant: ``Authorization: Bearer <token>`` (a token → tenant table), or a
client certificate over mutual TLS (certificate identity → tenant, see ``_tls``). A
request with neither, or with a token or certificate the receiver does not map, is
refused with 401; one whose token and certificate name different tenants, or whose
resources claim another tenant (``agenttrail.tenant``), with 403 — in all cases before
anything is decoded into events, so nothing is written. Tokens are kept only as
SHA-256 digests, compared in constant time, and never logged.

On the one-machine default (``agenttrail up``) the receiver listens on loopback only
and needs no token; the tenant is the resource's ``agenttrail.tenant``, else the
configured default.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TENANT_ATTRIBUTE = "agenttrail.tenant"


class AuthError(Exception):
    """Base of the refusals; ``status`` is the HTTP status to answer with."""

    status = 401


class Unauthenticated(AuthError):
    status = 401


class WrongTenant(AuthError):
    status = 403


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Authenticator:
    """Maps bearer tokens and client certificates to tenants; without either, trusts the
    resource (loopback only).

    Args:
        digests: SHA-256 of each token → tenant (build with :meth:`from_tokens`).
        default_tenant: tenant of unauthenticated requests whose resources name none.
        identities: client certificate identity (``CN=…``, ``DNS:…``, ``URI:…``,
            ``email:…``, ``IP:…``) → tenant. Empty means certificates grant nothing.
    """

    digests: tuple[tuple[bytes, str], ...] = ()
    default_tenant: str = "default"
    identities: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_tokens(
        cls,
        tokens: Mapping[str, str],
        default_tenant: str = "default",
        *,
        identities: Mapping[str, str] | None = None,
    ) -> Authenticator:
        for token, tenant in tokens.items():
            if not token or not tenant:
                raise ValueError("Every token needs a non-empty value and tenant.")
        for identity, tenant in (identities or {}).items():
            if not identity or not tenant:
                raise ValueError("Every client identity needs a non-empty value and tenant.")
        return cls(
            tuple((_digest(t), tn) for t, tn in tokens.items()),
            default_tenant,
            tuple((identities or {}).items()),
        )

    @property
    def required(self) -> bool:
        return bool(self.digests or self.identities)

    def tenant_of(
        self, authorization: str | None, peer_identities: Iterable[str] = ()
    ) -> str | None:
        """The tenant a request's token or client certificate grants; None when the
        receiver requires neither.

        Args:
            authorization: the ``Authorization`` header, if any.
            peer_identities: the verified client certificate's identities (empty
                without a certificate; see ``_tls.cert_identities``).

        Raises:
            Unauthenticated: proof is required and missing, or names no tenant.
            WrongTenant: the token and the certificate name different tenants.
        """
        if not self.required:
            return None
        by_cert = self._cert_tenant(tuple(peer_identities))
        if not authorization and by_cert is not None:
            return by_cert
        if not self.digests:
            raise Unauthenticated(
                "This receiver requires a client certificate that maps to a tenant; "
                "configure the OTLP exporter's client certificate and key "
                "(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_KEY)."
            )
        by_token = self._token_tenant(authorization)
        if by_cert is not None and by_cert != by_token:
            raise WrongTenant(
                f"The client certificate writes into tenant {by_cert!r}, the bearer token "
                f"into {by_token!r}. Send one of them. Nothing was written."
            )
        return by_token

    def _cert_tenant(self, peer: tuple[str, ...]) -> str | None:
        if not self.identities or not peer:
            return None
        tenants = {tenant for identity, tenant in self.identities if identity in peer}
        if len(tenants) > 1:
            raise WrongTenant(
                f"The client certificate maps to several tenants ({', '.join(sorted(tenants))}); "
                "fix the client identity file so that each certificate names one."
            )
        if not tenants:
            if self.digests:
                return None  # a token may still authenticate the request
            raise Unauthenticated(
                f"The client certificate ({', '.join(peer)}) maps to no tenant of this "
                "receiver; add one of its identities to the client identity file."
            )
        return tenants.pop()

    def _token_tenant(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            how = " or a client certificate" if self.identities else ""
            raise Unauthenticated(
                f"This receiver requires 'Authorization: Bearer <token>'{how}; set the OTLP "
                "exporter's headers (OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>)."
            )
        given = _digest(token.strip())
        found = None
        for digest, tenant in self.digests:
            if hmac.compare_digest(digest, given):
                found = tenant
        if found is None:
            raise Unauthenticated("The bearer token is not known to this receiver.")
        return found

    def resolve(self, granted: str | None, resources: Iterable[Mapping[str, Any]]) -> list[str]:
        """The tenant of each resource, in order.

        Raises:
            WrongTenant: a resource claims a tenant other than the one granted.
        """
        out = []
        for res in resources:
            claimed = res.get(TENANT_ATTRIBUTE)
            claimed = str(claimed) if claimed not in (None, "") else None
            if granted is not None:
                if claimed is not None and claimed != granted:
                    raise WrongTenant(
                        f"The request's credentials write into tenant {granted!r}; its resource "
                        f"claims {TENANT_ATTRIBUTE}={claimed!r}. Nothing was written."
                    )
                out.append(granted)
            else:
                out.append(claimed or self.default_tenant)
        return out


def load_tokens(path: Path) -> dict[str, str]:
    """Tokens from a JSON file ``{"<token>": "<tenant>", ...}``.

    Raises:
        ValueError: the file is not such an object.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read the token file {path}: {exc}") from exc
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
    ):
        raise ValueError(f"The token file {path} must be a JSON object of token → tenant.")
    return doc
