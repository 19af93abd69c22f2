"""The viewer page `/t/<token>`, its access-code form, and the start of a counted view.

The page is HTML for people: an unusable link gets a page saying why (404 unknown, 410 expired,
revoked or exhausted), a code-protected link gets the code form (401, then 403 for a wrong code),
never a JSON error or a traceback. `POST /t/<token>/views` is what the page's script calls when
a player starts: it counts the view (refusing past the limit) and returns the grant the media
requests carry.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from .. import clock, tokens
from ..audit import unit
from ..audit.events import TicketCodeFailed, TicketOpened
from ..cases import custody
from ..errors import (
    ApiError,
    IntegrityWithheld,
    NotFound,
    TicketExhausted,
    TicketExpired,
    TicketRevoked,
    UnsupportedMediaType,
)
from ..evidence import records as evidence_db
from ..jobs import records as jobs_records
from ..media import content_type
from ..requests import form_body, json_body
from ..state import CATALOG, SETTINGS
from . import allowance, codes, i18n, pages, records, seals
from .runtime import RUNTIME, access_cookie, has_access, resolve, set_access_cookie
from .serving import played

_CODE_CHALLENGE = {"WWW-Authenticate": 'AccessCode realm="avidence"'}


def _html(request: web.Request, body: str, *, status: int = 200, **headers: str) -> web.Response:
    response = web.Response(
        status=status, text=body, content_type="text/html", charset="utf-8", headers=headers
    )
    i18n.remember(request, response)
    return response


def _problem(request: web.Request, error: ApiError) -> web.Response:
    lang = i18n.pick(request)
    body = pages.problem(error.code, lang=lang, path=request.path)
    headers = {k: v for k, v in error.headers.items() if k == "Retry-After"}
    return _html(request, body, status=error.status, **headers)


def _player_kind(record: evidence_db.Evidence) -> str:
    kind = content_type(record.filename, record.filetype).split("/")[0]
    return kind if kind in ("video", "audio") else "none"


async def page(request: web.Request) -> web.StreamResponse:
    """GET /t/<token>: the evidence, its facts and players, or why the link cannot be used."""
    lang = i18n.pick(request)
    token = request.match_info["token"]
    try:
        ticket = await resolve(request, need_access=False)
    except ApiError as exc:
        return _problem(request, exc)
    if not has_access(request, ticket):
        body = pages.code_form(
            token=token,
            lang=lang,
            place=request.app[SETTINGS].display_zone,
            locked_until=_locked(ticket),
        )
        return _html(request, body, status=401, **_CODE_CHALLENGE)
    engine = request.app[CATALOG].engine
    items = []
    async with engine.connect() as conn:
        for record in await records.evidence_of(engine, ticket):
            uploader = await tokens.name_of(conn, record.uploader) or record.uploader
            analysis = await jobs_records.media_of(engine, record.id)
            steps = await custody.of_evidence(engine, record.id, case_number=record.case_id)
            poster = await jobs_records.poster_derivative(engine, record.id) is not None
            copy, withheld = None, None
            try:
                copy = (await played(engine, record)).copy
            except IntegrityWithheld as exc:
                withheld = str(exc.details.get("target", "original"))
            items.append(
                pages.Item(
                    record,
                    _player_kind(record),
                    uploader,
                    analysis,
                    tuple(steps),
                    copy=copy,
                    withheld=withheld,
                    poster=poster,
                )
            )
    await records.touch(engine, ticket.id)
    await unit.record(
        engine,
        TicketOpened(
            actor=f"ticket:{ticket.id} ({ticket.recipient})",
            object=f"ticket:{ticket.id}",
            case_id=ticket.case_id,
            recipient=ticket.recipient,
            evidence=list(ticket.evidence_ids),
            user_agent=request.headers.get("User-Agent", "")[:300],
            client=request.remote,
        ),
    )
    embed = request.query.get("embed") == "1"
    settings = request.app[SETTINGS]
    limits = pages.ViewLimits(settings.view_window, settings.view_bytes_multiple)
    body = pages.viewer(
        ticket,
        items,
        token=token,
        lang=lang,
        place=settings.display_zone,
        embed=embed,
        limits=limits,
    )
    return _html(request, body)


def _locked(ticket: records.Ticket) -> datetime | None:
    until = ticket.code_locked_until
    return until if until is not None and until > clock.now() else None


async def enter_code(request: web.Request) -> web.StreamResponse:
    """POST /t/<token>/code: the right code sets the access cookie and goes back to the page;
    a wrong one is counted, audited and answered 403; five lock the ticket for 15 minutes."""
    lang = i18n.pick(request)
    token = request.match_info["token"]
    try:
        ticket = await resolve(request, need_access=False)
    except ApiError as exc:
        return _problem(request, exc)
    if not ticket.has_access_code:
        raise web.HTTPSeeOther(f"/t/{token}")
    form = await form_body(request)
    code = str(form.get("code", ""))[:32].strip()
    engine = request.app[CATALOG].engine
    result = await codes.check(engine, ticket.id, code)
    if result.ok:
        response = web.Response(status=303, headers={"Location": f"/t/{token}"})
        set_access_cookie(response, access_cookie(request, ticket.id))
        return response
    await unit.record(
        engine,
        TicketCodeFailed(
            actor=f"ticket:{ticket.id} ({ticket.recipient})",
            object=f"ticket:{ticket.id}",
            case_id=ticket.case_id,
            tries_left=result.tries_left,
            locked_until=records.iso(result.locked_until),
            user_agent=request.headers.get("User-Agent", "")[:300],
            client=request.remote,
        ),
    )
    body = pages.code_form(
        token=token,
        lang=lang,
        place=request.app[SETTINGS].display_zone,
        tries_left=None if result.locked_until else result.tries_left,
        locked_until=result.locked_until,
    )
    return _html(request, body, status=403)


async def start_view(request: web.Request) -> web.Response:
    """POST /t/<token>/views {"evidence": ID}: count one view, answer 201 with its grant."""
    ticket = await resolve(request)
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send JSON")
    body = await json_body(request, required=True)
    evidence_id = body.get("evidence") if isinstance(body, dict) else None
    if not isinstance(evidence_id, str) or evidence_id not in ticket.evidence_ids:
        raise NotFound("no such evidence in this link")
    engine = request.app[CATALOG].engine
    record = await evidence_db.get(engine, evidence_id)
    if record is None:
        raise NotFound("no such evidence in this link")
    what = await played(engine, record)  # 409 integrity_withheld before a view is counted
    settings = request.app[SETTINGS]
    terms = allowance.terms(
        size=what.representation.size,
        window=settings.view_window,
        multiple=settings.view_bytes_multiple,
    )
    user_agent = request.headers.get("User-Agent", "")
    view_id = await records.start_view(
        engine,
        ticket,
        evidence_id,
        client=request.remote,
        user_agent=user_agent,
        expires_at=terms.expires_at,
        byte_budget=terms.byte_budget,
    )
    if view_id is None:  # lost a race with revocation, expiry or the last view
        fresh = await records.get(engine, ticket.id)
        state = fresh.state() if fresh else "revoked"
        raise {"revoked": TicketRevoked, "expired": TicketExpired}.get(state, TicketExhausted)()
    runtime = request.app[RUNTIME]
    runtime.tracker.session(
        view_id,
        ticket,
        evidence_id,
        case_id=record.case_id,
        client=request.remote,
        user_agent=user_agent,
    )
    fresh = await records.get(engine, ticket.id)
    return web.json_response(
        {
            "view": seals.make_grant(runtime.secret, ticket.id, evidence_id, view_id),
            "views_left": fresh.views_left if fresh else None,
            "expires_at": records.iso(terms.expires_at),
            "byte_budget": terms.byte_budget,
        },
        status=201,
    )
