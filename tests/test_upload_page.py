"""The browser upload page `/upload`: a real Chromium uploads a generated file through
tus-js-client and shows the evidence id and the digests the server computed; a wrong token gets
a clear message; the page's security headers forbid inline scripts and framing.

Headless Chromium (Debian's `chromium`) driven by Playwright against a real `avidence-server
serve` process.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import aiohttp
import blake3

from support.browser import CHROMIUM_ARGS, chromium
from support.files import get_json, random_file
from support.servers import ServerProcess

MiB = 1024 * 1024


def digests(path: Path) -> tuple[str, str]:
    b3, sha = blake3.blake3(), hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(MiB):
            b3.update(block)
            sha.update(block)
    return b3.hexdigest(), sha.hexdigest()


def watch_problems(page: Any, problems: list[str]) -> None:
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))


async def test_page_uploads_a_file_and_shows_the_servers_id_and_digests(
    server_factory: Any, tmp_path: Path
) -> None:
    executable = chromium()
    from playwright.async_api import async_playwright

    server: ServerProcess = server_factory()
    token = await asyncio.to_thread(server.token)
    recording = tmp_path / "interview-3.ts"
    await asyncio.to_thread(random_file, recording, 6 * MiB + 12345)
    want_b3, want_sha = await asyncio.to_thread(digests, recording)
    problems: list[str] = []
    aborted: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="en-US", viewport={"width": 1000, "height": 900})
            watch_problems(page, problems)

            async def cut_first_patch(route: Any) -> None:
                # The first body is cut: tus-js-client must resume from HEAD, not start over.
                if route.request.method == "PATCH" and not aborted:
                    aborted.append(route.request.url)
                    await route.abort("connectionreset")
                else:
                    await route.continue_()

            await page.route(re.compile(r".*/files/.*"), cut_first_patch)
            response = await page.goto(f"{server.url}/upload?lang=en")
            assert response is not None and response.status == 200
            assert await page.title() == "Upload evidence · avidence"
            await page.fill("#token", token)
            await page.fill("#case", "2026-0042")
            await page.fill("#item", "interview 3")
            await page.set_input_files("#files", str(recording))
            await page.click("#start")
            row = page.locator(".uploads .file").first
            await row.locator(".evidence-id").wait_for(timeout=60_000)
            evidence_id = await row.locator(".evidence-id").inner_text()
            assert await row.locator(".blake3").inner_text() == want_b3
            assert await row.locator(".sha256").inner_text() == want_sha
            assert "exactly these bytes" in await row.locator(".state").inner_text()
            assert aborted, "the route never saw a PATCH"

            # The token stays out of the address bar; it is kept for this tab only.
            assert token not in page.url
            await page.reload()
            assert await page.input_value("#token") == token
            await page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)
            await page.click("#forget")
            await page.reload()
            assert await page.input_value("#token") == ""
            await page.goto(f"{server.url}/upload?lang=zh")
            assert "上传证据" in await page.title()
            # the one failed request is the PATCH the route cut on purpose
            assert problems == ["Failed to load resource: net::ERR_CONNECTION_RESET"], problems
        finally:
            await browser.close()

    record = await asyncio.to_thread(get_json, f"{server.url}/api/evidence/{evidence_id}", token)
    assert record["blake3"] == want_b3 and record["sha256"] == want_sha
    assert record["case_id"] == "2026-0042" and record["item"] == "interview 3"
    assert record["filename"] == recording.name and record["size"] == recording.stat().st_size


async def test_page_explains_a_wrong_token_and_a_missing_case(
    server_factory: Any, tmp_path: Path
) -> None:
    executable = chromium()
    from playwright.async_api import async_playwright

    server: ServerProcess = server_factory()
    recording = tmp_path / "clip.bin"
    await asyncio.to_thread(random_file, recording, 256 * 1024)
    problems: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="en-US")
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"{server.url}/upload?lang=en")
            await page.click("#start")
            assert await page.locator("#status").inner_text() == "Enter the uploader token."
            await page.fill("#token", "avd_this-is-not-a-token")
            await page.click("#start")
            assert await page.locator("#status").inner_text() == "Enter the case number."
            await page.fill("#case", "2026-0042")
            await page.click("#start")
            assert await page.locator("#status").inner_text() == "Choose at least one file."
            await page.set_input_files("#files", str(recording))
            await page.click("#start")
            state = page.locator(".uploads .file.failed .state")
            await state.wait_for(timeout=30_000)
            text = await state.inner_text()
            assert text.startswith("The server did not accept this token"), text
            assert await page.locator("#status").inner_text() == text

            await page.goto(f"{server.url}/upload?lang=zh")
            await page.fill("#token", "avd_this-is-not-a-token")
            await page.fill("#case", "2026-0042")
            await page.set_input_files("#files", str(recording))
            await page.click("#start")
            await state.wait_for(timeout=30_000)
            assert "服务器不接受此令牌" in await state.inner_text()
            assert problems == [], problems
        finally:
            await browser.close()


async def test_page_and_assets_forbid_inline_scripts_and_framing(
    server_factory: Any,
) -> None:
    server: ServerProcess = server_factory()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/upload") as response:
            assert response.status == 200
            body = await response.text()
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
            assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert not re.search(r'(src|href)="(https?:)?//', body)  # nothing from elsewhere
            # every script is a file from this server; the one inline block is JSON data
            scripts = re.findall(r"<script([^>]*)>", body)
            own = re.compile(r'src="/(upload|viewer)/[a-z.]+\.js"')
            assert all(own.search(s) or 'type="application/json"' in s for s in scripts)
            assert 'lang="zh-CN"' in body  # Chinese unless the browser asks otherwise
        async with session.get(
            f"{server.url}/upload", headers={"Accept-Language": "en-GB,en;q=0.9"}
        ) as response:
            assert "Upload evidence" in await response.text()
        async with session.get(f"{server.url}/upload/tus.min.js") as response:
            assert response.status == 200
            assert response.content_type == "text/javascript"
            script = await response.read()
            assert hashlib.sha256(script).hexdigest() == (
                "8cbb1b63fccc3bba0ae73ad1deb160ce046c3750851d0c3e94921ae3ef070eb8"
            )
            etag = response.headers["ETag"]
        async with session.get(
            f"{server.url}/upload/tus.min.js", headers={"If-None-Match": etag}
        ) as response:
            assert response.status == 304
        async with session.get(f"{server.url}/upload/tus-js-client.LICENSE.txt") as response:
            assert response.status == 200 and "MIT" in await response.text()
        for hostile in ("../app.py", "page.py", "%2e%2e%2fapp.py", "upload.html"):
            async with session.get(f"{server.url}/upload/{hostile}") as response:
                assert response.status == 404, hostile
                assert response.content_type == "application/json"
