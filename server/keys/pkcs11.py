"""A signing key held in a PKCS#11 token (an HSM, or SoftHSM2 in tests).

The private key is generated inside the token, marked sensitive and not extractable, and used
only through `C_Sign` with `CKM_EDDSA`: the server signs without ever holding it, so neither a
database administrator nor someone who copies the server's disk can sign as the server.

The token is opened at start-up; a module that will not load, a missing token, a wrong PIN or
a missing key stop the server with one line (`KeyUnavailable`). A token that goes away later
makes each signature attempt reconnect once and then raise `KeyUnavailable`, which refuses the
custody action (503) instead of signing with anything else. A reconnect that finds a different
key under the configured label is refused the same way.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from avidence.client.canonical import key_id
from avidence.client.signatures import Ed25519Key, PublicKey

from ..config import ConfigError, Settings
from .base import KeyUnavailable

ENV_PIN = "AVIDENCE_PKCS11_PIN"
ED25519_OID = "1.3.101.112"  # RFC 8410 id-Ed25519, as CKA_EC_PARAMS of a CKK_EC_EDWARDS key


class KeyMissing(KeyUnavailable):
    """The token is there and the PIN right, but it holds no key under the label: the one
    case in which `key create` and `key rotate --new-label` may make one."""


def read_pin(settings: Settings) -> str:
    """The user PIN from `AVIDENCE_PKCS11_PIN` or the `pkcs11_pin_file`, never from the TOML."""
    pin = os.environ.get(ENV_PIN)
    if pin:
        return pin
    if not settings.pkcs11_pin_file:
        raise ConfigError(f"pkcs11_pin_file: set it or {ENV_PIN} to the token's user PIN")
    try:
        return Path(settings.pkcs11_pin_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        where = settings.pkcs11_pin_file
        raise ConfigError(f"pkcs11_pin_file: cannot read {where}: {exc.strerror}") from None


def _raw_point(value: bytes) -> bytes:
    """CKA_EC_POINT is the 32-byte point, usually wrapped in a DER OCTET STRING (04 20 ...)."""
    if len(value) == 34 and value[:2] == b"\x04\x20":
        return value[2:]
    return value


def _open_token(lib: Any, label: str) -> Any:
    """The token by label; a token added or re-inserted since the library started is only
    seen after re-initialising it, so try that once."""
    for fresh in (False, True):
        try:
            if fresh:
                lib.reinitialize()
            return lib.get_token(token_label=label)
        except pkcs11.PKCS11Error:
            if fresh:
                raise KeyUnavailable(f"PKCS#11 token {label!r} is not present") from None
    raise AssertionError("unreachable")


def _session(*, module: str, token: str, pin: str, rw: bool = False) -> Any:
    try:
        lib = pkcs11.lib(module)
    except pkcs11.PKCS11Error:
        raise KeyUnavailable(f"PKCS#11 module {module} cannot be loaded") from None
    slot = _open_token(lib, token)
    try:
        return slot.open(user_pin=pin, rw=rw)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        return slot.open(rw=rw)  # this process is logged in already: the login is per token
    except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinInvalid):
        raise KeyUnavailable(f"wrong PIN for PKCS#11 token {token!r}") from None
    except pkcs11.exceptions.PinLocked:
        raise KeyUnavailable(f"the PIN of PKCS#11 token {token!r} is locked") from None
    except pkcs11.PKCS11Error as exc:
        raise KeyUnavailable(f"cannot log in to PKCS#11 token {token!r}: {exc!r}") from None


class Pkcs11Key:
    """`KeyProvider` over an Ed25519 key in a PKCS#11 token, found by its label."""

    __slots__ = (
        "_key_id",
        "_lock",
        "_private",
        "_public",
        "_session",
        "label",
        "module",
        "pin",
        "token",
    )

    def __init__(self, *, module: str, token: str, label: str, pin: str) -> None:
        self.module, self.token, self.label, self.pin = module, token, label, pin
        self._lock = threading.Lock()
        self._session: Any = None
        self._private: Any = None
        self._public = self._connect()
        self._key_id = key_id(self._public)

    def __repr__(self) -> str:  # never the PIN
        return f"Pkcs11Key(module={self.module!r}, token={self.token!r}, label={self.label!r})"

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> PublicKey:
        return Ed25519Key(self._public)

    def derive(self, label: bytes) -> bytes:
        """The signature of `label`: Ed25519 is deterministic, so every replica gets the same."""
        return self.sign(label)

    def _connect(self) -> Ed25519PublicKey:
        session = _session(module=self.module, token=self.token, pin=self.pin)
        try:
            private = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC_EDWARDS, label=self.label
            )
            public = session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC_EDWARDS, label=self.label
            )
            point = _raw_point(bytes(public[Attribute.EC_POINT]))
        except pkcs11.exceptions.NoSuchKey:
            session.close()
            raise KeyMissing(
                f"no Ed25519 key labelled {self.label!r} in PKCS#11 token {self.token!r}"
            ) from None
        except pkcs11.exceptions.MultipleObjectsReturned:
            session.close()
            raise KeyUnavailable(
                f"several keys labelled {self.label!r} in PKCS#11 token {self.token!r}"
            ) from None
        self._session, self._private = session, private
        return Ed25519PublicKey.from_public_bytes(point)

    def _drop(self) -> None:
        session, self._session, self._private = self._session, None, None
        if session is not None:
            try:
                session.close()
            except pkcs11.PKCS11Error:
                pass  # the token is gone; nothing to close

    def sign(self, data: bytes) -> bytes:
        """Sign in the token; reconnect once if the session broke, else `KeyUnavailable`."""
        with self._lock:  # a PKCS#11 session serves one operation at a time
            for attempt in (1, 2):
                try:
                    if self._private is None:
                        if key_id(self._connect()) != self._key_id:
                            self._drop()
                            raise KeyUnavailable(
                                f"the key labelled {self.label!r} in token {self.token!r} is "
                                f"no longer key {self._key_id}; refusing to sign with another"
                            )
                    return bytes(self._private.sign(data, mechanism=Mechanism.EDDSA))
                except pkcs11.PKCS11Error as exc:
                    self._drop()
                    if attempt == 2:
                        raise KeyUnavailable(
                            f"PKCS#11 token {self.token!r} failed to sign: {type(exc).__name__}"
                        ) from None
        raise AssertionError("unreachable")


def open_key(settings: Settings, *, label: str | None = None) -> Pkcs11Key:
    """The configured token key (or another `label` in the same token)."""
    return Pkcs11Key(
        module=settings.pkcs11_module,
        token=settings.pkcs11_token,
        label=label or settings.pkcs11_key,
        pin=read_pin(settings),
    )


def generate(settings: Settings, *, label: str) -> Ed25519PublicKey:
    """Make a new Ed25519 key pair inside the token: private half sensitive, never extractable."""
    session = _session(
        module=settings.pkcs11_module, token=settings.pkcs11_token, pin=read_pin(settings), rw=True
    )
    try:
        public, _ = session.generate_keypair(
            KeyType.EC_EDWARDS,
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            public_template={Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            store=True,
            label=label,
        )
        point = _raw_point(bytes(public[Attribute.EC_POINT]))
    except pkcs11.PKCS11Error as exc:
        raise KeyUnavailable(f"PKCS#11 token {settings.pkcs11_token!r}: {exc!r}") from None
    finally:
        session.close()
    return Ed25519PublicKey.from_public_bytes(point)
