"""`serve --demo`: what a newcomer needs to try avidence in one go.

Once the server listens, it makes an uploader token, records a short demo clip with ffmpeg (when
installed), sends it through its own tus endpoint exactly as a client would, and issues an
access ticket, then prints the token, the upload endpoint and the link to watch the clip.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
from datetime import timedelta
from pathlib import Path

import aiohttp
import click
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.digests import MultiDigest

from . import tokens
from .config import Settings
from .tickets.issue import issue_ticket, link

log = logging.getLogger("avidence.demo")

CLIP_SECONDS = 12


async def _record(path: Path) -> bool:
    """A 12 s H.264/AAC clip with a running clock, like a camera's; False without ffmpeg."""
    if await asyncio.to_thread(path.exists):
        return True
    if shutil.which("ffmpeg") is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=960x540:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(CLIP_SECONDS), "-c:v", "libx264", "-preset", "veryfast",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(tmp),
    )  # fmt: skip
    if await process.wait() != 0:
        return False
    tmp.replace(path)
    return True


def _meta(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


async def _upload(settings: Settings, token: str, clip: Path) -> str:
    """Send the clip over tus to this very server and return the evidence id."""
    data = await asyncio.to_thread(clip.read_bytes)
    digest = MultiDigest(["sha256"])
    digest.update(data)
    headers = {
        "Authorization": f"Bearer {token}",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": _meta(
            case="DEMO-2026-001",
            item="1",
            filename=clip.name,
            filetype="video/mp4",
            sha256=digest.hexdigests()["sha256"],
        ),
        "Content-Type": "application/offset+octet-stream",
    }
    local = f"http://127.0.0.1:{settings.port}{settings.tus_path}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(local, data=data, headers=headers) as response,
    ):
        if response.status != 201 or "Avidence-Evidence-Id" not in response.headers:
            raise RuntimeError(f"demo upload answered {response.status}: {await response.text()}")
        return response.headers["Avidence-Evidence-Id"]


async def run(settings: Settings, engine: AsyncEngine) -> None:
    """Print how to try the server; never stops the server if the demo cannot be made."""
    principal, secret = await tokens.create(
        engine, role="uploader", name="demo (serve --demo)", actor="server"
    )
    lines = [
        "",
        f"  uploader token:      {secret}",
        f"  try an upload:       avidence upload FILE --server {settings.base_url} "
        f"--token {secret} --case 2026-0001",
    ]
    clip = settings.data_dir / "demo" / "demo-interrogation.mp4"
    try:
        if await _record(clip):
            evidence_id = await _upload(settings, secret, clip)
            _, ticket, _ = await issue_ticket(
                engine,
                evidence_ids=[evidence_id],
                recipient="Demo judge (court)",
                expires=timedelta(days=1),
                download=True,
                issuer=principal,
                note="made by serve --demo",
            )
            lines.append(f"  watch the demo:      {link(settings, ticket)}")
        else:
            lines.append("  (no demo recording: install ffmpeg to get one)")
    except Exception as exc:  # the demo is a convenience; the server keeps serving
        log.warning("demo.failed error=%s", exc)
        lines.append(f"  (demo recording failed: {exc})")
    click.echo("\n".join(lines))
