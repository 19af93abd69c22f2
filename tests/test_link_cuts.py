"""Clients over a link that drops: tuspy, tus-js-client (Node) and `avidence`, through a TCP
proxy that cuts (FIN), resets (RST) or stalls their connections, on the local store and on S3.

Each must resume from the server's offset without ever being answered 409 (a stale HEAD, or a
lost tail, would cause one) and end with evidence whose digest is the file's. The server is a
real `avidence-server serve` process per store, shared by this module's tests; its log tells
which answers it gave.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tusclient import client as tus
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from support.client_runs import client_env
from support.files import get_json, random_file
from support.proxy import FaultProxy, fault_proxy
from support.seaweed import SeaweedServer
from support.servers import ServerProcess, free_port
from support.tusnode import NODE_DIR, NodePeer

MiB = 1024 * 1024
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(300)


@dataclass
class Served:
    """A server process, an uploader token, and how many answers of its log were seen."""

    process: ServerProcess
    token: str
    seen: int = 0

    def new_log_lines(self) -> list[str]:
        path = self.process.data_dir / f"server-{self.process.port}.log"
        lines = path.read_text(errors="replace").splitlines()
        new, self.seen = lines[self.seen :], len(lines)
        return new

    def conflicts(self) -> list[str]:
        """The 409 answers given since the last call."""
        return [line for line in self.new_log_lines() if "status=409" in line]

    def digest_of(self, upload_url: str) -> str:
        upload_id = upload_url.rstrip("/").rsplit("/", 1)[1]
        upload = get_json(f"{self.process.url}/api/uploads/{upload_id}", self.token)
        assert upload["state"] == "done", upload
        record = get_json(f"{self.process.url}/api/evidence/{upload['evidence_id']}", self.token)
        return str(record["blake3"])


@pytest.fixture(scope="module", params=["local", "s3"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    data = tmp_path_factory.mktemp(f"srv-{request.param}")
    env = dict(os.environ)
    args: list[str] = []
    if request.param == "s3":
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        args = ["--storage", "s3", "--s3-endpoint", seaweed.endpoint, "--s3-bucket", "linkcuts"]
        env.update(
            AWS_ACCESS_KEY_ID=seaweed.access_key,
            AWS_SECRET_ACCESS_KEY=seaweed.secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            AVIDENCE_S3_PART_SIZE=str(5 * MiB),
        )
    process = ServerProcess(data, free_port(), args, env)
    process.start()
    try:
        served = Served(process, process.token())
        served.new_log_lines()
        yield served
    finally:
        process.stop()


def cut_proxy(served: Served, mode: str, *, after: int, cuts: int = 2) -> Any:
    """A proxy in front of the server that cuts, resets or stalls each connection once it
    carried `after` bytes up, `cuts` times in all."""
    if mode == "stall":
        return fault_proxy(served.process.port, stall_after=after, stall_seconds=2.0)
    return fault_proxy(
        served.process.port, cut_after=after, cuts_left=cuts, reset=(mode == "reset")
    )


def _faulted(proxy: FaultProxy, mode: str) -> None:
    if mode != "stall":
        assert proxy.cuts >= 1, "the link was never cut: the test proved nothing"


# -- tuspy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_tuspy_with_one_quick_retry_resumes_after_a_cut(
    served: Served, tmp_path: Path, mode: str
) -> None:
    """tuspy's own retry (HEAD at once, then PATCH from its answer) must not meet a 409."""
    path = tmp_path / "rec.ts"
    digest = random_file(path, 9 * MiB + 3)
    with cut_proxy(served, mode, after=3 * MiB + 5, cuts=1) as proxy:
        client = tus.TusClient(
            proxy.url + "/files/", headers={"Authorization": f"Bearer {served.token}"}
        )
        with path.open("rb") as stream:
            uploader = client.uploader(
                file_stream=stream,
                chunk_size=4 * MiB,
                retries=1,
                retry_delay=0,
                metadata={"case": "LINK-1", "filename": "rec.ts"},
            )
            uploader.upload()
        _faulted(proxy, mode)
    assert served.conflicts() == []
    assert served.digest_of(uploader.url or "") == digest


