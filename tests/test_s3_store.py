"""S3-specific behaviour of `S3Store` against a real SeaweedFS: part layout, resume, crash
safety of the tail object, server-side concatenation, failure at open, an outage mid-upload and
Object Lock. The backend-neutral contract lives in test_store_contract.py."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError

from avidence.storage import s3 as s3_module
from avidence.storage.base import Target
from avidence.storage.errors import AlreadyExists, ObjectLocked, StoreUnavailable
from avidence.storage.s3 import S3Store
from avidence.storage.s3parts import ByteBudget, PartBuffers, PartCutter, part_size

from support.seaweed import SeaweedServer, free_ports
from support.stores import chunks_of, collect

MiB = 1024 * 1024
PART = 5 * MiB


def new_key() -> str:
    return f"ev/{uuid.uuid4().hex}/original.bin"


def make_store(server: SeaweedServer, bucket: str, **options: Any) -> S3Store:
    return S3Store(endpoint_url=server.endpoint, bucket=bucket, part_size=PART, **options)


@pytest_asyncio.fixture
async def store(s3_env: SeaweedServer, s3_bucket: str) -> AsyncIterator[S3Store]:
    opened = make_store(s3_env, s3_bucket)
    await opened.open()
    yield opened
    await opened.close()


async def read_all(store: S3Store, key: str, *, start: int = 0, length: int | None = None) -> bytes:
    return await collect(await store.read(key, start=start, length=length))


def stored_parts(server: SeaweedServer, bucket: str, target: Target) -> list[int]:
    out = server.client().list_parts(Bucket=bucket, Key=target.key, UploadId=target.handle)
    return [part.get("Size", -1) for part in out.get("Parts", [])]


async def broken_stream(data: bytes, *, chunk: int) -> AsyncIterator[bytes]:
    """`data` in chunks, then the connection drops."""
    async for piece in chunks_of(data, chunk):
        yield piece
    raise ConnectionResetError("client went away")


def test_part_schedule_reaches_s3s_object_limit_with_default_base() -> None:
    sizes = [part_size(n, 16 * MiB) for n in range(1, 10_001)]
    assert sizes[0] == sizes[999] == 16 * MiB and sizes[1000] == 32 * MiB
    assert max(sizes) == 5 * 1024 * MiB  # S3's largest part
    assert sum(sizes) >= 5 * 1024**4


def test_cutter_yields_scheduled_parts_and_keeps_the_rest() -> None:
    cutter = PartCutter(number=1, base=PART, buffers=PartBuffers(0))
    data = os.urandom(2 * PART + 3)
    parts = [part for chunk in (data[:7], data[7:]) for part in cutter.feed(chunk)]
    assert [(n, len(body)) for n, body in parts] == [(1, PART), (2, PART)]
    assert b"".join(body.buffer for _, body in parts) + cutter.remainder() == data
    assert cutter.cut_bytes == 2 * PART


def test_part_buffers_are_reused_up_to_the_idle_bound() -> None:
    buffers = PartBuffers(keep=2 * PART)
    cutter = PartCutter(number=1, base=PART, buffers=buffers)
    first = os.urandom(PART)
    [(_, body)] = list(cutter.feed(first))
    assert body.buffer == first
    body.release()  # S3 has it: the next part is cut into the same memory
    second = os.urandom(PART + 5)
    [(number, again)] = list(cutter.feed(second))
    assert number == 2 and again.buffer is body.buffer and again.buffer == second[:PART]
    assert cutter.remainder() == second[PART:]  # the unfinished part's buffer went back too
    assert buffers.idle_bytes == PART
    for spare in (bytearray(PART), bytearray(PART), again.buffer):
        buffers.give(spare)
    assert buffers.idle_bytes == 2 * PART  # the third is left to the garbage collector
    assert buffers.take(7) == bytearray(7)  # an unseen size is fresh, zeroed memory


async def test_byte_budget_holds_back_until_bytes_are_released() -> None:
    budget = ByteBudget(10)
    first = await budget.acquire(6)
    waiting = asyncio.create_task(budget.acquire(6))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await asyncio.to_thread(first.release)  # worker threads give bytes back
    second = await asyncio.wait_for(waiting, 1)
    assert budget.free == 4
    cancelled = asyncio.create_task(budget.acquire(8))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    second.release()
    second.release()  # idempotent
    assert budget.free == 10
    assert (await budget.acquire(50)) is not None  # larger than the budget: takes all of it
    assert budget.free == 0


async def test_odd_sized_appends_become_5mib_parts_and_read_back(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    data = os.urandom(12 * MiB + 12_345)
    cuts = [0, MiB + 7, 4 * MiB + 8, 8 * MiB + 9, 10 * MiB + 3, len(data)]
    key = new_key()
    target = await store.create(key)
    for start, end in itertools.pairwise(cuts):
        got = await store.append(target, offset=start, chunks=chunks_of(data[start:end], 300_001))
        assert got == end == await store.offset(target)
    assert stored_parts(s3_env, s3_bucket, target) == [PART, PART]  # the rest waits in the tail
    info = await store.finish(target, size=len(data))
    assert info.size == len(data)
    assert await read_all(store, key) == data
    assert (
        await read_all(store, key, start=PART - 10, length=MiB) == data[PART - 10 : PART - 10 + MiB]
    )
    chunks = [len(c) async for c in await store.read(key)]
    assert max(chunks) <= MiB
    with pytest.raises(ClientError, match=r"404"):  # the tail is gone
        s3_env.client().head_object(Bucket=s3_bucket, Key=key + ".part")


async def test_offset_survives_new_store_instance(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    data = os.urandom(2 * PART + 777)
    key = new_key()
    target = await store.create(key)
    first = PART + 4321  # one part plus a tail
    await store.append(target, offset=0, chunks=chunks_of(data[:first], MiB))
    await store.close()

    again = make_store(s3_env, s3_bucket)
    await again.open()
    try:
        assert await again.offset(target) == first
        await again.append(target, offset=first, chunks=chunks_of(data[first:], MiB))
        await again.finish(target, size=len(data))
        assert await read_all(again, key) == data
    finally:
        await again.close()


async def test_interrupted_append_keeps_what_it_received(store: S3Store) -> None:
    data = os.urandom(3 * PART)
    key = new_key()
    target = await store.create(key)
    received = PART + 2 * MiB + 5  # a full part and a tail's worth before the drop
    with pytest.raises(ConnectionResetError):
        await store.append(target, offset=0, chunks=broken_stream(data[:received], chunk=MiB))
    assert await store.offset(target) == received
    await store.append(target, offset=received, chunks=chunks_of(data[received:], MiB))
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_tail_not_at_end_of_parts_is_ignored(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    # The instant after an append stored its parts and before it replaced the tail.
    data = os.urandom(PART + 1000)
    key = new_key()
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(data, MiB))
    s3_env.client().put_object(
        Bucket=s3_bucket,
        Key=key + ".part",
        Body=b"old tail bytes",
        Metadata={"avidence-start": "0", "avidence-upload": target.handle},
    )
    assert await store.offset(target) == PART
    await store.append(target, offset=PART, chunks=chunks_of(data[PART:], MiB))
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_part_stored_beyond_a_gap_counts_once_the_gap_is_filled(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    # An append failed with part 3 stored but part 2 lost: part 3 holds the bytes of its offsets.
    key, data = new_key(), os.urandom(3 * PART + 10)
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(data[:PART], MiB))
    s3_env.client().upload_part(
        Bucket=s3_bucket,
        Key=key,
        UploadId=target.handle,
        PartNumber=3,
        Body=data[2 * PART : 3 * PART],
    )
    assert await store.offset(target) == PART
    part_two = data[PART : 2 * PART]
    assert await store.append(target, offset=PART, chunks=chunks_of(part_two, MiB)) == 3 * PART
    assert await store.offset(target) == 3 * PART
    await store.append(target, offset=3 * PART, chunks=chunks_of(data[3 * PART :], MiB))
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_part_uploaded_twice_counts_once(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    # A retried UploadPart: SeaweedFS then lists both copies of the part number.
    key, data = new_key(), os.urandom(PART + 10)
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(data, MiB))
    s3_env.client().upload_part(
        Bucket=s3_bucket, Key=key, UploadId=target.handle, PartNumber=1, Body=data[:PART]
    )
    assert await store.offset(target) == len(data)
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_list_parts_is_paged(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "_LIST_PAGE", 1)
    data = os.urandom(3 * PART + 10)
    key = new_key()
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(data, MiB))
    assert await store.offset(target) == len(data)
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_empty_upload_finishes_as_empty_object(store: S3Store) -> None:
    key = new_key()
    target = await store.create(key)
    info = await store.finish(target, size=0)
    assert info.size == 0
    assert await read_all(store, key) == b""
    with pytest.raises(AlreadyExists):
        await store.create(key)


async def test_second_target_cannot_overwrite_finished_object(store: S3Store) -> None:
    key = new_key()
    first, second = await store.create(key), await store.create(key)
    await store.append(first, offset=0, chunks=chunks_of(b"first", 5))
    await store.finish(first, size=5)
    await store.append(second, offset=0, chunks=chunks_of(b"second", 6))
    with pytest.raises(AlreadyExists):
        await store.finish(second, size=6)
    assert await read_all(store, key) == b"first"
    await store.abort(second)


def counting_session(s3_env: SeaweedServer, counts: dict[str, int]) -> boto3.session.Session:
    session = boto3.session.Session()

    def count(event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        counts[operation] = counts.get(operation, 0) + 1

    session.events.register("before-call.s3", count)
    return session


async def test_concatenate_copies_large_sources_inside_s3(
    s3_env: SeaweedServer, s3_bucket: str
) -> None:
    counts: dict[str, int] = {}
    store = make_store(s3_env, s3_bucket, session=counting_session(s3_env, counts))
    await store.open()
    try:
        pieces = [os.urandom(PART + 1), os.urandom(PART + 2), os.urandom(100)]
        keys = [new_key() for _ in pieces]
        for key, piece in zip(keys, pieces, strict=True):
            target = await store.create(key)
            await store.append(target, offset=0, chunks=chunks_of(piece, MiB))
            await store.finish(target, size=len(piece))
        counts.clear()
        whole = new_key()
        info = await store.concatenate(whole, keys)
        assert info.size == sum(map(len, pieces))
        assert counts.get("UploadPartCopy") == 3
        assert "GetObject" not in counts
        assert await read_all(store, whole) == b"".join(pieces)
        with pytest.raises(AlreadyExists):
            await store.concatenate(whole, keys)
    finally:
        await store.close()


async def test_concatenate_streams_small_sources(s3_env: SeaweedServer, s3_bucket: str) -> None:
    counts: dict[str, int] = {}
    store = make_store(s3_env, s3_bucket, session=counting_session(s3_env, counts))
    await store.open()
    try:
        pieces = [os.urandom(1000), os.urandom(PART + 5), b"", os.urandom(3)]
        keys = [new_key() for _ in pieces]
        for key, piece in zip(keys, pieces, strict=True):
            target = await store.create(key)
            await store.append(target, offset=0, chunks=chunks_of(piece or b"", MiB))
            await store.finish(target, size=len(piece))
        counts.clear()
        whole = new_key()
        assert (await store.concatenate(whole, keys)).size == sum(map(len, pieces))
        assert "UploadPartCopy" not in counts
        assert await read_all(store, whole) == b"".join(pieces)
    finally:
        await store.close()


async def test_open_fails_when_credentials_are_rejected(
    s3_env: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = make_store(s3_env, s3_bucket)
    with pytest.raises(StoreUnavailable, match="credentials rejected"):
        await store.open()


async def test_open_fails_quickly_when_endpoint_is_unreachable(
    s3_env: SeaweedServer, s3_bucket: str
) -> None:
    (port,) = free_ports(1)
    store = S3Store(endpoint_url=f"http://127.0.0.1:{port}", bucket=s3_bucket, part_size=PART)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await store.open()
    assert time.monotonic() - started < 10


async def test_open_fails_for_missing_bucket_when_not_allowed_to_create(
    s3_env: SeaweedServer, s3_bucket: str
) -> None:
    store = make_store(s3_env, s3_bucket, create_bucket=False)
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await store.open()


async def test_outage_mid_append_fails_fast_and_upload_resumes(
    seaweed_private: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = seaweed_private
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = make_store(server, "outage")
    await store.open()
    try:
        data = os.urandom(3 * PART + 99)
        key = new_key()
        target = await store.create(key)
        await store.append(target, offset=0, chunks=chunks_of(data[:PART], MiB))

        async def stream_then_outage() -> AsyncIterator[bytes]:
            yield data[PART : PART + MiB]
            await asyncio.to_thread(server.stop)
            async for piece in chunks_of(data[PART + MiB :], MiB):
                yield piece

        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.append(target, offset=PART, chunks=stream_then_outage())
        assert time.monotonic() - started < 30
        with pytest.raises(StoreUnavailable):
            await store.offset(target)

        await asyncio.to_thread(server.start)
        resume = await store.offset(target)
        assert resume == PART  # nothing after the last durable part survived the outage
        await store.append(target, offset=resume, chunks=chunks_of(data[resume:], MiB))
        await store.finish(target, size=len(data))
        assert await read_all(store, key) == data
    finally:
        await store.close()


async def test_object_lock_bucket_protects_retained_and_held_objects(
    s3_env: SeaweedServer,
) -> None:
    bucket = f"lock-{uuid.uuid4().hex[:8]}"
    s3_env.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = make_store(s3_env, bucket, create_bucket=False)
    await store.open()
    try:
        assert (await store.lock_support()).object_lock is True
        retained, held = new_key(), new_key()
        for key in (retained, held):
            target = await store.create(key)
            await store.append(target, offset=0, chunks=chunks_of(b"evidence", 8))
            await store.finish(target, size=8)

        until = datetime.now(UTC) + timedelta(days=2)
        await store.set_retention(retained, until=until, mode="GOVERNANCE")
        await store.set_retention(retained, until=until - timedelta(days=1), mode="GOVERNANCE")
        kept = s3_env.client().get_object_retention(Bucket=bucket, Key=retained)["Retention"]
        assert kept.get("RetainUntilDate", until) >= until - timedelta(seconds=1)
        with pytest.raises(ObjectLocked):
            await store.delete(retained)

        await store.set_legal_hold(held, on=True)
        with pytest.raises(ObjectLocked):
            await store.delete(held)
        await store.set_legal_hold(held, on=False)
        await store.delete(held)
        assert await read_all(store, retained) == b"evidence"
    finally:
        await store.close()


async def test_plain_bucket_reports_no_object_lock(store: S3Store) -> None:
    assert (await store.lock_support()).object_lock is False


async def test_presigned_get_serves_object_without_credentials(store: S3Store) -> None:
    key = new_key()
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(b"signed bytes", 4))
    await store.finish(target, size=12)
    url = await store.presign_get(key, expires_in=60)
    assert url.startswith("http://127.0.0.1:")

    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
            return body

    assert await asyncio.to_thread(fetch) == b"signed bytes"


async def test_verified_append_streams_parts_and_commits_when_accepted(store: S3Store) -> None:
    key, data = new_key(), os.urandom(3 * PART + 123)
    target = await store.create(key)
    offset = await store.append_verified(
        target, offset=0, chunks=chunks_of(data, MiB), accept=lambda: True
    )
    assert offset == len(data) and await store.offset(target) == len(data)
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_refused_append_counts_nothing_even_when_a_shorter_retry_ends_before_its_parts(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    # The refused request stored parts 3 and 4 with corrupt bytes. A retry that stops right after
    # part 2 would let them join the prefix if they were not voided.
    key, data = new_key(), os.urandom(4 * PART + 77)
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(data[: PART + 11], MiB))
    corrupt = bytearray(data[PART + 11 :])
    corrupt[3 * PART] ^= 0xFF
    refused = await store.append_verified(
        target, offset=PART + 11, chunks=chunks_of(bytes(corrupt), MiB), accept=lambda: False
    )
    assert refused == PART + 11 and await store.offset(target) == PART + 11
    assert len(stored_parts(s3_env, s3_bucket, target)) >= 3  # parts 3 and 4 are there, voided
    # A shorter verified retry: exactly parts 2 (with the old tail's 11 bytes) and 3.
    short = data[PART + 11 : 3 * PART]
    assert (
        await store.append_verified(
            target, offset=PART + 11, chunks=chunks_of(short, MiB), accept=lambda: True
        )
        == 3 * PART
    )
    assert await store.offset(target) == 3 * PART, "the voided part 4 stays out"
    await store.append(target, offset=3 * PART, chunks=chunks_of(data[3 * PART :], MiB))
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_refused_then_resent_identical_parts_count_again(store: S3Store) -> None:
    # Only part 1 was damaged: the resent parts 2 and 3 carry the very same bytes (same ETag).
    key, data = new_key(), os.urandom(3 * PART)
    target = await store.create(key)
    damaged = bytearray(data)
    damaged[5] ^= 0xFF
    assert (
        await store.append_verified(
            target, offset=0, chunks=chunks_of(bytes(damaged), MiB), accept=lambda: False
        )
        == 0
    )
    assert await store.offset(target) == 0
    assert await store.append_verified(
        target, offset=0, chunks=chunks_of(data, MiB), accept=lambda: True
    ) == len(data)
    fresh = make_store_like(store)
    await fresh.open()
    try:
        assert await fresh.offset(target) == len(data)  # read from S3, not from memory
    finally:
        await fresh.close()
    await store.finish(target, size=len(data))
    assert await read_all(store, key) == data


async def test_verified_append_broken_midway_keeps_nothing(store: S3Store) -> None:
    key, data = new_key(), os.urandom(3 * PART)
    target = await store.create(key)
    with pytest.raises(ConnectionResetError):
        await store.append_verified(
            target, offset=0, chunks=broken_stream(data, chunk=MiB), accept=lambda: True
        )
    assert await store.offset(target) == 0


def make_store_like(store: S3Store) -> S3Store:
    """A second store instance on the same bucket, as another replica has."""
    return S3Store(endpoint_url=store._endpoint_url, bucket=store._bucket, part_size=PART)
