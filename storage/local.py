"""The embedded default backend: a folder on a local POSIX filesystem.

Layout under `root`:

* `objects/<key>`: finished objects, read-only (0o444), published with `link(2)`, which fails
  on an existing name where `rename(2)` would replace it: a key is taken whole or not at all and
  an object is never overwritten;
* `staging/<key>.part`: upload targets. The handle is empty because the key names the file, so
  any process on the same root resumes a target from its key alone. `create` on a key that is
  already staging keeps the bytes and returns the same target (a retried create resumes);
* `tmp/`: concatenations being assembled, published like targets.

Paths are walked one component at a time from directory descriptors opened with `O_NOFOLLOW`,
so a symbolic link planted anywhere under the root is refused (`InvalidKey`), never followed out
of it. All file I/O runs in worker threads in batches of at least `BATCH` bytes; memory is
bounded by one batch. A key cannot be both an object and a folder of other objects here: where
one key is a folder prefix of another, the later one gets `AlreadyExists`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat as st
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from .base import ObjectInfo, Target
from .digests import MultiDigest
from .errors import (
    AlreadyExists,
    InvalidKey,
    InvalidRange,
    NotFound,
    OffsetMismatch,
    StoreUnavailable,
)
from .keys import check_key
from .localjoin import SourceShrank, append_file, hash_file
from .localwrite import BATCH, Appender, os_error
from .staging import is_staged_copy
from .writeback import WriteBehind

# A temp file this old belongs to a concatenation that died with its process.
STALE_TMP_SECONDS = 24 * 3600
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_CLOEXEC
_T = TypeVar("_T")


class _Blocked(NotFound):
    """A finished object sits where `key` needs a folder: nothing is there to read, and the
    key can never be finished."""


def _open_in(dir_fd: int, name: str, flags: int, *, key: str) -> int:
    """Open a file in a walked folder; a link there is `InvalidKey`, a missing file `NotFound`."""
    try:
        return os.open(name, flags | _FILE, 0o600, dir_fd=dir_fd)
    except FileNotFoundError:
        raise NotFound(f"nothing stored under {key!r}", key=key) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidKey(f"{key!r} is a symbolic link in the store", key=key) from None
        raise


def _info(key: str, info: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key=key, size=info.st_size, modified=datetime.fromtimestamp(info.st_mtime, UTC)
    )


class LocalStore:
    """`Store` and `Concatenator` on a local folder; see the module docstring for the layout."""

    name = "local"

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        # fsync=False only for throwaway roots: durability then rests on the page cache.
        self._fsync = fsync
        self._areas: dict[str, int] = {}

    async def _run(self, fn: Callable[..., _T], *args: object, key: str | None) -> _T:
        """Run blocking file work in a thread; only `storage.errors` exceptions come out."""
        if not self._areas:
            raise StoreUnavailable("local store is not open", key=key)
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise os_error(exc, key) from exc

    def _sync(self, fd: int) -> None:
        if self._fsync:
            os.fsync(fd)

    def _walk(self, area: str, key: str, *, create: bool) -> tuple[int, str]:
        """Open the folder holding `key`'s last segment inside `area`, never following a link.

        Returns (folder descriptor, last segment); the caller closes the descriptor. Missing
        folders are made when `create`, else `NotFound`."""
        *folders, leaf = key.split("/")
        fd = os.open(".", _DIR, dir_fd=self._areas[area])
        try:
            for name in folders:
                try:
                    nxt = os.open(name, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise NotFound(f"nothing stored under {key!r}", key=key) from None
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                        self._sync(fd)
                    except FileExistsError:
                        pass  # made meanwhile by a concurrent create
                    nxt = os.open(name, _DIR, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    if st.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise InvalidKey(
                            f"{key!r} passes through a symbolic link", key=key
                        ) from None
                    if create:
                        raise AlreadyExists(
                            f"an object is in the way of {key!r}", key=key
                        ) from None
                    raise _Blocked(f"an object is in the way of {key!r}", key=key) from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd, leaf

    def _object_stat(self, key: str) -> os.stat_result | None:
        """The finished object's stat, None when absent; a link is `InvalidKey`."""
        try:
            fd, leaf = self._walk("objects", key, create=False)
        except _Blocked:
            raise
        except NotFound:
            return None
        try:
            info = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)
        if st.S_ISLNK(info.st_mode):
            raise InvalidKey(f"{key!r} is a symbolic link in the store", key=key)
        return info if st.S_ISREG(info.st_mode) else None

    def _existing(self, key: str) -> os.stat_result:
        info = self._object_stat(key)
        if info is None:
            raise NotFound(f"no object {key!r}", key=key)
        return info

    def _taken(self, key: str) -> None:
        try:
            taken = self._object_stat(key) is not None
        except _Blocked as exc:
            raise AlreadyExists(str(exc), key=key) from None
        if taken:
            raise AlreadyExists(f"object {key!r} already exists", key=key)

    def _publish(self, fd: int, src_dir: int, src: str, key: str) -> None:
        """Make the file `src` (open as `fd`) the read-only object `key`, never overwriting."""
        mine = os.fstat(fd)
        dfd, leaf = self._walk("objects", key, create=True)
        try:
            self._sync(fd)
            os.fchmod(fd, 0o444)  # before the link: the object is never writable once visible
            try:
                os.link(src, leaf, src_dir_fd=src_dir, dst_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                taken = os.stat(leaf, dir_fd=dfd, follow_symlinks=False)
                if (taken.st_dev, taken.st_ino) != (mine.st_dev, mine.st_ino):
                    os.fchmod(fd, 0o600)  # still only ours: keep it appendable
                raise AlreadyExists(f"object {key!r} already exists", key=key) from None
            os.unlink(src, dir_fd=src_dir)
            self._sync(dfd)
            self._sync(src_dir)
        finally:
            os.close(dfd)

    # -- Store -------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._areas:
            return
        try:
            await asyncio.to_thread(self._open_sync)
        except OSError as exc:
            raise StoreUnavailable(f"local store root {self.root} is unusable: {exc}") from exc

    def _open_sync(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        root = os.open(self.root, _DIR & ~os.O_NOFOLLOW)  # the root itself is the operator's
        areas: dict[str, int] = {}
        try:
            for area in ("objects", "staging", "tmp"):
                try:
                    os.mkdir(area, 0o755, dir_fd=root)
                except FileExistsError:
                    pass
                areas[area] = os.open(area, _DIR, dir_fd=root)
            tmp = areas["tmp"]
            probe = f"probe-{uuid.uuid4().hex}.tmp"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE, dir_fd=tmp))
            os.unlink(probe, dir_fd=tmp)
            # Temp files of concatenations that died with their process; young ones may belong
            # to another process on the same root.
            for name in os.listdir(tmp):
                if time.time() - os.stat(name, dir_fd=tmp).st_mtime > STALE_TMP_SECONDS:
                    os.unlink(name, dir_fd=tmp)
        except BaseException:
            for fd in areas.values():
                os.close(fd)
            raise
        finally:
            os.close(root)
        self._areas = areas

    async def close(self) -> None:
        areas, self._areas = self._areas, {}
        for fd in areas.values():
            os.close(fd)

    async def create(self, key: str) -> Target:
        return await self._run(self._create_sync, check_key(key), key=key)

    def _create_sync(self, key: str) -> Target:
        self._taken(key)
        dfd, leaf = self._walk("staging", key, create=True)
        try:
            os.close(_open_in(dfd, leaf + ".part", os.O_WRONLY | os.O_CREAT, key=key))
            self._sync(dfd)
        finally:
            os.close(dfd)
        return Target(key=key)

    def _open_staging(self, key: str, flags: int) -> tuple[int, int, str]:
        """(file fd, folder fd, file name) of a target's staging file; `NotFound` if absent."""
        dfd, leaf = self._walk("staging", key, create=False)
        try:
            return _open_in(dfd, leaf + ".part", flags, key=key), dfd, leaf + ".part"
        except BaseException:
            os.close(dfd)
            raise

    def _staging_size(self, key: str, flags: int) -> tuple[int, int]:
        fd, dfd, _ = self._open_staging(key, flags)
        os.close(dfd)
        return fd, os.fstat(fd).st_size

    async def offset(self, target: Target) -> int:
        key = check_key(target.key)
        fd, size = await self._run(self._staging_size, key, os.O_RDONLY, key=key)
        os.close(fd)
        return size

    async def append(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        expect: int | None = None,  # a file takes bytes as they come: nothing to plan
    ) -> int:
        key = check_key(target.key)
        fd, size = await self._run(self._staging_size, key, os.O_WRONLY, key=key)
        writer = Appender(fd, key=key, pos=size, fsync=self._fsync)
        try:
            if offset != size:
                raise OffsetMismatch(
                    f"append at {offset} but {key!r} holds {size} bytes",
                    key=key,
                    expected=size,
                    got=offset,
                )
            return await writer.append(chunks)
        finally:
            writer.close()

    async def finish(self, target: Target, *, size: int) -> ObjectInfo:
        return await self._run(self._finish_sync, check_key(target.key), size, key=target.key)

    def _finish_sync(self, key: str, size: int) -> ObjectInfo:
        try:
            fd, dfd, name = self._open_staging(key, os.O_RDONLY)
        except NotFound:
            self._taken(key)  # finished meanwhile, by this target or another
            raise
        try:
            info = os.fstat(fd)
            if info.st_size != size:
                raise OffsetMismatch(
                    f"finish with size {size} but {key!r} holds {info.st_size} bytes",
                    key=key,
                    expected=info.st_size,
                    got=size,
                )
            self._publish(fd, dfd, name, key)
            return _info(key, info)
        finally:
            os.close(fd)
            os.close(dfd)

    async def truncate(self, target: Target, *, offset: int) -> None:
        key = check_key(target.key)
        await self._run(self._truncate_sync, key, offset, key=key)

    def _truncate_sync(self, key: str, offset: int) -> None:
        fd, size = self._staging_size(key, os.O_WRONLY)
        try:
            if offset > size or offset < 0:
                raise OffsetMismatch(
                    f"cannot cut back to {offset}: the target holds {size} bytes",
                    key=key,
                    expected=size,
                    got=offset,
                )
            os.ftruncate(fd, offset)
            self._sync(fd)
        finally:
            os.close(fd)

    async def abort(self, target: Target) -> None:
        await self._run(self._abort_sync, check_key(target.key), key=target.key)

    def _abort_sync(self, key: str) -> None:
        try:
            dfd, leaf = self._walk("staging", key, create=False)
        except NotFound:
            return
        try:
            os.unlink(leaf + ".part", dir_fd=dfd)
            self._sync(dfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dfd)

    async def read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        # One trip to a thread opens, checks the range and reads the first batch: a seek is
        # one small read, and each trip costs about as much as the read itself.
        file, end, first = await self._run(self._open_range, check_key(key), start, length, key=key)
        return self._chunks(file, key, start + len(first), end, first)

    def _open_range(self, key: str, start: int, length: int | None) -> tuple[BinaryIO, int, bytes]:
        """The open object, where the range ends, and its first batch."""
        file = os.fdopen(self._open_object(key), "rb", buffering=0)
        try:
            size = os.fstat(file.fileno()).st_size
            if start < 0 or start > size or (length is not None and length < 0):
                raise InvalidRange(f"range {start}+{length} outside {size} bytes", key=key)
            end = size if length is None else min(size, start + length)
            first = os.pread(file.fileno(), min(BATCH, end - start), start) if end > start else b""
        except BaseException:
            file.close()
            raise
        return file, end, first

    async def _chunks(
        self, file: BinaryIO, key: str, start: int, end: int, first: bytes
    ) -> AsyncIterator[bytes]:
        # A file object, not a bare descriptor: a stream never iterated is closed when dropped.
        try:
            if first:
                yield first
            while start < end:
                data = await self._run(
                    os.pread, file.fileno(), min(BATCH, end - start), start, key=key
                )
                if not data:
                    raise StoreUnavailable(f"object {key!r} shrank while being read", key=key)
                start += len(data)
                yield data
        finally:
            file.close()

    def _open_object(self, key: str) -> int:
        dfd, leaf = self._walk("objects", key, create=False)
        try:
            return _open_in(dfd, leaf, os.O_RDONLY, key=key)
        finally:
            os.close(dfd)

    async def open_file(self, key: str) -> BinaryIO:
        """The published object, walked without links and opened in one trip to a thread."""
        fd = await self._run(self._open_object, check_key(key), key=key)
        return os.fdopen(fd, "rb", buffering=0)

    async def file_of(self, key: str) -> Path:
        """The published object's path, for media tools that read an original in place instead
        of copying it out: checked to be a regular file reached without links."""
        await self._run(self._existing, key, key=key)
        return self.root / "objects" / key

    async def stat(self, key: str) -> ObjectInfo:
        return _info(key, await self._run(self._existing, check_key(key), key=key))

    async def delete(self, key: str) -> None:
        await self._run(self._delete_sync, check_key(key), key=key)

    def _delete_sync(self, key: str) -> None:
        self._existing(key)
        dfd, leaf = self._walk("objects", key, create=False)
        try:
            os.unlink(leaf, dir_fd=dfd)
            self._sync(dfd)
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}", key=key) from None
        finally:
            os.close(dfd)

    # -- Replacer (encrypt-existing only) ----------------------------------------------------

    async def held(self, key: str) -> bool:
        """A local folder has no retention of its own: nothing keeps an object's bytes."""
        await self.stat(key)
        return False

    async def replace(self, key: str, *, source: str) -> None:
        """`sealconvert.Replacer`: `rename(2)` over the object, the one place this store
        writes over a published name, so a reader opens the old file or the new one."""
        await self._run(self._replace_sync, check_key(key), check_key(source), key=key)

    async def drop_older(self, key: str) -> None:
        """A file has no older versions: `rename(2)` left none behind."""

    async def leftovers(self, key: str, *, keep: str | None) -> list[str]:
        """`sealconvert.Replacer`: staged copies of `key`, finished (beside it) or half
        written (`.part` files in staging), except `keep`."""
        return await self._run(self._leftovers_sync, check_key(key), keep, key=key)

    def _leftovers_sync(self, key: str, keep: str | None) -> list[str]:
        folder = key.rpartition("/")[0]
        removed = []
        for area, suffix in (("objects", ""), ("staging", ".part")):
            try:
                dfd, _ = self._walk(area, key, create=False)
            except NotFound:
                continue
            try:
                for entry in os.listdir(dfd):
                    name = f"{folder}/{entry}" if folder else entry
                    staged = name.removesuffix(suffix) if name.endswith(suffix) else None
                    if staged is None or not is_staged_copy(key, staged) or staged == keep:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry, dir_fd=dfd)
                        removed.append(staged)
                self._sync(dfd)
            finally:
                os.close(dfd)
        return removed

    def _replace_sync(self, key: str, source: str) -> None:
        self._existing(key)
        self._existing(source)
        dfd, leaf = self._walk("objects", key, create=False)
        try:
            sfd, sleaf = self._walk("objects", source, create=False)
            try:
                os.rename(sleaf, leaf, src_dir_fd=sfd, dst_dir_fd=dfd)
                self._sync(dfd)
                self._sync(sfd)
            finally:
                os.close(sfd)
        finally:
            os.close(dfd)

    # -- Concatenator ------------------------------------------------------------------------

    async def concatenate(
        self, key: str, sources: Sequence[str], *, digest: MultiDigest | None = None
    ) -> ObjectInfo:
        for source in sources:
            check_key(source)
        return await self._run(
            self._concatenate_sync, check_key(key), list(sources), digest, key=key
        )

    def _concatenate_sync(
        self, key: str, sources: list[str], digest: MultiDigest | None
    ) -> ObjectInfo:
        self._taken(key)
        tmp, name = self._areas["tmp"], f"{uuid.uuid4().hex}.tmp"
        out = _open_in(tmp, name, os.O_RDWR | os.O_CREAT | os.O_EXCL, key=key)
        # Write-out queued as the copy goes: the publish fsync then finds most of it written.
        behind = WriteBehind(out, 0) if self._fsync else None
        try:
            end = 0
            for source in sources:
                src = self._open_object(source)
                try:
                    end = append_file(out, src, at=end, behind=behind)
                except SourceShrank as exc:
                    raise StoreUnavailable(
                        f"object {source!r} changed while being joined ({exc})", key=key
                    ) from None
                finally:
                    os.close(src)
            if digest is not None:
                try:
                    hash_file(out, end, digest)
                except SourceShrank as exc:
                    raise StoreUnavailable(
                        f"joined {key!r} came back short ({exc})", key=key
                    ) from None
            info = os.fstat(out)
            self._publish(out, tmp, name, key)
            return _info(key, info)
        except BaseException:
            try:
                os.unlink(name, dir_fd=tmp)
            except FileNotFoundError:
                pass  # published, or never made
            raise
        finally:
            os.close(out)
