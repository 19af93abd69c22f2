"""Headless Chromium for the page tests: Debian's `chromium` driven by Playwright.

Without Chromium or Playwright a test fails under CI (where `make test` installs both) and is
skipped elsewhere, with the reason. `upload_clip` and `issue_link` put a clip behind a link on a
real server process, the way a clerk would (tus upload, `avidence-server ticket create`).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from support.servers import ServerProcess, metadata

BIN = Path(sys.executable).parent

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def chromium() -> str:
    """The Chromium executable, once Playwright is known to be importable."""
    path = shutil.which("chromium")
    if path is None:
        _missing("chromium is not installed (`make test` installs Debian's chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is missing (pip install -e '.[dev]')")
    assert path is not None
    return path


async def upload_clip(server: ServerProcess, token: str, clip: Path) -> str:
    data = await asyncio.to_thread(clip.read_bytes)
    headers = {
        "Authorization": f"Bearer {token}",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(
            case="2026-0001", item="interview 1", filename=clip.name, filetype="video/mp4"
        ),
        "Content-Type": "application/offset+octet-stream",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/files/", data=io.BytesIO(data), headers=headers) as response,
    ):
        assert response.status == 201, await response.text()
        return response.headers["Avidence-Evidence-Id"]


def issue_link(server: ServerProcess, evidence_id: str, *extra: str) -> tuple[str, str]:
    """`avidence-server ticket create ...`: the link (last line) and the access code, if any."""
    out = subprocess.run(
        [
            str(BIN / "avidence-server"),
            "ticket",
            "create",
            "--data-dir",
            str(server.data_dir),
            "--evidence",
            evidence_id,
            "--recipient",
            "Li Ming (judge)",
            *extra,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=server.env,  # no port given: the link comes from where `serve` listens
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith(f"{server.url}/t/"), out.stdout
    pins = [line.rsplit(" ", 1)[1] for line in lines if line.startswith("access code")]
    return lines[-1], pins[0] if pins else ""


def cjk_font() -> None:
    """A font with Chinese glyphs (`make test` installs Debian's fonts-noto-cjk): without it a
    zh screenshot shows boxes, and the test says so instead of passing on them."""
    found = subprocess.run(
        ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30, check=False
    )
    if not found.stdout.strip():
        _missing("no font covers Chinese (fc-list :lang=zh is empty; install fonts-noto-cjk)")
