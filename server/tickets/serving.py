"""Bytes behind a ticket: ranged media for the player, downloads, receipts.

Every request names the token in its path and, for a code-protected ticket, carries the access
cookie; media requests also carry the grant of a counted view, so no byte is served outside a
view on the record. A stream re-checks its ticket between chunks and ends when the ticket is
revoked or expires.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from .. import clock
from ..audit import unit
from ..audit.events import TicketDownloaded
from ..errors import Forbidden, Gone, NotFound, TicketExhausted
from ..evidence import records as evidence_db
from ..evidence.receipts import get as get_receipt
from ..jobs import playable_derivative, poster_derivative
from ..media import Representation, content_type, disposition, stream
from ..state import CATALOG, STORE
from . import seals
from .records import Ticket, available
from .runtime import RUNTIME, resolve
from .views import StreamWatch

log = logging.getLogger("avidence.tickets.serving")

EVIDENCE_CACHE_MAX = 10_000


def representation(record: evidence_db.Evidence) -> Representation:
    return Representation(
        key=record.storage_key,
        size=record.size,
        etag=f'"{record.blake3}"',  # the content's own hash: a strong validator by nature
        last_modified=record.received_at,
        content_type=content_type(record.filename, record.filetype),
    )


async def playable(request: web.Request, record: evidence_db.Evidence) -> Representation:
    """What the player gets: the browser-playable copy when the worker made one (MPEG-2 TS,
    MJPEG AVI and HEVC originals play nowhere as they are), else the original itself."""
    found = await playable_derivative(request.app[CATALOG].engine, record.id)
    if found is None:
        return representation(record)
    return await _derived(request, record, found)


async def _derived(
    request: web.Request, record: evidence_db.Evidence, found: tuple[str, str]
) -> Representation:
    key, kind = found
    info = await request.app[STORE].stat(key)
    return Representation(
        key=key,
        size=info.size,
        etag=f'"{record.blake3}-{key.rsplit("/", 1)[-1]}"',
        last_modified=info.modified or record.received_at,
        content_type=kind,
    )


async def _scoped(request: web.Request, ticket: Ticket) -> evidence_db.Evidence:
    """The requested evidence when the ticket covers it (404 otherwise, as for no evidence).

    The facts served here (key, size, digests, name, type) never change, so the record is
    cached per process; seeking then costs no catalog query for the evidence."""
    evidence_id = request.match_info["evidence_id"]
    if evidence_id not in ticket.evidence_ids:
        raise NotFound("no such evidence in this link")
    cache = request.app[RUNTIME].evidence
    record = cache.get(evidence_id)
    if record is None:
        record = await evidence_db.get(request.app[CATALOG].engine, evidence_id)
        if record is None:
            raise NotFound("no such evidence in this link")
        if len(cache) >= EVIDENCE_CACHE_MAX:
            cache.clear()
        cache[evidence_id] = record
    # Checked on every request, like revocation: a deletion ends access at once.
    if not await available(request.app[CATALOG].engine, evidence_id):
        raise Gone("this evidence was deleted under its retention period")
    return record


async def media(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /t/<token>/media/<evidence>?view=<grant>: the original, with Range support."""
    ticket = await resolve(request, allow_exhausted=True)
    record = await _scoped(request, ticket)
    runtime = request.app[RUNTIME]
    grant = request.query.get("view", "")
    view_id = seals.check_grant(runtime.secret, ticket.id, record.id, grant)
    if view_id is None:
        if ticket.state() == "exhausted":
            raise TicketExhausted()
        raise Forbidden("start a view from the viewer page first")
    session = runtime.tracker.session(
        view_id,
        ticket,
        record.id,
        case_id=record.case_id,
        client=request.remote,
        user_agent=request.headers.get("User-Agent", ""),
    )
    watch = StreamWatch(request.app[CATALOG].engine, ticket, runtime.revoked)

    def sent(count: int) -> None:
        session.add(count)
        watch.count(count)

    session.requests += 1
    session.streams += 1
    try:
        response, outcome = await stream(
            request,
            request.app[STORE],
            await playable(request, record),
            extra_headers={"Content-Disposition": disposition("inline", record.filename)},
            on_bytes=sent,
            should_stop=watch.should_stop,
        )
    finally:
        session.streams -= 1
        session.add(0)
    if outcome.stopped:
        log.info(
            "ticket.stream_stopped ticket=%s evidence=%s view=%s reason=%s sent=%s",
            ticket.id,
            record.id,
            view_id,
            watch.reason,
            outcome.sent,
        )
    return response


async def poster(request: web.Request) -> web.StreamResponse:
    """GET /t/<token>/poster/<evidence>: the frame the worker picked, shown before playing.

    No view is counted: the picture is part of the page, whose opening is on the audit log
    (`ticket.opened`); a revoked, expired or used-up link gets no poster either."""
    ticket = await resolve(request)
    record = await _scoped(request, ticket)
    found = await poster_derivative(request.app[CATALOG].engine, record.id)
    if found is None:
        raise NotFound("this evidence has no poster")
    response, _ = await stream(request, request.app[STORE], await _derived(request, record, found))
    return response


async def download(request: web.Request) -> web.StreamResponse:
    """GET /t/<token>/download/<evidence>: the original as an attachment, when allowed;
    every download (or resumed part of one) is one audit entry."""
    ticket = await resolve(request)
    record = await _scoped(request, ticket)
    if not ticket.can_download:
        raise Forbidden("this link allows viewing only")
    runtime = request.app[RUNTIME]
    watch = StreamWatch(request.app[CATALOG].engine, ticket, runtime.revoked)
    started = clock.now()  # the entry is stamped when the download began, not when it ended
    response, outcome = await stream(
        request,
        request.app[STORE],
        representation(record),
        extra_headers={"Content-Disposition": disposition("attachment", record.filename)},
        on_bytes=watch.count,
        should_stop=watch.should_stop,
    )
    if request.method == "GET":
        await unit.record(
            request.app[CATALOG].engine,
            TicketDownloaded(
                actor=f"ticket:{ticket.id} ({ticket.recipient})",
                object=f"evidence:{record.id}",
                case_id=record.case_id,
                ticket=ticket.id,
                recipient=ticket.recipient,
                filename=record.filename,
                status=outcome.status,
                offset=outcome.start,
                bytes=outcome.sent,
                complete=outcome.sent == outcome.planned,
                stopped=watch.reason,
                user_agent=request.headers.get("User-Agent", "")[:300],
                client=request.remote,
                time=started,
            ),
        )
    return response


async def receipt(request: web.Request) -> web.Response:
    """GET /t/<token>/receipt/<evidence>: the signed receipt exactly as issued."""
    ticket = await resolve(request)
    record = await _scoped(request, ticket)
    document = await get_receipt(request.app[CATALOG].engine, record.id)
    if document is None:
        raise NotFound("this evidence has no receipt")
    response = web.json_response(document, dumps=_dumps)
    response.headers["Content-Disposition"] = disposition("inline", f"receipt-{record.id}.json")
    return response


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
