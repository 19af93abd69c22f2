"""Graceful shutdown: on SIGTERM, stop taking work, let requests in flight end, checkpoint the rest.

A replica being replaced (rolling deploy, scale-down) must not turn an hour-long PATCH into lost
work nor leave a client guessing. While draining, every new request is answered 503 with
`Retry-After` and `Connection: close`, so a balancer or client goes to another replica;
requests already running get `shutdown_grace` seconds to end by themselves. After that, each
body still being read is ended with `ShuttingDown`: the upload session then records the store's
durable offset in the catalog (the same path as a broken connection) and the client is told
503 with the offset to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .errors import ServiceUnavailable

log = logging.getLogger("avidence.server.drain")

RETRY_AFTER = 5


class ShuttingDown(Exception):
    """Set on request bodies still being read when the grace period ends."""


class Drain:
    """Requests in flight, and whether the process is draining."""

    def __init__(self) -> None:
        self.draining = False
        self._active: dict[int, web.BaseRequest] = {}  # by id(): requests are unhashable
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        return len(self._active)

    def middleware(self) -> Middleware:
        @web.middleware
        async def drain(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.draining:
                raise ServiceUnavailable(
                    "the server is shutting down; retry shortly (another replica may answer)",
                    headers={"Retry-After": str(RETRY_AFTER), "Connection": "close"},
                )
            self._active[id(request)] = request
            self._idle.clear()
            try:
                return await handler(request)
            finally:
                self._active.pop(id(request), None)
                if not self._active:
                    self._idle.set()

        return drain

    async def stop(self, *, grace: float) -> int:
        """Start draining and wait up to `grace` seconds for requests in flight; then end the
        bodies still being read. Returns how many requests were still running at the deadline."""
        self.draining = True
        log.info("server.draining active=%s grace=%s", self.active, grace)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        left = self.active
        for request in list(self._active.values()):
            # Ends a body mid-read at the next chunk; a handler past its body is left to finish.
            request.content.set_exception(ShuttingDown("the server is shutting down"))
        if left:
            log.warning("server.drain_deadline still_running=%s", left)
        return left

    async def wait_idle(self) -> None:
        """Until no request is in flight (the caller bounds it with `asyncio.timeout`)."""
        await self._idle.wait()


DRAIN = web.AppKey("drain", Drain)
