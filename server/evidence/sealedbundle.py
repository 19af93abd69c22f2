"""Export bundles encrypted for their recipients, in the age format (age-encryption.org/v1).

The finished bundle folder is packed as a tar stream and encrypted on the way to X25519
(`age1...`) or SSH (`ssh-ed25519 ...`, `ssh-rsa ...`) public keys, so only the holders of the
matching private keys can open it, with any age implementation (`age -d`, `rage -d`) and `tar`,
and then check it as an ordinary bundle (`avidence verify-bundle`). The standard format is the
point: a court or another agency needs nothing of ours to open it. A recipient key, unlike a
passphrase, never has to travel beside the bundle.

The tar is never written in the clear: one thread packs into a pipe while age encrypts from it
into `<out>.part`, renamed onto `out` once complete. The plaintext folder the bundle was built
in is removed by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyrage
from sqlalchemy.ext.asyncio import AsyncEngine

from ..audit import unit
from ..audit.events import BundleEncrypted
from ..cases.records import Case
from .export import ExportError, ExportReport

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

Recipient = pyrage.x25519.Recipient | pyrage.ssh.Recipient
SUFFIX = ".tar.age"


def parse(texts: Iterable[str]) -> list[Recipient]:
    """Recipients from their public key texts; `ExportError` naming one that is not a key."""
    found: list[Recipient] = []
    for text in (t.strip() for t in texts):
        try:
            if text.startswith("age1"):
                found.append(pyrage.x25519.Recipient.from_str(text))
            elif text.startswith(("ssh-", "ecdsa-")):
                found.append(pyrage.ssh.Recipient.from_str(text))
            else:
                raise pyrage.RecipientError(text)
        except pyrage.RecipientError:
            raise ExportError(
                f"recipient {text[:40]!r} is not an age (age1...) or SSH public key"
            ) from None
    return found


def recipients_file(path: Path) -> list[str]:
    """The keys of an age recipients file: one per line, `#` comments and blank lines skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExportError(f"recipients file {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pack(folder: Path, name: str, fd: int, failed: list[BaseException]) -> None:
    try:
        with os.fdopen(fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|") as tar:
            tar.add(folder, arcname=name)
    except BaseException as exc:  # a broken pipe after age failed, or a read error
        failed.append(exc)


class _Hashing(io.BufferedIOBase):
    """A sink that takes the SHA-256 of what passes through it: the bundle's digest without
    reading the finished file a second time."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        n = self.sink.write(data)
        self.digest.update(memoryview(data)[:n])
        return n


def seal_folder(folder: Path, out: Path, recipients: Sequence[Recipient]) -> tuple[int, str]:
    """Write `folder` as the age-encrypted tar `out` (absent); its size in bytes and SHA-256."""
    if not recipients:
        raise ExportError("no recipient to encrypt the bundle to")
    if out.exists():
        raise ExportError(f"{out} exists")
    name = out.name.removesuffix(SUFFIX) or "bundle"
    part = out.with_name(f".{out.name}.part")
    read_end, write_end = os.pipe()
    failed: list[BaseException] = []
    packer = threading.Thread(target=_pack, args=(folder, name, write_end, failed), daemon=True)
    packer.start()
    try:
        with os.fdopen(read_end, "rb") as source, open(part, "xb") as sink:
            hashing = _Hashing(sink)
            pyrage.encrypt_io(source, hashing, list(recipients))
            sink.flush()
            os.fsync(sink.fileno())
        packer.join()
        if failed:
            raise ExportError(f"packing the bundle failed: {failed[0]}")
        os.replace(part, out)
    except BaseException:
        packer.join(timeout=30)
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    return out.stat().st_size, hashing.digest.hexdigest()


async def export_sealed(
    engine: AsyncEngine,
    export: Callable[..., Awaitable[ExportReport]],
    *,
    out: Path,
    recipients: Sequence[Recipient],
    keys: Sequence[str],
    case: Case,
    actor: str = "cli",
) -> tuple[ExportReport, int]:
    """Build the bundle with `export(out=...)` in a private folder beside `out`, encrypt it
    into `out`, remove the folder; audited as `export.encrypted` naming the recipients."""
    work = await asyncio.to_thread(_workdir, out)
    try:
        folder = work / (out.name.removesuffix(SUFFIX) or "bundle")
        report = await export(out=folder)
        size, digest = await asyncio.to_thread(seal_folder, folder, out, recipients)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    await unit.record(
        engine,
        BundleEncrypted(
            actor=actor,
            object=f"case:{case.id}",
            case_id=case.number,
            recipients=list(keys),
            size=size,
            sha256=digest,
        ),
    )
    return report, size


def _workdir(out: Path) -> Path:
    """A private folder beside `out` (same filesystem) to build the plaintext bundle in."""
    if out.exists():
        raise ExportError(f"{out} exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
