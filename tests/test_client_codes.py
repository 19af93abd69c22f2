"""The client decides on the server's error codes, never on its wording: against a server
whose every error message is reworded, a body the server gave up on (`body_interrupted`) is
resumed from HEAD and a final upload whose answer was lost (`partial_taken`) is found again,
both ending as the right evidence."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from avidence.client.config import endpoints
from avidence.client.progress import QuietReporter
from avidence.client.state import StateStore
from avidence.client.tus import RetryPolicy, TusClient
from avidence.client.upload import Outcome, Uploader, UploadOptions
from avidence.storage.local import LocalStore

from support.files import random_file
from support.proxy import FaultProxy
from support.servers import Api, make_api

MiB = 1024 * 1024
REWORDED = "Something went wrong (reworded: read the code)."


def rewording(codes: list[str]) -> Middleware:
    """An outer middleware that rewrites every error message and notes the codes it saw."""

    @web.middleware
    async def reword(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if (
            response.status >= 400
            and isinstance(response, web.Response)
            and response.content_type == "application/json"
            and isinstance(response.body, bytes)
        ):
            document = json.loads(response.body)
            codes.append(document["error"]["code"])
            document["error"]["message"] = REWORDED
            response.body = json.dumps(document).encode()
        return response

    return reword


@contextlib.asynccontextmanager
async def reworded_api(tmp_path: Path, codes: list[str], **settings: object) -> AsyncIterator[Api]:
    """The real app over a local store, every error message reworded on the way out."""
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    apis = make_api(tmp_path, store, outer=[rewording(codes)], **settings)
    try:
        async with contextlib.aclosing(apis):
            yield await anext(apis)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def proxied(port: int, **faults: Any) -> AsyncIterator[FaultProxy]:
    """The fault proxy, stopped off the event loop (its stop runs a loop of its own)."""
    proxy = FaultProxy(port, **faults).start()
    try:
        yield proxy
    finally:
        await asyncio.to_thread(proxy.stop)


async def upload_through(
    proxy: FaultProxy, api: Api, path: Path, tmp_path: Path, **options: int
) -> Outcome:
    endpoint, base = endpoints(proxy.url)
    retry = RetryPolicy(attempts=8, base=0.2, cap=1.0)
    async with aiohttp.ClientSession() as session:
        tus = TusClient(session, endpoint=endpoint, api_base=base, token=api.uploader, retry=retry)
        uploader = Uploader(tus, StateStore(tmp_path / "state"), QuietReporter(io.StringIO()))
        return await asyncio.wait_for(
            uploader.upload(path, UploadOptions(case="W-1", **options)), 120
        )


async def test_a_lost_final_answer_is_recovered_by_code_not_by_message(tmp_path: Path) -> None:
    codes: list[str] = []
    async with reworded_api(tmp_path, codes) as api:
        path = tmp_path / "final.ts"
        digest = random_file(path, 9 * MiB)
        port = api.client.port
        assert port is not None
        # POSTs #1 and #2 create the two partials; the answer to #3, the final upload, is lost:
        # the retried POST finds the partials consumed and is refused `partial_taken`.
        async with proxied(port, cut_answer_to="POST", answers_to_skip=2, cuts_left=1) as proxy:
            outcome = await upload_through(proxy, api, path, tmp_path, parallel=2)
            assert proxy.cuts == 1
        assert "partial_taken" in codes
        assert outcome.verified and outcome.digests["blake3"] == digest
        record = await api.client.get(f"/api/evidence/{outcome.evidence_id}", headers=api.auth())
        assert (await record.json())["blake3"] == digest


async def test_a_body_the_server_gave_up_on_is_resumed_by_code_not_by_message(
    tmp_path: Path,
) -> None:
    codes: list[str] = []
    async with reworded_api(tmp_path, codes, read_timeout=1) as api:
        path = tmp_path / "stall.ts"
        digest = random_file(path, 4 * MiB)
        port = api.client.port
        assert port is not None
        # The link stalls longer than the server waits for a body: it answers 400
        # `body_interrupted` and keeps what it received.
        async with proxied(port, stall_after=MiB, stall_seconds=3.0) as proxy:

            async def heal() -> None:  # the link recovers once the server has given up
                for _ in range(1200):
                    if "body_interrupted" in codes:
                        proxy.stall_after = None
                        return
                    await asyncio.sleep(0.05)

            healing = asyncio.create_task(heal())
            try:
                outcome = await upload_through(
                    proxy, api, path, tmp_path, parallel=1, chunk_size=2 * MiB
                )
            finally:
                healing.cancel()
        assert "body_interrupted" in codes
        assert outcome.verified and outcome.digests["blake3"] == digest
