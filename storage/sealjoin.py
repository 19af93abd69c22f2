"""Joined sealed objects: a final upload made of its parts' sealed bytes, never sealed again.

tus concatenation joins finished partial uploads, each a sealed object under its own data key.
The joined object is the backend's own concatenation of the parts' stored bytes (a kernel copy
on the local folder, UploadPartCopy on S3): no byte is opened and sealed a second time. What
makes the parts one object is its *run table*: for each part, in order, the name and header its
segments are bound to, its data key, and its plaintext and stored lengths. The table is sealed
under the joined object's own data key, the one the KEK wraps in its key record
(`KeyRecord.runs` holds the sealed table), so:

* destroying the joined object's key record shreds every run: once the parts are deleted, their
  keys live only in the table; rewrapping the record rewraps them all;
* each run's segments stay bound to its part's name, header, index and final flag, and each run
  ends in its part's final segment: a segment moved between runs, runs swapped, dropped or cut,
  and a truncated object fail authentication or fall short of the lengths the table records;
* a ranged read opens only the segments it touches, in the runs it touches.

An object without a table is one run: the format of objects sealed before joining existed.

Table layout (version 1): version u8 | runs u32 | per run: name length u16 | name |
header (29 bytes) | key length u8 | data key | plaintext length u64 | stored length u64.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from . import sealkeys, sealread
from .base import Store
from .errors import InvalidRange, Tampered
from .sealformat import HEADER, Header, Sealer, plain_size
from .sealkeys import KeyRecord, KeyWrapping

TABLE_VERSION = 1
_TOP = struct.Struct(">BI")
_NAME = struct.Struct(">H")
_KEY = struct.Struct(">B")
_LENGTHS = struct.Struct(">QQ")


@dataclass(slots=True, frozen=True)
class Run:
    """One part inside a joined object: its sealer (its own key, name and header) and sizes."""

    sealer: Sealer
    plain: int
    stored: int


def pack(runs: Sequence[Run]) -> bytes:
    """The run table of `runs` in order, before sealing."""
    out = [_TOP.pack(TABLE_VERSION, len(runs))]
    for run in runs:
        name = run.sealer.key.encode()
        key = run.sealer.data_key
        out += [_NAME.pack(len(name)), name, run.sealer.header.pack(), _KEY.pack(len(key)), key]
        out.append(_LENGTHS.pack(run.plain, run.stored))
    return b"".join(out)


def unpack(raw: bytes) -> list[Run]:
    """The runs of an opened (so authentic) table; `Tampered` for a version this code lacks."""
    version, count = _TOP.unpack_from(raw)
    if version != TABLE_VERSION:
        raise Tampered(f"run table version {version} is not one this version reads")
    at, runs = _TOP.size, []
    for _ in range(count):
        (size,) = _NAME.unpack_from(raw, at)
        name = raw[at + _NAME.size : at + _NAME.size + size].decode()
        at += _NAME.size + size
        header = Header.parse(raw[at : at + HEADER.size])
        if header is None:
            raise Tampered("a run table names a run without a sealed header")
        at += HEADER.size
        (size,) = _KEY.unpack_from(raw, at)
        key = raw[at + _KEY.size : at + _KEY.size + size]
        at += _KEY.size + size
        plain, stored = _LENGTHS.unpack_from(raw, at)
        at += _LENGTHS.size
        runs.append(Run(Sealer(header, name, key), plain, stored))
    return runs


def runs_of(record: KeyRecord, kek: KeyWrapping, *, stored: int) -> list[Run]:
    """The runs of the sealed object of `stored` bytes that `record` keys: its table, or
    itself as the only run. `Tampered` when the lengths do not add up."""
    sealer = sealkeys.sealer(record, kek)
    if record.runs is None:
        return [Run(sealer, plain_size(stored, segment=sealer.header.segment), stored)]
    runs = unpack(sealer.open_runs(record.runs))
    if sum(run.stored for run in runs) != stored:
        raise Tampered("a joined object's length is not that of its runs", key=record.key)
    return runs


def seal_table(record: KeyRecord, kek: KeyWrapping, runs: Sequence[Run]) -> bytes:
    """`runs` as the sealed table of the object keyed by `record`."""
    return sealkeys.sealer(record, kek).seal_runs(pack(runs))


async def read(
    store: Store, key: str, runs: Sequence[Run], *, start: int, length: int | None
) -> AsyncIterator[bytes]:
    """Plaintext `[start, start + length)` of the object `key` made of `runs`."""
    size = sum(run.plain for run in runs)
    if start < 0 or start > size or (length is not None and length < 0):
        raise InvalidRange(f"range {start}+{length} outside 0..{size}", key=key)
    end = size if length is None else min(size, start + length)
    if end <= start:
        return sealread.empty()
    spans: list[tuple[Run, int, int, int]] = []  # run, its place, local start and length
    plain_at = stored_at = 0
    for run in runs:
        lo, hi = max(start, plain_at), min(end, plain_at + run.plain)
        if lo < hi:
            spans.append((run, stored_at, lo - plain_at, hi - lo))
        plain_at += run.plain
        stored_at += run.stored

    async def opened(span: tuple[Run, int, int, int]) -> AsyncIterator[bytes]:
        run, base, first, count = span
        return await sealread.read(
            store, run.sealer, stored=run.stored, start=first, length=count, name=key, base=base
        )

    pieces = await opened(spans[0])  # the first segment is checked before any byte goes

    async def stream() -> AsyncIterator[bytes]:
        nonlocal pieces
        for number, span in enumerate(spans):
            if number:
                pieces = await opened(span)
            try:
                async for chunk in pieces:
                    yield chunk
            finally:
                closing = getattr(pieces, "aclose", None)
                if closing is not None:
                    await closing()

    return stream()
