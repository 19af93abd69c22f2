"""`avidence watch`: a recorder writes into a folder; only finished files are uploaded, verified
ones move to .uploaded/ (or are deleted on request), anything unproven stays where it is."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import blake3
import pytest

from avidence.client.files import identify
from avidence.client.progress import PlainReporter
from avidence.client.state import StateStore, UploadState
from avidence.client.tus import TusClient
from avidence.client.upload import Outcome, Uploader
from avidence.client.watch import Action, Watcher, WatchOptions, after_upload, uploaded_path

from support.client_runs import client_env
from support.files import get_json
from support.servers import ServerProcess

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


def watch_cmd(srv: ServerProcess, token: str, folder: Path, *extra: str) -> list[str]:
    return [str(BIN / "avidence"), "watch", str(folder), "--server", srv.url, "--token", token,
            "--json", *extra]  # fmt: skip


def watch_once(
    srv: ServerProcess, token: str, folder: Path, tmp_path: Path, *extra: str
) -> list[dict[str, object]]:
    result = subprocess.run(
        watch_cmd(srv, token, folder, "--once", "--settle", "1", *extra),
        capture_output=True, text=True, timeout=60, env=client_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_growing_recording_is_uploaded_only_once_finished(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    folder = tmp_path / "recorder"
    (folder / "2026-0007").mkdir(parents=True)
    target = folder / "2026-0007" / "room3.ts"
    started = threading.Event()

    def recorder() -> None:
        with target.open("wb") as out:
            for _ in range(16):
                out.write(os.urandom(256 * 1024))
                out.flush()
                started.set()
                time.sleep(0.1)

    thread = threading.Thread(target=recorder)
    thread.start()
    try:
        assert started.wait(10)
        events = watch_once(srv, token, folder, tmp_path, "--case-from-dirname")
        assert not [e for e in events if e["event"] == "uploaded"]
        assert target.exists()
    finally:
        thread.join(30)
    digest = blake3.blake3(target.read_bytes()).hexdigest()
    time.sleep(1.1)  # the settle time passes
    events = watch_once(srv, token, folder, tmp_path, "--case-from-dirname")
    uploaded = [e for e in events if e["event"] == "uploaded"]
    assert len(uploaded) == 1, events
    moved = folder / ".uploaded" / "2026-0007" / "room3.ts"
    assert moved.exists() and not target.exists()
    record = get_json(f"{srv.url}/api/evidence/{uploaded[0]['evidence_id']}", token)
    assert record["blake3"] == digest and record["case_id"] == "2026-0007"
    # A second pass finds nothing to do: .uploaded/ is not watched.
    events = watch_once(srv, token, folder, tmp_path, "--case-from-dirname")
    assert not [e for e in events if e["event"] in ("uploaded", "started")]


def test_a_file_held_open_for_writing_is_not_uploaded(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    folder = tmp_path / "recorder"
    folder.mkdir()
    target = folder / "open.ts"
    with target.open("wb") as out:
        out.write(os.urandom(MiB))
        out.flush()
        old = time.time() - 3600
        os.utime(target, (old, old))  # settled by its mtime, but still open
        events = watch_once(srv, token, folder, tmp_path, "--case", "W-2")
        assert not [e for e in events if e["event"] == "uploaded"]
    events = watch_once(srv, token, folder, tmp_path, "--case", "W-2")
    assert [e for e in events if e["event"] == "uploaded"]
    assert (folder / ".uploaded" / "open.ts").exists()


def test_the_daemon_uploads_and_deletes_after_verification(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    folder = tmp_path / "recorder"
    folder.mkdir()
    daemon = subprocess.Popen(
        watch_cmd(srv, token, folder, "--case", "W-3", "--settle", "0.5", "--interval", "0.2",
                  "--delete-after-verify"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(tmp_path),
    )  # fmt: skip
    try:
        target = folder / "clip.ts"
        data = os.urandom(2 * MiB)
        target.write_bytes(data)
        deadline = time.monotonic() + 30
        while target.exists():
            assert time.monotonic() < deadline, "the daemon did not take the file"
            assert daemon.poll() is None, daemon.communicate()
            time.sleep(0.1)
    finally:
        daemon.terminate()
        out, _ = daemon.communicate(timeout=30)
    events = [json.loads(line) for line in out.splitlines()]
    uploaded = next(e for e in events if e["event"] == "uploaded")
    assert [e for e in events if e["event"] == "deleted"]
    record = get_json(f"{srv.url}/api/evidence/{uploaded['evidence_id']}", token)
    assert record["blake3"] == blake3.blake3(data).hexdigest()
    assert not (folder / ".uploaded").exists()
    status = subprocess.run(
        [str(BIN / "avidence"), "status"], capture_output=True, text=True, env=client_env(tmp_path)
    )
    assert status.returncode == 0 and "finished" in status.stdout


RECEIPT = Path(__file__)  # any existing file stands for a saved receipt here


def _outcome(
    verified: bool,
    evidence_id: str | None = "ev_1",
    proof: str = "receipt",
    receipt: Path | None = RECEIPT,
) -> Outcome:
    return Outcome(
        path="/x", size=1, evidence_id=evidence_id, digests={}, verified=verified, proof=proof,
        message="", state_file="", receipt_file=str(receipt) if receipt else None,
        resumed=False, seconds=0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "delete", "action"),
    [
        (None, True, Action.KEEP),
        (_outcome(False), True, Action.KEEP),
        (_outcome(True, evidence_id=None), True, Action.KEEP),
        (_outcome(True, proof="record", receipt=None), True, Action.KEEP),
        (_outcome(True, proof="server-digests", receipt=None), False, Action.KEEP),
        (_outcome(True, receipt=None), True, Action.KEEP),
        (_outcome(True, receipt=Path("/nonexistent/receipt.json")), True, Action.KEEP),
        (_outcome(True), False, Action.MOVE),
        (_outcome(True), True, Action.DELETE),
    ],
)
def test_only_a_verified_upload_with_a_receipt_lets_the_source_go(
    outcome: Outcome | None, delete: bool, action: Action
) -> None:
    assert after_upload(outcome, delete_after_verify=delete) is action


def _watcher(folder: Path, state: Path, **options: object) -> Watcher:
    uploader = Uploader.__new__(Uploader)  # never called in these tests
    uploader.tus = TusClient.__new__(TusClient)
    uploader.tus.endpoint = "http://x/files/"
    return Watcher(
        WatchOptions(directory=folder, case="C", **options),  # type: ignore[arg-type]
        uploader=uploader,
        store=StateStore(state),
        reporter=PlainReporter(io.StringIO()),
    )


def test_an_unverified_upload_keeps_the_source_even_with_delete(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    source = folder / "a.ts"
    source.write_bytes(b"recording")
    watcher = _watcher(folder, tmp_path / "state", delete_after_verify=True)
    watcher.act(source, identify(source), _outcome(False))
    assert source.exists()


async def test_a_failed_verification_is_kept_and_listed_by_status(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    source = folder / "bad.ts"
    source.write_bytes(b"recording")
    store = StateStore(tmp_path / "state")
    state = UploadState.new(identify(source), endpoint="http://x/files/", case="C", item="")
    state.phase, state.error = "failed", "the server quarantined the upload"
    store.save(state)
    watcher = _watcher(folder, tmp_path / "state", delete_after_verify=True)
    await watcher.process(source)  # the uploader is never asked again
    assert source.exists() and watcher.worst == 5
    result = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "avidence"), "status", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 5
    assert "failed" in result.stdout and "quarantined" in result.stdout


def test_uploaded_path_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / ".uploaded").mkdir(parents=True)
    (folder / ".uploaded" / "a.ts").write_bytes(b"older")
    assert uploaded_path(folder, folder / "a.ts") == folder / ".uploaded" / "a.1.ts"


def test_case_from_dirname_leaves_a_file_outside_case_folders_alone_unless_case_is_given(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    """A file directly in the watched folder has no case folder: it is never filed under a
    case named after the watched folder; it waits, with one warning, or takes `--case`."""
    srv, token = server
    folder = tmp_path / "recorder"
    (folder / "K-7").mkdir(parents=True)
    loose, filed = folder / "loose.ts", folder / "K-7" / "room.ts"
    for path in (loose, filed):
        path.write_bytes(os.urandom(64 * 1024))
        old = time.time() - 60
        os.utime(path, (old, old))
    events = watch_once(srv, token, folder, tmp_path, "--case-from-dirname")
    [uploaded] = [e for e in events if e["event"] == "uploaded"]
    assert get_json(f"{srv.url}/api/evidence/{uploaded['evidence_id']}", token)["case_id"] == "K-7"
    [warning] = [e for e in events if e["event"] == "warning"]
    assert warning["file"] == "loose.ts" and "--case" in str(warning["message"])
    assert loose.exists()
    events = watch_once(srv, token, folder, tmp_path, "--case-from-dirname", "--case", "K-8")
    [uploaded] = [e for e in events if e["event"] == "uploaded"]
    assert uploaded["file"] == "loose.ts"
    assert get_json(f"{srv.url}/api/evidence/{uploaded['evidence_id']}", token)["case_id"] == "K-8"
    assert not loose.exists() and (folder / ".uploaded" / "loose.ts").exists()
