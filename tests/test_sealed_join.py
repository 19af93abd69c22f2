"""Joined sealed objects (tus concatenation on a sealed store): parts adopted as runs.

Over the local folder and S3 (SeaweedFS): the joined object is its parts' sealed bytes one
after another (nothing sealed again), reads right at every run border, its digest passes over
the plaintext, tampering with runs is refused, and purging it shreds every run's key.
"""

from __future__ import annotations

import os
from itertools import accumulate

import blake3
import pytest
from test_sealed_store import PATTERN, put, raw, recording, replace_raw

from avidence.server.keys.datakeys import CatalogKeyRing
from avidence.server.keys.kek import FileKeks, write_new
from avidence.server.keys.rewrap import remaining, rewrap_all
from avidence.storage.digests import MultiDigest
from avidence.storage.errors import AlreadyExists, NotFound, Tampered
from avidence.storage.sealformat import HEADER, OVERHEAD, SEGMENT, Suite

from support.stores import Sealed, collect

STEP = SEGMENT + OVERHEAD

# Part sizes: one part, two, five with an empty one and none a multiple of a segment.
JOINS = {
    "one": [3 * SEGMENT + 5],
    "two": [2 * SEGMENT, SEGMENT + 1],
    "five": [SEGMENT - 1, 0, 7, 2 * SEGMENT + 300, SEGMENT + 1],
}


async def joined(sealed: Sealed, name: str, sizes: list[int]) -> tuple[bytes, list[str]]:
    """Parts of `sizes` put and joined into `ev/{name}/all.bin`; the plaintext and part keys."""
    parts, keys = [], []
    for number, size in enumerate(sizes):
        data = os.urandom(size)
        key = f"up/{name}/part{number}.bin"
        await put(sealed.store, key, data, chunk=40_000)
        parts.append(data)
        keys.append(key)
    digest = MultiDigest(("blake3",))
    info = await sealed.store.concatenate(f"ev/{name}/all.bin", keys, digest=digest)
    whole = b"".join(parts)
    assert info.size == len(whole)
    assert digest.length == len(whole)
    assert digest.hexdigests()["blake3"] == blake3.blake3(whole).hexdigest()
    return whole, keys


@pytest.mark.parametrize("name", sorted(JOINS))
async def test_join_adopts_the_parts_sealed_bytes_and_reads_at_every_border(
    sealed: Sealed, name: str
) -> None:
    sizes = JOINS[name]
    whole, keys = await joined(sealed, name, sizes)
    key = f"ev/{name}/all.bin"
    # Nothing sealed again: the stored object is the parts' stored bytes one after another.
    assert await raw(sealed, key) == b"".join([await raw(sealed, k) for k in keys])
    for part in keys:  # the parts go; the joined object keeps their keys
        await sealed.store.delete(part)
    assert (await sealed.store.stat(key)).size == len(whole)
    assert await collect(await sealed.store.read(key)) == whole
    borders = sorted({0, len(whole), *accumulate(sizes)})
    for border in borders:
        for start in (border - 1, border, border + 1):
            if not 0 <= start <= len(whole):
                continue
            for length in (0, 1, 2, SEGMENT + 2, None):
                got = await collect(await sealed.store.read(key, start=start, length=length))
                end = len(whole) if length is None else start + length
                assert got == whole[start:end], (start, length)
        if border:  # ranges that end just before, at and after the border
            for end in (border - 1, border, border + 1):
                got = await collect(await sealed.store.read(key, start=1, length=end - 1))
                assert got == whole[1:end], (1, end)


async def test_a_joined_object_of_large_parts(sealed: Sealed) -> None:
    # Parts over the S3 minimum part size: S3 joins them with UploadPartCopy, server-side.
    sizes = [5 * 1024 * 1024 + 3, 5 * 1024 * 1024 + SEGMENT, 1000]
    whole, _ = await joined(sealed, "large", sizes)
    got = await collect(await sealed.store.read("ev/large/all.bin", start=sizes[0] - 10))
    assert got == whole[sizes[0] - 10 :]


