"""Envelope encryption at rest (issue 21): what `storage.sealed` keeps in the backend.

Runs over the local folder and S3 (SeaweedFS) through the `sealed` fixture, looking at the
backend beneath with its own contract (`Sealed.inner`): the stored bytes never hold the
plaintext; ranged reads return the right bytes at any offset; an altered, moved, reordered or
cut segment is refused, never served; an upload cut off or killed mid-segment resumes; a
deleted object's data key is gone; a missing KEK is a clear error that loses nothing.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import blake3
import pytest

from avidence.server.keys.datakeys import CatalogKeyRing
from avidence.server.keys.kek import FileKeks, Kek
from avidence.storage import sealed as sealed_module
from avidence.storage.base import (
    Concatenator,
    LocalFiles,
    Presigner,
    Store,
    Target,
    VerifyingAppender,
)
from avidence.storage.errors import KeysUnavailable, NotFound, OffsetMismatch, Tampered
from avidence.storage.local import LocalStore
from avidence.storage.s3 import S3Store
from avidence.storage.sealed import seal
from avidence.storage.sealformat import HEADER, OVERHEAD, SEGMENT, Suite
from avidence.storage.sealkeys import KeyRecord
from avidence.storage.sealread import JOIN_BELOW, YIELD_BLOCK

from support.seaweed import SeaweedServer
from support.stores import Sealed, chunks_of, collect, sealed_over

KiB = 1024
PATTERN = b"FRAME-OF-AN-INTERROGATION-RECORDING;"
STEP = SEGMENT + OVERHEAD


def recording(size: int) -> bytes:
    """Known, searchable plaintext: the pattern repeated, numbered so segments differ."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += PATTERN + str(n).encode() + b"\n"
        n += 1
    return bytes(out[:size])


async def put(store: Store, key: str, data: bytes, chunk: int = 100_000) -> None:
    target = await store.create(key)
    assert await store.append(target, offset=0, chunks=chunks_of(data, chunk)) == len(data)
    await store.finish(target, size=len(data))


async def raw(sealed: Sealed, key: str) -> bytes:
    return await collect(await sealed.inner.read(key))


async def replace_raw(inner: Store, key: str, data: bytes) -> None:
    """Storage-level tampering (what someone with the bucket's keys can do)."""
    await inner.delete(key)
    await put(inner, key, data)


async def everything_stored(sealed: Sealed, tmp_path: Path) -> list[bytes]:
    """Every byte the backend holds: files under the local root, or every object in the
    bucket (tails included)."""
    if isinstance(sealed.inner, LocalStore):
        return [p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()]
    client = sealed.inner._s3  # type: ignore[attr-defined]
    bucket = sealed.inner._bucket  # type: ignore[attr-defined]
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return [client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed]


async def test_stored_bytes_never_hold_the_plaintext(sealed: Sealed, tmp_path: Path) -> None:
    data = recording(400 * KiB + 123)
    target = await sealed.store.create("ev/1/original.bin")
    # Odd sizes, so a tail (the unfilled last segment) is kept aside between appends.
    offset = 0
    for size in (1000, 70_000, 7, 200_000):
        offset = await sealed.store.append(
            target, offset=offset, chunks=chunks_of(data[offset : offset + size], 4096)
        )
    stored = await everything_stored(sealed, tmp_path)
    assert stored and not any(PATTERN in blob for blob in stored)
    offset = await sealed.store.append(target, offset=offset, chunks=chunks_of(data[offset:], 9999))
    await sealed.store.finish(target, size=len(data))
    stored = await everything_stored(sealed, tmp_path)
    assert not any(PATTERN in blob for blob in stored)
    assert await collect(await sealed.store.read("ev/1/original.bin")) == data
    # No tail objects survive the finish.
    assert (await sealed.store.stat("ev/1/original.bin")).size == len(data)
    with pytest.raises(NotFound):
        await sealed.inner.stat("ev/1/original.bin.t6-0")


def test_sealed_stores_never_hand_out_their_files_or_urls(sealed: Sealed) -> None:
    # Media (sendfile) and jobs (in place) read a store's files or presigned URLs directly when
    # it offers them: from a sealed store that would be ciphertext, so it offers neither.
    assert not isinstance(sealed.store, LocalFiles | Presigner)
    assert isinstance(sealed.store, Concatenator | VerifyingAppender)


