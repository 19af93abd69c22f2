"""The viewer and the upload page in Chinese, as a clerk in Beijing reads them, in headless
Chromium against a real server with `display_timezone = Asia/Shanghai`:

- times read 2026年12月6日 11:17:07（北京时间，UTC+8）, each a `<time>` carrying the UTC instant;
  a reader whose own clock is in another zone also sees that clock beside them;
- the format row says `MP4 · H.264 640×360 25 帧/秒 · AAC 单声道`, and the poster frame shows;
- a link revoked while the viewer is open says so, not that the browser cannot play the file.

Screenshots go to the test's tmp_path (`viewer-zh.png`, `viewer-revoked-zh.png`, `upload-zh.png`).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from support.browser import BIN, CHROMIUM_ARGS, chromium, cjk_font, issue_link, upload_clip
from support.files import random_file
from support.servers import ServerProcess

BEIJING = {"AVIDENCE_DISPLAY_TIMEZONE": "Asia/Shanghai"}
ZH_TIME = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日 (\d\d):(\d\d):(\d\d)（北京时间，UTC\+8）$")


def check_zh_time(text: str, instant: str | None) -> None:
    """The text is the ISO `instant` (UTC, with Z) read on a Beijing clock."""
    match = ZH_TIME.match(text)
    assert match is not None, text
    assert instant is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", instant)
    local = datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(
        ZoneInfo("Asia/Shanghai")
    )
    assert tuple(int(g) for g in match.groups()) == (
        local.year,
        local.month,
        local.day,
        local.hour,
        local.minute,
        local.second,
    )


async def wait_for_poster(link: str) -> None:
    """The worker makes the poster after the upload; the page names it once it exists."""
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(link) as response:
                if 'poster="' in await response.text():
                    return
            await asyncio.sleep(0.5)
    raise AssertionError("no poster within 90 s")


def revoke_all(server: ServerProcess) -> None:
    def run(*args: str) -> str:
        return subprocess.run(
            [str(BIN / "avidence-server"), "ticket", *args, "--data-dir", str(server.data_dir)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env=server.env,
        ).stdout

    for line in run("list").splitlines():
        run("revoke", line.split("\t")[0])


async def test_viewer_in_zh_beijing_time_own_clock_poster_and_revoked_link(
    server_factory: Any, mp4_clip: Path, tmp_path: Path
) -> None:
    executable = chromium()
    cjk_font()
    from playwright.async_api import async_playwright

    server: ServerProcess = server_factory(env=BEIJING)
    evidence_id = await upload_clip(server, await asyncio.to_thread(server.token), mp4_clip)
    link, _ = await asyncio.to_thread(issue_link, server, evidence_id)
    await wait_for_poster(link)
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                locale="zh-CN",
                timezone_id="America/New_York",
                viewport={"width": 1100, "height": 900},
            )
            page = await context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(link + "?lang=zh")
            await page.wait_for_selector(".own-clock")

            received = page.locator("dl.facts time").first
            check_zh_time(await received.inner_text(), await received.get_attribute("datetime"))
            assert await received.get_attribute("data-zone") == "Asia/Shanghai"
            expires = page.locator("p.ticket time")
            check_zh_time(await expires.inner_text(), await expires.get_attribute("datetime"))
            custody = page.locator("details.custody time")
            assert await custody.count() >= 1
            for i in range(await custody.count()):
                step = custody.nth(i)
                shown = await step.text_content()  # inside a closed <details>
                check_zh_time(shown or "", await step.get_attribute("datetime"))
            own = await page.locator("dl.facts .own-clock").first.inner_text()
            zh_date = r"\d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d:\d\d"
            assert re.fullmatch(rf" · 本机时间：{zh_date}（America/New_York，UTC-[45]）", own), own
            page_text = await page.locator("main").inner_text()
            assert "MP4 · H.264 640×360 25 帧/秒 · AAC 单声道" in page_text
            assert "UTC\n" not in page_text and " UTC" not in page_text.replace("，UTC", "")

            poster = await page.locator("video").get_attribute("poster")
            assert poster == f"/t/{link.rsplit('/', 1)[1]}/poster/{evidence_id}"
            loaded = await page.evaluate(
                "src => new Promise(done => { const i = new Image();"
                " i.onload = () => done(i.naturalWidth); i.onerror = () => done(0);"
                " i.src = src; })",
                poster,
            )
            assert loaded == 640
            await page.screenshot(path=str(tmp_path / "viewer-zh.png"), full_page=True)

            await page.click("button.start")
            await page.wait_for_function(
                "() => document.querySelector('video').currentTime > 0.3", timeout=20_000
            )
            await page.locator("video").evaluate("v => v.pause()")
            await asyncio.to_thread(revoke_all, server)
            # The player asks for bytes again, as after a seek past what it holds (the whole
            # small clip is buffered, and the same URL would come from Chromium's media cache,
            # so the request gets a fresh query string): the server answers 410 revoked.
            await page.locator("video").evaluate(
                "v => { v.src = v.src + '&again=1'; v.play().catch(() => {}); }"
            )
            status = page.locator(".player ~ .status").first
            await page.wait_for_function(
                "() => document.querySelector('.status').textContent.length > 0", timeout=20_000
            )
            assert await status.inner_text() == "此链接已被撤销，播放已停止。"
            await page.screenshot(path=str(tmp_path / "viewer-revoked-zh.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()


async def test_upload_page_in_zh_shows_when_the_server_received_the_file(
    server_factory: Any, tmp_path: Path
) -> None:
    executable = chromium()
    cjk_font()
    from playwright.async_api import async_playwright

    server: ServerProcess = server_factory(env=BEIJING)
    token = await asyncio.to_thread(server.token)
    recording = tmp_path / "讯问录像-1.ts"
    await asyncio.to_thread(random_file, recording, 300_000)
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1000, "height": 900}
            )
            page = await context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{server.url}/upload?lang=zh")
            intro = await page.locator(".notice").inner_text()
            assert "证据库：网络中断或页面关闭后，重新选择" in intro
            assert await page.locator("label[for=item]").inner_text() == "证据项（可选）"
            await page.fill("#token", token)
            await page.fill("#case", "2026-0042")
            await page.set_input_files("#files", str(recording))
            await page.click("#start")
            received = page.locator(".uploads .received time")
            await received.wait_for(timeout=60_000)
            check_zh_time(await received.inner_text(), await received.get_attribute("datetime"))
            assert await page.locator(".uploads dt").nth(1).inner_text() == "接收时间"
            assert await page.locator(".own-clock").count() == 0  # the reader's clock is Beijing's
            await page.screenshot(path=str(tmp_path / "upload-zh.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()
