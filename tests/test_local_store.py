"""What only the local folder backend promises: no way out of the root, read-only objects,
durable staging files that another process resumes, full disks reported as `StoreFull`."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avidence.storage import writeback
from avidence.storage.digests import MultiDigest
from avidence.storage.errors import (
    AlreadyExists,
    InvalidKey,
    NotFound,
    StoreFull,
    StoreUnavailable,
)
from avidence.storage.local import BATCH, LocalStore

from support.stores import chunks_of, collect

MiB = 1024 * 1024


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalStore]:
    store = LocalStore(tmp_path / "store")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the store root holding a secret a link might lead to."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret").write_bytes(b"do not serve me")
    return folder


async def put(store: LocalStore, key: str, data: bytes) -> None:
    target = await store.create(key)
    await store.append(target, offset=0, chunks=chunks_of(data, MiB))
    await store.finish(target, size=len(data))


async def test_open_creates_the_layout(local: LocalStore) -> None:
    assert {p.name for p in local.root.iterdir()} == {"objects", "staging", "tmp"}


async def test_open_unusable_root_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a folder")
    with pytest.raises(StoreUnavailable):
        await LocalStore(tmp_path / "file" / "store").open()


async def test_unopened_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        await LocalStore(tmp_path / "store").stat("a")


async def test_folder_link_inside_root_is_never_followed(local: LocalStore, outside: Path) -> None:
    (local.root / "objects" / "evil").symlink_to(outside, target_is_directory=True)
    for call in (local.stat, local.read, local.delete):
        with pytest.raises((InvalidKey, NotFound)):
            await call("evil/secret")
    with pytest.raises(InvalidKey):
        await local.create("evil/new")
    (local.root / "staging" / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        await local.create("evil/new")
    assert os.listdir(outside) == ["secret"]


async def test_leaf_link_inside_root_is_never_followed(local: LocalStore, outside: Path) -> None:
    (local.root / "objects" / "leak").symlink_to(outside / "secret")
    for call in (local.stat, local.read, local.delete):
        with pytest.raises((InvalidKey, NotFound)):
            await call("leak")
    with pytest.raises(InvalidKey):
        await local.create("leak")
    (local.root / "staging" / "hijack.part").symlink_to(outside / "secret")
    with pytest.raises(InvalidKey):
        await local.create("hijack")
    assert (outside / "secret").read_bytes() == b"do not serve me"


async def test_finished_objects_are_read_only(local: LocalStore) -> None:
    await put(local, "case/1/a.bin", b"evidence")
    mode = (local.root / "objects" / "case" / "1" / "a.bin").stat().st_mode
    assert stat.S_IMODE(mode) == 0o444


async def test_abort_leaves_no_files_in_staging(local: LocalStore) -> None:
    target = await local.create("case/2/a.bin")
    await local.append(target, offset=0, chunks=chunks_of(b"x" * 1000, 100))
    await local.abort(target)
    assert [p for p in (local.root / "staging").rglob("*") if not p.is_dir()] == []


async def test_finish_leaves_no_staging_file(local: LocalStore) -> None:
    await put(local, "case/3/a.bin", b"data")
    assert [p for p in (local.root / "staging").rglob("*") if not p.is_dir()] == []
    assert list((local.root / "tmp").iterdir()) == []


async def test_object_in_the_way_of_a_deeper_key_already_exists(local: LocalStore) -> None:
    await put(local, "case/4", b"a file, not a folder")
    with pytest.raises(AlreadyExists):
        await local.create("case/4/deeper")
    with pytest.raises(NotFound):
        await local.stat("case/4/deeper")


async def test_new_store_on_the_same_root_resumes_a_staging_file(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 11)
    first = LocalStore(tmp_path / "store")
    await first.open()
    target = await first.create("case/5/a.bin")
    await first.append(target, offset=0, chunks=chunks_of(data[:1234567], 100_000))
    await first.close()

    second = LocalStore(tmp_path / "store")
    await second.open()
    try:
        again = await second.create("case/5/a.bin")  # idempotent: the bytes are kept
        assert again == target
        assert await second.offset(target) == 1234567
        rest = chunks_of(data[1234567:], 77_777)
        assert await second.append(target, offset=1234567, chunks=rest) == len(data)
        await second.finish(target, size=len(data))
        assert await collect(await second.read("case/5/a.bin")) == data
    finally:
        await second.close()


async def test_small_chunks_are_written_in_batches(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_pwrite = os.pwrite

    def recording_pwrite(fd: int, data: bytes, offset: int, /) -> int:
        sizes.append(len(data))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", recording_pwrite)
    target = await local.create("case/6/a.bin")
    await local.append(target, offset=0, chunks=chunks_of(os.urandom(3 * MiB + 5), 1000))
    assert sizes[-1] < BATCH
    assert all(size >= BATCH for size in sizes[:-1])
    assert len(sizes) <= 4


async def test_disk_full_is_store_full_and_cut_back_to_the_durable_offset(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the second batch of the append fails as a full disk would.
    data = os.urandom(3 * MiB)
    target = await local.create("case/7/a.bin")
    await local.append(target, offset=0, chunks=chunks_of(data[:1000], 1000))
    real_pwrite = os.pwrite
    calls = 0

    def full_pwrite(fd: int, buf: bytes, offset: int, /) -> int:
        nonlocal calls
        calls += 1
        if calls >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, buf, offset)

    monkeypatch.setattr(os, "pwrite", full_pwrite)
    with pytest.raises(StoreFull):
        await local.append(target, offset=1000, chunks=chunks_of(data[1000:], MiB))
    monkeypatch.undo()

    assert await local.offset(target) == 1000  # no half-written batch survives
    assert await local.append(target, offset=1000, chunks=chunks_of(data[1000:], MiB)) == len(data)
    await local.finish(target, size=len(data))
    assert await collect(await local.read("case/7/a.bin")) == data


async def test_cancelled_append_keeps_what_arrived(local: LocalStore) -> None:
    data = os.urandom(2 * MiB + 3)
    arrived = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for piece in chunks_of(data, 100_000):
            yield piece
        arrived.set()
        await asyncio.Event().wait()  # the client stops sending; the server gives up

    target = await local.create("case/8/a.bin")
    task = asyncio.create_task(local.append(target, offset=0, chunks=stalls()))
    await arrived.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await local.offset(target) == len(data)


async def test_failed_concatenation_leaves_no_temp_file(local: LocalStore) -> None:
    await put(local, "case/9/a.bin", b"present")
    with pytest.raises(NotFound):
        await local.concatenate("case/9/all.bin", ["case/9/a.bin", "case/9/missing.bin"])
    assert os.listdir(local.root / "tmp") == []


async def test_truncate_takes_unverified_bytes_back(local: LocalStore) -> None:
    from avidence.storage.base import Truncator
    from avidence.storage.errors import OffsetMismatch

    assert isinstance(local, Truncator)
    target = await local.create("cut/back")
    await local.append(target, offset=0, chunks=chunks_of(b"0123456789", 4))
    await local.truncate(target, offset=4)
    assert await local.offset(target) == 4
    with pytest.raises(OffsetMismatch):
        await local.truncate(target, offset=5)


async def test_long_appends_queue_their_write_out_ahead_of_the_fsync(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Records the write-out hints instead of giving them, to check which ranges are queued.
    queued: list[tuple[int, int]] = []
    monkeypatch.setattr(writeback, "_queue", lambda _fd, at, length: queued.append((at, length)))
    data = os.urandom(3 * writeback.STEP + 5)
    target = await local.create("case/9/a.bin")
    await local.append(target, offset=0, chunks=chunks_of(data, MiB))
    # Every STEP bytes written since the last hint are queued once, in order, never past the end.
    assert [length for _, length in queued] == [writeback.STEP] * 3
    assert [start for start, _ in queued] == [0, writeback.STEP, 2 * writeback.STEP]
    await local.finish(target, size=len(data))
    assert await collect(await local.read("case/9/a.bin")) == data


def test_write_out_hints_work_on_this_system(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("sync_file_range is Linux's")
    assert writeback._queue is not None
    path = tmp_path / "f"
    path.write_bytes(b"x" * writeback.STEP)
    fd = os.open(path, os.O_RDWR)
    try:
        behind = writeback.WriteBehind(fd, 0)
        behind.written(writeback.STEP)  # a real call: must neither raise nor block for long
        assert behind.queued == writeback.STEP
    finally:
        os.close(fd)


@pytest.mark.parametrize("kernel_copy", [True, False])
async def test_concatenation_joins_the_bytes_and_hashes_what_it_wrote(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    if not kernel_copy:
        # Fault injection: the kernel refuses to copy between these files (as across
        # filesystems), so the join falls back to copying through a buffer.
        def refuse(*_args: object) -> int:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    pieces = [os.urandom(n) for n in (3 * MiB + 7, 1, 0, 2 * writeback.STEP + 11)]
    for index, piece in enumerate(pieces):
        await put(local, f"case/10/{index}", piece)
    digest = MultiDigest()
    info = await local.concatenate(
        "case/10/all", [f"case/10/{i}" for i in range(len(pieces))], digest=digest
    )
    joined = b"".join(pieces)
    assert info.size == len(joined)
    assert await collect(await local.read("case/10/all")) == joined
    expected = MultiDigest()
    expected.update(joined)
    assert digest.hexdigests() == expected.hexdigests()
    assert digest.length == len(joined)
