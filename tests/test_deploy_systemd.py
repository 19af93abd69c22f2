"""deploy/systemd: the units pass `systemd-analyze verify`, keep their hardening, and what they
run (the server over PostgreSQL + S3, the worker, ffmpeg) works under MemoryDenyWriteExecute,
reproduced with the kernel's own switch for it (prctl PR_SET_MDWE, Linux 6.3+)."""

from __future__ import annotations

import asyncio
import base64
import configparser
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import blake3
import pytest

from support.seaweed import SeaweedServer
from support.servers import free_port, metadata

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))
BIN = Path(sys.executable).parent
MiB = 1024 * 1024
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1

# Run argv[1:] with W^X enforced by the kernel: no mapping may be writable and executable, and
# none may become executable later, as systemd's MemoryDenyWriteExecute=yes refuses.
MDWE_EXEC = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_MDWE): {{os.strerror(ctypes.get_errno())}}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    return found


def _runnable_copy(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at this virtualenv's avidence-server, which exists
    here (verify checks that the binary does)."""
    out = []
    for path in SERVICES:
        text = path.read_text(encoding="utf-8")
        assert "ExecStart=/opt/avidence/bin/avidence-server " in text
        copy = tmp_path / path.name
        copy.write_text(
            text.replace("/opt/avidence/bin/avidence-server", str(BIN / "avidence-server")),
            encoding="utf-8",
        )
        out.append(copy)
    return out


def test_there_are_server_and_worker_units() -> None:
    assert [p.name for p in SERVICES] == ["avidence-server.service", "avidence-worker.service"]


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_unit_runs_hardened_as_the_avidence_user(path: Path) -> None:
    unit = _unit(path)
    service = unit["Service"]
    d = _directives(path)
    assert service["User"] == "avidence"
    assert service["EnvironmentFile"] == "/etc/avidence/avidence.env"
    assert service["Restart"] == "on-failure"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ReadWritePaths": "/var/lib/avidence",
        "StateDirectory": "avidence",
        "MemoryDenyWriteExecute": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in d["SystemCallFilter"]
    assert "AVIDENCE_DATA_DIR=/var/lib/avidence" in service["Environment"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    sysusers = (UNITS / "avidence.sysusers").read_text(encoding="utf-8")
    assert re.search(r"^u avidence .*/var/lib/avidence", sysusers, re.M)


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    units = _runnable_copy(tmp_path)
    result = subprocess.run(
        [analyze, "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # verify exits 0 on unknown keys or bad values too; it only warns on stderr.
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 0 and not problems, result.stderr


def test_units_rate_ok_in_systemd_analyze_security(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    for unit in _runnable_copy(tmp_path):
        result = subprocess.run(
            [analyze, "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        if "--offline" in result.stderr or "unrecognized option" in result.stderr:
            pytest.skip("this systemd-analyze has no --offline (systemd 252+)")
        found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
        assert found, result.stdout + result.stderr
        # 0 is locked down, 10 is unprotected; systemd calls up to 2.9 "OK".
        assert float(found.group(1)) <= 2.0, result.stdout


# -- MemoryDenyWriteExecute, for real --------------------------------------------------------------


def _mdwe_available() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(f"kernel cannot enforce W^X for a process (Linux 6.3+): {probe.stderr}")


def test_mdwe_wrapper_really_refuses_writable_executable_memory() -> None:
    _mdwe_available()
    attempt = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | 4)"
    result = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, sys.executable, "-c", attempt],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "PermissionError" in result.stderr


def test_server_on_postgres_and_s3_works_under_memory_deny_write_execute(
    postgres_url: str, seaweed: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    """Every native piece the server loads (asyncpg, boto3/urllib3 with OpenSSL, BLAKE3, SM3,
    cryptography) on the path of an upload, a receipt and the metrics."""
    _mdwe_available()
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AVIDENCE_S3_PART_SIZE": str(5 * MiB),
        "AVIDENCE_DIGESTS": "blake3,sha256,sm3",
        "AVIDENCE_EMBEDDED_WORKER": "false",
    }
    common = ["--data-dir", str(tmp_path), "--database", postgres_url]
    banner = tmp_path / "banner"
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MDWE_EXEC,
            str(BIN / "avidence-server"),
            "serve",
            *common,
            "--port",
            str(port),
            "--storage",
            "s3",
            "--s3-endpoint",
            seaweed.endpoint,
            "--s3-bucket",
            s3_bucket,
            "--banner-file",
            str(banner),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 45
        while not banner.exists():
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        token = subprocess.run(
            [
                str(BIN / "avidence-server"),
                "token",
                "create",
                *common,
                "--role",
                "uploader",
                "--name",
                "mdwe",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.splitlines()[-1]
        data = os.urandom(6 * MiB + 1)
        asyncio.run(_upload_and_read_back(f"http://127.0.0.1:{port}", token, data))
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


async def _upload_and_read_back(base: str, token: str, data: bytes) -> None:
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/files/",
            data=io.BytesIO(data),
            headers={
                **auth,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(case="W^X", filename="wx.bin"),
                "Upload-Checksum": f"sha256 {checksum}",
                "Content-Type": "application/offset+octet-stream",
            },
        ) as r:
            assert r.status == 201, await r.text()
            evidence_id = r.headers["Avidence-Evidence-Id"]
        async with session.get(f"{base}/api/evidence/{evidence_id}", headers=auth) as r:
            record: dict[str, Any] = await r.json()
        async with session.get(f"{base}/api/evidence/{evidence_id}/receipt", headers=auth) as r:
            assert r.status == 200
        async with session.get(f"{base}/metrics") as r:
            assert "avidence_upload_bytes_total" in await r.text()
    assert record["blake3"] == blake3.blake3(data).hexdigest()
    assert record["sm3"] == hashlib.new("sm3", data).hexdigest()


def test_worker_starts_under_memory_deny_write_execute(tmp_path: Path) -> None:
    _mdwe_available()
    migrate = [str(BIN / "avidence-server"), "migrate", "--data-dir", str(tmp_path)]
    subprocess.run(migrate, check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MDWE_EXEC,
            str(BIN / "avidence-server"),
            "worker",
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(4)
        assert proc.poll() is None, proc.communicate(timeout=10)[0].decode()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert "Traceback" not in out, out


def test_ffmpeg_transcodes_under_memory_deny_write_execute(tmp_path: Path) -> None:
    _mdwe_available()
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        pytest.skip("ffmpeg not installed (make system-deps)")
    source = tmp_path / "in.ts"
    subprocess.run(
        [
            ffmpeg,
            *("-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2"),
            *("-c:v", "mpeg2video", "-c:a", "mp2", str(source)),
        ],
        check=True,
        timeout=60,
    )
    out = tmp_path / "out.mp4"
    for argv in (
        [
            ffmpeg,
            *("-v", "error", "-i", str(source), "-c:v", "libx264", "-preset", "veryfast"),
            *("-c:a", "aac", "-movflags", "+faststart", str(out)),
        ],
        [ffprobe, "-v", "error", "-show_streams", "-of", "json", str(out)],
    ):
        result = subprocess.run(
            [sys.executable, "-c", MDWE_EXEC, *argv], capture_output=True, timeout=120
        )
        assert result.returncode == 0, result.stderr.decode()
    assert b'"codec_name": "h264"' in result.stdout