async def test_range_reads_at_many_offsets(sealed: Sealed) -> None:
    data = os.urandom(5 * SEGMENT + 777)
    await put(sealed.store, "ev/r/a.bin", data)
    rng = random.Random(21)
    edges = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT, len(data) - 1, len(data)]
    cases = [(s, n) for s in edges for n in (0, 1, 2, SEGMENT, None)]
    cases += [(rng.randrange(len(data) + 1), rng.randrange(3 * SEGMENT)) for _ in range(60)]
    for start, length in cases:
        got = await collect(await sealed.store.read("ev/r/a.bin", start=start, length=length))
        end = len(data) if length is None else start + length
        assert got == data[start:end], (start, length)


async def test_empty_and_exact_multiple_objects(sealed: Sealed) -> None:
    for size in (0, SEGMENT, 2 * SEGMENT):
        data = os.urandom(size)
        await put(sealed.store, f"ev/m/{size}.bin", data)
        assert (await sealed.store.stat(f"ev/m/{size}.bin")).size == size
        assert await collect(await sealed.store.read(f"ev/m/{size}.bin")) == data


def _segments(blob: bytes) -> tuple[bytes, list[bytes]]:
    head, body = blob[: HEADER.size], blob[HEADER.size :]
    return head, [body[i : i + STEP] for i in range(0, len(body), STEP)]


def _flip(segment: bytes) -> bytes:
    return segment[:20] + bytes([segment[20] ^ 1]) + segment[21:]


