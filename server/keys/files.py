"""Key files outside the catalog: the default provider.

The private key lives in the data dir (`keys/ed25519-<id>.pem`, mode 0600, created on first
start, `keys/active` naming the current one), in a file named by the `signing_key` setting, or
in `AVIDENCE_SIGNING_KEY_PEM`; replicas share one key through the last two. None of these is
in the catalog, so a database administrator cannot read or replace it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from avidence.client.canonical import key_id

from ..config import ConfigError, Settings

ENV_PEM = "AVIDENCE_SIGNING_KEY_PEM"


@dataclass(slots=True, frozen=True)
class FileKey:
    """`KeyProvider` over an Ed25519 private key the process holds in memory."""

    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def _private_pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"signing_key: {where} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing_key: {where} is not an Ed25519 key")
    return key


def load_file(path: Path) -> FileKey:
    """A key from a PEM file (a successor to certify before it replaces the secret)."""
    return FileKey(_load_pem(path.read_bytes(), str(path)))


def key_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def managed_elsewhere(settings: Settings) -> bool:
    """True when the key is given by env or path: it is rotated where it lives, not here."""
    return bool(os.environ.get(ENV_PEM) or settings.signing_key)


def load(settings: Settings) -> FileKey:
    """The active key from env, the configured file, or the data dir (created when absent)."""
    pem = os.environ.get(ENV_PEM)
    if pem:
        return FileKey(_load_pem(pem.encode(), ENV_PEM))
    if settings.signing_key:
        path = Path(settings.signing_key)
        try:
            return FileKey(_load_pem(path.read_bytes(), str(path)))
        except FileNotFoundError:
            raise ConfigError(f"signing_key: {path} not found") from None
    folder = key_dir(settings)
    active = folder / "active"
    if active.exists():
        path = folder / active.read_text().strip()
        return FileKey(_load_pem(path.read_bytes(), str(path)))
    return FileKey(write_new(folder))


def write_new(folder: Path) -> Ed25519PrivateKey:
    """A new key file (0600, never overwritten), then made active by an atomic rename."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    name = f"ed25519-{key_id(private.public_key())}.pem"
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_private_pem(private))
    tmp = folder / "active.tmp"
    tmp.write_text(name + "\n")
    tmp.replace(folder / "active")
    return private


def held(settings: Settings) -> list[FileKey]:
    """Every key file in the data dir (the active one and those rotated out)."""
    return [
        FileKey(_load_pem(path.read_bytes(), str(path)))
        for path in sorted(key_dir(settings).glob("ed25519-*.pem"))
    ]


def rotate(settings: Settings) -> FileKey:
    """Make a new data-dir key the active one; old key files stay on disk."""
    if managed_elsewhere(settings):
        raise ConfigError("signing_key: the key is managed outside the data dir; rotate it there")
    return FileKey(write_new(key_dir(settings)))
