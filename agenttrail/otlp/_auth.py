"""Who may write, and into which tenant.

In production every request carries ``Authorization: Bearer <token>``; the token
names exactly one tenant. A request without a token, or with one the receiver does
not know, is refused with 401; one whose resources claim another tenant
(``agenttrail.tenant``) with 403 — in both cases before anything is decoded into
events, so nothing is written. Tokens are kept only as SHA-256 digests, compared in
constant time, and never logged.

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
    """Maps bearer tokens to tenants; without tokens, trusts the resource (loopback only).

    Args:
        tokens: token → tenant. Empty means no authentication (the loopback default).
        default_tenant: tenant of unauthenticated requests whose resources name none.
    """

    digests: tuple[tuple[bytes, str], ...] = ()
    default_tenant: str = "default"

    @classmethod
    def from_tokens(
        cls, tokens: Mapping[str, str], default_tenant: str = "default"
    ) -> Authenticator:
        for token, tenant in tokens.items():
            if not token or not tenant:
                raise ValueError("Every token needs a non-empty value and tenant.")
        return cls(tuple((_digest(t), tn) for t, tn in tokens.items()), default_tenant)

    @property
    def required(self) -> bool:
        return bool(self.digests)

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant a request's token grants; None when no token is required.

        Raises:
            Unauthenticated: a token is required and missing or unknown.
        """
        if not self.digests:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "This receiver requires 'Authorization: Bearer <token>'; set the OTLP "
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
            WrongTenant: a resource claims a tenant other than the token's.
        """
        out = []
        for res in resources:
            claimed = res.get(TENANT_ATTRIBUTE)
            claimed = str(claimed) if claimed not in (None, "") else None
            if granted is not None:
                if claimed is not None and claimed != granted:
                    raise WrongTenant(
                        f"The token writes into tenant {granted!r}; the request's resource "
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
