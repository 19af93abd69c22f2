"""A real browser opens a ticket link: the clip plays, seeking works, an expired link says so.

Headless Chromium (Debian's `chromium`) driven by Playwright against a real `avidence-server
serve` process, the ticket made with `avidence-server ticket create`. Without Chromium the test
fails under CI (where `make test` installs it) and is skipped elsewhere, with the reason.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from support.browser import BIN, CHROMIUM_ARGS, chromium
from support.browser import issue_link as ticket
from support.browser import upload_clip as upload
from support.servers import ServerProcess


async def test_judge_watches_and_seeks_then_an_expired_link_explains(
    server_factory: Any, mp4_clip: Path, tmp_path: Path
) -> None:
    executable = chromium()
    from playwright.async_api import async_playwright

    server: ServerProcess = server_factory()
    evidence_id = await upload(server, await asyncio.to_thread(server.token), mp4_clip)
    link, pin = await asyncio.to_thread(
        ticket, server, evidence_id, "--download", "--access-code", "--max-views", "5"
    )
    expired, _ = await asyncio.to_thread(ticket, server, evidence_id, "--expires", "1s")
    problems: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="en-US", viewport={"width": 1100, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            response = await page.goto(link)
            assert response is not None and response.status == 401  # the code comes first
            assert mp4_clip.name not in await page.content()
            await page.fill("#code", pin)
            await page.click("button[type=submit]")
            await page.wait_for_selector("button.start")
            assert await page.locator("h2").first.inner_text() == mp4_clip.name
            assert "recorded" in await page.locator(".notice").inner_text()
            await page.click("button.start")
            video = page.locator("video")
            await page.wait_for_function(
                "() => document.querySelector('video').currentTime > 0.5", timeout=20_000
            )
            duration = await video.evaluate("v => v.duration")
            assert 5.5 < duration < 6.5
            middle = duration / 2
            await video.evaluate(f"v => {{ v.currentTime = {middle}; }}")
            await page.wait_for_function(
                f"() => {{ const v = document.querySelector('video');"
                f" return !v.seeking && v.currentTime > {middle + 0.3}; }}",
                timeout=20_000,
            )
            assert await page.locator(f"#duration-{evidence_id}").inner_text() == "0:06"
            shot = tmp_path / "viewer.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert await page.locator("#views-left").inner_text() == "4"
            await page.goto(link + "?lang=zh")
            await page.screenshot(path=str(tmp_path / "viewer-zh.png"), full_page=True)
            assert "证据查看" in await page.title()

            # no CSP violation, no failed request but the code page's deliberate 401
            assert [p for p in problems if "401" not in p] == [], problems
            assert len(problems) <= 2
            await asyncio.sleep(1.2)  # the 1 s ticket is past its expiry now
            response = await page.goto(expired + "?lang=en")
            assert response is not None and response.status == 410
            assert await page.locator("h1").inner_text() == "This link has expired"
            await page.screenshot(path=str(tmp_path / "expired.png"))
        finally:
            await browser.close()


async def _settled_copy(server: ServerProcess, token: str, evidence_id: str) -> dict[str, Any]:
    """The playable derivative's record once the server's worker made it."""
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            async with session.get(
                f"{server.url}/api/evidence/{evidence_id}",
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                document = await response.json()
            copies = [d for d in document["derivatives"] if d["role"] == "playable"]
            if copies:
                return dict(copies[0])
            await asyncio.sleep(0.1)
    raise AssertionError(f"no playable copy: {document['jobs']}")


async def test_a_flagged_copy_shows_the_withheld_notice_in_both_languages(
    server_factory: Any, small_ts_clip: Path, tmp_path: Path
) -> None:
    executable = chromium()
    from playwright.async_api import async_playwright

    server: ServerProcess = server_factory()
    token = await asyncio.to_thread(server.token)
    evidence_id = await upload(server, token, small_ts_clip)
    copy = await _settled_copy(server, token, evidence_id)
    link, _ = await asyncio.to_thread(ticket, server, evidence_id)
    stored = server.data_dir / "store" / "objects" / copy["storage_key"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    scrubbed = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "avidence-server"), "scrub", "--all", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=server.env,
    )
    assert scrubbed.returncode == 1, scrubbed.stdout + scrubbed.stderr
    assert f"FAILED {evidence_id}" in scrubbed.stderr and copy["id"] in scrubbed.stderr
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="en-US")
            response = await page.goto(link + "?lang=en")
            assert response is not None and response.status == 200
            notice = page.locator(".player.withheld")
            assert "Withheld: integrity check failed." in await notice.inner_text()
            assert "transcoded copy" in await notice.inner_text()
            assert await page.locator("button.start").count() == 0
            await page.screenshot(path=str(tmp_path / "withheld.png"), full_page=True)
            await page.goto(link + "?lang=zh")
            assert "已暂停提供" in await page.locator(".player.withheld").inner_text()
        finally:
            await browser.close()
    refused = await asyncio.to_thread(
        subprocess.run,
        [
            str(BIN / "avidence-server"), "ticket", "create", "--data-dir", str(server.data_dir),
            "--evidence", evidence_id, "--recipient", "Wang (judge)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=server.env,
    )  # fmt: skip
    assert refused.returncode != 0 and "integrity" in refused.stderr


async def test_a_spent_view_says_so_and_offers_a_new_view(
    server_factory: Any, mp4_clip: Path
) -> None:
    executable = chromium()
    from playwright.async_api import TimeoutError as BrowserTimeout
    from playwright.async_api import async_playwright

    # One view may fetch the file once: the player's first request takes all of it.
    server: ServerProcess = server_factory(env={"AVIDENCE_VIEW_BYTES_MULTIPLE": "1"})
    evidence_id = await upload(server, await asyncio.to_thread(server.token), mp4_clip)
    link, _ = await asyncio.to_thread(ticket, server, evidence_id, "--max-views", "3")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="en-US")
            seen: list[str] = []  # status and Range of each response, shown if the test fails
            page.on(
                "response", lambda r: seen.append(f"{r.status} {r.request.headers.get('range')}")
            )
            await page.goto(link + "?lang=en")
            assert "may fetch up to 1 times" in await page.locator(".allows").inner_text()
            await page.click("button.start")
            await page.wait_for_function(
                "() => document.querySelector('video').currentTime > 0.3", timeout=20_000
            )
            await page.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v.buffered.length && v.buffered.end(0) >= v.duration - 0.1; }",
                timeout=20_000,
            )
            # Fetching the file again in the same view (a new URL, so the browser cannot answer
            # from its media cache) is refused, 410 view_spent: the page says why and offers a
            # new view.
            await page.evaluate(
                "() => { const v = document.querySelector('video');"
                " v.src = v.getAttribute('src') + '&again=1'; v.play().catch(() => {}); }"
            )
            status = page.locator(".status").first
            try:
                await page.wait_for_function(
                    "() => document.querySelector('.status').textContent.includes('Press Play')",
                    timeout=10_000,
                )
            except BrowserTimeout:
                raise AssertionError((seen, await status.inner_text())) from None
            assert "fetched all the data one view allows" in await status.inner_text()
            assert await page.locator("button.start").is_enabled()
            assert await page.locator("#views-left").inner_text() == "2"
            await page.click("button.start")
            await page.wait_for_function(
                "() => document.querySelector('video').currentTime > 0.3", timeout=20_000
            )
            assert await page.locator("#views-left").inner_text() == "1"
        finally:
            await browser.close()
