"""Bytes behind a ticket: ranged media for the player, downloads, receipts.

Every request names the token in its path and, for a code-protected ticket, carries the access
cookie; media requests also carry the grant of a counted view, so no byte is served outside a
view on the record, and take their bytes from that view's allowance (`allowance.py`). A stream
re-checks its ticket between chunks and ends when the ticket is revoked or expires.

What a scrub flagged is served to no one (`evidence.integrity`): media answer 409
`integrity_withheld` while the original or the copy the player gets is flagged, downloads while
the original is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.errors import StoreError

from .. import clock
from ..audit import unit
from ..audit.events import TicketDownloaded
from ..errors import Forbidden, Gone, IntegrityWithheld, NotFound, TicketExhausted
from ..evidence import integrity
from ..evidence import records as evidence_db
from ..evidence.receipts import get as get_receipt
from ..jobs.records import Derivative, playable_copy, poster_derivative
from ..media import Representation, content_type, disposition, extension, stream
from ..retention.records import removed_evidence
from ..state import CATALOG, SETTINGS, STORE
from . import records, seals
from .allowance import SLAB, Allowance, Live, Who
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


@dataclass(slots=True, frozen=True)
class Played:
    """What the player gets for one item: the original, or its browser-playable copy."""

    representation: Representation
    filename: str  # the name it is served under, fitting its type
    copy: Derivative | None = None


def copy_name(filename: str, copy: Derivative) -> str:
    """`room3.avi` played as an MP4 copy is `room3 (transcoded).mp4`, never `room3.avi`."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return f"{stem or copy.evidence_id} (transcoded){extension(copy.content_type)}"


async def played(engine: AsyncEngine, record: evidence_db.Evidence) -> Played:
    """The browser-playable copy when the worker made one (MPEG-2 TS, MJPEG AVI and HEVC
    originals play nowhere as they are), else the original; 409 `integrity_withheld` when a
    scrub flagged the original or that copy."""
    copy = await playable_copy(engine, record.id)
    if await integrity.original_flagged(engine, record.id):
        raise IntegrityWithheld(details={"evidence": record.id, "target": "original"})
    if copy is None:
        return Played(representation(record), record.filename)
    if copy.integrity == "failed":
        raise IntegrityWithheld(
            "the playable copy of this evidence failed an integrity check and is withheld "
            "until an administrator makes it again",
            details={"evidence": record.id, "target": f"derivative:{copy.id}"},
        )
    rep = Representation(
        key=copy.storage_key,
        size=copy.size,
        etag=f'"{copy.blake3}"',  # the copy's own digest, recorded when it was stored
        last_modified=copy.created_at,
        content_type=copy.content_type,
    )
    return Played(rep, copy_name(record.filename, copy), copy)