def test_tuspy_with_default_settings_resumes_by_url_after_a_cut(
    served: Served, tmp_path: Path
) -> None:
    """Default tuspy (no retries, one PATCH for the whole file) fails on the cut; a new
    uploader given the upload URL asks HEAD and sends the rest."""
    path = tmp_path / "rec.ts"
    digest = random_file(path, 7 * MiB + 1)
    with cut_proxy(served, "close", after=2 * MiB + 77, cuts=1) as proxy:
        client = tus.TusClient(
            proxy.url + "/files/", headers={"Authorization": f"Bearer {served.token}"}
        )
        with path.open("rb") as stream:
            uploader = client.uploader(file_stream=stream, metadata={"case": "LINK-2"})
            with pytest.raises((TusCommunicationError, TusUploadFailed, OSError)):
                uploader.upload()
            assert uploader.url is not None
            resumed = client.uploader(file_stream=stream, url=uploader.url)
            # Every byte that reached the server counts (the requests' headers went first).
            assert resumed.offset > 2 * MiB - 4096
            resumed.upload()
        _faulted(proxy, "close")
    assert served.conflicts() == []
    assert served.digest_of(uploader.url) == digest


# -- the avidence client -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "reset", "stall"])
def test_avidence_client_resumes_after_cuts(served: Served, tmp_path: Path, mode: str) -> None:
    path = tmp_path / "interview.ts"
    digest = random_file(path, 11 * MiB + 9)
    with cut_proxy(served, mode, after=2 * MiB + 1, cuts=3) as proxy:
        args = ["upload", str(path), "--server", proxy.url, "--token", served.token]
        args += ["--case", "LINK-3", "--chunk-size", "4MiB", "--parallel", "1", "--json"]
        args += ["--state-dir", str(tmp_path / "state")]
        result = subprocess.run(
            [str(BIN / "avidence"), *args],
            capture_output=True,
            text=True,
            timeout=240,
            env=client_env(tmp_path, state_dir=False),
        )
        assert result.returncode == 0, result.stderr
        _faulted(proxy, mode)
    final = json.loads(result.stdout.splitlines()[-1])
    assert final["event"] == "result" and final["verified"] is True, final
    assert final["digests"]["blake3"] == digest
    assert served.conflicts() == []


# -- tus-js-client in Node -----------------------------------------------------------------------


def node_upload(served: Served, url: str, path: Path, **options: Any) -> dict[str, Any]:
    """Run one tus-js-client upload (tests/node/tus-js-upload.mjs); its last JSON line."""
    if NodePeer.unavailable() is not None or not (NODE_DIR / "node_modules/tus-js-client").is_dir():
        reason = "node or tests/node/node_modules (tus-js-client) is missing: run make node-deps"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    spec = {
        "endpoint": url + "/files/",
        "token": served.token,
        "path": str(path),
        "metadata": {"case": "LINK-4", "filename": path.name},
        **options,
    }
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(NODE_DIR / "tus-js-upload.mjs"), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=NODE_DIR,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, (result.stdout, result.stderr)
    assert "url" in lines[-1], lines
    return {"url": lines[-1]["url"], "retries": [x for x in lines if "retry" in x]}


@pytest.mark.parametrize("mode", ["close", "reset", "stall"])
def test_tus_js_client_resumes_after_cuts(served: Served, tmp_path: Path, mode: str) -> None:
    path = tmp_path / "cam.mp4"
    digest = random_file(path, 10 * MiB + 1)
    with cut_proxy(served, mode, after=3 * MiB + 11, cuts=2) as proxy:
        out = node_upload(served, proxy.url, path, chunkSize=4 * MiB)
        _faulted(proxy, mode)
    assert all(r["status"] != 409 for r in out["retries"]), out["retries"]
    assert served.conflicts() == []
    assert served.digest_of(out["url"]) == digest


def test_tus_js_client_empty_file(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "empty.ts"
    digest = random_file(path, 0)
    out = node_upload(served, served.process.url, path)
    assert served.digest_of(out["url"]) == digest


def test_tus_js_client_deferred_length_of_whole_chunks(served: Served, tmp_path: Path) -> None:
    """A stream of unknown size that ends exactly on a chunk boundary: tus-js-client then
    declares the length with an empty last PATCH."""
    path = tmp_path / "stream.ts"
    digest = random_file(path, 3 * MiB)
    out = node_upload(served, served.process.url, path, chunkSize=MiB, deferred=True)
    assert served.conflicts() == []
    assert served.digest_of(out["url"]) == digest


def test_tus_js_client_parallel_uploads_over_a_cut_link(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "parallel.ts"
    digest = random_file(path, 12 * MiB + 5)
    with cut_proxy(served, "close", after=2 * MiB + 3, cuts=2) as proxy:
        out = node_upload(served, proxy.url, path, parallelUploads=3, chunkSize=2 * MiB)
        _faulted(proxy, "close")
    lines = served.new_log_lines()
    assert [line for line in lines if "status=409" in line] == []
    # The store is sealed (new data, `encryption = auto`): the parts were adopted, not resealed.
    assert any("sealed.joined" in line and "runs=3" in line for line in lines), lines[-20:]
    assert served.digest_of(out["url"]) == digest
