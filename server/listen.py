"""How `serve` listens: TLS, limits on request heads, a deadline on slow heads, JSON answers to
requests too malformed to reach the app.

aiohttp parses the request line and headers before any middleware runs, so its limits
(`max_headers` lines, `max_header_size` bytes per line) and its answer to a head that breaks
them are set here. Its keep-alive timer runs from the moment a connection opens until a complete
head arrives, so `read_timeout` used as that timer also ends a slowloris client that drips a
head byte by byte.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import InvalidURLError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from .config import ConfigError, Settings
from .errors import BadRequest, HeadersTooLarge

log = logging.getLogger("avidence.http")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A server TLS context from `tls_cert`/`tls_key` (PEM), or None for plain HTTP."""
    if not settings.tls_cert:
        return None
    for name, path in (("tls_cert", settings.tls_cert), ("tls_key", settings.tls_key)):
        if not Path(path).is_file():
            raise ConfigError(f"{name}: no such file {path}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"tls_cert/tls_key: cannot load the certificate and key: {exc.args[-1]}"
        ) from None
    return context


# Where a quoted piece of the request starts: a quote (or b') after a space, unless what it
# quotes is a header name ("Missing 'Host' header", "Duplicate 'Content-Length' header").
_QUOTED = re.compile(r"""\sb?(['"])(?![A-Za-z][A-Za-z0-9-]{0,39}\1(?:[\s.:,]|$))""")


def _reason(message: str | None, exc: BaseException | None = None) -> str:
    """aiohttp's reason for refusing a request head, without the bytes of the head it quotes
    after it: a quoted header line may carry a bearer token or a viewer cookie, which must reach
    neither the log nor the answer (nor break the log line with its line feeds)."""
    if isinstance(exc, InvalidURLError):
        return "the request target is not a path or an absolute URL"  # its message is the target
    first = (message or "").strip().split("\n", 1)[0]
    match = _QUOTED.search(first)  # "Invalid HTTP header: b'...'"; keeps "can't"
    first = first[: match.start()] if match else first
    return first.strip().rstrip(":").strip()[:200] or "unparseable"


def _too_large(exc: BaseException | None, message: str | None) -> bool:
    return isinstance(exc, LineTooLong) or "Too many headers" in (message or "")


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering unparseable requests as the app answers errors."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        # RFC 6585: 431 Request Header Fields Too Large
        error = (
            HeadersTooLarge()
            if _too_large(exc, message)
            else BadRequest(f"malformed HTTP request: {_reason(message, exc)}")
        )
        log.warning(
            "http.error method=- route=unparsed status=%s code=%s message=%s client=%s",
            error.status,
            error.code,
            error.message,
            request.remote,
        )
        body = {"error": {"code": error.code, "message": error.message, "status": error.status}}
        response = web.Response(
            status=error.status, body=json.dumps(body).encode(), content_type="application/json"
        )
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose connections use the settings' head limits and JSON errors."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            app,
            access_log=None,
            handle_signals=False,
            max_headers=settings.max_headers,
            max_line_size=settings.max_header_size,
            max_field_size=settings.max_header_size,
            keepalive_timeout=float(settings.read_timeout),
            **kwargs,
        )

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **self._kwargs,
        )
