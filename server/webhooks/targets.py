"""Where webhooks may be sent: public addresses on the web's ports, or what the operator allows.

A webhook URL is chosen by an agency's admin, and the server then connects to it and reports how
that went: without a check, a webhook is a way to reach the server's own network (loopback,
0.0.0.0, link-local cloud metadata, private ranges, multicast) and the deliveries API a port
scanner. So a target must resolve only to global unicast addresses, on port 80 or 443, unless the
`webhook_allow` setting names its host or a network holding every address it resolves to (a case
system inside the agency's network). The check runs when a webhook is created and again at every
delivery, where the resolver below hands the connector only the addresses it checked: the name
is resolved once per connection, so a DNS answer that changes between check and connect (DNS
rebinding) cannot slip an internal address in. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WEB_PORTS = (80, 443)
RESOLVE_TIMEOUT = 5.0
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


class TargetRefused(OSError):
    """The target is not allowed; the message says why, for the admin who registers it.

    An OSError, so aiohttp passes it up from the resolver inside its connection error."""


@dataclass(slots=True, frozen=True)
class Allow:
    """The operator's exceptions: networks (CIDR) and host names, any port."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    def names(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def holds(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def parse_allow(entries: tuple[str, ...]) -> Allow:
    """`webhook_allow` entries: `10.2.0.0/16`, `192.0.2.7`, `fd00::/8` or `cases.internal`.
    ValueError naming a malformed entry."""
    networks: list[Network] = []
    hosts: set[str] = set()
    for entry in entries:
        text = entry.strip().lower().rstrip(".")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        if not _HOST.match(text) or len(text) > 253:
            raise ValueError(f"webhook_allow: {entry!r} is neither a CIDR network nor a host name")
        hosts.add(text)
    return Allow(tuple(networks), frozenset(hosts))


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_addresses(addresses: list[str], *, port: int, allow: Allow) -> None:
    """Raise TargetRefused unless every address may be reached on `port`."""
    if not addresses:
        raise TargetRefused("the host resolves to no address")
    for text in addresses:
        address = _unmapped(ipaddress.ip_address(text.split("%", 1)[0]))
        if allow.holds(address):
            continue
        # is_global excludes loopback, 0.0.0.0/8, link-local, private and shared ranges;
        # multicast addresses can be global, so they are refused apart.
        if not address.is_global or address.is_multicast:
            raise TargetRefused(f"{address} is not a public address (see webhook_allow)")
        if port not in WEB_PORTS:
            raise TargetRefused(f"port {port}: only 80 and 443 (see webhook_allow)")


@dataclass(slots=True, frozen=True)
class Target:
    host: str
    port: int
    literal: bool  # the host is an IP address: no resolver is asked


def check_url(url: str, allow: Allow) -> Target:
    """The static part of the check (scheme, host, literal addresses); TargetRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http and https URLs with a host")
    try:
        given = parts.port
    except ValueError:
        given = 0
    if given == 0:  # `:0` read as "no port" was checked as 80 and connected to as 0
        raise TargetRefused("the port is not a number from 1 to 65535")
    port = given or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        literal = True
    except ValueError:
        literal = False
    if literal and not allow.names(host):
        check_addresses([host], port=port, allow=allow)
    return Target(host, port, literal)


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`; TargetRefused when it does not resolve in time."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except (OSError, TimeoutError):
        raise TargetRefused("the host name does not resolve") from None
    return [str(info[4][0]) for info in infos]


async def check_new(url: str, allow: Allow) -> None:
    """At registration: the URL, and every address its host resolves to now."""
    target = check_url(url, allow)
    if not target.literal and not allow.names(target.host):
        check_addresses(await resolve(target.host, target.port), port=target.port, allow=allow)


class CheckedResolver(AbstractResolver):
    """Resolves a name once and yields its addresses only when every one is allowed: the
    connector then connects to exactly these (aiohttp skips the resolver for IP literals,
    which `check_url` covers before each request)."""

    def __init__(self, allow: Allow) -> None:
        self.allow = allow
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self.allow.names(host):
            check_addresses([r["host"] for r in found], port=port, allow=self.allow)
        return found

    async def close(self) -> None:
        await self._inner.close()
