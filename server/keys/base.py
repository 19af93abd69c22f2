"""The contract every signing-key provider meets, and the one error they raise.

The private key never enters the catalog: a provider signs bytes and tells its public key, and
what holds the private half (a file the operator guards, or an HSM that never lets it out) is
the provider's business. The catalog only caches public keys (`signing.register`).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from avidence.client.signatures import PublicKey, wrap


class KeyUnavailable(Exception):
    """The signing key cannot be used now (HSM unreachable, token removed, wrong PIN).

    Custody actions must then be refused (HTTP 503 `signing_unavailable`), never signed with
    another key; the message is one line for the operator and names no secret."""

    code: ClassVar[str] = "signing_unavailable"


class KeyProvider(Protocol):
    """One signing key, Ed25519 or SM2 (`public_key.algorithm` says which).

    `key_id` and `public_key` are known once the provider is open; `sign` returns the signature
    of `data` in its algorithm's form (Ed25519: 64 bytes, RFC 8032, deterministic; SM2 with
    SM3: DER, randomised) or raises `KeyUnavailable`. `derive` returns bytes only the key's
    holder can compute and the same on every replica (secrets are derived from it). Calls are
    cheap (a file key ~50-250 µs, SoftHSM ~0.35 ms), so callers run them inline."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...

    def derive(self, label: bytes) -> bytes: ...


def public_pem(public: PublicKey | Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM: the form `GET /api/keys` and key histories publish."""
    return wrap(public).pem()
