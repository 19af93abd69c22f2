"""`serve --demo`: what a newcomer needs to try avidence in one go.

Once the server listens, it makes an uploader token, records a short demo clip with ffmpeg (when
installed), sends it through its own tus endpoint exactly as a client would, and issues an
access ticket, then prints the token, the upload endpoint and the link to watch the clip.

Every later `serve --demo` on the same data folder reuses them: the token's secret, the demo
evidence id and the ticket's link token are kept in `DATA_DIR/demo/demo.json` (readable by the
owner only; only their hashes are in the catalog) and reused while the token is active, the
evidence is there and the ticket is active, so repeated `make run`s leave one demo token, one
demo recording and one link, not one more of each per start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
from datetime import timedelta
from pathlib import Path

import aiohttp
import click
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.digests import MultiDigest

from . import tokens
from .config import Settings
from .evidence import records as evidence_db
from .tickets import records as tickets_db
from .tickets.issue import issue_ticket, link
from .tokens import Principal

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


def _load_saved(path: Path) -> dict[str, str]:
    """What an earlier `serve --demo` made; {} when nothing (or nothing readable) was kept."""
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(saved, dict):
            return {k: v for k, v in saved.items() if isinstance(v, str)}
    return {}


def _save(path: Path, saved: dict[str, str]) -> None:
    """Keep the demo's secrets for the next start, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(saved, out)
    tmp.replace(path)


async def _token(engine: AsyncEngine, saved: dict[str, str]) -> tuple[Principal, str]:
    """The demo uploader token of an earlier start while it is active, else a new one."""
    secret = saved.get("token", "")
    principal = await tokens.authenticate(engine, secret) if secret else None
    if principal is not None:
        return principal, secret
    return await tokens.create(engine, role="uploader", name="demo (serve --demo)", actor="server")


async def _evidence(
    settings: Settings, engine: AsyncEngine, saved: dict[str, str], secret: str, clip: Path
) -> str | None:
    """The demo recording's evidence id: the earlier one while it is in the catalog, else a
    clip recorded and uploaded now (None without ffmpeg)."""
    known = saved.get("evidence_id")
    if known and await evidence_db.get(engine, known) is not None:
        return known
    if not await _record(clip):
        return None
    return await _upload(settings, secret, clip)


async def _link_token(
    engine: AsyncEngine, saved: dict[str, str], evidence_id: str, issuer: Principal
) -> str:
    """The demo ticket's link token: the earlier one while it is active, else a new ticket."""
    known = saved.get("ticket")
    ticket = await tickets_db.by_token(engine, known) if known else None
    if known and ticket is not None and ticket.state() == "active":
        if evidence_id in ticket.evidence_ids:
            return known
    _, token, _ = await issue_ticket(
        engine,
        evidence_ids=[evidence_id],
        recipient="Demo judge (court)",
        expires=timedelta(days=1),
        download=True,
        issuer=issuer,
        note="made by serve --demo",
    )
    return token


async def run(settings: Settings, engine: AsyncEngine) -> None:
    """Print how to try the server; never stops the server if the demo cannot be made."""
    kept = settings.data_dir / "demo" / "demo.json"
    saved = await asyncio.to_thread(_load_saved, kept)
    principal, secret = await _token(engine, saved)
    saved["token"] = secret
    lines = [
        "",
        f"  uploader token:      {secret}",
        f"  try an upload:       avidence upload FILE --server {settings.base_url} "
        f"--token {secret} --case 2026-0001",
        f"  case desk:           {settings.base_url}/desk  (sign in with a handler or admin "
        "token: avidence-server token create --role handler --name NAME)",
    ]
    clip = settings.data_dir / "demo" / "demo-interrogation.mp4"
    try:
        evidence_id = await _evidence(settings, engine, saved, secret, clip)
        if evidence_id is not None:
            saved["evidence_id"] = evidence_id
            saved["ticket"] = await _link_token(engine, saved, evidence_id, principal)
            lines.append(f"  watch the demo:      {link(settings, saved['ticket'])}")
        else:
            lines.append("  (no demo recording: install ffmpeg to get one)")
    except Exception as exc:  # the demo is a convenience; the server keeps serving
        log.warning("demo.failed error=%s", exc)
        lines.append(f"  (demo recording failed: {exc})")
    await asyncio.to_thread(_save, kept, saved)
    click.echo("\n".join(lines))
