"""The client as an interrogation-room PC gets it: `pip install avidence` into a fresh virtualenv
(no server dependencies), and the single-file executable `make client-exe` builds. Each uploads
to a real server, `watch --once` moves a verified recording, and `verify` checks a receipt
offline.

How pip resolves here: the machine's pip configuration (an index plus local wheel folders) as it
is; the install builds avidence from this tree and takes its few dependencies from there, like
an installation from a clone. Both installs are bounded in time (pytest-timeout), and the lean
install's package list is printed and bounded.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from avidence.server.audit.entries import entry_hash

from support.client_runs import client_env
from support.files import random_file
from support.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
# Packages a client install may have: the client's five and what they need, pip and setuptools.
MAX_PACKAGES = 22
SERVER_ONLY = {"sqlalchemy", "asyncpg", "alembic", "boto3", "botocore", "prometheus-client",
               "aiosqlite", "jsonschema", "python-pkcs11", "ffmpeg-python", "aiofiles",
               "confusable-homoglyphs", "s3transfer"}  # fmt: skip


def run(*argv: str | Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr  # results on stdout, their details on stderr


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """bin/ of a fresh virtualenv holding `pip install <this tree>`."""
    venv = tmp_path_factory.mktemp("lean") / "venv"
    run(sys.executable, "-m", "venv", venv, timeout=120)
    run(venv / "bin" / "pip", "install", "--quiet", ROOT, timeout=480)
    yield venv / "bin"


def keys_file(server: ServerProcess, folder: Path) -> Path:
    with urllib.request.urlopen(f"{server.url}/api/keys", timeout=10) as response:
        document = json.load(response)
    path = folder / "keys.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def upload_watch_verify(avidence: Path, server: ServerProcess, token: str, tmp_path: Path) -> None:
    """The three things a recorder PC does, with the client at `avidence`."""
    env = client_env(tmp_path)
    recording = tmp_path / "interview-7.ts"
    random_file(recording, 2 * 1024 * 1024 + 17)
    out = run(avidence, "upload", recording, "--server", server.url, "--token", token,
              "--case", "2026-0777", timeout=120, env=env)  # fmt: skip
    found = re.search(r"; receipt (\S+)", out)
    assert found is not None, out
    receipt = Path(found.group(1))
    keys = keys_file(server, tmp_path)
    checked = run(avidence, "verify", recording, "--receipt", receipt, "--key", keys,
                  timeout=60, env=env)  # fmt: skip
    assert "OK" in checked.upper(), checked

    folder = tmp_path / "recorder"
    folder.mkdir()
    random_file(folder / "room-2.ts", 1024 * 1024 + 3)
    run(avidence, "watch", folder, "--once", "--settle", "0", "--server", server.url,
        "--token", token, "--case", "2026-0777", timeout=120, env=env)  # fmt: skip
    assert not (folder / "room-2.ts").exists()
    assert list(folder.rglob("room-2.ts")), "the verified recording was moved, not lost"


@pytest.mark.timeout(900)
def test_client_only_install_is_small_and_works(
    lean: Path, server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    listed = run(lean / "pip", "list", "--format=freeze", "--no-color", timeout=60)
    print("client install:\n" + listed)
    names = {line.split("==")[0].lower() for line in listed.splitlines() if "==" in line}
    assert "avidence" in names
    assert not names & SERVER_ONLY, names & SERVER_ONLY
    assert len(names) <= MAX_PACKAGES, sorted(names)
    process, token = server
    upload_watch_verify(lean / "avidence", process, token, tmp_path)

    # SM3 audit entries (a gm log's bundle) are recomputed as the server chains them
    body = {"seq": 1, "time": "2026-01-02T03:04:05.000006Z", "actor": "cli", "action": "x",
            "object": "case:审讯", "case_id": None, "details": {}, "client": None,
            "prev_hash": "0" * 64, "hash_algorithm": "sm3"}  # fmt: skip
    code = ("import json, sys; from avidence.client.verify import audit_entry_hash; "
            "print(audit_entry_hash(json.loads(sys.argv[1])))")  # fmt: skip
    recomputed = run(lean / "python", "-I", "-c", code, json.dumps(body), timeout=60).strip()
    assert recomputed == entry_hash(body)

    # the server's command is there but says what to install instead of failing somewhere deep
    refused = subprocess.run([lean / "avidence-server", "--help"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode != 0
    assert "pip install 'avidence[server]'" in refused.stderr


@pytest.mark.timeout(900)
def test_single_file_client_built_by_make_works(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    run("make", "-C", ROOT, "client-exe", timeout=600)
    exe = ROOT / "dist" / "avidence"
    assert exe.stat().st_size < 60 * 1024 * 1024
    assert run(exe, "version", timeout=60).strip().startswith("avidence ")
    process, token = server
    upload_watch_verify(exe, process, token, tmp_path)
