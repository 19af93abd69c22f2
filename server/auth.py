"""Bearer-token authentication for the upload and JSON APIs.

Unknown tokens are summarised per client address, as unknown ticket links are: a flood of made-up
tokens (1,551 in 10 s, each once an `auth.failed` entry) must neither fill the hash-chained audit
log nor keep the catalog busy. Past a guessing limit a client gets 429 with Retry-After, and the
audit log gets one `auth.failed` entry now and then carrying how many failures it stands for.
Real tokens from the same address keep working: only failures spend from the budget.
"""

from __future__ import annotations

from typing import NoReturn

from aiohttp import web

from . import tokens
from .audit import unit
from .audit.events import AuthFailed
from .catalog.schema_exchange import DEFAULT_AGENCY
from .errors import Forbidden, TooManyRequests, Unauthorized
from .limits import ProbeGuard
from .state import CATALOG
from .tokens import Principal, Role

# A person mistyping or pasting an old token never reaches the burst; a scanner soon does.
AUTH_PROBES = web.AppKey("auth_probes", ProbeGuard)


def setup(app: web.Application) -> None:
    app[AUTH_PROBES] = ProbeGuard(rate=1.0, burst=30, every=60.0)


async def require(request: web.Request, *roles: Role) -> Principal:
    """The caller's principal; 401 without a valid token, 403 when its role is not in `roles`."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="avidence"'})
    principal = await tokens.authenticate(request.app[CATALOG].engine, secret.strip())
    if principal is None:
        await _failed(request, secret.strip())
    if roles and principal.role not in roles:
        raise Forbidden(f"a {principal.role} token may not do this")
    return principal


async def require_site(request: web.Request, *roles: Role) -> Principal:
    """Storage administration is the site operator's: admins and auditors of the site's own
    (default) agency. Another agency's admin must not hold, purge or re-class evidence of
    agencies it cannot see, nor read site-wide usage, integrity or the audit log's state."""
    principal = await require(request, *roles)
    if principal.agency_id != DEFAULT_AGENCY:
        raise Forbidden("storage administration is for the site operator's agency")
    return principal


async def _failed(request: web.Request, secret: str) -> NoReturn:
    """An unknown, revoked or expired token: 401, or 429 past the guessing limit; an audit entry
    for the first failure of a client and then at most once a period, with the count."""
    client = request.remote or "unknown"
    guard = request.app[AUTH_PROBES]
    allowed = guard.allow(client)
    failures = guard.refused(client)  # counts every failure; non-zero when an entry is due
    if failures:
        await unit.record(
            request.app[CATALOG].engine,
            AuthFailed(
                actor="unknown",
                object=f"{request.method} {request.path}",
                token_sha256_prefix=tokens.hash_secret(secret)[:12],
                failures_since_last_entry=failures,
                limited=not allowed,
                client=request.remote,
            ),
        )
    if not allowed:
        retry = guard.limiter.retry_after(client)
        raise TooManyRequests(
            "too many unknown bearer tokens from this address",
            headers={"Retry-After": str(retry)},
        )
    raise Unauthorized(
        "the bearer token is unknown, revoked or expired",
        headers={"WWW-Authenticate": 'Bearer realm="avidence", error="invalid_token"'},
    )
