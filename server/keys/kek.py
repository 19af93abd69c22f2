"""Key-encryption keys (KEKs) in key files: what wraps the data key of every sealed object.

A KEK file is `kek-<id>.json` (mode 0600) in the key folder (`kek_dir`, else the data dir's
`keys/`, beside the signing key), holding its suite and the key; `kek-active` names the one new
data keys are wrapped under. Older KEKs stay: records wrapped under them remain readable until
`keys rewrap` moves them. The folder is the one thing a backup must never lose: without the
KEK every sealed object is unreadable (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from avidence.storage.errors import KeysUnavailable, Tampered
from avidence.storage.sealformat import Suite, seal, unseal
from avidence.storage.sealkeys import KeyWrapping

from ..config import ConfigError, Settings

ACTIVE = "kek-active"


def kek_folder(settings: Settings) -> Path:
    return Path(settings.kek_dir) if settings.kek_dir else settings.data_dir / "keys"


@dataclass(slots=True, frozen=True)
class Kek:
    id: str
    suite: Suite
    secret: bytes


def _path(folder: Path, kek_id: str) -> Path:
    return folder / f"kek-{kek_id}.json"


def _read(path: Path) -> Kek:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return Kek(document["id"], Suite.named(document["suite"]), bytes.fromhex(document["key"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"kek: {path} is not a key-encryption key file ({exc})") from None


def write_new(folder: Path, suite: Suite) -> Kek:
    """A new KEK file (0600, never overwritten), then made active by an atomic rename."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    kek = Kek(secrets.token_hex(8), suite, os.urandom(suite.key_length))
    document = {"id": kek.id, "suite": suite.label, "key": kek.secret.hex()}
    fd = os.open(_path(folder, kek.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out)
    tmp = folder / f"{ACTIVE}.tmp"
    tmp.write_text(kek.id + "\n")
    tmp.replace(folder / ACTIVE)
    return kek


class FileKeks:
    """`storage.sealkeys.KeyWrapping` over the KEK files of one folder."""

    def __init__(self, folder: Path, active: Kek) -> None:
        self.folder = folder
        self.active = active
        self._known = {active.id: active}

    @property
    def kek_id(self) -> str:
        return self.active.id

    def _kek(self, kek_id: str) -> Kek:
        found = self._known.get(kek_id)
        if found is None:
            try:
                found = self._known[kek_id] = _read(_path(self.folder, kek_id))
            except FileNotFoundError:
                raise KeysUnavailable(
                    f"key-encryption key {kek_id} is not in {self.folder}"
                ) from None
        return found

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        return seal(self.active.suite, self.active.secret, data_key, context)

    def unwrap(self, wrapped: bytes, *, kek_id: str, context: bytes) -> bytes:
        kek = self._kek(kek_id)
        try:
            return unseal(kek.suite, kek.secret, wrapped, context, what="data key")
        except Tampered as exc:
            raise KeysUnavailable(f"a data key does not open under KEK {kek_id}: {exc}") from None


def load(settings: Settings, *, create: bool) -> FileKeks:
    """The folder's active KEK; a new one (of the configured suite) when `create` allows.
    Without it and without a KEK: `KeysUnavailable`, so nothing is sealed under no key."""
    folder = kek_folder(settings)
    suite = Suite.named(settings.encryption_suite)
    active = folder / ACTIVE
    if active.exists():
        kek = _read(_path(folder, active.read_text().strip()))
        if kek.suite is not suite:
            raise ConfigError(
                f"encryption_suite: the active KEK {kek.id} is {kek.suite.label}, not {suite.label}"
                " (rotate it with keys rotate-kek)"
            )
        return FileKeks(folder, kek)
    if not create:
        raise KeysUnavailable(f"no key-encryption key in {folder}")
    return FileKeks(folder, write_new(folder, suite))


def configured(settings: Settings, *, create: bool) -> KeyWrapping:
    """The KEKs of the configured key provider: key files, or AES keys in the PKCS#11 token."""
    if settings.key_provider == "pkcs11":
        from . import kekhsm  # the PKCS#11 library is only loaded when it is used

        return kekhsm.load(settings, create=create)
    return load(settings, create=create)
