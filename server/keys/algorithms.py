"""Private signing keys held in memory, of either suite: made, read, written and used here.

Ed25519 keys are `cryptography`'s own objects (as before SM2 existed, so their files and ids do
not change); SM2 keys are `tongsuopy`'s, wrapped in `Sm2Private` since that binding ships no
type hints. Public halves and signature checks live in `client.signatures`, which the offline
verifier shares.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from avidence.client.signatures import (
    ED25519,
    SM2_SM3,
    Ed25519Key,
    PublicKey,
    Sm2Key,
    sm2_pem,
)


@dataclass(slots=True, frozen=True)
class Sm2Private:
    """An SM2 private key (`tongsuopy`) that signs SM2-with-SM3 under the default ID."""

    key: Any

    def public(self) -> Sm2Key:
        return Sm2Key(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        from tongsuopy.crypto import hashes
        from tongsuopy.crypto.asymciphers import ec

        signature: bytes = self.key.sign(data, ec.ECDSA(hashes.SM3()))
        return signature

    def pem(self) -> bytes:
        from tongsuopy.crypto import serialization as ts

        text: bytes = self.key.private_bytes(
            ts.Encoding.PEM, ts.PrivateFormat.PKCS8, ts.NoEncryption()
        )
        return text


Private = Ed25519PrivateKey | Sm2Private


def generate(algorithm: str) -> Private:
    """A new private key of `algorithm` (`ed25519` or `sm2-sm3`)."""
    if algorithm == ED25519:
        return Ed25519PrivateKey.generate()
    if algorithm == SM2_SM3:
        from tongsuopy.crypto.asymciphers import ec

        return Sm2Private(ec.generate_private_key(ec.SM2()))
    raise ValueError(f"unknown signature algorithm {algorithm!r}")


def load_pem(data: bytes) -> Private:
    """An unencrypted PEM private key, Ed25519 or SM2; ValueError saying why not."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except UnsupportedAlgorithm:  # OpenSSL-backed `cryptography` refuses the SM2 curve
        return Sm2Private(sm2_pem(data, private=True))
    except (ValueError, TypeError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 or SM2 key")
    return key


def public(private: Private) -> PublicKey:
    if isinstance(private, Ed25519PrivateKey):
        return Ed25519Key(private.public_key())
    return private.public()


def private_pem(private: Private) -> bytes:
    """PKCS#8 PEM, unencrypted: the key file's content."""
    if isinstance(private, Ed25519PrivateKey):
        return private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return private.pem()


def derive(private: Private, label: bytes) -> bytes:
    """Bytes only the key's holder can compute, the same on every replica holding it.

    Ed25519 signatures are deterministic (RFC 8032), so the signature of `label` serves (and
    an HSM that never lets the key out can make it too). SM2 signatures are randomised, so an
    SM2 key gives an HMAC of `label` under its private scalar instead."""
    if isinstance(private, Ed25519PrivateKey):
        return private.sign(label)
    scalar = int(private.key.private_numbers().private_value).to_bytes(32, "big")
    return hmac.new(scalar, label, hashlib.sha256).digest()
