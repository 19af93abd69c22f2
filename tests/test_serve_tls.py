"""`serve --tls-cert/--tls-key`: HTTPS straight from the server, with a certificate made here."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.servers import BIN, metadata
from support.tls import self_signed


async def test_tls_serves_uploads_to_a_client_trusting_the_certificate(
    tmp_path: Path, server_factory: Any
) -> None:
    cert, key = self_signed(tmp_path)
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key))
    token = server.token()
    base = f"https://127.0.0.1:{server.port}"
    banner = (server.data_dir / f"banner-{server.port}.txt").read_text()
    assert f"serving on {base}" in banner
    trusting = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as session:
        async with session.get(f"{base}/healthz") as r:
            assert r.status == 200
        auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
        async with session.post(
            f"{base}/files/",
            data=b"evidence over TLS",
            headers={
                **auth,
                "Upload-Length": "17",
                "Upload-Metadata": metadata(case="TLS-1", filename="a.bin"),
                "Content-Type": "application/offset+octet-stream",
            },
        ) as r:
            assert r.status == 201, await r.text()
            assert r.headers["Location"].startswith(f"{base}/files/")
            assert r.headers["Avidence-Upload-State"] == "done"

    # A client that does not trust the certificate refuses it; plain HTTP gets no answer.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"{base}/healthz")
        with pytest.raises(aiohttp.ClientError):
            async with asyncio.timeout(10):
                await session.get(f"http://127.0.0.1:{server.port}/healthz")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "CERT"], "tls_cert/tls_key: give both"),
        (["--tls-cert", "CERT", "--tls-key", "MISSING"], "tls_key: no such file"),
        (["--tls-cert", "CERT", "--tls-key", "CERT"], "cannot load the certificate and key"),
    ],
)
def test_bad_tls_settings_stop_the_server_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    cert, _ = self_signed(tmp_path)
    names = {"CERT": str(cert), "MISSING": str(tmp_path / "nope.pem")}
    args = [names.get(a, a) for a in args]
    result = subprocess.run(
        [str(BIN / "avidence-server"), "serve", "--data-dir", str(tmp_path / "d"), *args],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    err = result.stderr.decode()
    assert message in err and "Traceback" not in err
