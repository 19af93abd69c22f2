"""The client against a link that drops: connections cut mid-body, answers lost after the
server kept the bytes, a stalled link. Every upload still ends as the right evidence, and no
more than the chunk in flight is ever sent again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.files import get_json, random_file
from support.proxy import fault_proxy, sigkill_after
from support.servers import ServerProcess

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


def upload(tmp_path: Path, url: str, token: str, path: Path, *extra: str) -> tuple[str, str]:
    """Run `avidence upload`; return (evidence id, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIDENCE_")}
    env["AVIDENCE_CONFIG"] = str(tmp_path / "no-config.toml")
    result = subprocess.run(
        [str(BIN / "avidence"), "upload", str(path), "--server", url, "--token", token,
         "--case", "F-1", "--state-dir", str(tmp_path / "state"), *extra],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split("\t")[0], result.stderr


def test_connections_cut_mid_body_are_resumed(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    size, chunk = 16 * MiB, 2 * MiB
    path = tmp_path / "cut.ts"
    digest = random_file(path, size)
    # Every connection dies 1.5 MiB into its body, six times over.
    with fault_proxy(srv.port, cut_after=3 * MiB // 2, cuts_left=6) as proxy:
        ev, err = upload(
            tmp_path, proxy.url, token, path, "--parallel", "2", "--chunk-size", "2MiB"
        )
        assert proxy.cuts == 6
        assert err.count("retry") >= 6
        # Each cut loses at most the chunk it interrupted.
        assert proxy.bytes_up <= size + 6 * chunk + 256 * 1024
    assert get_json(f"{srv.url}/api/evidence/{ev}", token)["blake3"] == digest


def test_lost_answers_are_recovered_with_head(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    """The server stored the chunk but the 204 never arrived: HEAD finds the progress."""
    srv, token = server
    size = 8 * MiB
    path = tmp_path / "lost.ts"
    digest = random_file(path, size)
    with fault_proxy(srv.port, cut_answer_to="PATCH", cuts_left=3) as proxy:
        ev, _ = upload(tmp_path, proxy.url, token, path, "--parallel", "1", "--chunk-size", "2MiB")
        assert proxy.cuts == 3
        # The chunks whose answers were lost were kept by the server, not sent again.
        assert proxy.bytes_up <= size + 256 * 1024
    assert get_json(f"{srv.url}/api/evidence/{ev}", token)["blake3"] == digest


def test_a_stalled_link_that_recovers_finishes(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, token = server
    path = tmp_path / "stall.ts"
    digest = random_file(path, 6 * MiB)
    with fault_proxy(srv.port, stall_after=MiB, stall_seconds=2.0) as proxy:
        ev, _ = upload(tmp_path, proxy.url, token, path, "--parallel", "2", "--chunk-size", "1MiB")
        assert proxy.bytes_up >= 6 * MiB
    assert get_json(f"{srv.url}/api/evidence/{ev}", token)["blake3"] == digest


def test_a_lost_answer_to_the_final_upload_still_ends_as_evidence(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    """The final POST joined the partials but its answer was lost: the retried POST finds them
    consumed. The client recovers the final upload if the server names it, else sends again."""
    srv, token = server
    path = tmp_path / "final.ts"
    digest = random_file(path, 9 * MiB)
    # POSTs #1 and #2 create the two partials; POST #3 is the final upload: its answer is cut.
    with fault_proxy(srv.port, cut_answer_to="POST", answers_to_skip=2, cuts_left=1) as proxy:
        ev, _ = upload(tmp_path, proxy.url, token, path, "--parallel", "2")
        assert proxy.cuts == 1
    assert get_json(f"{srv.url}/api/evidence/{ev}", token)["blake3"] == digest


def test_a_killed_parallel_upload_sends_again_no_more_than_the_chunk_size(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    """Checksummed requests count whole or not at all, so a crash costs the requests in
    flight: four parts share `--chunk-size` (8 MiB requests each here, not 32 MiB)."""
    srv, token = server
    size = 96 * MiB
    path = tmp_path / "killed.ts"
    digest = random_file(path, size)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIDENCE_")}
    env["AVIDENCE_CONFIG"] = str(tmp_path / "no-config.toml")
    with fault_proxy(srv.port) as proxy:
        argv = [str(BIN / "avidence"), "upload", str(path), "--server", proxy.url,
                "--token", token, "--case", "F-1", "--state-dir", str(tmp_path / "state"),
                "--parallel", "4", "--chunk-size", "32MiB"]  # fmt: skip
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        sigkill_after(child, proxy, sent=0.6 * size, timeout=120)
        ev, _ = upload(tmp_path, proxy.url, token, path, "--parallel", "4", "--chunk-size", "32MiB")
        assert proxy.bytes_up <= size + 32 * MiB + 256 * 1024
    assert get_json(f"{srv.url}/api/evidence/{ev}", token)["blake3"] == digest
