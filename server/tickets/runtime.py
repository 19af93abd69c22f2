"""What the ticket handlers share in one process, how a request finds its ticket, and the
security headers every viewer response carries.

The headers are set in `on_response_prepare`, so error answers (written by the one error exit
path in `errors.py`) carry them too: the token is in the URL, so no response under `/t/` may be
cached or leak it through a Referer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..audit import unit
from ..audit.events import TicketProbing
from ..errors import (
    AccessCodeRequired,
    TicketExhausted,
    TicketExpired,
    TicketRevoked,
    TicketUnknown,
    TooManyRequests,
)
from ..evidence.records import Evidence
from ..limits import ProbeGuard, RateLimiter
from ..state import CATALOG, SETTINGS, SIGNER
from . import records, seals
from .quickreads import QuickReads, open_quick_reads
from .recent import Recent
from .records import Ticket
from .views import ViewTracker

if TYPE_CHECKING:
    from .serving import Played

log = logging.getLogger("avidence.tickets")

# Pages (HTML) are /t/<token> and /t/<token>/code; everything else under /t/ is data.
_PAGE = re.compile(r"^/t/[^/]+(/code)?/?$")
_FRAME_SOURCE = re.compile(r"^[A-Za-z0-9'*:/.\-_ ]+$")
_TOKEN_IN_PATH = re.compile(r"/t/([A-Za-z0-9_-]{8,64})")


class RedactTokens(logging.Filter):
    """Replace link tokens in log lines (`path=/t/<token>/...` from the error log) by a hash
    prefix: a log file must not become a list of working links. The prefix matches the
    `token_sha256_prefix` of the `ticket.issued` audit entry, so lines stay traceable."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_PATH.sub(_hashed, a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str) and "/t/" in record.msg:
            record.msg = _TOKEN_IN_PATH.sub(_hashed, record.msg)
        return True


def _hashed(match: re.Match[str]) -> str:
    return f"/t/sha256:{records.hash_token(match.group(1))[:12]}"


