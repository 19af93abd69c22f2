"""Uppy 6 (its Tus plugin, i.e. tus-js-client in a browser) in headless Chromium, from a page of
another origin that the server allows (`cors_origins`): the upload becomes evidence with the
file's digest. Uppy's bundle comes from tests/node/node_modules (`make node-deps`)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import blake3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from avidence.storage.local import LocalStore

from support.browser import CHROMIUM_ARGS, chromium
from support.servers import Api, free_port, make_api
from support.tusnode import NODE_DIR

BUNDLE = NODE_DIR / "node_modules" / "uppy" / "dist" / "uppy.min.js"
SIZE = 3 * 1024 * 1024 + 123

PAGE = """<!doctype html><meta charset="utf-8"><title>uppy</title>
<script src="/uppy.min.js"></script>
<script>
window.runUpload = async (endpoint, token, size) => {
  const { Uppy, Tus } = globalThis.Uppy;
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(Tus, {
    endpoint, headers: { Authorization: "Bearer " + token },
    chunkSize: 1024 * 1024, retryDelays: [0, 500, 1000],
  });
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + 3) & 255;
  uppy.addFile({ name: "rec.ts", type: "video/mp2t", data: new Blob([bytes]),
                 meta: { case: "UPPY-1" } });
  const result = await uppy.upload();
  return JSON.stringify({
    failed: result.failed.map((f) => String(f.error)),
    url: result.successful.length ? result.successful[0].uploadURL : null,
  });
};
</script>"""


def _expected() -> str:
    return blake3.blake3(bytes((i * 7 + 3) & 255 for i in range(SIZE))).hexdigest()


@pytest.fixture()
async def page_and_api(tmp_path: Path) -> AsyncIterator[tuple[str, Api]]:
    if not BUNDLE.exists():
        reason = "tests/node/node_modules/uppy is missing: run make node-deps"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def bundle(_: web.Request) -> web.FileResponse:
        return web.FileResponse(BUNDLE)

    page = web.Application()
    page.router.add_get("/", index)
    page.router.add_get("/uppy.min.js", bundle)
    page_server = TestServer(page, host="127.0.0.1", port=port)
    await page_server.start_server()
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store, cors_origins=origin):
            yield origin, api
    finally:
        await store.close()
        await page_server.close()


async def test_uppy_in_chromium_uploads_across_origins(page_and_api: tuple[str, Api]) -> None:
    origin, api = page_and_api
    from playwright.async_api import async_playwright

    executable = chromium()
    endpoint = f"http://127.0.0.1:{api.client.port}/files/"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(origin + "/")
            raw = await page.evaluate(
                "([e, t, s]) => window.runUpload(e, t, s)", [endpoint, api.uploader, SIZE]
            )
        finally:
            await browser.close()
    result = json.loads(raw)
    assert result["failed"] == [] and result["url"], result
    upload_id = result["url"].rstrip("/").rsplit("/", 1)[1]
    upload = await (await api.client.get(f"/api/uploads/{upload_id}", headers=api.auth())).json()
    assert upload["state"] == "done", upload
    record = await (
        await api.client.get(f"/api/evidence/{upload['evidence_id']}", headers=api.auth())
    ).json()
    assert record["blake3"] == _expected()
    assert record["case_id"] == "UPPY-1"
