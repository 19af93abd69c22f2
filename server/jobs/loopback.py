"""An original served to ffprobe/ffmpeg over loopback HTTP, for stores that must transform bytes.

A sealed store offers neither a file to link nor a URL to presign: its objects are ciphertext.
Copying the plaintext out into a working folder would put the whole recording, decrypted, on
worker disk for the length of the job. Instead the job opens a private HTTP endpoint on
127.0.0.1 that answers ranged GETs from the store's own `read` (which opens only the segments
a range touches), so the tools seek as they do over S3 and nothing of the original is written.

The endpoint serves one object, under a path holding a random secret, for the life of the job:
another local user who finds the port cannot guess the path, and it is gone when the job ends.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from avidence.storage.base import Store
from avidence.storage.errors import StoreError

from ..media import parse_ranges

log = logging.getLogger("avidence.jobs")


def _app(store: Store, key: str, size: int, path: str) -> web.Application:
    async def get(request: web.Request) -> web.StreamResponse:
        start, end, status = 0, size, 200
        header = request.headers.get("Range")
        if header is not None:
            ranges = parse_ranges(header, size)
            if ranges == []:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            if ranges:
                start, end, status = ranges[0].start, ranges[0].end, 206
        stream = None
        if request.method != "HEAD" and end > start:
            try:  # opened before the headers go, so a store that refuses answers with a status
                stream = await store.read(key, start=start, length=end - start)
            except StoreError as exc:
                log.error("job.source_unreadable key=%s error=%s", key, exc)
                return web.Response(status=503, text="the original cannot be read now\n")
        response = web.StreamResponse(status=status)
        response.content_length = end - start
        response.content_type = "application/octet-stream"
        response.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        await response.prepare(request)
        if stream is None:
            return response
        try:
            async for block in stream:
                await response.write(block)
        except ConnectionError:
            pass  # the tool seeks by dropping a connection and opening another
        except StoreError as exc:
            # Cut short: the tool sees a truncated body and the job fails and is retried.
            log.error("job.source_unreadable key=%s at=%d error=%s", key, start, exc)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        return response

    app = web.Application()
    app.router.add_get(path, get)  # aiohttp answers HEAD for GET routes
    return app


@asynccontextmanager
async def serving(store: Store, key: str, *, size: int) -> AsyncIterator[str]:
    """A URL on 127.0.0.1 answering ranged GETs of `key`, valid inside the block."""
    path = f"/{secrets.token_urlsafe(24)}/source"
    runner = web.AppRunner(_app(store, key, size, path), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=16).start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()
