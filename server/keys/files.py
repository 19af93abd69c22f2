"""Key files outside the catalog: the default provider.

The private key lives in the data dir (`keys/ed25519-<id>.pem`, or `keys/sm2-<id>.pem` with
`suite = "gm"`; mode 0600, created on first start, `keys/active` naming the current one), in a
file named by the `signing_key` setting, or in `AVIDENCE_SIGNING_KEY_PEM`; replicas share one
key through the last two. None of these is in the catalog, so a database administrator cannot
read or replace it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from avidence.client.signatures import ED25519, SM2_SM3, PublicKey, key_id

from ..config import ConfigError, Settings
from . import algorithms
from .algorithms import Private

ENV_PEM = "AVIDENCE_SIGNING_KEY_PEM"


@dataclass(slots=True, frozen=True)
class FileKey:
    """`KeyProvider` over an Ed25519 or SM2 private key the process holds in memory."""

    private: Private
    # Derived once: asking an SM2 key for its public half costs as much as a signature.
    public_key: PublicKey = field(init=False, repr=False, compare=False)
    key_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        public = algorithms.public(self.private)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "key_id", key_id(public))

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def derive(self, label: bytes) -> bytes:
        return algorithms.derive(self.private, label)


_private_pem = algorithms.private_pem
PREFIXES = {ED25519: "ed25519", SM2_SM3: "sm2"}  # file name prefix by algorithm


def _load_pem(data: bytes, where: str) -> Private:
    try:
        return algorithms.load_pem(data)
    except ValueError as exc:
        raise ConfigError(f"signing_key: {where} is {exc}") from None


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
    return FileKey(write_new(folder, algorithm=settings.signature_algorithm))


def write_new(folder: Path, *, algorithm: str = ED25519) -> Private:
    """A new key file (0600, never overwritten), then made active by an atomic rename."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = algorithms.generate(algorithm)
    name = f"{PREFIXES[algorithm]}-{key_id(algorithms.public(private))}.pem"
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
        for prefix in PREFIXES.values()
        for path in sorted(key_dir(settings).glob(f"{prefix}-*.pem"))
    ]


def rotate(settings: Settings) -> FileKey:
    """Make a new data-dir key of the suite's algorithm the active one; old key files stay on
    disk (so rotating is also how a deployment moves from Ed25519 to SM2)."""
    if managed_elsewhere(settings):
        raise ConfigError("signing_key: the key is managed outside the data dir; rotate it there")
    return FileKey(write_new(key_dir(settings), algorithm=settings.signature_algorithm))
