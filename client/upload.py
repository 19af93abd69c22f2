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
import mimetypes
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from . import files
from .errors import (
    PARTIAL_TAKEN,
    PARTIAL_UNUSABLE,
    ClientError,
    FileChanged,
    InputError,
    IntegrityError,
    ProtocolError,
    UploadFailed,
    UploadGone,
)
from .files import FileIdentity
from .hashing import ChunkDigests, FileHasher
from .parts import PartSender, chunk_grid, plan_parts, request_size
from .progress import FileProgress, Reporter, human_bytes
from .proof import Proof, await_outcome, prove, prove_single
from .state import Part, StateStore, UploadState
from .tus import Answer, ServerCaps, TusClient, upload_id

log = logging.getLogger("avidence.client.upload")

MiB = 1024 * 1024
DEFAULT_CHUNK = 64 * MiB
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
    already: bool = False  # finished by an earlier run; nothing was sent now
    sent_now: int | None = None  # bytes this run sent (a resume sends less than `size`)


@dataclass(slots=True)
class _Run:
    """One file's upload in this process."""

    identity: FileIdentity
    state: UploadState
    options: UploadOptions
    caps: ServerCaps
    progress: FileProgress
    last_save: float = 0.0
    final_answer: Answer | None = None


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
        # One stream needs no join: a plain upload, its digests declared on the last request
        # where the server takes them, else proven by the receipt afterwards.
        split = len(plan_parts(identity.size, options.parallel)) > 1
        mode = "concat" if caps.concatenation and split else "single"
        # One state per file *and* destination: the same recording sent to another case is
        # another upload, with its own evidence record and receipt.
        state = self.store.find(
            identity, endpoint=self.tus.endpoint, case=options.case, item=options.item
        )
        resumed = state is not None
        if state is not None and state.phase == "finished":
            if state.evidence_id is None and state.final_url is not None:
                # Finished without an evidence id (a run that died before hearing it): ask the
                # server again rather than report an outcome nobody proved.
                state.phase = "verifying"
            else:
                name = Path(identity.path).name
                self.reporter.track(name, identity.size).sent = identity.size
                self.reporter.done(name)
                return self._outcome(state, resumed=True, started=started, already=True)
        if state is None or state.mode != mode or state.phase == "failed":
            state = UploadState.new(
                identity, endpoint=self.tus.endpoint, case=options.case, item=options.item
            )
            state.mode = mode
            resumed = False
        name = Path(identity.path).name
        progress = self.reporter.track(name, identity.size)
        run = _Run(identity, state, options, caps, progress)
        if resumed:
            progress.already_there(state.confirmed)  # done before this run: not speed
            self.reporter.event(
                "resumed",
                name,
                message=f"{human_bytes(state.confirmed)} of {human_bytes(state.size)} were "
                "already on the server; sending the rest",
            )
        else:
            self.reporter.event("started", name, size=identity.size, mode=mode)
        try:
            if state.phase in ("pending", "uploading", "finalizing"):
                await self._transfer(run)
            proof = await self._prove(run)
            if caps.declarable and proof.kind != "receipt":
                # An avidence server signs a receipt for all evidence: never call an upload
                # to it finished on less; the state stays `verifying` for a rerun.
                raise UploadFailed(
                    f"evidence {state.evidence_id or '(unknown)'}: no verified receipt yet "
                    f"({proof.message}); run the same command again to check"
                )
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
        outcome = self._outcome(
            state,
            resumed=resumed,
            started=started,
            message=proof.message,
            sent_now=max(0, state.size - progress.before),
        )
        self.reporter.event(
            "verified" if proof.verified else "unverified",
            name,
            evidence_id=state.evidence_id,
            proof=proof.kind,
            message=proof.message,
        )
        return outcome

    def _outcome(
        self,
        state: UploadState,
        *,
        resumed: bool,
        started: float,
        message: str = "",
        already: bool = False,
        sent_now: int | None = None,
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
            already=already,
            sent_now=sent_now,
        )

    # -- sending ----------------------------------------------------------------------------

    async def _transfer(self, run: _Run) -> None:
        """Send every byte and create the final upload; on return state.final_url is set."""
        state = run.state
        if not state.parts:
            state.parts = self._plan(run)
        size = request_size(run.options.chunk_size, len(state.parts))
        chunks = None
        if run.caps.checksum is not None:
            chunks = ChunkDigests(
                run.caps.checksum, chunk_grid(state.parts, size), near=2 * size
            )
        hasher = FileHasher(state.path, state.size, chunks)
        run.progress.hashed = lambda: hasher.done
        hashing = asyncio.create_task(hasher.run(), name=f"hash-{state.key}")
        try:
            for _attempt in range(2):  # a second round only when the server lost our partials
                if state.phase != "finalizing" or state.final_url is None:
                    if not state.parts:
                        state.parts = self._plan(run)
                    state.phase = "uploading"
                    self._save(run)
                    run.progress.phase = "uploading"
                    await PartSender(
                        tus=self.tus,
                        reporter=self.reporter,
                        identity=run.identity,
                        state=state,
                        progress=run.progress,
                        chunk_size=size,
                        checksum=run.caps.checksum,
                        chunks=chunks,
                        create=lambda part: self._create(run, part),
                        save=lambda force: self._save(run, force=force),
                        declare=self._declarer(run, hashing),
                    ).send_all()
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

    @staticmethod
    def _plan(run: _Run) -> list[Part]:
        if run.state.mode == "concat":
            return plan_parts(run.state.size, run.options.parallel)
        return [Part(index=0, start=0, length=run.state.size)]

    @staticmethod
    def _declarer(
        run: _Run, hashing: asyncio.Task[dict[str, str]]
    ) -> Callable[[], Awaitable[dict[str, str]]] | None:
        """For a plain upload to a server that takes `Avidence-Digests`: wait for the file's
        digests (the hash runs ahead of the network) and hand over those it checks."""
        accepted = set(run.caps.declarable)
        if run.state.mode != "single" or not accepted:
            return None

        async def declare() -> dict[str, str]:
            digests = await asyncio.shield(hashing)
            return {k: v for k, v in digests.items() if k in accepted}

        return declare

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
            # `partial_taken`: the partials were joined by a final upload whose answer we lost
            # (or a concurrent one); `partial_unusable`: they are gone or expired.
            if exc.code not in (PARTIAL_TAKEN, PARTIAL_UNUSABLE):
                raise
            found = await self._final_of(state.parts[0])
            if found is None:
                log.warning("final.partials_unusable key=%s error=%s", state.key, exc.message)
                return False
            answer = found
        except UploadGone:
            return False
        state.final_url = answer.url
        state.evidence_id = answer.evidence_id
        state.phase = "verifying"
        run.final_answer = answer
        self._save(run)
        return True

    async def _final_of(self, part: Part) -> Answer | None:
        """The final upload that consumed `part`, when the server names it (`consumed_by` in
        `GET /api/uploads/{id}`); None when it does not, and the bytes must be sent again."""
        if part.url is None:
            return None
        status, document = await self.tus.get_json(f"/api/uploads/{upload_id(part.url)}")
        final_id = document.get("consumed_by") if status == 200 and document else None
        if not isinstance(final_id, str) or not final_id:
            return None
        return await self.tus.head(urljoin(self.tus.endpoint, final_id))

    async def _create(self, run: _Run, part: Part) -> Answer:
        metadata = metadata_for(run.identity, run.options)
        if run.state.mode == "concat":
            return await self.tus.create(
                length=part.length, metadata={"filename": metadata["filename"]}, concat="partial"
            )
        return await self.tus.create(length=part.length, metadata=metadata)

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
        answer = run.final_answer
        known_state = answer.state if answer else None
        if state.mode == "single" and state.evidence_id is None:
            # The answer naming the evidence may have been lost (a kill right after the last
            # PATCH): avidence still tells the upload's outcome; a plain tus server does not.
            status, document = await self.tus.get_json(
                f"/api/uploads/{upload_id(state.final_url)}"
            )
            if status != 200 or not isinstance(document, dict) or "evidence_id" not in document:
                return await prove_single(
                    self.tus, url=state.final_url, size=state.size, digests=state.digests
                )
            found = document.get("evidence_id")
            state.evidence_id = found if isinstance(found, str) and found else None
            known_state = str(document.get("state") or "") or None
        if state.evidence_id is None:
            state.evidence_id = await await_outcome(
                self.tus,
                state.final_url,
                state=known_state,
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
