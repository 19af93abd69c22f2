"""The first contact with a server: what cannot heal (a malformed URL, https spoken to an http
server, nothing listening) fails within seconds with one clear line and exit code 4, instead
of ten minutes of retries; `--wait` keeps retrying a server that is not up yet."""

from __future__ import annotations

import contextlib
import http.server
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.client_runs import client_env
from support.files import get_json, random_file
from support.servers import ServerProcess, free_port
from support.tls import self_signed

BIN = Path(sys.executable).parent


def upload_cmd(path: Path, server: str, *extra: str) -> list[str]:
    return [str(BIN / "avidence"), "upload", str(path), "--server", server, "--token", "t",
            "--case", "C-1", *extra]  # fmt: skip


@contextlib.contextmanager
def serving(tls: Path | None = None) -> Iterator[int]:
    """An HTTP server on 127.0.0.1; HTTPS with a self-signed certificate made in `tls`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self_signed(tls))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("refused", "connection refused"),
        ("invalid", "not a valid URL"),
        ("https", "plain HTTP"),
        ("untrusted", "certificate of 127.0.0.1"),
    ],
)
def test_errors_that_cannot_heal_fail_within_seconds_with_one_line(
    tmp_path: Path, kind: str, expected: str
) -> None:
    path = tmp_path / "a.ts"
    random_file(path, 1000)
    with serving() as http_port, serving(tmp_path) as https_port:
        server = {
            "refused": f"http://127.0.0.1:{free_port()}",
            "invalid": f"http://127.0.01:{free_port()}",
            "https": f"https://127.0.0.1:{http_port}",
            "untrusted": f"https://127.0.0.1:{https_port}",
        }[kind]
        started = time.monotonic()
        result = subprocess.run(
            upload_cmd(path, server), capture_output=True, text=True, timeout=60,
            env=client_env(tmp_path),
        )  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.returncode == 4, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("avidence: error: "), result.stderr
    assert expected in lines[0]


def test_wait_keeps_retrying_until_the_server_is_up(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    data.mkdir()
    server = ServerProcess(data, free_port(), [], dict(os.environ))
    server.migrate()
    token = server.token()  # made in the catalog before the server runs
    path = tmp_path / "late.ts"
    digest = random_file(path, 100_000)
    command = upload_cmd(path, server.url, "--wait")
    command[command.index("--token") + 1] = token
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=client_env(tmp_path),
    )  # fmt: skip
    try:
        time.sleep(2.0)
        assert child.poll() is None, child.communicate()
        server.start()
        out, err = child.communicate(timeout=90)
    finally:
        child.kill()
        server.stop()
    assert child.returncode == 0, err
    assert "retry" in err
    evidence_id = out.strip().splitlines()[-1].split("\t")[0]
    server.start()
    try:
        assert get_json(f"{server.url}/api/evidence/{evidence_id}", token)["blake3"] == digest
    finally:
        server.stop()
