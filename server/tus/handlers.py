"""The tus 1.0.0 verbs: OPTIONS, POST (creation, with-upload, defer-length, concatenation),
HEAD, PATCH (checksum) and DELETE (termination), with X-HTTP-Method-Override."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta
from email.utils import format_datetime

from aiohttp import web

from .. import clock
from ..audit.events import UploadCreated
from ..audit.unit import unit_of_work
from ..auth import require
from ..catalog import uploads as uploads_db
from ..catalog.uploads import ConcatKind, Upload, UploadState
from ..drain import RETRY_AFTER, ShuttingDown
from ..errors import (
    BadRequest,
    BodyInterrupted,
    Conflict,
    Forbidden,
    Gone,
    MethodNotAllowed,
    NotFound,
    PartialTaken,
    PreconditionFailed,
    ServerDraining,
    TooLarge,
    UnsupportedMediaType,
)
from ..kinds import KINDS
from ..kinds.check import check_kind
from ..retention import quotas
from ..tokens import Principal
from . import admission, concat, declare, finish, headers
from .body import ClientGone
from .context import TusContext
from .discard import DISCARDABLE, discard
from .headers import OFFSET_CONTENT_TYPE, TUS_VERSION, header
from .session import UploadSession, complete_if_full

log = logging.getLogger("avidence.tus")

# The methods tus defines on the upload collection and on one upload (GET reads as HEAD).
_ON_COLLECTION = ("OPTIONS", "POST")
_ON_UPLOAD = ("OPTIONS", "HEAD", "GET", "PATCH", "DELETE")

# Seconds HEAD lets an earlier request of the upload reach its lock, and then end by itself,
# before asking it to let go.
HEAD_PATIENCE = 1.0

EXTENSIONS = [
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
]


class TusHandlers:
    def __init__(self, ctx: TusContext) -> None:
        self.ctx = ctx

    # -- routing ------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        # "X-HTTP-Method-Override ... the Server MUST interpret it as the request's method."
        method = (request.headers.get("X-HTTP-Method-Override") or request.method).upper()
        upload_id = request.match_info.get("upload_id")
        # A method tus does not define here is a 405 whatever the headers: TRACE, PUT, ...
        allowed = _ON_COLLECTION if upload_id is None else _ON_UPLOAD
        if method not in allowed:
            raise MethodNotAllowed(headers={"Allow": ", ".join(allowed)})
        if method == "OPTIONS":
            return self.options()
        # "The Server MUST ... respond with 412 Precondition Failed" for an unsupported version.
        if request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise PreconditionFailed(
                f"Tus-Resumable must be {TUS_VERSION}", headers={"Tus-Version": TUS_VERSION}
            )
        if method == "PATCH" and upload_id is not None:
            # Announced before the first await: a HEAD that comes after this request's bytes
            # (a client resuming after its connection broke) waits for it (see locks.py).
            with self.ctx.locks.arriving(upload_id) as arrived:
                principal = await require(request, "uploader", "admin")
                upload = await self._load(upload_id, principal)
                return await self.patch(request, upload, arrived=arrived)
        principal = await require(request, "uploader", "admin")
        if upload_id is None:
            return await self.create(request, principal)  # POST: the collection's one write
        upload = await self._load(upload_id, principal)
        if method in ("HEAD", "GET"):
            return await self.head(upload)
        return await self.delete(upload, principal)  # DELETE, the last method allowed

    async def _load(self, upload_id: str, principal: Principal) -> Upload:
        upload = await uploads_db.get(self.ctx.engine, upload_id) if len(upload_id) == 32 else None
        # Another uploader's upload is answered exactly like a missing one: no probing.
        if upload is None or not (
            upload.uploader == principal.token_id
            or (principal.role == "admin" and upload.agency_id == principal.agency_id)
        ):
            raise NotFound("no such upload")
        if upload.state == UploadState.TERMINATED:
            raise NotFound("the upload was terminated")
        if upload.state == UploadState.EXPIRED or (
            upload.state == UploadState.RECEIVING
            and upload.expires_at is not None
            and upload.expires_at < clock.now()
        ):
            raise Gone("the upload expired")
        return upload

    # -- verbs --------------------------------------------------------------------------------

    def options(self) -> web.Response:
        # Concatenation works on every store: natively where the store is a Concatenator,
        # by a streamed copy otherwise.
        extensions = [*EXTENSIONS, "concatenation"]
        return web.Response(
            status=204,
            headers={
                "Tus-Version": TUS_VERSION,
                "Tus-Max-Size": str(self.ctx.settings.max_size),
                "Tus-Extension": ",".join(extensions),
                "Tus-Checksum-Algorithm": ",".join(headers.CHECKSUM_ALGORITHMS),
                declare.ADVERTISED: ",".join(declare.computed(self.ctx.settings.digests)),
            },
        )

    async def create(self, request: web.Request, principal: Principal) -> web.Response:
        ctx, h = self.ctx, request.headers
        await admission.admit(ctx, principal)
        concat_spec = headers.parse_concat(
            header(h, "Upload-Concat"), tus_path=ctx.settings.tus_path
        )
        length = headers.non_negative_int(header(h, "Upload-Length"), "Upload-Length")
        defer = header(h, "Upload-Defer-Length")
        if defer is not None and defer.strip() != "1":
            raise BadRequest("Upload-Defer-Length must be 1")
        is_final = concat_spec is not None and concat_spec.kind == ConcatKind.FINAL
        if is_final:
            # "The Client MUST NOT include the Upload-Length header in the final upload creation"
            if length is not None or defer is not None:
                raise BadRequest("a final upload takes its length from its partial uploads")
        elif (length is None) == (defer is None):
            raise BadRequest("give exactly one of Upload-Length and Upload-Defer-Length: 1")
        if length is not None and length > ctx.settings.max_size:
            raise TooLarge(f"Upload-Length exceeds Tus-Max-Size {ctx.settings.max_size}")
        metadata = headers.parse_metadata(header(h, "Upload-Metadata"))
        declare.require_computed(
            (k for k in headers.DIGEST_KEYS if k in metadata), ctx.settings.digests
        )
        partial = concat_spec is not None and concat_spec.kind == ConcatKind.PARTIAL
        headers.validate_evidence_fields(metadata, require_case=not partial)
        if not partial:  # the final upload carries the metadata the kind is checked on
            check_kind(request.app[KINDS], metadata)
        partials = (
            await concat.check_partials(ctx, concat_spec.ids, uploader=principal.token_id)
            if is_final and concat_spec is not None
            else []
        )
        if is_final:
            length = sum(p.length or 0 for p in partials)
            if length > ctx.settings.max_size:
                raise TooLarge(f"the partials add up beyond Tus-Max-Size {ctx.settings.max_size}")
            if self._has_body(request):
                # A final upload takes no bytes of its own: "the Server MUST respond with the
                # 403 Forbidden status to PATCH requests against a final upload URL".
                raise Forbidden("a final upload takes no body")

        if not is_final:  # a final upload's bytes are its partials', counted already
            await quotas.check(
                ctx.engine, ctx.settings, uploader=principal.token_id, length=length or 0
            )
        upload_id = secrets.token_hex(16)
        key = f"{'partials' if partial else 'originals'}/{upload_id}"
        handle = "" if is_final else (await ctx.store.create(key)).handle
        now = clock.now()
        upload = Upload(
            id=upload_id,
            state=UploadState.RECEIVING,
            length=length,
            offset=0,
            metadata=metadata,
            concat=(
                ConcatKind.FINAL if is_final else ConcatKind.PARTIAL if partial else ConcatKind.NONE
            ),
            parts=[p.id for p in partials] if is_final else None,
            store=ctx.store.name,
            storage_key=key,
            store_handle=handle,
            digests=None,
            uploader=principal.token_id,
            evidence_id=None,
            error=None,
            lock_owner=None,
            lock_until=None,
            lock_wanted=None,
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(seconds=ctx.settings.upload_expiry),
            agency_id=principal.agency_id,
        )
        async with unit_of_work(ctx.engine) as unit:
            await uploads_db.insert(unit.conn, upload)
            # Partials are claimed with the final upload's creation: of concurrent final uploads
            # naming the same partials, one is made and the others answer 409.
            if is_final and not await uploads_db.claim_partials(
                unit.conn, [p.id for p in partials], final_id=upload_id, now=now
            ):
                raise PartialTaken()
            if not partial:  # partials are pieces of one upload; the final one names them all
                unit.record(
                    UploadCreated(
                        actor=principal.label,
                        object=f"upload:{upload_id}",
                        case_id=metadata.get("case"),
                        length=length,
                        metadata=metadata,
                        parts=upload.parts,
                        client=request.remote,
                        time=now,
                    )
                )
        log.info(
            "upload.created id=%s length=%s concat=%s case=%s uploader=%s",
            upload_id,
            length if length is not None else "deferred",
            upload.concat or "-",
            metadata.get("case", "-"),
            principal.token_id,
        )
        response_headers = {"Location": self._location(request, upload_id)}
        if is_final:
            try:
                upload = await concat.join(ctx, upload, partials)
            except Exception as exc:
                # Not joined (the store failed before the final object existed): the partials go
                # back for the client's next final upload. Once joined they are spent.
                current = await uploads_db.get(ctx.engine, upload.id)
                if current is not None and current.state == UploadState.RECEIVING:
                    await uploads_db.release_partials(ctx.engine, upload, error=repr(exc))
                raise
            response_headers.update(self._outcome_headers(upload))
        elif self._has_body(request):
            # creation-with-upload: the body is the first chunk, as for a PATCH at offset 0.
            offset = await self._write(request, upload, offset=0)
            upload = await complete_if_full(ctx, upload, offset)
            response_headers["Upload-Offset"] = str(offset)
            response_headers.update(self._outcome_headers(upload))
        elif length == 0:
            # "an upload with Upload-Length: 0 ... is immediately complete after its creation"
            upload = await complete_if_full(ctx, upload, 0)
            response_headers["Upload-Offset"] = "0"
            response_headers.update(self._outcome_headers(upload))
        response_headers.update(self._expiry_headers(upload))
        return web.Response(status=201, headers=response_headers)

    async def head(self, upload: Upload) -> web.Response:
        offset = upload.offset
        if upload.state == UploadState.RECEIVING and upload.concat != ConcatKind.FINAL:
            upload, offset = await self._settled_offset(upload)
        elif upload.length is not None:
            offset = upload.length
        out = {
            "Upload-Offset": str(offset),
            # "The Server MUST prevent the client and/or proxies from caching the response"
            "Cache-Control": "no-store",
        }
        if upload.length is None:
            out["Upload-Defer-Length"] = "1"
        else:
            out["Upload-Length"] = str(upload.length)
        if upload.metadata:
            out["Upload-Metadata"] = headers.encode_metadata(upload.metadata)
        if upload.concat == ConcatKind.PARTIAL:
            out["Upload-Concat"] = "partial"
        elif upload.concat == ConcatKind.FINAL:
            base = self.ctx.settings.tus_path
            out["Upload-Concat"] = "final;" + " ".join(base + p for p in upload.parts or [])
        out.update(self._expiry_headers(upload))
        out.update(self._outcome_headers(upload))
        return web.Response(status=200, headers=out)

    async def _settled_offset(self, upload: Upload) -> tuple[Upload, int]:
        """The upload and its offset once no request of it is writing any more.

        Answering while a PATCH still writes, or before a broken one has written back what it
        received, gives an offset the next PATCH conflicts with. As tusd does, HEAD takes the
        upload's lock: it waits for requests announced before it to reach the lock, gives the
        holder HEAD_PATIENCE seconds to end by itself (a connection that closed is still being
        drained), then asks it to let go (a connection that vanished without a close)."""
        locks = self.ctx.locks
        await locks.settle(upload.id, within=HEAD_PATIENCE)
        lease = await locks.acquire(upload.id, on_takeover=lambda: None, patience=HEAD_PATIENCE)
        try:
            fresh = await uploads_db.get(self.ctx.engine, upload.id)
            if fresh is None:
                raise NotFound("no such upload")
            if fresh.state == UploadState.RECEIVING:
                return fresh, await UploadSession(self.ctx, fresh).durable_offset()
        finally:
            await lease.release()
        # The request it waited for received the last byte.
        return fresh, fresh.length if fresh.length is not None else fresh.offset

    async def patch(
        self, request: web.Request, upload: Upload, *, arrived: asyncio.Event | None = None
    ) -> web.Response:
        h = request.headers
        # "The Request MUST include a Content-Type header with application/offset+octet-stream"
        if h.get("Content-Type", "").split(";")[0].strip().lower() != OFFSET_CONTENT_TYPE:
            raise UnsupportedMediaType(f"PATCH bodies must be {OFFSET_CONTENT_TYPE}")
        offset = headers.non_negative_int(header(h, "Upload-Offset"), "Upload-Offset")
        if offset is None:
            raise BadRequest("Upload-Offset is required")
        if upload.concat == ConcatKind.FINAL:
            # "The Server MUST respond with the 403 Forbidden status to PATCH requests against
            # a final upload URL"
            raise Forbidden("a final upload cannot be patched")
        length = headers.non_negative_int(header(h, "Upload-Length"), "Upload-Length")
        if upload.state != UploadState.RECEIVING:
            if offset == upload.length and not self._has_body(request):
                if upload.state == UploadState.VERIFYING:
                    # A retried last PATCH resumes a verification that stopped (the signing
                    # key was unavailable, say); one already running is awaited, not repeated.
                    upload = await finish.await_outcome(self.ctx, upload.id)
                out = {"Upload-Offset": str(offset), **self._outcome_headers(upload)}
                return web.Response(status=204, headers=out)
            raise Conflict(f"the upload is already {upload.state}")
        if length is not None:
            upload = await self._set_length(upload, length, offset)
        if upload.length is None:
            # A deferred length is no way around a quota: its bytes are counted as they come
            # (the ones received so far are in the usage already; a body of unknown length
            # counts as one byte, so a token over its quota is stopped at once).
            await quotas.check(
                self.ctx.engine,
                self.ctx.settings,
                uploader=upload.uploader,
                length=max(1, request.content_length or 0),
            )
        digests = declare.parse(header(h, declare.HEADER))
        declare.require_computed(digests, self.ctx.settings.digests)
        upload = await declare.declare(self.ctx, upload, digests)
        offset = await self._write(request, upload, offset=offset, arrived=arrived)
        upload = await complete_if_full(self.ctx, upload, offset)
        out = {"Upload-Offset": str(offset)}
        out.update(self._expiry_headers(upload))
        out.update(self._outcome_headers(upload))
        return web.Response(status=204, headers=out)

    async def delete(self, upload: Upload, principal: Principal) -> web.Response:
        if upload.state not in DISCARDABLE:
            raise Forbidden(f"a {upload.state} upload is kept; evidence is never deleted by tus")
        await discard(self.ctx, upload, state=UploadState.TERMINATED, actor=principal.label)
        return web.Response(status=204)

    # -- helpers ------------------------------------------------------------------------------

    async def _write(
        self,
        request: web.Request,
        upload: Upload,
        *,
        offset: int,
        arrived: asyncio.Event | None = None,
    ) -> int:
        """Stream the body into the upload under its lock; Content-Length is checked first.
        `arrived` is set once the lock is held (see `UploadLocks.arriving`)."""
        declared = request.content_length
        if upload.length is not None and declared is not None and offset + declared > upload.length:
            # "If the offsets do not match, the Server MUST respond with the 409 Conflict status
            # code": a wrong offset is the client's real problem, so it is named first.
            durable = await UploadSession(self.ctx, upload).durable_offset()
            if offset != durable:
                raise Conflict(f"offset mismatch: the upload is at {durable}")
            raise TooLarge("the body would extend the upload beyond its Upload-Length")
        checksum = headers.parse_checksum(header(request.headers, "Upload-Checksum"))
        transport = request.transport

        def end_request() -> None:  # another request took the upload over
            if transport is not None:
                transport.close()

        lease = await self.ctx.locks.acquire(upload.id, on_takeover=end_request)
        if arrived is not None:
            arrived.set()
        try:
            fresh = await uploads_db.get(self.ctx.engine, upload.id)
            assert fresh is not None
            return await UploadSession(self.ctx, fresh).write(
                request.content, offset=offset, checksum=checksum, expect=declared
            )
        except TimeoutError:
            raise BodyInterrupted("the request body stalled; resume from HEAD") from None
        except ShuttingDown:
            # The session recorded the durable offset before this surfaced: a checkpoint.
            raise ServerDraining(
                "the server is shutting down; the upload was checkpointed, resume from HEAD",
                headers={"Retry-After": str(RETRY_AFTER), "Connection": "close"},
            ) from None
        except ClientGone as exc:
            raise BodyInterrupted(f"the connection broke ({exc}); resume from HEAD") from None
        finally:
            await lease.release()

    async def _set_length(self, upload: Upload, length: int, offset: int) -> Upload:
        if upload.length is not None:
            if length != upload.length:
                raise BadRequest("Upload-Length cannot change once set")
            return upload
        if length > self.ctx.settings.max_size:
            raise TooLarge(f"Upload-Length exceeds Tus-Max-Size {self.ctx.settings.max_size}")
        if length < offset:
            raise BadRequest("Upload-Length is smaller than the bytes already received")
        # The bytes received so far are counted already; the rest is promised now.
        await quotas.check(
            self.ctx.engine, self.ctx.settings, uploader=upload.uploader, length=length - offset
        )
        await uploads_db.update(self.ctx.engine, upload.id, length=length)
        fresh = await uploads_db.get(self.ctx.engine, upload.id)
        assert fresh is not None
        return fresh

    @staticmethod
    def _has_body(request: web.Request) -> bool:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return content_type == OFFSET_CONTENT_TYPE and (
            (request.content_length or 0) > 0
            or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        )

    def _location(self, request: web.Request, upload_id: str) -> str:
        base = self.ctx.settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
        return f"{base}{self.ctx.settings.tus_path}{upload_id}"

    @staticmethod
    def _expiry_headers(upload: Upload) -> dict[str, str]:
        if upload.state != UploadState.RECEIVING or upload.expires_at is None:
            return {}
        return {"Upload-Expires": format_datetime(upload.expires_at, usegmt=True)}

    @staticmethod
    def _outcome_headers(upload: Upload) -> dict[str, str]:
        out = {"Avidence-Upload-State": str(upload.state)}
        if upload.evidence_id:
            out["Avidence-Evidence-Id"] = upload.evidence_id
        return out
