"""One file's upload, start to proof: partial uploads in parallel, the final upload carrying
the declared digests, then verification against the server's evidence record and receipt.

Against a server offering concatenation (avidence always does) the file is split into N byte
ranges, each a partial upload sent as chunk-size PATCH requests, while a thread hashes the
whole file; the final upload's creation then declares BLAKE3 and SHA-256, so the server checks
the joined bytes against them before it calls anything evidence. Against a plain tus server the
file goes as one upload and is checked afterwards where the server publishes digests.

Progress is never lost: upload URLs are in the state file before the first byte is sent, and a
resumed upload asks each URL for its offset, so a crash costs at most the chunk in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import mimetypes
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import files
from .errors import (
    ClientError,
    FileChanged,
    InputError,
    IntegrityError,
    OffsetConflict,
    ProtocolError,
    Transient,
    UploadFailed,
    UploadGone,
)
from .files import FileIdentity
from .hashing import FileHasher
from .progress import FileProgress, Reporter
from .proof import Proof, await_outcome, prove, prove_single
from .state import Part, StateStore, UploadState
from .tus import Answer, ServerCaps, TusClient

log = logging.getLogger("avidence.client.upload")

MiB = 1024 * 1024
DEFAULT_CHUNK = 64 * MiB
# Partial uploads smaller than this cost more in round trips than they gain in parallelism.
MIN_PART = 4 * MiB
SAVE_EVERY = 1.0  # seconds between state-file writes for offsets (structure changes save at once)


@dataclass(slots=True, frozen=True)
class UploadOptions:
    case: str
    item: str = ""
    parallel: int = 4
    chunk_size: int = DEFAULT_CHUNK
    verify_timeout: float = 4 * 3600.0
    trusted_keys: str | None = None  # PEM or keys JSON to verify receipts with, else GET /api/keys


@dataclass(slots=True, frozen=True)
class Outcome:
    path: str
    size: int
    evidence_id: str | None
    digests: dict[str, str]
    verified: bool
    proof: str
    message: str
    state_file: str
    receipt_file: str | None
    resumed: bool
    seconds: float


@dataclass(slots=True)
class _Run:
    """Everything one upload attempt shares between its part senders."""

    identity: FileIdentity
    state: UploadState
    options: UploadOptions
    caps: ServerCaps
    progress: FileProgress
    inflight: dict[int, int] = field(default_factory=dict)
    last_save: float = 0.0
    final_answer: Answer | None = None

    def update_progress(self) -> None:
        self.progress.sent = sum(p.offset + self.inflight.get(p.index, 0) for p in self.state.parts)


def plan_parts(size: int, parallel: int) -> list[Part]:
    """Split `size` bytes into at most `parallel` nearly equal ranges of at least MIN_PART."""
    count = max(1, min(parallel, math.ceil(size / MIN_PART)))
    step = math.ceil(size / count) if size else 0
    parts, start = [], 0
    for index in range(count):
        length = min(step, size - start)
        parts.append(Part(index=index, start=start, length=length))
        start += length
    return parts


def metadata_for(identity: FileIdentity, options: UploadOptions) -> dict[str, str]:
    name = Path(identity.path).name.strip()[:255]
    fields = {"case": options.case, "filename": name}
    if options.item:
        fields["item"] = options.item
    filetype = mimetypes.guess_type(name)[0]
    if filetype:
        fields["filetype"] = filetype
    return fields


class Uploader:
    """Uploads files to one server; reusable across files (the watch daemon keeps one)."""

    def __init__(self, tus: TusClient, store: StateStore, reporter: Reporter) -> None:
        self.tus = tus
        self.store = store
        self.reporter = reporter
        self._caps: ServerCaps | None = None

    async def caps(self) -> ServerCaps:
        if self._caps is None:
            self._caps = await self.tus.options()
        return self._caps

    def _save(self, run: _Run, *, force: bool = True) -> None:
        now = time.monotonic()
        if force or now - run.last_save >= SAVE_EVERY:
            self.store.save(run.state)
            run.last_save = now

    # -- entry point ------------------------------------------------------------------------

    async def upload(self, path: Path, options: UploadOptions) -> Outcome:
        started = time.monotonic()
        identity = await asyncio.to_thread(files.identify, path)
        caps = await self.caps()
        if caps.max_size is not None and identity.size > caps.max_size:
            raise InputError(
                f"{path}: {identity.size} bytes exceed the server's limit of {caps.max_size}"
            )
        mode = "concat" if caps.concatenation else "single"
        state = self.store.load(identity.key)
        resumed = state is not None
        if state is not None and state.phase == "finished" and state.endpoint == self.tus.endpoint:
            return self._outcome(state, resumed=True, started=started)
        if (
            state is None
            or state.endpoint != self.tus.endpoint
            or state.mode != mode
            or (state.phase == "failed")
        ):
            state = UploadState.new(
                identity, endpoint=self.tus.endpoint, case=options.case, item=options.item
            )
            state.mode = mode
            resumed = False
        state.case, state.item = options.case, options.item
        name = Path(identity.path).name
        progress = self.reporter.track(name, identity.size)
        run = _Run(identity, state, options, caps, progress)
        if resumed:
            self.reporter.event(
                "resumed", name, message=f"resuming ({state.confirmed} bytes confirmed before)"
            )
        else:
            self.reporter.event("started", name, size=identity.size, mode=mode)
        try:
            if state.phase in ("pending", "uploading", "finalizing"):
                await self._transfer(run)
            proof = await self._prove(run)
        except IntegrityError as exc:
            state.phase, state.error = "failed", exc.message
            self.store.save(state)
            self.reporter.event("failed", name, message=exc.message)
            raise
        except FileChanged as exc:
            await self._abandon(run)
            self.reporter.event("failed", name, message=exc.message)
            raise
        except ClientError as exc:
            self.reporter.event("failed", name, message=exc.message)
            raise
        finally:
            self.reporter.done(name)
        state.phase, state.verified, state.proof = "finished", proof.verified, proof.kind
        state.error = "" if proof.verified else proof.message
        self.store.save(state)
        outcome = self._outcome(state, resumed=resumed, started=started, message=proof.message)
        self.reporter.event(
            "verified" if proof.verified else "unverified",
            name,
            evidence_id=state.evidence_id,
            proof=proof.kind,
            message=proof.message,
        )
        return outcome

    def _outcome(
        self, state: UploadState, *, resumed: bool, started: float, message: str = ""
    ) -> Outcome:
        return Outcome(
            path=state.path,
            size=state.size,
            evidence_id=state.evidence_id,
            digests=dict(state.digests),
            verified=state.verified,
            proof=state.proof,
            message=message or state.error or "already uploaded and verified",
            state_file=str(self.store.path(state.key)),
            receipt_file=state.receipt_file,
            resumed=resumed,
            seconds=time.monotonic() - started,
        )

    # -- sending ----------------------------------------------------------------------------

    async def _transfer(self, run: _Run) -> None:
        """Send every byte and create the final upload; on return state.final_url is set."""
        state = run.state
        hasher = FileHasher(state.path, state.size)
        run.progress.hashed = lambda: hasher.done
        hashing = asyncio.create_task(hasher.run(), name=f"hash-{state.key}")
        try:
            for _attempt in range(2):  # a second round only when the server lost our partials
                if state.phase != "finalizing" or state.final_url is None:
                    if not state.parts:
                        state.parts = (
                            plan_parts(state.size, run.options.parallel)
                            if state.mode == "concat"
                            else [Part(index=0, start=0, length=state.size)]
                        )
                    state.phase = "uploading"
                    self._save(run)
                    run.progress.phase = "uploading"
                    await _all_parts(self._send_part(run, part) for part in state.parts)
                run.progress.phase = "hashing"
                state.digests = await asyncio.shield(hashing)
                await asyncio.to_thread(files.check_unchanged, run.identity)
                if state.mode == "single":
                    state.final_url = state.parts[0].url
                    state.phase = "verifying"
                    self._save(run)
                    return
                if await self._finalize(run):
                    return
                self.reporter.event(
                    "warning",
                    Path(state.path).name,
                    message="the server no longer has the partial uploads; sending again",
                )
                state.parts, state.final_url, state.phase = [], None, "pending"
            raise UploadFailed("the server kept losing the partial uploads")
        finally:
            if not hashing.done():
                hashing.cancel()
                await asyncio.gather(hashing, return_exceptions=True)

    async def _finalize(self, run: _Run) -> bool:
        """Create (or find again) the final upload; False when the partials are gone."""
        state = run.state
        run.progress.phase = "joining"
        state.phase = "finalizing"
        self._save(run)
        if state.final_url is not None:
            with contextlib.suppress(UploadGone):
                answer = await self.tus.head(state.final_url)
                run.final_answer = answer
                state.evidence_id = answer.evidence_id
                state.phase = "verifying"
                self._save(run)
                return True
        metadata = {**metadata_for(run.identity, run.options), **state.digests}
        concat = "final;" + " ".join(p.url or "" for p in state.parts)

        async def create() -> Answer:
            # Joining and verifying 100 GB takes a while: the server answers within ~25 s and
            # goes on in the background, but a copying store may take longer than that.
            return await self.tus.create(
                length=None, metadata=metadata, concat=concat, read_timeout=3600
            )

        try:
            answer = await self.tus.retrying("creating the final upload", create)
        except ProtocolError as exc:
            # 400 naming a partial that is not (or no longer) ours/complete: the partials were
            # consumed by a final upload whose answer we lost, or expired; start over.
            if exc.status == 400 and "partial" in exc.message:
                log.warning("final.partials_unusable key=%s error=%s", state.key, exc.message)
                return False
            raise
        except UploadGone:
            return False
        state.final_url = answer.url
        state.evidence_id = answer.evidence_id
        state.phase = "verifying"
        run.final_answer = answer
        self._save(run)
        return True

    async def _send_part(self, run: _Run, part: Part) -> None:
        """Bring one upload to its full length, resuming from the server's offset."""
        state, tus = run.state, self.tus
        algorithm = run.caps.checksum
        failures = 0
        offset: int | None = None
        last: Answer | None = None
        prefetch: tuple[int, int, asyncio.Task[bytes]] | None = None

        def fail(exc: BaseException) -> float:
            nonlocal failures
            failures += 1
            if failures >= tus.retry.attempts:
                raise UploadFailed(f"part {part.index}: gave up after {failures} failures: {exc}")
            delay = tus.retry.delay(failures)
            self.reporter.event(
                "retry", Path(state.path).name, message=f"{exc}; retrying in {delay:.1f} s"
            )
            return delay

        try:
            while True:
                if part.url is None:
                    last = await tus.retrying("creating an upload", lambda: self._create(run, part))
                    part.url, part.offset, offset = last.url, 0, 0
                    self._save(run)
                if offset is None:
                    try:
                        last = await tus.head(part.url)
                    except UploadGone:
                        part.url = None
                        continue
                    if last.length not in (None, part.length):
                        part.url = None  # not the upload we planned: make a new one
                        continue
                    offset = part.offset = last.offset or 0
                    run.update_progress()
                if offset >= part.length:
                    if last is not None and (
                        last.state == "receiving" or (part.length == 0 and last.state is None)
                    ):
                        # Every byte is there but the server did not finish the upload (it
                        # crashed in between, or the part is empty): an empty PATCH finishes it.
                        last = await tus.patch(
                            part.url, offset=offset, length=0, body=_empty(), checksum=None
                        )
                    return
                length = min(run.options.chunk_size, part.length - offset)
                await asyncio.to_thread(files.check_stat, run.identity)
                checksum: tuple[str, bytes] | None = None
                if algorithm is not None:
                    if prefetch is not None and prefetch[:2] == (offset, length):
                        digest = await prefetch[2]
                    else:
                        digest = await files.digest_range(
                            state.path,
                            start=part.start + offset,
                            length=length,
                            algorithm=algorithm,
                        )
                    checksum = (algorithm, digest)
                    prefetch = self._prefetch(run, part, offset + length, algorithm, prefetch)
                try:
                    last = await tus.patch(
                        part.url,
                        offset=offset,
                        length=length,
                        body=self._counted(run, part, offset, length),
                        checksum=checksum,
                    )
                except UploadGone:
                    part.url, part.offset = None, 0
                    continue
                except OffsetConflict as exc:
                    offset = None
                    await asyncio.sleep(fail(exc))
                    continue
                except Transient as exc:
                    offset = None
                    await asyncio.sleep(fail(exc))
                    continue
                finally:
                    run.inflight[part.index] = 0
                new_offset = last.offset if last.offset is not None else offset
                if new_offset > offset:
                    failures = 0
                offset = part.offset = new_offset
                run.update_progress()
                self._save(run, force=False)
        finally:
            if prefetch is not None and not prefetch[2].done():
                prefetch[2].cancel()
                await asyncio.gather(prefetch[2], return_exceptions=True)

    def _prefetch(
        self,
        run: _Run,
        part: Part,
        offset: int,
        algorithm: str,
        old: tuple[int, int, asyncio.Task[bytes]] | None,
    ) -> tuple[int, int, asyncio.Task[bytes]] | None:
        """Checksum the next chunk while this one is on the wire."""
        if old is not None and not old[2].done():
            old[2].cancel()
        if offset >= part.length:
            return None
        length = min(run.options.chunk_size, part.length - offset)
        task = asyncio.create_task(
            files.digest_range(
                run.state.path, start=part.start + offset, length=length, algorithm=algorithm
            )
        )
        return offset, length, task

    async def _create(self, run: _Run, part: Part) -> Answer:
        metadata = metadata_for(run.identity, run.options)
        if run.state.mode == "concat":
            return await self.tus.create(
                length=part.length, metadata={"filename": metadata["filename"]}, concat="partial"
            )
        return await self.tus.create(length=part.length, metadata=metadata)

    async def _counted(
        self, run: _Run, part: Part, offset: int, length: int
    ) -> AsyncIterator[bytes]:
        sent = 0
        async for block in files.read_range(
            run.state.path, start=part.start + offset, length=length
        ):
            sent += len(block)
            run.inflight[part.index] = sent
            run.update_progress()
            yield block

    async def _abandon(self, run: _Run) -> None:
        """The file changed: its partial uploads are useless; drop them and the state."""
        self.store.delete(run.state.key)
        if "termination" not in run.caps.extensions:
            return
        for part in run.state.parts:
            if part.url:
                await self.tus.terminate(part.url)

    # -- proving ----------------------------------------------------------------------------

    async def _prove(self, run: _Run) -> Proof:
        state = run.state
        assert state.final_url is not None
        run.progress.phase = "verifying"
        if state.mode == "single":
            return await prove_single(
                self.tus, url=state.final_url, size=state.size, digests=state.digests
            )
        answer = run.final_answer
        if state.evidence_id is None:
            state.evidence_id = await await_outcome(
                self.tus,
                state.final_url,
                state=answer.state if answer else None,
                evidence_id=answer.evidence_id if answer else None,
                patience=run.options.verify_timeout,
            )
            self.store.save(state)
        receipt_path = self.store.receipt_path(state.key)
        proof = await prove(
            self.tus,
            evidence_id=state.evidence_id,
            size=state.size,
            digests=state.digests,
            receipt_path=receipt_path,
            trusted_keys=run.options.trusted_keys,
        )
        if proof.kind == "receipt":
            state.receipt_file = str(receipt_path)
        return proof


async def _all_parts(senders: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the part senders together; the first failure cancels the others and is raised as
    itself (not as an ExceptionGroup), preferring errors a person must act on."""
    try:
        async with asyncio.TaskGroup() as group:
            for sender in senders:
                group.create_task(sender)
    except BaseExceptionGroup as group_error:
        errors = list(group_error.exceptions)
        for kind in (IntegrityError, FileChanged, ClientError):
            for error in errors:
                if isinstance(error, kind):
                    raise error from None
        raise errors[0] from None


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""
