"""Honouring `X-Forwarded-*` from reverse proxies the operator trusts, and only from them.

Behind nginx or an ingress, the peer address is the proxy's; the client's address (for the
audit log) and the scheme and host (for links) arrive in forwarded headers, which anybody can
forge unless they come from a configured proxy. `X-Forwarded-For` is read from the right,
skipping trusted hops, so a client cannot smuggle an address in front of the proxy's entry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 9110 7.2 Host = uri-host [ ":" port ]: a bracketed IPv6 literal, or a name or IPv4 address
# of unreserved characters and %-escapes (RFC 3986 3.2.2; its sub-delims are no part of any
# DNS name), and a port of at most five digits.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::[0-9]{1,5})?")


def valid_host(value: str) -> bool:
    """True for a Host (or X-Forwarded-Host) value links may be built from."""
    return _HOST.fullmatch(value) is not None


def parse_networks(values: Iterable[str]) -> list[Network]:
    """`10.0.0.0/8`, `127.0.0.1` or `::1` into networks; ValueError names a bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {value!r} is not an address or network") from None
    return networks


def _trusted(address: str | None, networks: list[Network]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_middleware(networks: list[Network]) -> Middleware:
    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or not _trusted(request.remote, networks):
            return await handler(request)
        changes: dict[str, str] = {}
        hops = [
            h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()
        ]
        for hop in reversed(hops):
            if not _trusted(hop, networks):
                changes["remote"] = hop
                break
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if host and valid_host(host):
            changes["host"] = host
        return await handler(request.clone(**changes) if changes else request)  # type: ignore[arg-type]

    return forwarded

