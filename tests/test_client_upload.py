"""The `avidence upload` CLI against real server processes: parallel partial uploads, proof by
receipt, resume after SIGKILL and after a server restart, and the messages for bad input."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from avidence.client.config import endpoints
from avidence.client.progress import QuietReporter
from avidence.client.proof import prove_single
from avidence.client.state import StateStore
from avidence.client.tus import RetryPolicy, ServerCaps, TusClient
from avidence.client.upload import Uploader, UploadOptions

from support.client_runs import client_env
from support.files import get_json, random_file
from support.proxy import fault_proxy, sigkill_after
from support.servers import ServerProcess, free_port

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


def avidence_cmd(*args: str, state: Path) -> list[str]:
    return [str(BIN / "avidence"), *args, "--state-dir", str(state)]


def run_avidence(
    tmp_path: Path, *args: str, state: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        avidence_cmd(*args, state=state or tmp_path / "state"),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=client_env(tmp_path, state_dir=False),
    )


def evidence_id(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    return line.split("\t")[0]


@pytest.mark.parametrize("parallel", [1, 4])
def test_upload_makes_evidence_with_the_files_digests(
    server: tuple[ServerProcess, str], tmp_path: Path, parallel: int
) -> None:
    srv, token = server
    path = tmp_path / "interview.ts"
    digest = random_file(path, 18 * MiB + 3)
    args = ["upload", str(path), "--server", srv.url, "--token", token, "--case", "C-1"]
    result = run_avidence(
        tmp_path, *args, "--item", "A1", "--parallel", str(parallel), "--chunk-size", "4MiB"
    )
    ev = evidence_id(result)
    record = get_json(f"{srv.url}/api/evidence/{ev}", token)
    assert record["blake3"] == digest
    assert record["size"] == 18 * MiB + 3
    assert (record["case_id"], record["item"], record["filename"]) == ("C-1", "A1", "interview.ts")
    assert "verified by receipt" in result.stderr
    receipts = list((tmp_path / "state").glob("*.receipt.json"))
    assert len(receipts) == 1
    assert json.loads(receipts[0].read_text())["receipt"]["blake3"] == digest
    # One stream is one plain upload whose last request declared the digests (no join);
    # several streams are partials joined by a final upload that declared them.
    [state_file] = [p for p in (tmp_path / "state").glob("*.json") if p not in receipts]
    final = json.loads(state_file.read_text())["final_url"].rsplit("/", 1)[1]
    upload = get_json(f"{srv.url}/api/uploads/{final}", token)
    assert upload["concat"] == (None if parallel == 1 else "final")
    assert upload["metadata"]["blake3"] == digest
    # Running the same command again reports the same evidence without sending anything.
    again = run_avidence(tmp_path, *args, "--item", "A1")
    assert evidence_id(again) == ev and "uploaded by an earlier run" in again.stderr


def test_json_lines_report_progress_and_result(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    path = tmp_path / "cam.mp4"
    digest = random_file(path, 3 * MiB)
    result = run_avidence(
        tmp_path, "upload", str(path), "--server", srv.url, "--token", token, "--case", "C-2",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and "verified" in kinds
    final = events[-1]
    assert final["event"] == "result" and final["verified"] is True
    assert final["digests"]["blake3"] == digest and final["proof"] == "receipt"


def test_resume_after_the_client_is_killed_resends_at_most_a_chunk_per_part(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    size, parallel = 40 * MiB, 2
    path = tmp_path / "long.ts"
    digest = random_file(path, size)
    with fault_proxy(srv.port, rate=12 * MiB) as proxy:
        args = ["upload", str(path), "--server", proxy.url, "--token", token, "--case", "C-3"]
        args += ["--parallel", str(parallel), "--chunk-size", "1MiB"]
        child = subprocess.Popen(
            avidence_cmd(*args, state=tmp_path / "state"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=client_env(tmp_path, state_dir=False),
        )
        first_run = sigkill_after(child, proxy, sent=0.3 * size)
        assert first_run < 0.6 * size
        proxy.rate = None
        result = run_avidence(tmp_path, *args)
        ev = evidence_id(result)
        assert "were already on the server; sending the rest" in result.stderr
        # The speed shown is of what this run sent, not of bytes confirmed before the kill.
        assert "of 40.0 MiB sent now in" in result.stderr, result.stderr
        # Every byte once, plus at most the chunk each part had in flight, plus headers.
        assert proxy.bytes_up <= size + parallel * MiB + 256 * 1024, proxy.bytes_up - size
    assert get_json(f"{srv.url}/api/evidence/{ev}", token)["blake3"] == digest


def test_server_restart_mid_upload_is_survived(server_factory: Any, tmp_path: Path) -> None:
    srv = server_factory()
    token = srv.token()
    path = tmp_path / "restart.ts"
    digest = random_file(path, 24 * MiB)
    with fault_proxy(srv.port, rate=10 * MiB) as proxy:
        args = ["upload", str(path), "--server", proxy.url, "--token", token, "--case", "C-4"]
        child = subprocess.Popen(
            avidence_cmd(*args, "--chunk-size", "2MiB", state=tmp_path / "state"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=client_env(tmp_path, state_dir=False),
        )
        try:
            deadline = time.monotonic() + 30
            while proxy.bytes_up < 8 * MiB:
                assert time.monotonic() < deadline and child.poll() is None
                time.sleep(0.05)
            srv.kill()
            proxy.drop_connections()
            time.sleep(0.5)
            proxy.rate = None
            srv.start()
            out, err = child.communicate(timeout=90)
        finally:
            child.kill()
    assert child.returncode == 0, err
    assert "retry" in err
    ev = out.strip().split("\t")[0]
    assert get_json(f"{srv.url}/api/evidence/{ev}", token)["blake3"] == digest


def test_wrong_token_exits_3_with_a_clear_message(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, _ = server
    path = tmp_path / "a.ts"
    random_file(path, 1000)
    result = run_avidence(
        tmp_path, "upload", str(path), "--server", srv.url, "--token", "avd_wrong", "--case", "C"
    )
    assert result.returncode == 3
    assert "refused the token" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    result = run_avidence(
        tmp_path, "upload", str(tmp_path / "nope.ts"), "--server", "http://127.0.0.1:9",
        "--token", "t", "--case", "C",
    )  # fmt: skip
    assert result.returncode == 2
    assert "nope.ts: no such file" in result.stderr


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.ts"
    path.write_bytes(b"x")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: nothing to refuse
        pytest.skip("running as root")
    result = run_avidence(
        tmp_path, "upload", str(path), "--server", "http://127.0.0.1:9", "--token", "t",
        "--case", "C",
    )  # fmt: skip
    assert result.returncode == 2 and "not readable" in result.stderr


async def test_a_server_that_is_not_tus_gets_a_clear_message(tmp_path: Path) -> None:
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    path = tmp_path / "b.ts"
    random_file(path, 1000)
    args = ["upload", str(path), "--server", f"http://127.0.0.1:{port}", "--token", "t"]
    try:
        child = await asyncio.create_subprocess_exec(
            *avidence_cmd(*args, "--case", "C", state=tmp_path / "state"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=client_env(tmp_path, state_dir=False),
        )
        _, err = await asyncio.wait_for(child.communicate(), 60)
    finally:
        await runner.cleanup()
    assert child.returncode == 4
    assert "is not a tus server" in err.decode()


def test_an_unreachable_server_waited_for_exits_4_when_retries_run_out(tmp_path: Path) -> None:
    path = tmp_path / "c.ts"
    random_file(path, 1000)
    result = run_avidence(
        tmp_path, "upload", str(path), "--server", f"http://127.0.0.1:{free_port()}",
        "--token", "t", "--case", "C", "--retries", "2", "--wait",
    )  # fmt: skip
    assert result.returncode == 4
    assert "OPTIONS failed" in result.stderr


def test_a_file_changing_while_uploading_is_refused(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    path = tmp_path / "growing.ts"
    random_file(path, 12 * MiB)
    with fault_proxy(srv.port, rate=8 * MiB) as proxy:
        args = ["upload", str(path), "--server", proxy.url, "--token", token, "--case", "C-5"]
        child = subprocess.Popen(
            avidence_cmd(*args, "--chunk-size", "1MiB", state=tmp_path / "state"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=client_env(tmp_path, state_dir=False),
        )
        deadline = time.monotonic() + 30
        while proxy.bytes_up < 2 * MiB:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        with path.open("ab") as out:  # the recorder is still writing
            out.write(os.urandom(MiB))
        _, err = child.communicate(timeout=60)
    assert child.returncode == 2, err
    assert "changed while uploading" in err
    assert not list((tmp_path / "state").glob("*.json")), "stale state was kept"


async def test_without_concatenation_one_plain_upload_is_made_and_checked(
    server: tuple[ServerProcess, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a tus server without concatenation the file goes as one upload; the digests
    the server computed are compared afterwards."""
    srv, token = server
    original = TusClient.options

    async def without_concatenation(self: TusClient) -> ServerCaps:
        caps = await original(self)
        return ServerCaps(
            caps.extensions - {"concatenation"}, caps.checksum_algorithms, caps.max_size
        )

    monkeypatch.setattr(TusClient, "options", without_concatenation)
    path = tmp_path / "plain.ts"
    digest = random_file(path, 5 * MiB + 1)
    store = StateStore(tmp_path / "state")
    endpoint, api = endpoints(srv.url)
    async with aiohttp.ClientSession() as session:
        tus = TusClient(session, endpoint=endpoint, api_base=api, token=token, retry=RetryPolicy())
        uploader = Uploader(tus, store, QuietReporter(io.StringIO()))
        outcome = await uploader.upload(path, UploadOptions(case="S-1", chunk_size=2 * MiB))
        [state] = store.all()
        assert state.mode == "single" and len(state.parts) == 1 and state.parts[0].url
        # What a server without evidence ids is checked by: the digests it computed.
        proof = await prove_single(
            tus, url=state.parts[0].url, size=state.size, digests=outcome.digests
        )
    assert proof.kind == "server-digests" and proof.verified
    assert outcome.verified and outcome.digests["blake3"] == digest
    url = f"{srv.url}/api/evidence/{outcome.evidence_id}"
    assert (await asyncio.to_thread(get_json, url, token))["blake3"] == digest