async def _poster(
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


async def _scoped(
    request: web.Request, ticket: Ticket, *, checked: bool = True
) -> evidence_db.Evidence:
    """The requested evidence when the ticket covers it (404 otherwise, as for no evidence).

    The facts served here (key, size, digests, name, type) never change, so the record is
    cached per process; seeking then costs no catalog query for the evidence. `checked`:
    410 when the item was deleted; without it the caller's own statement checks that."""
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
    if checked and not await available(request.app[CATALOG].engine, evidence_id):
        raise Gone("this evidence was deleted under its retention period")
    return record


async def media(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /t/<token>/media/<evidence>?view=<grant>: the original, with Range support.

    A seek is one ranged GET, so this path reads the catalog as little as it can: the ticket,
    the record and what plays come from this process's memory (`recent.py`), and the one
    statement that takes the bytes from the view's budget also checks that the ticket is not
    revoked and the item neither deleted nor withheld (`allowance.py`); only a refusal reads
    the catalog afresh, to answer why."""
    ticket = await resolve(request, allow_exhausted=True, recent=True)
    record = await _scoped(request, ticket, checked=False)
    runtime = request.app[RUNTIME]
    grant = request.query.get("view", "")
    view_id = seals.check_grant(
        runtime.secret, ticket.id, record.id, grant, ttl=request.app[SETTINGS].view_window
    )
    if view_id is None:
        fresh = await records.get(request.app[CATALOG].engine, ticket.id)
        if fresh is not None and fresh.state() == "exhausted":
            raise TicketExhausted()
        raise Forbidden("start a view from the viewer page first")
    engine = request.app[CATALOG].engine
    what = runtime.played.get(record.id)
    if what is None:
        what = await played(engine, record)
        runtime.played.put(record.id, what)
    session = runtime.tracker.session(
        view_id,
        ticket,
        record.id,
        case_id=record.case_id,
        client=request.remote,
        user_agent=request.headers.get("User-Agent", ""),
    )
    watch = StreamWatch(engine, ticket, runtime.revoked)

    def sent(count: int) -> None:
        session.add(count)
        watch.count(count)

    async def refused() -> None:
        """Why the catalog refused a take, read afresh: raises when access has ended."""
        runtime.tickets.forget(request.match_info["token"])
        runtime.played.forget(record.id)
        await resolve(request, allow_exhausted=True)
        await _scoped(request, ticket)
        await played(engine, record)

    allowance = Allowance(
        engine,
        view_id,
        Who(ticket.id, ticket.recipient, record.id, record.case_id, request.remote),
        live=_live(ticket, what, record.id),
        refused=refused,
        taken=watch.alive,
        quick=runtime.quick,
        pool=session,
        spare=min(4 * SLAB, what.representation.size // 4),  # for the next seeks and pieces
    )
    session.requests += 1
    session.streams += 1
    try:
        response, outcome = await stream(
            request,
            request.app[STORE],
            what.representation,
            extra_headers={"Content-Disposition": disposition("inline", what.filename)},
            on_bytes=sent,
            should_stop=watch.should_stop,
            budget=allowance,
        )
    except StoreError:
        runtime.played.forget(record.id)  # a copy made again since it was remembered
        raise
    finally:
        session.streams -= 1
        session.add(0)
    if outcome.stopped:
        refusal = allowance.refusal.code if allowance.refusal is not None else None
        log.info(
            "ticket.stream_stopped ticket=%s evidence=%s view=%s reason=%s sent=%s",
            ticket.id,
            record.id,
            view_id,
            watch.reason or refusal or f"view_{allowance.ended}",
            outcome.sent,
        )
    return response


def _live_conditions(*, copy: bool) -> tuple[sa.ColumnElement[bool], ...]:
    ticket = sa.bindparam("live_ticket", type_=sa.String())
    evidence_id = sa.bindparam("live_evidence", type_=sa.String())
    conditions = [
        records.not_revoked(ticket),
        ~removed_evidence(evidence_id),
        ~integrity.original_withheld(evidence_id),
    ]
    if copy:
        conditions.append(~integrity.copy_withheld(sa.bindparam("live_copy", type_=sa.String())))
    return tuple(conditions)


_LIVE = {False: _live_conditions(copy=False), True: _live_conditions(copy=True)}


def _live(ticket: Ticket, what: Played, evidence_id: str) -> Live:
    """What must still hold in the catalog for any byte of `what` to go out."""
    params = {"live_ticket": ticket.id, "live_evidence": evidence_id}
    if what.copy is not None:
        params["live_copy"] = what.copy.id
    return Live(_LIVE[what.copy is not None], params)


async def poster(request: web.Request) -> web.StreamResponse:
    """GET /t/<token>/poster/<evidence>: the frame the worker picked, shown before playing.

    No view is counted: the picture is part of the page, whose opening is on the audit log
    (`ticket.opened`); a revoked, expired or used-up link gets no poster either."""
    ticket = await resolve(request)
    record = await _scoped(request, ticket)
    found = await poster_derivative(request.app[CATALOG].engine, record.id)
    if found is None:
        raise NotFound("this evidence has no poster")
    response, _ = await stream(request, request.app[STORE], await _poster(request, record, found))
    return response


async def download(request: web.Request) -> web.StreamResponse:
    """GET /t/<token>/download/<evidence>: the original as an attachment, when allowed;
    every download (or resumed part of one) is one audit entry."""
    ticket = await resolve(request)
    record = await _scoped(request, ticket)
    if not ticket.can_download:
        raise Forbidden("this link allows viewing only")
    if await integrity.original_flagged(request.app[CATALOG].engine, record.id):
        raise IntegrityWithheld(details={"evidence": record.id, "target": "original"})
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
