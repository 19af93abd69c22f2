"""deploy/nginx/avidence.conf run for real (when nginx is installed) in front of a real server,
on loopback ports with a throwaway certificate: the configuration loads, an upload larger than
nginx's default body limit streams through to the replica while it is still being sent (no
request buffering), Location headers carry the public https URL, HTTP redirects to HTTPS and
/metrics stays inside."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import blake3
import pytest

from support.nginx import nginx_binary, write_main_conf
from support.servers import free_port, metadata
from support.tls import self_signed

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "nginx" / "avidence.conf"
MiB = 1024 * 1024


@dataclass
class Nginx:
    prefix: Path
    https: int
    http: int
    health: int
    cafile: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https}"


def _nginx() -> str:
    found = nginx_binary()
    if found is None:
        pytest.skip("nginx not installed (Debian package nginx-light)")
    return found


def _configure(prefix: Path, *, upstream: int, https: int | None = None) -> Nginx:
    """deploy/nginx/avidence.conf with only addresses and paths changed for loopback."""
    site = Nginx(prefix, https or free_port(), free_port(), free_port(), prefix / "fullchain.pem")
    cert, key = self_signed(prefix)
    text = CONF.read_text(encoding="utf-8")
    for old, new in {
        "server avidence:8080": f"server 127.0.0.1:{upstream}",
        "listen 127.0.0.1:8081;": f"listen 127.0.0.1:{site.health};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{site.https} ssl http2;",
        "listen 80;": f"listen 127.0.0.1:{site.http};",
        "/etc/nginx/tls/fullchain.pem": str(cert),
        "/etc/nginx/tls/privkey.pem": str(key),
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    (prefix / "avidence.conf").write_text(text, encoding="utf-8")
    write_main_conf(
        prefix,
        f"  access_log {prefix / 'access.log'};\n  include {prefix / 'avidence.conf'};\n",
    )
    return site


def _run(nginx: str, site: Nginx, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            nginx,
            "-p",
            str(site.prefix),
            "-c",
            str(site.prefix / "nginx.conf"),
            "-e",
            "stderr",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    site = _configure(tmp_path, upstream=free_port())
    result = _run(_nginx(), site, "-t")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.fixture()
def proxied(server_factory: Any, tmp_path: Path) -> Iterator[tuple[Nginx, Any]]:
    nginx = _nginx()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    https = free_port()
    server = server_factory(
        env={
            "AVIDENCE_PUBLIC_URL": f"https://127.0.0.1:{https}",
            "AVIDENCE_EMBEDDED_WORKER": "false",
        }
    )
    site = _configure(prefix, upstream=server.port, https=https)
    proc = subprocess.Popen(
        [
            nginx,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not (prefix / "nginx.pid").exists():
            assert proc.poll() is None, (prefix / "error.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield site, server
    finally:
        proc.terminate()
        proc.wait(15)


async def _slow_body(data: bytes, *, pause_at: int, pause: float) -> AsyncIterator[bytes]:
    for i in range(0, len(data), MiB):
        if i == pause_at:
            await asyncio.sleep(pause)
        yield data[i : i + MiB]


async def _active_uploads(session: aiohttp.ClientSession, server: Any) -> float:
    async with session.get(f"{server.url}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("avidence_uploads_active "):
                return float(line.split()[1])
    return 0.0


async def test_large_upload_streams_through_nginx_unbuffered(
    proxied: tuple[Nginx, Any],
) -> None:
    site, server = proxied
    token = server.token()
    tls = ssl.create_default_context(cafile=str(site.cafile))
    data = os.urandom(24 * MiB + 5)  # nginx refuses bodies over 1 MiB unless told otherwise
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
        async with session.post(
            f"{site.url}/files/",
            headers={
                **auth,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(case="N-1", blake3=blake3.blake3(data).hexdigest()),
            },
        ) as r:
            assert r.status == 201, await r.text()
            location = r.headers["Location"]
        assert location.startswith(site.url + "/files/")  # from AVIDENCE_PUBLIC_URL
        patch = asyncio.create_task(
            _patch(
                session, location, auth, _slow_body(data, pause_at=12 * MiB, pause=2.0), len(data)
            )
        )
        await asyncio.sleep(1.0)
        # Half the body is still on its way: the replica is already receiving it.
        assert await _active_uploads(session, server) == 1
        status, headers = await patch
        assert status == 204, headers
        assert headers["Avidence-Upload-State"] == "done"
        async with session.get(
            f"{site.url}/api/evidence/{headers['Avidence-Evidence-Id']}", headers=auth
        ) as r:
            record = await r.json()
        async with session.get(f"{site.url}/metrics") as r:
            assert r.status == 404
        async with session.get(f"http://127.0.0.1:{site.http}/healthz", allow_redirects=False) as r:
            assert r.status == 308
            assert r.headers["Location"].startswith("https://")
        async with session.get(f"http://127.0.0.1:{site.health}/health") as r:
            assert r.status == 200
    assert record["blake3"] == blake3.blake3(data).hexdigest()


async def _patch(
    session: aiohttp.ClientSession, url: str, auth: dict[str, str], body: Any, length: int
) -> tuple[int, dict[str, str]]:
    headers = {
        **auth,
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length),
    }
    async with session.patch(url, data=body, headers=headers) as r:
        return r.status, dict(r.headers)
