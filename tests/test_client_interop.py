"""Our client against a tus server nobody here wrote: @tus/server 2 (Node) over its file store.

It offers neither concatenation nor checksums nor receipts, so `avidence upload` must send one
plain upload, resume it after a SIGKILL from the server's offset, and say plainly that nothing
proved the server's copy. Node and the npm packages come from `make test` (tests/node/); without
them the tests fail under CI and are skipped elsewhere, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from support.client_runs import client_env
from support.files import random_file
from support.proxy import fault_proxy, sigkill_after
from support.tusnode import NodePeer

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


@pytest.fixture()
def peer(tmp_path: Path) -> Iterator[NodePeer]:
    reason = NodePeer.unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = NodePeer(tmp_path / "peer", "file")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def avidence(tmp_path: Path, *args: str) -> list[str]:
    return [str(BIN / "avidence"), *args, "--state-dir", str(tmp_path / "state")]


def stored(peer: NodePeer) -> tuple[str, dict[str, object]]:
    """BLAKE3 and @tus/file-store's info document of the one upload the peer holds."""
    folder = peer.workdir / "files"
    infos = sorted(folder.glob("*.json"))
    assert len(infos) == 1, sorted(p.name for p in folder.iterdir())
    data = infos[0].with_suffix("")
    return blake3.blake3(data.read_bytes()).hexdigest(), json.loads(infos[0].read_text())


def test_plain_tus_server_gets_one_upload_reported_unverified(
    peer: NodePeer, tmp_path: Path
) -> None:
    path = tmp_path / "rec-0931.ts"
    digest = random_file(path, 9 * MiB + 7)
    args = ["upload", str(path), "--server", peer.url, "--token", "unused", "--case", "C-9"]
    result = subprocess.run(
        avidence(tmp_path, *args, "--parallel", "4", "--json"),
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(tmp_path, state_dir=False),
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "started" and events[0]["mode"] == "single"
    final = events[-1]
    assert final["event"] == "result" and final["verified"] is False
    assert final["proof"] == "none" and final["evidence_id"] is None
    assert final["digests"]["blake3"] == digest
    notice = next(e for e in events if e["event"] == "unverified")["message"]
    assert "no digests or signed receipt" in notice, notice

    held, info = stored(peer)
    assert held == digest
    assert info["size"] == 9 * MiB + 7  # the data file's length is the offset there
    assert info["metadata"]["case"] == "C-9"  # type: ignore[index]
    assert info["metadata"]["filename"] == "rec-0931.ts"  # type: ignore[index]

    # The person reading the terminal is told the same, and `status` keeps it apart.
    status = subprocess.run(
        avidence(tmp_path, "status"),
        capture_output=True,
        text=True,
        timeout=60,
        env=client_env(tmp_path, state_dir=False),
    )
    assert "unverified" in status.stdout, status.stdout


def test_killed_upload_to_plain_tus_server_resumes_from_its_offset(
    peer: NodePeer, tmp_path: Path
) -> None:
    size = 40 * MiB
    path = tmp_path / "long.ts"
    digest = random_file(path, size)
    with fault_proxy(peer.port, rate=12 * MiB) as proxy:
        args = ["upload", str(path), "--server", proxy.url + "/files", "--token", "unused"]
        args += ["--case", "C-10", "--chunk-size", "1MiB"]
        child = subprocess.Popen(
            avidence(tmp_path, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=client_env(tmp_path, state_dir=False),
        )
        first_run = sigkill_after(child, proxy, sent=0.3 * size)
        assert first_run < 0.6 * size
        proxy.rate = None
        result = subprocess.run(
            avidence(tmp_path, *args),
            capture_output=True,
            text=True,
            timeout=120,
            env=client_env(tmp_path, state_dir=False),
        )
        assert result.returncode == 0, result.stderr
        assert "resumed" in result.stderr, result.stderr
        # Every byte once, plus at most the chunk in flight at the kill, plus headers.
        assert proxy.bytes_up <= size + MiB + 256 * 1024, proxy.bytes_up - size
    held, info = stored(peer)
    assert held == digest and info["size"] == size
