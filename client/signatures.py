"""The signature algorithms a document can name, and the public keys that check them.

Two suites sign: `ed25519` (RFC 8032, the `international` suite) and `sm2-sm3` (SM2 with SM3
as GB/T 32918 and GM/T 0009 define it, the `gm` suite: distinguishing ID 1234567812345678,
signature DER-encoded as `openssl pkeyutl -rawin -digest sm3` writes it). Every signed document
names its algorithm and every published key carries one, so a verifier picks the check by the
document, never by guessing from the key.

`cryptography` has no SM2 (its OpenSSL build refuses the curve), so SM2 comes from `tongsuopy`,
a binding of Tongsuo (the OpenSSL fork with the national suite): a server dependency, and for
the client the `gm` extra. It is imported only when an SM2 key is met, so a client without it
still verifies Ed25519 documents and says what to install for SM2 ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519 = "ed25519"
SM2_SM3 = "sm2-sm3"
ALGORITHMS = (ED25519, SM2_SM3)
# GB/T 32918.2 / GM/T 0009 default user ID, the one tongsuopy and `openssl -pkeyopt distid:` use.
SM2_DEFAULT_ID = b"1234567812345678"
GM_EXTRA = "SM2 keys need tongsuopy: pip install 'avidence[gm]'"


class UnusableKey(ValueError):
    """A PEM that is not a key of a supported algorithm (or not readable); the message says why."""


class MissingBinding(UnusableKey):
    """An SM2 key met where `tongsuopy` is not installed: an install to fix, not a forgery."""


class PublicKey(Protocol):
    """A public key that checks signatures of its own algorithm."""

    @property
    def algorithm(self) -> str: ...

    def raw(self) -> bytes:
        """The key's bytes its id is taken from (Ed25519: 32 bytes; SM2: the 65-byte point)."""
        ...

    def pem(self) -> str:
        """SubjectPublicKeyInfo PEM, as `GET /api/keys` and key histories publish it."""
        ...

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when `signature` is this key's signature of `data`."""
        ...


def _spki_pem(key: Any) -> str:
    text: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return text.decode()


@dataclass(slots=True, frozen=True)
class Ed25519Key:
    """An Ed25519 public key (`cryptography`)."""

    public: Ed25519PublicKey
    algorithm: ClassVar[str] = ED25519

    def raw(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def pem(self) -> str:
        return _spki_pem(self.public)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.public.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(slots=True, frozen=True)
class Sm2Key:
    """An SM2 public key (`tongsuopy`), checking SM2-with-SM3 signatures under the default ID."""

    public: Any  # tongsuopy's EllipticCurvePublicKey; the binding ships no type hints
    algorithm: ClassVar[str] = SM2_SM3

    def raw(self) -> bytes:
        from tongsuopy.crypto import serialization as ts

        point: bytes = self.public.public_bytes(
            ts.Encoding.X962, ts.PublicFormat.UncompressedPoint
        )
        return point

    def pem(self) -> str:
        from tongsuopy.crypto import serialization as ts

        text: bytes = self.public.public_bytes(
            ts.Encoding.PEM, ts.PublicFormat.SubjectPublicKeyInfo
        )
        return text.decode()

    def verify(self, signature: bytes, data: bytes) -> bool:
        from tongsuopy.crypto import exceptions, hashes
        from tongsuopy.crypto.asymciphers import ec

        try:
            self.public.verify(signature, data, ec.ECDSA(hashes.SM3()))
        except (exceptions.InvalidSignature, ValueError):
            return False
        except exceptions.InternalError:
            return False  # Tongsuo's answer to bytes that are not a DER signature at all
        return True


def sm2_available() -> bool:
    """True when the SM2 binding is installed."""
    try:
        import tongsuopy.crypto.asymciphers.ec  # noqa: F401
    except ImportError:
        return False
    return True


def sm2_pem(data: bytes, *, private: bool = False) -> Any:
    """A `tongsuopy` SM2 key (public, or private when asked) from PEM; `UnusableKey` when the
    binding is missing, the PEM unreadable or the key not SM2."""
    try:
        from tongsuopy.crypto import exceptions
        from tongsuopy.crypto import serialization as ts
        from tongsuopy.crypto.asymciphers import ec
    except ImportError:
        raise MissingBinding(GM_EXTRA) from None
    try:
        key = ts.load_pem_private_key(data, None) if private else ts.load_pem_public_key(data)
    except (ValueError, TypeError, exceptions.UnsupportedAlgorithm) as exc:
        kind = "an unencrypted PEM private key" if private else "a PEM public key"
        raise UnusableKey(f"not {kind}") from exc
    expected = ec.EllipticCurvePrivateKey if private else ec.EllipticCurvePublicKey
    if not isinstance(key, expected) or key.curve.name != "SM2":
        raise UnusableKey("only Ed25519 and SM2 keys are accepted")
    return key


def load_public(pem: str | bytes) -> PublicKey:
    """The public key of a SubjectPublicKeyInfo PEM, Ed25519 or SM2; `UnusableKey` otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        loaded = serialization.load_pem_public_key(data)
    except UnsupportedAlgorithm:
        return Sm2Key(sm2_pem(data))  # OpenSSL-backed `cryptography` refuses the SM2 curve
    except (ValueError, TypeError) as exc:
        raise UnusableKey("not a PEM public key") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise UnusableKey("only Ed25519 and SM2 keys are accepted")
    return Ed25519Key(loaded)


def wrap(public: PublicKey | Ed25519PublicKey) -> PublicKey:
    """A bare `cryptography` Ed25519 key as a `PublicKey`; others unchanged."""
    return Ed25519Key(public) if isinstance(public, Ed25519PublicKey) else public


def key_id(public: PublicKey | Ed25519PublicKey) -> str:
    """A short, stable id of a public key: the first 16 hex digits of SHA-256 of its raw bytes
    (for Ed25519 the same ids as before SM2 existed)."""
    return hashlib.sha256(wrap(public).raw()).hexdigest()[:16]
