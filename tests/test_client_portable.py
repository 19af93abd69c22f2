"""The client runs on Windows and on Linux (Kylin, UOS) recorder PCs: no Linux-only call
outside `client/portable.py`, and there each `os.name` branch gives the same bytes, digests and
files. The Windows branch runs here through an `os` that answers like Windows' (`name == "nt"`,
no `pread`, `O_CLOEXEC` or `O_DIRECTORY`); a real Windows run is not part of this suite."""

from __future__ import annotations

import ast
import hashlib
import os
import types
from pathlib import Path
from typing import Any

import pytest

from avidence.client import files, portable
from avidence.client.state import StateStore

ROOT = Path(__file__).resolve().parents[1]
# os attributes Windows lacks (or that mean something else there), and POSIX-only modules
POSIX_ONLY = {"pread", "pwrite", "O_CLOEXEC", "O_DIRECTORY", "O_NOFOLLOW", "fork", "getuid",
              "geteuid", "chown", "mkfifo", "setsid", "killpg", "sync"}  # fmt: skip
POSIX_MODULES = {"fcntl", "pwd", "grp", "termios", "resource", "posix"}


def _client_sources() -> list[Path]:
    return [*sorted((ROOT / "client").glob("*.py")), ROOT / "storage" / "digests.py"]


def test_no_linux_only_call_outside_portable() -> None:
    found = []
    for path in _client_sources():
        if path.name == "portable.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "os" and node.attr in POSIX_ONLY:
                    found.append(f"{path.name}:{node.lineno} os.{node.attr}")
                if node.attr == "add_signal_handler":  # NotImplementedError on Windows
                    found.append(f"{path.name}:{node.lineno} add_signal_handler")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                found += [f"{path.name}:{node.lineno} {n}" for n in names if n in POSIX_MODULES]
    assert found == []


class WindowsOs(types.ModuleType):
    """The real `os`, answering as Windows' would where the client's behaviour differs."""

    name = "nt"
    O_BINARY = 0  # 0x8000 on Windows; 0 keeps it harmless on this system

    def __getattr__(self, attr: str) -> Any:
        if attr in {"pread", "O_CLOEXEC", "O_DIRECTORY"}:
            raise AttributeError(attr)
        return getattr(os, attr)


@pytest.fixture(params=["posix", "nt"])
def system(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "nt":
        monkeypatch.setattr(portable, "os", WindowsOs("os"))
        assert portable.windows()
    else:
        assert not portable.windows()
    return str(request.param)


async def test_reading_and_digests_agree_on_both_systems(system: str, tmp_path: Path) -> None:
    data = os.urandom(3 * files.MiB + 12345)
    recording = tmp_path / "recording.mp4"
    recording.write_bytes(data)
    identity = files.identify(recording)
    assert identity.size == len(data)
    files.check_unchanged(identity)
    start, length = files.MiB - 7, 2 * files.MiB
    read = b"".join([b async for b in files.read_range(str(recording), start=start, length=length)])
    assert read == data[start : start + length]
    digest = await files.digest_range(str(recording), start=0, length=len(data), algorithm="sha256")
    assert digest == hashlib.sha256(data).digest()


def test_state_files_and_moves_on_both_systems(system: str, tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    target = tmp_path / "state" / "one.json"
    store.write_json(target, {"system": system})
    store.write_json(target, {"system": system, "again": True})  # replaces atomically
    assert target.read_text(encoding="utf-8").count("again") == 1
    source, moved = tmp_path / "a.ts", tmp_path / "uploaded" / "a.ts"
    moved.parent.mkdir()
    moved.write_bytes(b"older copy")
    source.write_bytes(b"recording")
    portable.move(source, moved)  # an existing target is replaced on both systems
    assert moved.read_bytes() == b"recording" and not source.exists()
