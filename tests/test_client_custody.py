"""Custody rules of the client against a real server: a recording uploaded to a second case
becomes evidence of that case too (its own record and receipt), and a client killed right after
its last PATCH was answered learns the evidence id and receipt from the server on the rerun;
`avidence watch` lets a source go only with a verified receipt, in that case too."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from avidence.client.config import endpoints
from avidence.client.errors import UploadFailed
from avidence.client.progress import QuietReporter
from avidence.client.state import StateStore
from avidence.client.tus import RetryPolicy, TusClient
from avidence.client.upload import Uploader, UploadOptions
from avidence.storage.local import LocalStore

from support.client_runs import client_env
from support.files import get_json, random_file
from support.proxy import FaultProxy, fault_proxy
from support.servers import ServerProcess, make_api

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


def avidence(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "avidence"), *args],
        capture_output=True, text=True, timeout=120, env=client_env(tmp_path),
    )  # fmt: skip


def outcome_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split("\t")[0]


def receipt_of(tmp_path: Path, evidence_id: str) -> dict[str, object]:
    """The saved receipt naming `evidence_id` (the client keeps one per upload)."""
    for path in (tmp_path / "state").glob("*.receipt.json"):
        receipt = json.loads(path.read_text())
        if receipt["receipt"]["evidence_id"] == evidence_id:
            return dict(receipt["receipt"])
    raise AssertionError(f"no receipt saved for {evidence_id}")


def kill_after_last_patch(child: subprocess.Popen[str], proxy: FaultProxy) -> None:
    """SIGKILL the client the moment the proxy swallowed the answer to its last PATCH: the
    server made the evidence, the client never heard which (as if killed just after)."""
    deadline = time.monotonic() + 60
    try:
        while proxy.cuts < 1:
            if child.poll() is not None:
                raise AssertionError(f"the client ended first: {child.communicate()}")
            assert time.monotonic() < deadline, "the last PATCH was never answered"
            time.sleep(0.002)
    finally:
        child.kill()  # SIGKILL: no clean-up runs
        child.communicate(timeout=30)


def test_the_same_recording_sent_to_another_case_becomes_its_evidence_too(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    path = tmp_path / "interview.ts"
    digest = random_file(path, 3 * MiB)
    common = ["upload", str(path), "--server", srv.url, "--token", token, "--parallel", "1"]
    first = outcome_of(avidence(tmp_path, *common, "--case", "K-1"))
    second = outcome_of(avidence(tmp_path, *common, "--case", "K-2"))
    assert second != first
    records = {ev: get_json(f"{srv.url}/api/evidence/{ev}", token) for ev in (first, second)}
    assert records[first]["case_id"] == "K-1" and records[second]["case_id"] == "K-2"
    assert {r["blake3"] for r in records.values()} == {digest}
    assert receipt_of(tmp_path, first)["blake3"] == receipt_of(tmp_path, second)["blake3"]
    # The same command again is the same upload: the earlier outcome, nothing sent.
    again = avidence(tmp_path, *common, "--case", "K-2")
    assert outcome_of(again) == second and "uploaded by an earlier run" in again.stderr
    status = avidence(tmp_path, "status")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert any(first in line and "K-1" in line for line in lines), status.stdout
    assert any(second in line and "K-2" in line for line in lines), status.stdout


def test_a_client_killed_after_its_last_patch_learns_the_evidence_on_rerun(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    path = tmp_path / "bodycam.ts"
    digest = random_file(path, 3 * MiB)
    # Three 1 MiB PATCHes: the answer to the third (the one that made the evidence) is lost.
    with fault_proxy(srv.port, cut_answer_to="PATCH", answers_to_skip=2, cuts_left=1) as proxy:
        args = ["upload", str(path), "--server", proxy.url, "--token", token, "--case", "S-1",
                "--parallel", "1", "--chunk-size", "1MiB"]  # fmt: skip
        child = subprocess.Popen(
            [str(BIN / "avidence"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(tmp_path),
        )  # fmt: skip
        kill_after_last_patch(child, proxy)
        sent = proxy.bytes_up
        rerun = avidence(tmp_path, *args)
        assert proxy.bytes_up - sent < 64 * 1024  # nothing sent again
    evidence_id = outcome_of(rerun)
    assert evidence_id.startswith("ev_"), rerun.stdout
    assert "verified by receipt" in rerun.stderr
    assert "all 3.0 MiB were already on the server" in rerun.stderr
    record = get_json(f"{srv.url}/api/evidence/{evidence_id}", token)
    assert record["blake3"] == digest and record["case_id"] == "S-1"
    assert receipt_of(tmp_path, evidence_id)["blake3"] == digest
    status = avidence(tmp_path, "status")
    [line] = [line for line in status.stdout.splitlines() if str(path) in line]
    assert line.startswith("finished") and evidence_id in line


def test_watch_lets_a_source_go_only_with_the_receipt_after_a_kill(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    folder = tmp_path / "recorder"
    folder.mkdir()
    source = folder / "room1.ts"
    digest = random_file(source, 3 * MiB)
    os.utime(source, (time.time() - 60, time.time() - 60))  # long settled
    with fault_proxy(srv.port, cut_answer_to="PATCH", answers_to_skip=2, cuts_left=1) as proxy:
        args = ["watch", str(folder), "--server", proxy.url, "--token", token, "--case", "W-9",
                "--once", "--settle", "1", "--parallel", "1", "--chunk-size", "1MiB",
                "--json"]  # fmt: skip
        child = subprocess.Popen(
            [str(BIN / "avidence"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(tmp_path),
        )  # fmt: skip
        kill_after_last_patch(child, proxy)
        assert source.exists()
        rerun = avidence(tmp_path, *args)
    assert rerun.returncode == 0, rerun.stderr
    events = [json.loads(line) for line in rerun.stdout.splitlines()]
    [uploaded] = [e for e in events if e["event"] == "uploaded"]
    evidence_id = str(uploaded["evidence_id"])
    assert evidence_id.startswith("ev_")
    assert [e for e in events if e["event"] == "moved"]
    assert not source.exists() and (folder / ".uploaded" / "room1.ts").exists()
    assert receipt_of(tmp_path, evidence_id)["blake3"] == digest
    assert get_json(f"{srv.url}/api/evidence/{evidence_id}", token)["blake3"] == digest


async def test_an_avidence_upload_is_never_finished_without_a_verified_receipt(
    tmp_path: Path,
) -> None:
    """While the server's receipt cannot be had, the upload is not reported finished (the
    state stays `verifying`); the next run checks the receipt and finishes."""
    hidden = {"receipts": True}

    @web.middleware
    async def no_receipts(request: web.Request, handler: Handler) -> web.StreamResponse:
        if hidden["receipts"] and request.path.endswith("/receipt"):
            raise web.HTTPNotFound()
        return await handler(request)

    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    apis = make_api(tmp_path, store, outer=[no_receipts])
    try:
        async with contextlib.aclosing(apis):
            api = await anext(apis)
            path = tmp_path / "clip.ts"
            digest = random_file(path, 256 * 1024)
            endpoint, base = endpoints(str(api.client.make_url("/")))
            states = StateStore(tmp_path / "state")
            async with aiohttp.ClientSession() as session:
                tus = TusClient(
                    session, endpoint=endpoint, api_base=base, token=api.uploader,
                    retry=RetryPolicy(attempts=3, base=0.1, cap=0.5),
                )  # fmt: skip
                uploader = Uploader(tus, states, QuietReporter(io.StringIO()))
                options = UploadOptions(case="R-1", parallel=1)
                with pytest.raises(UploadFailed, match="no verified receipt"):
                    await uploader.upload(path, options)
                [state] = states.all()
                assert state.phase == "verifying" and state.evidence_id
                hidden["receipts"] = False
                outcome = await uploader.upload(path, options)
            assert outcome.proof == "receipt" and outcome.evidence_id == state.evidence_id
            assert outcome.receipt_file and outcome.digests["blake3"] == digest
    finally:
        await store.close()