def _runs(blob: bytes, stored: list[int]) -> list[bytes]:
    ends = list(accumulate(stored))
    return [blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def _segments(run: bytes) -> list[bytes]:
    body = run[HEADER.size :]
    return [run[: HEADER.size]] + [body[i : i + STEP] for i in range(0, len(body), STEP)]


# the runs' stored bytes -> what someone with the bucket's keys stores instead
TAMPERINGS = {
    "runs_swapped": lambda r: r[1] + r[0] + r[2],
    "run_dropped": lambda r: r[0] + r[2],
    "truncated": lambda r: (r[0] + r[1] + r[2])[:-100],
    "cut_at_a_segment": lambda r: (r[0] + r[1] + r[2])[:-STEP],
    "run_cut_short": lambda r: b"".join(_segments(r[0])[:-1]) + r[1] + r[2],
    "segment_swapped_between_runs": lambda r: (
        b"".join([*_segments(r[0])[:2], _segments(r[1])[1], *_segments(r[0])[3:]]) + r[1] + r[2]
    ),
    "run_of_another_join": lambda r: r[0] + r[1] + r[3],
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
async def test_tampered_joins_are_refused_not_served(sealed: Sealed, how: str) -> None:
    sizes = [3 * SEGMENT + 10, 2 * SEGMENT + 20, 2 * SEGMENT + 20]
    whole, keys = await joined(sealed, "t", sizes)
    other, _ = await joined(sealed, "o", sizes)
    stored = [len(await raw(sealed, k)) for k in keys]
    runs = _runs(await raw(sealed, "ev/t/all.bin"), stored)
    runs.append(_runs(await raw(sealed, "ev/o/all.bin"), stored)[2])
    await replace_raw(sealed.inner, "ev/t/all.bin", TAMPERINGS[how](runs))
    served = bytearray()
    with pytest.raises(Tampered):
        async for chunk in await sealed.store.read("ev/t/all.bin"):
            served += chunk
    assert whole.startswith(bytes(served)) and len(served) < len(whole)
    assert other  # the other join is intact
    assert await collect(await sealed.store.read("ev/o/all.bin")) == other


async def test_purging_a_join_shreds_every_run(sealed: Sealed) -> None:
    data = recording(4 * SEGMENT)
    await put(sealed.store, "up/p/a.bin", data[:SEGMENT + 9])
    await put(sealed.store, "up/p/b.bin", data[SEGMENT + 9 :])
    await sealed.store.concatenate("ev/p/all.bin", ["up/p/a.bin", "up/p/b.bin"])
    ciphertext = await raw(sealed, "ev/p/all.bin")
    assert PATTERN not in ciphertext
    # Deleting the parts destroys their own records, not what the join needs.
    for part in ("up/p/a.bin", "up/p/b.bin"):
        await sealed.store.delete(part)
    assert await collect(await sealed.store.read("ev/p/all.bin")) == data
    ring = CatalogKeyRing(sealed.catalog.engine)
    assert (await ring.get("ev/p/all.bin")) is not None
    await sealed.store.delete("ev/p/all.bin")
    assert await ring.get("ev/p/all.bin") is None
    await put(sealed.inner, "ev/p/all.bin", ciphertext)  # a kept copy comes back: unreadable
    with pytest.raises(NotFound):
        await sealed.store.read("ev/p/all.bin")


async def test_a_join_of_joins_and_of_plain_parts(sealed: Sealed) -> None:
    whole, _ = await joined(sealed, "j", [SEGMENT + 1, 5])
    await put(sealed.inner, "up/j/plain.bin", b"stored before encryption was on")
    await sealed.store.concatenate("ev/j/again.bin", ["ev/j/all.bin", "ev/j/all.bin"])
    assert await collect(await sealed.store.read("ev/j/again.bin")) == whole + whole
    # A plain part cannot be adopted: the join is sealed afresh.
    await sealed.store.concatenate("ev/j/mixed.bin", ["ev/j/all.bin", "up/j/plain.bin"])
    mixed = await collect(await sealed.store.read("ev/j/mixed.bin", start=len(whole) - 2))
    assert mixed == whole[-2:] + b"stored before encryption was on"
    with pytest.raises(AlreadyExists):
        await sealed.store.concatenate("ev/j/again.bin", ["ev/j/all.bin"])
    with pytest.raises(NotFound):
        await sealed.store.concatenate("ev/j/none.bin", ["ev/j/all.bin", "up/j/missing.bin"])
    assert await CatalogKeyRing(sealed.catalog.engine).get("ev/j/none.bin") is None


async def test_a_join_stays_readable_after_its_kek_is_rotated_and_rewrapped(
    sealed: Sealed,
) -> None:
    whole, keys = await joined(sealed, "k", [SEGMENT + 7, 2 * SEGMENT])
    for part in keys:
        await sealed.store.delete(part)
    rotated = FileKeks(sealed.kek_dir, write_new(sealed.kek_dir, Suite.INTERNATIONAL))
    # One record (the join's) moves to the new KEK; its runs' keys move with it.
    assert await rewrap_all(sealed.catalog.engine, rotated, actor="test") == 1
    assert await remaining(sealed.catalog.engine) == {rotated.kek_id: 1}
    sealed.store.kek = rotated
    assert await collect(await sealed.store.read("ev/k/all.bin", start=SEGMENT)) == (
        whole[SEGMENT:]
    )


async def test_a_join_of_a_tampered_part_fails_with_tampered_not_a_group(sealed: Sealed) -> None:
    await put(sealed.store, "up/x/a.bin", os.urandom(2 * SEGMENT))
    await put(sealed.store, "up/x/b.bin", os.urandom(2 * SEGMENT))
    blob = await raw(sealed, "up/x/b.bin")
    await replace_raw(sealed.inner, "up/x/b.bin", blob[:-40] + bytes(40))
    with pytest.raises(Tampered):  # the store's own error, which the server maps to a status
        await sealed.store.concatenate(
            "ev/x/all.bin", ["up/x/a.bin", "up/x/b.bin"], digest=MultiDigest(("blake3",))
        )
