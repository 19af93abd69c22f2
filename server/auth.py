"""Bearer-token authentication for the upload and JSON APIs."""

from __future__ import annotations

from aiohttp import web

from . import tokens
from .audit import unit
from .audit.events import AuthFailed
from .errors import Forbidden, Unauthorized
from .state import CATALOG
from .tokens import Principal, Role


async def require(request: web.Request, *roles: Role) -> Principal:
    """The caller's principal; 401 without a valid token, 403 when its role is not in `roles`."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="avidence"'})
    principal = await tokens.authenticate(request.app[CATALOG].engine, secret.strip())
    if principal is None:
        await unit.record(
            request.app[CATALOG].engine,
            AuthFailed(
                actor="unknown",
                object=f"{request.method} {request.path}",
                token_sha256_prefix=tokens.hash_secret(secret.strip())[:12],
                client=request.remote,
            ),
        )
        raise Unauthorized(
            "the bearer token is unknown, revoked or expired",
            headers={"WWW-Authenticate": 'Bearer realm="avidence", error="invalid_token"'},
        )
    if roles and principal.role not in roles:
        raise Forbidden(f"a {principal.role} token may not do this")
    return principal
