"""The store conformance suite: the contract in `storage/base.py`, run against every backend.

Each test takes the `store` fixture and so runs once per backend ("local", and "s3" against a
real SeaweedFS), and once more for each under `storage.sealed` (envelope encryption keeps the
contract). Tests speak only the contract; backend-specific checks live in their own files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import blake3
import pytest
import pytest_asyncio

from avidence.storage.base import Concatenator, Store, Target
from avidence.storage.errors import (
    AlreadyExists,
    InvalidKey,
    InvalidRange,
    NotFound,
    OffsetMismatch,
)

from support.stores import BACKENDS, SEALED, chunks_of, collect, opened


@pytest_asyncio.fixture(params=BACKENDS + SEALED)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened(request, tmp_path, request.param) as backend:
        yield backend


MiB = 1024 * 1024


def new_key(prefix: str = "ev") -> str:
    return f"{prefix}/{uuid.uuid4().hex}/original.bin"


async def put(store: Store, key: str, data: bytes, *, chunk: int = 256 * 1024) -> None:
    target = await store.create(key)
    assert await store.append(target, offset=0, chunks=chunks_of(data, chunk)) == len(data)
    info = await store.finish(target, size=len(data))
    assert (info.key, info.size) == (key, len(data))


async def read_all(store: Store, key: str, *, start: int = 0, length: int | None = None) -> bytes:
    return await collect(await store.read(key, start=start, length=length))


def test_backends_declare_the_capabilities_used_here(store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store, Concatenator)
    assert store.name in ("local", "s3")


async def test_round_trip_create_append_finish_read(store: Store) -> None:
    key, data = new_key(), os.urandom(300_000)
    target = await store.create(key)
    assert target.key == key
    assert await store.offset(target) == 0
    assert await store.append(target, offset=0, chunks=chunks_of(data, 64 * 1024)) == len(data)
    assert await store.offset(target) == len(data)
    info = await store.finish(target, size=len(data))
    assert (info.key, info.size) == (key, len(data))
    assert (await store.stat(key)).size == len(data)
    assert await read_all(store, key) == data


async def test_appends_in_several_calls_with_odd_chunk_sizes(store: Store) -> None:
    key, data = new_key(), os.urandom(2 * MiB + 4321)
    target = await store.create(key)
    offset = 0
    for end, chunk in ((1, 1), (7_001, 333), (1 * MiB + 3, 65_537), (len(data), 999_983)):
        offset = await store.append(
            target, offset=offset, chunks=chunks_of(data[offset:end], chunk)
        )
        assert offset == end == await store.offset(target)
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_ranged_reads(store: Store) -> None:
    key, data = new_key(), os.urandom(3 * MiB + 17)
    size = len(data)
    await put(store, key, data, chunk=MiB)
    cases: list[tuple[int, int | None, bytes]] = [
        (0, 10, data[:10]),
        (0, None, data),
        (1000, 2 * MiB, data[1000 : 1000 + 2 * MiB]),
        (MiB - 1, 2, data[MiB - 1 : MiB + 1]),
        (size - 10, None, data[-10:]),
        (size - 1, 1, data[-1:]),
        (size - 5, 100, data[-5:]),  # a length past the end stops at the end
        (100, 0, b""),
        (size, None, b""),
        (size, 5, b""),
    ]
    for start, length, expected in cases:
        got = await read_all(store, key, start=start, length=length)
        assert got == expected, (start, length)


@pytest.mark.parametrize(("start", "length"), [(-1, None), (0, -1), (11, None), (11, 0), (1000, 1)])
async def test_read_invalid_range(store: Store, start: int, length: int | None) -> None:
    key = new_key()
    await put(store, key, b"0123456789")
    with pytest.raises(InvalidRange):
        await store.read(key, start=start, length=length)


async def test_read_unknown_key_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.read(new_key())
    with pytest.raises(NotFound):
        await store.stat(new_key())


async def test_zero_byte_object(store: Store) -> None:
    key = new_key()
    target = await store.create(key)
    info = await store.finish(target, size=0)
    assert info.size == 0 == (await store.stat(key)).size
    assert await read_all(store, key) == b""
    assert await read_all(store, key, start=0, length=0) == b""
    with pytest.raises(InvalidRange):
        await store.read(key, start=1)


async def test_object_larger_than_one_part_round_trips_exactly(store: Store) -> None:
    key, data = new_key(), os.urandom(11 * MiB + 123)
    target = await store.create(key)
    first = 6 * MiB + 1
    await store.append(target, offset=0, chunks=chunks_of(data[:first], 100_000))
    await store.append(target, offset=first, chunks=chunks_of(data[first:], MiB + 7))
    await store.finish(target, size=len(data))
    assert (await store.stat(key)).size == len(data)
    digest = blake3.blake3()
    async for chunk in await store.read(key):
        digest.update(chunk)
    assert digest.hexdigest() == blake3.blake3(data).hexdigest()


async def test_append_at_wrong_offset_409_and_nothing_changes(store: Store) -> None:
    key = new_key()
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(b"0123456789", 4))
    for wrong in (0, 5, 11):
        with pytest.raises(OffsetMismatch) as caught:
            await store.append(target, offset=wrong, chunks=chunks_of(b"XXXX", 2))
        assert (caught.value.expected, caught.value.got) == (10, wrong)
        assert await store.offset(target) == 10
    await store.finish(target, size=10)
    assert await read_all(store, key) == b"0123456789"


async def test_finish_with_wrong_size_is_offset_mismatch(store: Store) -> None:
    key = new_key()
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(b"abcdef", 6))
    for wrong in (5, 7):
        with pytest.raises(OffsetMismatch):
            await store.finish(target, size=wrong)
    with pytest.raises(NotFound):
        await store.stat(key)
    assert await store.offset(target) == 6
    await store.finish(target, size=6)
    assert await read_all(store, key) == b"abcdef"


async def test_offset_of_finished_or_unknown_target_not_found(store: Store) -> None:
    key = new_key()
    await put(store, key, b"x")
    with pytest.raises(NotFound):
        await store.offset(Target(key=key))
    with pytest.raises(NotFound):
        await store.offset(Target(key=new_key()))


async def test_abort_leaves_nothing_behind(store: Store) -> None:
    key = new_key()
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(os.urandom(MiB + 5), 300_000))
    await store.abort(target)
    await store.abort(target)  # idempotent
    with pytest.raises(NotFound):
        await store.offset(target)
    with pytest.raises(NotFound):
        await store.stat(key)
    # The key is free again.
    await put(store, key, b"after abort")
    assert await read_all(store, key) == b"after abort"


async def test_create_on_a_finished_key_already_exists(store: Store) -> None:
    key = new_key()
    await put(store, key, b"original")
    with pytest.raises(AlreadyExists):
        await store.create(key)
    assert await read_all(store, key) == b"original"


async def test_second_target_finishing_into_a_taken_key_already_exists(store: Store) -> None:
    key = new_key()
    first = await store.create(key)
    second = await store.create(key)  # the same target again (local) or a second one (s3)
    await store.append(first, offset=0, chunks=chunks_of(b"first wins", 3))
    await store.finish(first, size=10)
    with pytest.raises(AlreadyExists):
        await store.finish(second, size=0)
    assert await read_all(store, key) == b"first wins"


async def test_finish_after_the_key_was_taken_by_concatenation(store: Store) -> None:
    assert isinstance(store, Concatenator)
    key, source = new_key(), new_key("src")
    await put(store, source, b"taken meanwhile")
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(b"late bytes", 4))
    await store.concatenate(key, [source])
    with pytest.raises(AlreadyExists):
        await store.finish(target, size=10)
    assert await read_all(store, key) == b"taken meanwhile"


HOSTILE_KEYS = [
    "../x",
    "/etc/passwd",
    "a/../../b",
    "a\x00b",
    "",
    "a//b",
    ".",
    "C:x",
    "upload.part",
    "a" * 600,
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
async def test_hostile_keys_rejected(store: Store, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.create(key)
    with pytest.raises(InvalidKey):
        await store.read(key)
    with pytest.raises(InvalidKey):
        await store.stat(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)


async def test_concatenate_three_objects(store: Store) -> None:
    assert isinstance(store, Concatenator)
    parts = [os.urandom(5 * MiB + 7), b"eleven byte", os.urandom(300 * 1024)]
    keys = [new_key("part") for _ in parts]
    for key, data in zip(keys, parts, strict=True):
        await put(store, key, data, chunk=MiB)
    final = new_key("final")
    info = await store.concatenate(final, keys)
    whole = b"".join(parts)
    assert (info.key, info.size) == (final, len(whole))
    assert await read_all(store, final) == whole
    for key, data in zip(keys, parts, strict=True):  # sources are untouched
        assert await read_all(store, key) == data
    with pytest.raises(AlreadyExists):
        await store.concatenate(final, keys)


async def test_concatenate_missing_source_not_found(store: Store) -> None:
    assert isinstance(store, Concatenator)
    present = new_key()
    await put(store, present, b"here")
    final = new_key("final")
    with pytest.raises(NotFound):
        await store.concatenate(final, [present, new_key("missing")])
    with pytest.raises(NotFound):
        await store.stat(final)


async def test_delete_then_stat_not_found(store: Store) -> None:
    key = new_key()
    await put(store, key, b"to be purged")
    await store.delete(key)
    with pytest.raises(NotFound):
        await store.stat(key)
    with pytest.raises(NotFound):
        await store.read(key)
    with pytest.raises(NotFound):
        await store.delete(key)


class Dropped(ConnectionResetError):
    """The client vanished mid-request."""


async def dropping(data: bytes, *, chunk: int, after: int) -> AsyncIterator[bytes]:
    """Yield `data` in chunks, then drop the connection once `after` bytes have been sent."""
    sent = 0
    async for piece in chunks_of(data, chunk):
        if sent >= after:
            raise Dropped("connection reset by peer")
        yield piece
        sent += len(piece)


@pytest.mark.parametrize("after", [100_000, 6 * MiB + 5])
async def test_dropped_append_keeps_a_prefix_and_resumes(store: Store, after: int) -> None:
    key, data = new_key(), os.urandom(8 * MiB + 99)
    target = await store.create(key)
    with pytest.raises(ConnectionResetError):
        await store.append(target, offset=0, chunks=dropping(data, chunk=50_000, after=after))
    sent = -(-after // 50_000) * 50_000
    kept = await store.offset(target)
    assert 0 <= kept <= sent
    assert await store.append(target, offset=kept, chunks=chunks_of(data[kept:], MiB)) == len(data)
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data
