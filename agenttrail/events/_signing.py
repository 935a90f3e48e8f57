"""Ed25519 signatures: the one code path for signed kill commands and signed checkpoints.

Keys travel as text: a private key is PKCS#8 PEM (``agenttrail kill --new-key`` writes
one), a public key is the base64 of its 32 raw bytes. The ``cryptography`` package (the
``signing`` extra) is imported only when a key is used, so the SDK without it still
records everything unsigned.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "Ed25519 signatures (signed kill commands, signed checkpoints) need the "
            "cryptography package: pip install 'agenttrail[signing]'."
        ) from None
    return ed25519


def new_signing_key() -> tuple[bytes, str]:
    """A fresh Ed25519 key: (private key as PEM, public key as base64 of its 32 bytes)."""
    from cryptography.hazmat.primitives import serialization

    key = _ed25519().Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, SigningKey(pem).public_key


class SigningKey:
    """An Ed25519 private key, loaded once; ``sign`` is thread-safe.

    Raises:
        ValueError: ``private_pem`` is not an Ed25519 private key in PEM.
    """

    def __init__(self, private_pem: bytes):
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(private_pem, password=None)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a PEM private key without password ({exc})") from None
        if not isinstance(key, _ed25519().Ed25519PrivateKey):
            raise ValueError(
                "the signing key must be an Ed25519 private key "
                "(make one with `agenttrail kill --new-key FILE`)"
            )
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = base64.b64encode(raw).decode()
        """Base64 of the raw public key: what verifiers are given, and the key id."""

    def sign(self, data: bytes) -> str:
        """The base64 Ed25519 signature of ``data``."""
        return base64.b64encode(self._key.sign(data)).decode()


class PublicKeys:
    """Verifies signatures made by any of ``public_keys`` (base64 raw Ed25519 keys).

    Thread-safe. An empty set verifies nothing (``bool(keys)`` is False).

    Raises:
        ValueError: a public key is not 32 bytes of base64; the message names it.
    """

    def __init__(self, public_keys: Iterable[str] = ()):
        self._keys: dict[str, Any] = {}
        for text in public_keys:
            text = text.strip()
            try:
                raw = base64.b64decode(text, validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    f"public key {text[:12]!r}… is not 32 bytes of base64; use the value "
                    "`agenttrail kill --new-key` printed."
                )
            self._keys[base64.b64encode(raw).decode()] = (
                _ed25519().Ed25519PublicKey.from_public_bytes(raw)
            )

    def __bool__(self) -> bool:
        return bool(self._keys)

    def verifies(self, data: bytes, signature: str | None) -> bool:
        """True when ``signature`` (base64) over ``data`` is by one of the keys."""
        if not signature or not self._keys:
            return False
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            return False
        from cryptography.exceptions import InvalidSignature

        for key in self._keys.values():
            try:
                key.verify(raw, data)
                return True
            except InvalidSignature:
                continue
        return False


__all__ = ["PublicKeys", "SigningKey", "new_signing_key"]
