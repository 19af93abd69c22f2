"""The contract every signing-key provider meets, and the one error they raise.

The private key never enters the catalog: a provider signs bytes and tells its public key, and
what holds the private half (a file the operator guards, or an HSM that never lets it out) is
the provider's business. The catalog only caches public keys (`signing.register`).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class KeyUnavailable(Exception):
    """The signing key cannot be used now (HSM unreachable, token removed, wrong PIN).

    Custody actions must then be refused (HTTP 503 `signing_unavailable`), never signed with
    another key; the message is one line for the operator and names no secret."""

    code: ClassVar[str] = "signing_unavailable"


class KeyProvider(Protocol):
    """One Ed25519 signing key.

    `key_id` and `public_key` are known once the provider is open; `sign` returns the 64-byte
    Ed25519 signature (RFC 8032, deterministic) of `data` or raises `KeyUnavailable`. Calls
    are cheap (a file key ~50 µs, SoftHSM ~0.35 ms), so callers run them inline."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def public_pem(public: Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM: the form `GET /api/keys` and key histories publish."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
