"""Graceful shutdown of a real `avidence-server serve` process: SIGTERM lets PATCHes in flight
finish within `shutdown_grace`, checkpoints the ones that do not, and answers new requests 503."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import blake3

from support.servers import metadata

MiB = 1024 * 1024
OCTET = "application/offset+octet-stream"
DATA = bytes(range(256)) * (8 * MiB // 256)


def _auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", **extra}


async def _create(session: aiohttp.ClientSession, base: str, token: str) -> str:
    headers = _auth(
        token,
        **{"Upload-Length": str(len(DATA)), "Upload-Metadata": metadata(case="S-1", item="1")},
    )
    async with session.post(f"{base}/files/", headers=headers) as r:
        assert r.status == 201, await r.text()
        return f"{base}/files/" + r.headers["Location"].rsplit("/", 1)[1]


async def _offset(session: aiohttp.ClientSession, url: str, token: str) -> int:
    async with session.head(url, headers=_auth(token)) as r:
        assert r.status == 200
        return int(r.headers["Upload-Offset"])


async def _wait_sent(first_sent: asyncio.Event) -> None:
    """Until the body's first MiB went out, and a moment for the server to take it in. Not by
    polling HEAD: a HEAD asks the PATCH holding the upload to let go (as tusd's lock does), which
    would end the very request this test keeps in flight."""
    await asyncio.wait_for(first_sent.wait(), 10)
    await asyncio.sleep(0.5)


async def _patch(url: str, token: str, body: AsyncIterator[bytes], offset: int) -> Any:
    headers = _auth(token, **{"Upload-Offset": str(offset), "Content-Type": OCTET})
    async with (
        aiohttp.ClientSession() as session,
        session.patch(url, data=body, headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.text()


async def test_sigterm_checkpoints_a_slow_patch_and_refuses_new_requests(
    tmp_path: Path, server_factory: Any
) -> None:
    server = server_factory("--shutdown-grace", "2")
    token = server.token()
    stop_sending = asyncio.Event()

    first_sent = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield DATA[:MiB]
        first_sent.set()
        sent = MiB
        while not stop_sending.is_set() and sent < len(DATA) - 64 * 1024:
            await asyncio.sleep(0.1)
            yield DATA[sent : sent + 64 * 1024]
            sent += 64 * 1024

    async with aiohttp.ClientSession() as session:
        url = await _create(session, server.url, token)
        patch = asyncio.create_task(_patch(url, token, slow(), 0))
        await _wait_sent(first_sent)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as fresh, fresh.get(f"{server.url}/healthz") as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "5"
            assert (await r.json())["error"]["code"] == "unavailable"
        status, headers, text = await asyncio.wait_for(patch, 15)
        answered_after = time.monotonic() - sent_at
        stop_sending.set()
    assert status == 503, text
    assert "checkpointed" in text and headers["Retry-After"] == "5"
    assert 1.5 < answered_after < 8, answered_after
    assert server.proc.wait(20) == 0
    log = server.log_tail(80)
    assert "server.drain_deadline still_running=1" in log
    assert "interrupted=ShuttingDown" in log

    # After a restart the checkpointed offset is where the upload resumes; it finishes intact.
    server.start()
    async with aiohttp.ClientSession() as session:
        offset = await _offset(session, url, token)
        assert MiB <= offset < len(DATA)

        async def rest() -> AsyncIterator[bytes]:
            yield DATA[offset:]

        status, headers, text = await _patch(url, token, rest(), offset)
        assert status == 204, text
        evidence_id = headers["Avidence-Evidence-Id"]
        async with session.get(
            f"{server.url}/api/evidence/{evidence_id}", headers=_auth(token)
        ) as r:
            record = await r.json()
    assert record["blake3"] == blake3.blake3(DATA).hexdigest()


async def test_sigterm_lets_a_patch_in_flight_finish_within_the_grace(
    tmp_path: Path, server_factory: Any
) -> None:
    server = server_factory("--shutdown-grace", "20")
    token = server.token()
    go_on = asyncio.Event()

    first_sent = asyncio.Event()

    async def paused() -> AsyncIterator[bytes]:
        yield DATA[:MiB]
        first_sent.set()
        await go_on.wait()
        yield DATA[MiB:]

    async with aiohttp.ClientSession() as session:
        url = await _create(session, server.url, token)
        patch = asyncio.create_task(_patch(url, token, paused(), 0))
        await _wait_sent(first_sent)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()
        await asyncio.sleep(0.5)
        go_on.set()
        status, headers, text = await asyncio.wait_for(patch, 30)
    assert status == 204, text
    assert headers["Avidence-Upload-State"] == "done"
    assert server.proc.wait(30) == 0
    # It left as soon as the PATCH was done, not at the end of the 20 s grace.
    assert time.monotonic() - sent_at < 12
    assert "server.drain_deadline" not in server.log_tail(80)