# (header, segments, the other object's segments) -> what someone with the bucket's keys stores
TAMPERINGS = {
    "swapped": lambda h, s, o: h + b"".join([s[1], s[0], *s[2:]]),
    "dropped": lambda h, s, o: h + b"".join([s[0], *s[2:]]),
    "cut_at_boundary": lambda h, s, o: h + b"".join(s[:-1]),
    "cut_mid_segment": lambda h, s, o: h + b"".join(s)[:-100],
    "flipped_bit": lambda h, s, o: h + b"".join([s[0], _flip(s[1]), *s[2:]]),
    "from_another_object": lambda h, s, o: h + b"".join([s[0], o[1], *s[2:]]),
    "final_flag_moved": lambda h, s, o: h + b"".join([*s[:-2], s[-1]]),
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
async def test_tampered_segments_are_refused_not_served(sealed: Sealed, how: str) -> None:
    data, other = os.urandom(4 * SEGMENT + 500), os.urandom(4 * SEGMENT + 500)
    await put(sealed.store, "ev/t/a.bin", data)
    await put(sealed.store, "ev/t/b.bin", other)
    head, segments = _segments(await raw(sealed, "ev/t/a.bin"))
    _, other_segments = _segments(await raw(sealed, "ev/t/b.bin"))
    await replace_raw(sealed.inner, "ev/t/a.bin", TAMPERINGS[how](head, segments, other_segments))
    served = bytearray()
    with pytest.raises(Tampered):
        async for chunk in await sealed.store.read("ev/t/a.bin"):
            served += chunk
    # Only authenticated segments before the damage went out, and they are the right bytes.
    assert data.startswith(bytes(served))
    assert len(served) < len(data)


async def test_a_cut_request_keeps_what_arrived_and_resumes(sealed: Sealed) -> None:
    data = os.urandom(3 * SEGMENT + 4321)
    target = await sealed.store.create("ev/c/a.bin")

    async def cut_after(n: int) -> AsyncIterator[bytes]:
        yield data[:n]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await sealed.store.append(target, offset=0, chunks=cut_after(SEGMENT + 1000))
    offset = await sealed.store.offset(target)
    assert offset == SEGMENT + 1000  # the whole segment and the sealed tail
    with pytest.raises(OffsetMismatch):
        await sealed.store.append(target, offset=0, chunks=chunks_of(data, 1000))
    assert await sealed.store.append(
        target, offset=offset, chunks=chunks_of(data[offset:], 5000)
    ) == len(data)
    await sealed.store.finish(target, size=len(data))
    got = await collect(await sealed.store.read("ev/c/a.bin"))
    assert blake3.blake3(got).digest() == blake3.blake3(data).digest()


async def test_half_a_segment_left_by_a_crash_does_not_count(tmp_path: Path) -> None:
    # Fault injection a real server cannot produce on demand: a process killed while the local
    # folder had half a sealed segment written. Written through the backend's own contract.
    inner = LocalStore(tmp_path / "store")
    async with sealed_over(inner, tmp_path) as sealed:
        data = os.urandom(2 * SEGMENT + 10)
        target = await sealed.store.create("ev/k/a.bin")
        offset = await sealed.store.append(
            target, offset=0, chunks=chunks_of(data[: SEGMENT + 5], 7000)
        )
        inner_target = Target("ev/k/a.bin", "")
        stored = await inner.offset(inner_target)
        await inner.append(
            inner_target, offset=stored, chunks=chunks_of(os.urandom(STEP // 2), 999)
        )
        assert await sealed.store.offset(target) == offset == SEGMENT + 5
        assert await sealed.store.append(
            target, offset=offset, chunks=chunks_of(data[offset:], 3333)
        ) == len(data)
        await sealed.store.finish(target, size=len(data))
        assert await collect(await sealed.store.read("ev/k/a.bin")) == data


async def test_checksum_refusal_keeps_nothing(sealed: Sealed) -> None:
    data = os.urandom(2 * SEGMENT + 99)
    target = await sealed.store.create("ev/v/a.bin")
    offset = await sealed.store.append(target, offset=0, chunks=chunks_of(data[:1000], 100))
    kept = await sealed.store.append_verified(
        target, offset=offset, chunks=chunks_of(data[1000:], 4096), accept=lambda: False
    )
    assert kept == offset == await sealed.store.offset(target) == 1000
    kept = await sealed.store.append_verified(
        target, offset=offset, chunks=chunks_of(data[1000:], 4096), accept=lambda: True
    )
    assert kept == len(data)
    await sealed.store.finish(target, size=len(data))
    assert await collect(await sealed.store.read("ev/v/a.bin")) == data


async def test_delete_destroys_the_data_key(sealed: Sealed) -> None:
    data = recording(3 * SEGMENT)
    await put(sealed.store, "ev/d/a.bin", data)
    ciphertext = await raw(sealed, "ev/d/a.bin")
    ring = CatalogKeyRing(sealed.catalog.engine)
    assert await ring.get("ev/d/a.bin") is not None
    await sealed.store.delete("ev/d/a.bin")
    assert await ring.get("ev/d/a.bin") is None
    with pytest.raises(NotFound):
        await sealed.store.stat("ev/d/a.bin")
    # Someone who kept a copy of the ciphertext (a backup, a locked version) puts it back:
    # without its data key it stays unreadable.
    await put(sealed.inner, "ev/d/a.bin", ciphertext)
    with pytest.raises(NotFound):
        await sealed.store.read("ev/d/a.bin")
    await sealed.store.delete("ev/d/a.bin")


async def test_seeks_read_the_key_record_once_and_a_shred_elsewhere_is_seen(
    sealed: Sealed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished object's wrapped key is kept in memory for `RECORD_TTL`, so a run of seeks
    costs one catalog read; a process that shreds the key (a purge on another replica) is
    seen once that time has passed, even if the ciphertext is put back."""
    data = recording(3 * SEGMENT)
    await put(sealed.store, "ev/c/a.bin", data)
    ciphertext = await raw(sealed, "ev/c/a.bin")
    reads = 0
    ring_get = sealed.store.ring.get

    async def counted(key: str) -> KeyRecord | None:
        nonlocal reads
        reads += 1
        return await ring_get(key)

    monkeypatch.setattr(sealed.store.ring, "get", counted)
    for start in (0, SEGMENT - 1, 2 * SEGMENT + 5, 17):
        got = await collect(await sealed.store.read("ev/c/a.bin", start=start, length=100))
        assert got == data[start : start + 100]
    assert (await sealed.store.stat("ev/c/a.bin")).size == len(data)
    assert reads == 1

    other = seal(sealed.inner, ring=CatalogKeyRing(sealed.catalog.engine), kek=sealed.store.kek)
    await other.delete("ev/c/a.bin")  # another process purges
    await put(sealed.inner, "ev/c/a.bin", ciphertext)  # a kept copy of the ciphertext
    monkeypatch.setattr(sealed_module, "RECORD_TTL", 0.0)
    with pytest.raises(NotFound):
        await sealed.store.read("ev/c/a.bin")
    await sealed.store.delete("ev/c/a.bin")


async def test_long_reads_come_in_blocks_not_segments(sealed: Sealed) -> None:
    """Segments go on in runs opened together or joined into blocks, so a stream is not
    written to the socket 64 KiB at a time: a segment split between two of the store's chunks
    may go on alone, never two small pieces in a row."""
    data = recording(3 * YIELD_BLOCK + 5 * SEGMENT + 7)
    await put(sealed.store, "ev/b/a.bin", data)
    start = SEGMENT // 2
    blocks = [b async for b in await sealed.store.read("ev/b/a.bin", start=start)]
    assert b"".join(blocks) == data[start:]
    sizes = [len(b) for b in blocks]
    assert all(max(a, b) >= JOIN_BELOW for a, b in itertools.pairwise(sizes)), sizes
    assert len(blocks) <= 2 * -(-len(data) // YIELD_BLOCK) + 1, sizes


async def test_missing_kek_is_a_clear_error_and_loses_nothing(sealed: Sealed) -> None:
    data = os.urandom(SEGMENT + 3)
    await put(sealed.store, "ev/k/a.bin", data)
    target = await sealed.store.create("ev/k/b.bin")
    await sealed.store.append(target, offset=0, chunks=chunks_of(data[:100], 50))
    aside = sealed.kek_dir.with_name("keks-aside")
    shutil.move(sealed.kek_dir, aside)
    # A process that never saw the old KEK (a new replica), with the folder gone.
    rotated = Kek("rotated", Suite.INTERNATIONAL, os.urandom(32))
    cold = seal(
        sealed.inner,
        ring=CatalogKeyRing(sealed.catalog.engine),
        kek=FileKeks(sealed.kek_dir, rotated),
    )
    with pytest.raises(KeysUnavailable, match="not in"):
        await cold.read("ev/k/a.bin")
    with pytest.raises(KeysUnavailable):
        await cold.append(target, offset=100, chunks=chunks_of(data[100:], 50))
    shutil.move(aside, sealed.kek_dir)
    assert await collect(await sealed.store.read("ev/k/a.bin")) == data
    assert await sealed.store.offset(target) == 100


async def test_plain_objects_stay_readable_beside_sealed_ones(sealed: Sealed) -> None:
    await put(sealed.inner, "ev/p/plain.bin", b"stored before encryption was on")
    assert await collect(await sealed.store.read("ev/p/plain.bin", start=7)) == (
        b"before encryption was on"
    )
    assert (await sealed.store.stat("ev/p/plain.bin")).size == 31


@pytest.mark.parametrize("suite", [Suite.INTERNATIONAL, Suite.GM])
async def test_both_suites_round_trip(suite: Suite, tmp_path: Path) -> None:
    async with sealed_over(LocalStore(tmp_path / "store"), tmp_path, suite=suite) as sealed:
        data = recording(2 * SEGMENT + 1)
        await put(sealed.store, "ev/s/a.bin", data, chunk=30_000)
        assert (await raw(sealed, "ev/s/a.bin"))[8] == int(suite)
        assert (
            await collect(await sealed.store.read("ev/s/a.bin", start=SEGMENT - 3))
            == (data[SEGMENT - 3 :])
        )


async def test_s3_appends_go_in_all_or_nothing_batches(
    tmp_path: Path, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    # Batches of three segments: one request becomes several appends into the multipart
    # upload, each whole or not at all, and a cut request keeps every batch that landed.
    inner = S3Store(endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_size=5 * 1024 * KiB)
    async with sealed_over(inner, tmp_path, batch=3 * STEP) as sealed:
        data = recording(9 * SEGMENT + 4000)
        target = await sealed.store.create("ev/b/a.bin")

        async def cut_after(n: int) -> AsyncIterator[bytes]:
            for i in range(0, n, 10_000):
                yield data[i : min(i + 10_000, n)]
            raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            await sealed.store.append(target, offset=0, chunks=cut_after(7 * SEGMENT + 9))
        offset = await sealed.store.offset(target)
        assert offset == 7 * SEGMENT + 9
        await sealed.store.append(
            target,
            offset=offset,
            chunks=chunks_of(data[offset:], 70_000),
            expect=len(data) - offset,
        )
        await sealed.store.finish(target, size=len(data))
        assert await collect(await sealed.store.read("ev/b/a.bin")) == data
        assert PATTERN not in await raw(sealed, "ev/b/a.bin")
