"""Parts sent while they arrive: the aws-chunked body with its CRC-32 trailer, the part buffer
shared by the event loop and an uploader thread, and `S3Store` streaming parts into a real
SeaweedFS, including requests that end inside a part and a trailer S3 must refuse."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from avidence.storage import s3body
from avidence.storage.errors import StoreError
from avidence.storage.s3 import S3Store
from avidence.storage.s3body import FRAME, ChunkedBody, PartBody, PartCut
from avidence.storage.s3parts import PartBuffers, PartCutter

from support.seaweed import SeaweedServer
from support.stores import chunks_of, collect

MiB = 1024 * 1024
PART = 5 * MiB


def full_body(data: bytes, buffers: PartBuffers | None = None) -> PartBody:
    body = PartBody(bytearray(len(data)), buffers or PartBuffers(0))
    body.put(memoryview(data))
    return body


def read_all_sync(stream: Any, block: int) -> bytes:
    out = bytearray()
    while piece := stream.read(block):
        out += piece
    return bytes(out)


def test_chunked_body_is_byte_for_byte_what_the_sdk_would_send() -> None:
    data = os.urandom(2 * FRAME + 12345)
    body = ChunkedBody(full_body(data))
    ours = read_all_sync(body, 16 * 1024)  # the HTTP library reads 16 KiB at a time
    sdk = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=Crc32Checksum,
        checksum_name=s3body.TRAILER,
        chunk_size=FRAME,
    )
    assert ours == read_all_sync(sdk, 16 * 1024)
    assert len(body) == len(ours)
    digest = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    assert ours.endswith(b"0\r\nx-amz-checksum-crc32:" + digest + b"\r\n\r\n")
    body.seek(0)  # a retry sends the same bytes again
    assert read_all_sync(body, 1000) == ours


def test_part_body_reads_wait_for_bytes_and_fail_once_cut() -> None:
    body = PartBody(bytearray(10), PartBuffers(0))
    got: list[bytes | BaseException] = []

    def reader() -> None:
        try:
            while piece := body.read(4):
                got.append(bytes(piece))
        except PartCut as exc:
            got.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    body.put(memoryview(b"abcdef"))
    body.cut()
    thread.join(5)
    assert not thread.is_alive()
    assert b"".join(p for p in got if isinstance(p, bytes)) == b"abcdef"
    assert isinstance(got[-1], PartCut) and body.was_cut


def test_part_body_read_gives_up_when_bytes_stop_coming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3body, "STALL", 0.05)
    body = PartBody(bytearray(4), PartBuffers(0))
    body.put(memoryview(b"ab"))
    assert bytes(body.read(4)) == b"ab"
    with pytest.raises(TimeoutError):  # a failure of the upload, not a cut part
        body.read(4)
    assert not body.was_cut


def test_part_buffer_is_reused_only_after_every_holder_let_go() -> None:
    buffers = PartBuffers(keep=PART)
    body = PartBody(buffers.take(PART), buffers)
    body.hold()  # an uploader
    body.release()  # the cutter is done filling
    assert buffers.idle_bytes == 0, "the uploader may still be reading it"
    body.release()
    assert buffers.idle_bytes == PART


def test_cutter_hands_out_parts_the_request_will_fill_as_they_begin() -> None:
    cutter = PartCutter(
        number=1, base=PART, buffers=PartBuffers(0), stream_through=2 * PART + 7, stream_from=2
    )
    first = list(cutter.feed(b"x" * MiB))
    assert first == [], "part 1 is held back (stream_from), so it comes out full"
    rest = list(cutter.feed(b"y" * (PART - MiB + 1)))
    assert [(n, body.full) for n, body in rest] == [(1, True), (2, False)]  # 2 starts at once
    assert list(cutter.feed(b"z" * (PART + 6))) == []  # part 3 cannot be filled: not streamed
    streamed = rest[1][1]
    assert streamed.full and cutter.remainder() == b"z" * 7


# -- into SeaweedFS --------------------------------------------------------------------------


def new_key() -> str:
    return f"ev/{uuid.uuid4().hex}/original.bin"


@pytest.fixture
async def store(s3_env: SeaweedServer, s3_bucket: str) -> AsyncIterator[S3Store]:
    # The fixture's SeaweedFS speaks plain http, where "auto" would sign parts instead.
    opened = S3Store(
        endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_size=PART, part_checksum="trailer"
    )
    await opened.open()
    yield opened
    await opened.close()


def stored_sizes(server: SeaweedServer, bucket: str, key: str, handle: str) -> list[int]:
    out = server.client().list_parts(Bucket=bucket, Key=key, UploadId=handle)
    return [part.get("Size", -1) for part in out.get("Parts", [])]


async def paced(data: bytes, *, chunk: int, pause: float = 0.005) -> AsyncIterator[bytes]:
    """`data` the way a network delivers it: a chunk, then a moment of nothing."""
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]
        await asyncio.sleep(pause)


async def test_parts_go_out_while_they_arrive(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled_at_start: list[tuple[int, int]] = []
    upload_part = store._upload_part

    def watched(target: Any, number: int, body: Any) -> str:
        if isinstance(body, PartBody):
            filled_at_start.append((number, body.filled))
        return upload_part(target, number, body)

    monkeypatch.setattr(store, "_upload_part", watched)
    key, data = new_key(), os.urandom(3 * PART + 99)
    target = await store.create(key)
    offset = await store.append(target, offset=0, chunks=paced(data, chunk=MiB), expect=len(data))
    assert offset == len(data) == await store.offset(target)
    starts = dict(filled_at_start)
    assert set(starts) == {1, 2, 3}, "the last 99 bytes wait in the tail object"
    assert all(filled < PART for filled in starts.values()), starts
    await store.finish(target, size=len(data))
    assert await collect(await store.read(key)) == data


async def test_request_ending_inside_a_streamed_part_keeps_its_bytes(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    key, data = new_key(), os.urandom(3 * PART)
    target = await store.create(key)
    received = PART + 2 * MiB + 5

    async def dropped() -> AsyncIterator[bytes]:
        async for piece in paced(data[:received], chunk=MiB):
            yield piece
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.append(target, offset=0, chunks=dropped(), expect=len(data))
    assert await store.offset(target) == received
    assert stored_sizes(s3_env, s3_bucket, target.key, target.handle) == [PART]
    # A body that ends early without an error (its length was a lie) keeps its bytes too.
    short = await store.append(
        target,
        offset=received,
        chunks=chunks_of(data[received : 2 * PART + 1], MiB),
        expect=PART * 9,
    )
    assert short == 2 * PART + 1 == await store.offset(target)
    await store.append(target, offset=short, chunks=chunks_of(data[short:], MiB), expect=PART)
    await store.finish(target, size=len(data))
    assert await collect(await store.read(key)) == data


async def test_refused_request_with_streamed_parts_counts_nothing(store: S3Store) -> None:
    key, data = new_key(), os.urandom(3 * PART + 1)
    target = await store.create(key)
    refused = await store.append_verified(
        target, offset=0, chunks=paced(data, chunk=MiB), accept=lambda: False, expect=len(data)
    )
    assert refused == 0 and await store.offset(target) == 0
    accepted = await store.append_verified(
        target, offset=0, chunks=chunks_of(data, MiB), accept=lambda: True, expect=len(data)
    )
    assert accepted == len(data)
    await store.finish(target, size=len(data))
    assert await collect(await store.read(key)) == data


class Crash(BaseException):
    """The process dies here: no clean-up code of the store runs (only `finally` blocks)."""


def replica_of(store: S3Store) -> S3Store:
    """Another S3Store on the same bucket: what a restarted process or another replica sees."""
    return S3Store(
        endpoint_url=store._endpoint_url,
        bucket=store._bucket,
        part_size=PART,
        part_checksum="trailer",
    )


async def _parts_landed(
    server: SeaweedServer, bucket: str, key: str, handle: str, count: int
) -> None:
    """Poll S3 (nothing here can signal it) until `count` parts are listed; 20 s at most."""
    async with asyncio.timeout(20):
        for _ in range(400):
            if len(await asyncio.to_thread(stored_sizes, server, bucket, key, handle)) >= count:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} parts landed")


async def test_checksummed_request_streams_its_first_part_yet_counts_nothing_before_accepted(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled_at_start: dict[int, int] = {}
    upload_part = store._upload_part

    def watched(target: Any, number: int, body: Any) -> str:
        if isinstance(body, PartBody):
            filled_at_start[number] = body.filled
        return upload_part(target, number, body)

    monkeypatch.setattr(store, "_upload_part", watched)
    key, data = new_key(), os.urandom(3 * PART + 1)
    target = await store.create(key)
    other = replica_of(store)
    await other.open()
    seen_before_accept: list[int] = []

    async def arriving() -> AsyncIterator[bytes]:
        async for piece in paced(data, chunk=MiB):
            yield piece
        await _parts_landed(s3_env, s3_bucket, target.key, target.handle, 3)
        seen_before_accept.append(await other.offset(target))

    try:
        accepted = await store.append_verified(
            target, offset=0, chunks=arriving(), accept=lambda: True, expect=len(data)
        )
        assert accepted == len(data) == await other.offset(target)
    finally:
        await other.close()
    assert filled_at_start.get(1, PART) < PART, "part 1 was held back until the check"
    assert seen_before_accept == [0], "unverified parts counted before the checksum matched"
    await store.finish(target, size=len(data))
    assert await collect(await store.read(key)) == data


async def test_crash_before_a_checksum_is_verified_leaves_its_parts_out_for_good(
    store: S3Store, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    key, data = new_key(), os.urandom(3 * PART + 1)
    target = await store.create(key)
    first = await store.append(target, offset=0, chunks=chunks_of(data[:11], MiB))
    damaged = bytearray(data[first:])
    damaged[2 * PART] ^= 0xFF  # inside part 3: the request would have been refused

    async def crashing() -> AsyncIterator[bytes]:
        async for piece in paced(bytes(damaged), chunk=MiB):
            yield piece
        await _parts_landed(s3_env, s3_bucket, target.key, target.handle, 3)
        raise Crash()

    with pytest.raises(Crash):
        await store.append_verified(
            target, offset=first, chunks=crashing(), accept=lambda: True, expect=len(damaged)
        )
    restarted = replica_of(store)
    await restarted.open()
    try:
        assert await restarted.offset(target) == first
        # A shorter plain resend that ends inside part 2: the crashed request's parts 2 and 3
        # (scheduled sizes, newer than nothing) must not join the prefix after it.
        short = PART + 7
        assert (
            await restarted.append(target, offset=first, chunks=chunks_of(data[first:short], MiB))
            == short
        )
        assert await restarted.offset(target) == short
        rest = await restarted.append(
            target, offset=short, chunks=chunks_of(data[short : 2 * PART], MiB)
        )
        assert rest == 2 * PART == await restarted.offset(target)
        await restarted.append(target, offset=rest, chunks=chunks_of(data[rest:], MiB))
        await restarted.finish(target, size=len(data))
        assert await collect(await restarted.read(key)) == data
    finally:
        await restarted.close()


async def test_s3_refuses_a_part_whose_trailer_does_not_match(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bytes damaged between this process and S3 look like this to S3: the trailing CRC-32
    # does not match what arrived. (A real server cannot be made to flip bits in transit.)

    class Damaged(s3body.Crc32):
        def digest(self) -> bytes:
            return bytes(b ^ 0xFF for b in super().digest())

    monkeypatch.setattr(s3body, "new_checksum", Damaged)
    key, data = new_key(), os.urandom(2 * PART)
    target = await store.create(key)
    with pytest.raises(StoreError):
        await store.append(target, offset=0, chunks=chunks_of(data, MiB), expect=len(data))
    assert await store.offset(target) == 0
    monkeypatch.undo()
    assert await store.append(target, offset=0, chunks=chunks_of(data, MiB)) == len(data)
    await store.finish(target, size=len(data))
    assert await collect(await store.read(key)) == data


def test_auto_streams_parts_only_where_tls_guards_the_link() -> None:
    assert s3body.streams_parts("auto", None)  # AWS itself
    assert s3body.streams_parts("auto", "HTTPS://s3.example.org:9000")
    assert not s3body.streams_parts("auto", "http://127.0.0.1:8333")
    assert s3body.streams_parts("trailer", "http://127.0.0.1:8333")
    assert not s3body.streams_parts("signed", None)


async def test_signed_parts_are_sent_whole(
    s3_env: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = S3Store(endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_size=PART)  # http
    monkeypatch.setattr(s3body, "ChunkedBody", None)  # any use of it would fail the upload
    await signed.open()
    try:
        key, data = new_key(), os.urandom(2 * PART + 3)
        target = await signed.create(key)
        assert await signed.append(
            target, offset=0, chunks=paced(data, chunk=MiB), expect=len(data)
        ) == len(data)
        await signed.finish(target, size=len(data))
        assert await collect(await signed.read(key)) == data
    finally:
        await signed.close()
    with pytest.raises(ValueError):
        S3Store(endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_checksum="md5")  # type: ignore[arg-type]