def install_log_redaction() -> None:
    """Once per process, on the loggers that print request paths."""
    for name in ("avidence.http", "aiohttp.access", "aiohttp.server"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


TICKET_SECONDS = 60.0  # the fields used are fixed at issue; views_used is refreshed this often
PLAYED_SECONDS = 5.0  # a copy the worker just made is played from the next view on, or this


@dataclass(slots=True)
class TicketRuntime:
    """Per-process state of the viewer."""

    secret: bytes
    tracker: ViewTracker
    limiter: RateLimiter = field(default_factory=RateLimiter)
    probes: ProbeGuard = field(default_factory=ProbeGuard)
    revoked: set[str] = field(default_factory=set)  # revoked through this process's API
    evidence: dict[str, Evidence] = field(default_factory=dict)  # immutable records, by id
    # For ranged media requests only (see `recent.py`): tickets by link token, what plays by
    # evidence id.
    tickets: Recent[str, Ticket] = field(default_factory=lambda: Recent(TICKET_SECONDS))
    played: Recent[str, Played] = field(default_factory=lambda: Recent(PLAYED_SECONDS))
    quick: QuickReads | None = None  # a SQLite catalog's reads from the loop (`quickreads.py`)
    frame_ancestors: str = "'none'"
    embed_ancestors: str = "'none'"  # who may frame `/t/<token>?embed=1`


@dataclass(slots=True, frozen=True)
class CookieRenewal:
    name: str
    value: str
    path: str
    secure: bool


RUNTIME = web.AppKey("ticket_runtime", TicketRuntime)
# Set while handling a request, read when its response is prepared. A context variable, not
# request state: behind a trusted proxy the handler sees a clone of the request, and aiohttp
# prepares a returned response with the original, which does not share the clone's state.
_RENEW: ContextVar[CookieRenewal | None] = ContextVar("ticket_cookie_renewal", default=None)


def frame_ancestors(app: web.Application) -> str:
    """`[viewer] frame_ancestors = "'self' https://cases.example"` in the TOML settings lets a
    case system embed the viewer; the default forbids framing (clickjacking)."""
    section = app[SETTINGS].extra.get("viewer", {})
    value = str(section.get("frame_ancestors", "'none'")).strip() if section else "'none'"
    if not value or not _FRAME_SOURCE.match(value):
        raise ValueError(f"viewer.frame_ancestors: {value!r} is not a CSP source list")
    return value


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def embed_ancestors(app: web.Application) -> str:
    """`[viewer] embed_origins = ["https://cases.example"]`: the case systems that may show
    the viewer inside their own pages with `?embed=1`; none by default."""
    section = app[SETTINGS].extra.get("viewer", {}) or {}
    origins = section.get("embed_origins", [])
    if isinstance(origins, str) or not isinstance(origins, list):
        raise ValueError("viewer.embed_origins: a list of origins like https://cases.example")
    for origin in origins:
        if not isinstance(origin, str) or not _ORIGIN.match(origin):
            raise ValueError(f"viewer.embed_origins: {origin!r} is not an origin (scheme://host)")
    return " ".join(origins) or "'none'"


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the view-session sweeper after the catalog opens; write every session at shutdown."""
    tracker = ViewTracker(app[CATALOG].engine, idle=float(app[SETTINGS].view_idle))
    app[RUNTIME] = TicketRuntime(
        secret=seals.derive_secret(app[SIGNER]),
        tracker=tracker,
        frame_ancestors=frame_ancestors(app),
        embed_ancestors=embed_ancestors(app),
        quick=open_quick_reads(app[CATALOG].url),
    )
    tracker.start()
    yield
    await tracker.close()
    quick = app[RUNTIME].quick
    if quick is not None:
        quick.close()


def _csp(request: web.BaseRequest, ancestors: str) -> str:
    if _PAGE.match(request.path) or request.path.startswith("/viewer/"):
        return (
            "default-src 'self'; media-src 'self'; img-src 'self' data:; script-src 'self'; "
            "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {ancestors}"
        )
    return f"default-src 'none'; frame-ancestors {ancestors}; sandbox"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(("/t/", "/viewer/")) or RUNTIME not in request.app:
        return
    ancestors = request.app[RUNTIME].frame_ancestors
    if request.query.get("embed") == "1" and _PAGE.match(request.path):
        ancestors = request.app[RUNTIME].embed_ancestors
    headers = response.headers
    headers["Content-Security-Policy"] = _csp(request, ancestors)
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if ancestors in ("'none'", "'self'"):
        headers["X-Frame-Options"] = "DENY" if ancestors == "'none'" else "SAMEORIGIN"
    if request.path.startswith("/t/"):
        headers["Cache-Control"] = "no-store"
        renew = _RENEW.get()
        if renew is not None and request.path.startswith(renew.path):
            _RENEW.set(None)
            set_access_cookie(response, renew)


def access_cookie(request: web.Request, ticket_id: str) -> CookieRenewal:
    """A fresh access cookie for this ticket, Secure when the client talks HTTPS (as a trusted
    proxy reports it) or the public URL is HTTPS."""
    runtime, settings = request.app[RUNTIME], request.app[SETTINGS]
    return CookieRenewal(
        name=seals.cookie_name(ticket_id),
        value=seals.make_cookie(runtime.secret, ticket_id),
        path=f"/t/{request.match_info['token']}",
        secure=request.secure or settings.public_url.startswith("https://"),
    )


def set_access_cookie(response: web.StreamResponse, cookie: CookieRenewal) -> None:
    """Add the access cookie as a header: aiohttp turns `response.set_cookie` into headers
    before `on_response_prepare` runs, so a cookie set there would be lost."""
    jar: SimpleCookie = SimpleCookie()
    jar[cookie.name] = cookie.value
    morsel = jar[cookie.name]
    morsel["path"] = cookie.path
    morsel["max-age"] = str(seals.COOKIE_TTL)
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if cookie.secure:
        morsel["secure"] = True
    response.headers.add("Set-Cookie", morsel.OutputString())


def has_access(request: web.Request, ticket: Ticket) -> bool:
    """True when the ticket has no code, or this browser holds a current access cookie (which
    is renewed past half its life)."""
    if not ticket.has_access_code:
        return True
    runtime = request.app[RUNTIME]
    name = seals.cookie_name(ticket.id)
    expires = seals.cookie_expiry(runtime.secret, ticket.id, request.cookies.get(name, ""))
    if not expires:
        return False
    if seals.needs_renewal(expires):
        _RENEW.set(access_cookie(request, ticket.id))
    return True


def _limited(runtime: TicketRuntime, key: str) -> None:
    if not runtime.limiter.allow(key):
        raise TooManyRequests(headers={"Retry-After": str(runtime.limiter.retry_after(key))})


async def _probing(request: web.Request, runtime: TicketRuntime) -> None:
    """An unknown token: 429 past the guessing limit, and an audit entry now and then."""
    client = request.remote or "unknown"
    if runtime.probes.allow(client):
        return
    refused = runtime.probes.refused(client)
    if refused:
        await unit.record(
            request.app[CATALOG].engine,
            TicketProbing(
                actor=f"client:{client}",
                object="tickets",
                refused_since_last_entry=refused,
                user_agent=request.headers.get("User-Agent", "")[:300],
                client=client,
            ),
        )
    log.warning("ticket.probing client=%s refused=%s", client, refused)
    retry = runtime.probes.limiter.retry_after(client)
    raise TooManyRequests(
        "too many unknown links from this address", headers={"Retry-After": str(retry)}
    )


async def resolve(
    request: web.Request,
    *,
    need_access: bool = True,
    allow_exhausted: bool = False,
    recent: bool = False,
) -> Ticket:
    """The request's ticket, or the error its holder should see: 404 unknown, 429 too fast,
    410 revoked / expired / exhausted, 401 without the access cookie.

    `recent`: the ticket may come from this process's memory, for a caller whose next catalog
    statement re-checks revocation itself (ranged media); expiry is checked here as always."""
    runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    ticket = runtime.tickets.get(token) if recent else None
    if ticket is None:
        ticket = await records.by_token(request.app[CATALOG].engine, token)
        if ticket is not None and recent:
            runtime.tickets.put(token, ticket)
    if ticket is None:
        await _probing(request, runtime)
        raise TicketUnknown()
    _limited(runtime, ticket.id)
    state = "revoked" if ticket.id in runtime.revoked else ticket.state()
    if state == "revoked":
        raise TicketRevoked()
    if state == "expired":
        raise TicketExpired()
    if state == "exhausted" and not allow_exhausted:
        raise TicketExhausted()
    if need_access and not has_access(request, ticket):
        raise AccessCodeRequired(headers={"WWW-Authenticate": 'AccessCode realm="avidence"'})
    return ticket


def describe_client(request: web.Request) -> dict[str, Any]:
    return {"user_agent": request.headers.get("User-Agent", "")[:300]}
