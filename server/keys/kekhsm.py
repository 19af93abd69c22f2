"""A key-encryption key inside a PKCS#11 token (an HSM, SoftHSM2 in tests).

The KEK is an AES-256 secret key generated in the token, sensitive and not extractable; data
keys are wrapped and unwrapped by the token with `CKM_AES_GCM` (the record's context as the
associated data), so the KEK never enters the server's memory. Its id in every record is
`p11-<CKA_ID>`: the key `pkcs11_kek` labels wraps new data keys, and any key of the token
still opens the records it wrapped, so rotation is a new label plus `key rewrap`.

The token is the signing key's (`pkcs11_module`, `pkcs11_token`, the same PIN). A token that
goes away makes each call reconnect once, then raise `KeysUnavailable` (503), never fall back to
another key. SoftHSM2 has no SM4: the `gm` suite needs a token that offers it (not built).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from avidence.storage.errors import KeysUnavailable

from ..config import ConfigError, Settings
from .base import KeyUnavailable
from .pkcs11 import _session, read_pin

PREFIX = "p11-"


class Pkcs11Keks:
    """`storage.sealkeys.KeyWrapping` over AES keys in one PKCS#11 token."""

    def __init__(self, *, module: str, token: str, label: str, pin: str, create: bool) -> None:
        self.module, self.token, self.label, self.pin = module, token, label, pin
        self._lock = threading.Lock()
        self._session: Any = None
        self._id = self._active(create=create)

    def __repr__(self) -> str:  # never the PIN
        return f"Pkcs11Keks(token={self.token!r}, label={self.label!r})"

    @property
    def kek_id(self) -> str:
        return PREFIX + self._id.hex()

    def _open(self) -> Any:
        if self._session is None:
            try:
                self._session = _session(
                    module=self.module, token=self.token, pin=self.pin, rw=True
                )
            except KeyUnavailable as exc:
                raise KeysUnavailable(str(exc)) from None
        return self._session

    def _active(self, *, create: bool) -> bytes:
        session = self._open()
        try:
            key = session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=self.label
            )
        except pkcs11.exceptions.NoSuchKey:
            if not create:
                raise KeysUnavailable(
                    f"no key-encryption key labelled {self.label!r} in token {self.token!r}"
                ) from None
            key = generate(session, self.label)
        return bytes(key[Attribute.ID])

    def _call(self, kek_id: str, operation: str, data: bytes, params: GCMParams) -> bytes:
        if not kek_id.startswith(PREFIX):
            raise KeysUnavailable(f"key-encryption key {kek_id} is not a PKCS#11 key")
        with self._lock:  # a PKCS#11 session serves one operation at a time
            for attempt in (1, 2):
                try:
                    key = self._open().get_key(
                        object_class=ObjectClass.SECRET_KEY,
                        key_type=KeyType.AES,
                        id=bytes.fromhex(kek_id[len(PREFIX) :]),
                    )
                    run = key.encrypt if operation == "wrap" else key.decrypt
                    return bytes(run(data, mechanism=Mechanism.AES_GCM, mechanism_param=params))
                except pkcs11.exceptions.NoSuchKey:
                    raise KeysUnavailable(
                        f"key-encryption key {kek_id} is not in token {self.token!r}"
                    ) from None
                except pkcs11.PKCS11Error as exc:
                    self._session = None
                    if attempt == 2:
                        raise KeysUnavailable(
                            f"PKCS#11 token {self.token!r} failed to {operation}: "
                            f"{type(exc).__name__}"
                        ) from None
        raise AssertionError("unreachable")

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._call(self.kek_id, "wrap", data_key, GCMParams(nonce, context))

    def unwrap(self, wrapped: bytes, *, kek_id: str, context: bytes) -> bytes:
        nonce, body = wrapped[:12], wrapped[12:]
        return self._call(kek_id, "unwrap", body, GCMParams(nonce, context))


def generate(session: Any, label: str) -> Any:
    """A new AES-256 KEK in the token: sensitive, never extractable, encrypt/decrypt only."""
    return session.generate_key(
        KeyType.AES,
        256,
        label=label,
        id=os.urandom(8),
        store=True,
        template={
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
        },
    )


def load(settings: Settings, *, create: bool, label: str | None = None) -> Pkcs11Keks:
    if settings.encryption_suite != "international":
        raise ConfigError("encryption_suite: a PKCS#11 KEK is built for international only")
    return Pkcs11Keks(
        module=settings.pkcs11_module,
        token=settings.pkcs11_token,
        label=label or settings.pkcs11_kek,
        pin=read_pin(settings),
        create=create,
    )
