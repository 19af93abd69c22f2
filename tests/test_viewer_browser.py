"""A real browser opens a ticket link: the clip plays, seeking works, an expired link says so.

Headless Chromium (Debian's `chromium`) driven by Playwright against a real `avidence-server
serve` process, the ticket made with `avidence-server ticket create`. Without Chromium the test
fails under CI (where `make test` installs it) and is skipped elsewhere, with the reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from support.browser import CHROMIUM_ARGS, chromium
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
