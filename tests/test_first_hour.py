"""A newcomer's first hour, tried as one would: `make run` on another port (twice), the README's
commands as written, admin commands from another folder, a hold on a mistyped case, and every
link of the README and docs/ resolving inside a clone."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_custody_api import invoke, local_app

from avidence.server.cli import main

from support.client_runs import client_env
from support.servers import Api, ServerProcess, free_port
from support.tickets import upload

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOP_FOLDERS = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}


# -- make run PORT=...: twice, one demo token, one demo recording, example retention classes --


def _make_run(data: Path, port: int, *, within: float = 120.0) -> list[str]:
    """`make run PORT=port DATA=data` until it prints the demo link; its banner lines."""
    process = subprocess.Popen(
        ["make", "-s", "-C", str(ROOT), "run", f"PORT={port}", f"DATA={data}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the server it starts are stopped together
    )
    lines: list[str] = []
    deadline = time.monotonic() + within
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if "watch the demo:" in line or "demo recording" in line:
                break
            assert time.monotonic() < deadline, "\n".join(lines)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    return lines


def _value(lines: list[str], label: str) -> str:
    return next(line.split()[-1] for line in lines if line.strip().startswith(label))


def test_make_run_on_another_port_twice_reuses_the_demo(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    first = _make_run(data, port)
    banner = "\n".join(first)
    assert f"serving on http://127.0.0.1:{port}" in banner, banner
    # Nothing to warn about on a fresh demo (the example classes ask for no storage lock).
    assert [line for line in first if " WARNING " in line] == []
    assert f"--data-dir {data}" in banner and "--config " in banner  # for admin commands
    token, link = _value(first, "uploader token:"), _value(first, "watch the demo:")
    assert link.startswith(f"http://127.0.0.1:{port}/t/"), first

    again = free_port()
    second = _make_run(data, again)
    assert _value(second, "uploader token:") == token
    assert _value(second, "watch the demo:") == link.replace(str(port), str(again), 1)

    with sqlite3.connect(data / "catalog.db") as db:
        tokens = db.execute("SELECT name FROM tokens WHERE revoked_at IS NULL").fetchall()
        evidence = db.execute("SELECT count(*) FROM evidence").fetchone()[0]
        tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
    assert tokens == [("demo (serve --demo)",)]
    assert (evidence, tickets) == (1, 1)

    config = ["--config", str(ROOT / "deploy" / "demo.toml"), "--data-dir", str(data)]
    classes = CliRunner().invoke(main, ["retention", "classes", *config])
    assert classes.exit_code == 0, classes.output
    names = [line.split("\t")[0] for line in classes.output.splitlines()]
    assert {"indefinite", "case-file", "interrogation", "cctv", "bodycam"} <= set(names)
    assert "case-file\t3650 days\tlock=none (default)" in classes.output


def test_readme_retention_commands_show_the_demo_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run as written from the project folder: without the settings file they showed only the
    # built-in class, not "the demo's example classes" the README promised.
    data = tmp_path / "data"
    assert CliRunner().invoke(main, ["migrate", "--data-dir", str(data)]).exit_code == 0
    monkeypatch.chdir(ROOT)
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    for command in ("retention classes", "purge --dry-run"):
        line = next(x for x in readme if x.startswith(f"avidence-server {command}"))
        args = shlex.split(line.split("#", 1)[0])[1:]
        result = CliRunner().invoke(main, [*args, "--data-dir", str(data)])
        assert result.exit_code == 0, (line, result.output)
        if command == "retention classes":
            assert "case-file\t3650 days\tlock=none (default)" in result.output, line


def test_make_run_passes_port_and_host_only_from_its_command_line() -> None:
    def dry(*args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(
            ["make", "-n", "-C", str(ROOT), "run", *args],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **(env or {})},
        )
        return out.stdout

    assert "--port 9090" in dry("PORT=9090") and "--host ::1" in dry("HOST=::1")
    # A shell's exported HOST (zsh sets one) must not make the server listen elsewhere.
    plain = dry(env={"HOST": "workstation", "PORT": "1"})
    assert "--host" not in plain and "--port" not in plain


# -- documentation a clone can follow -----------------------------------------------------------


def _doc_references(doc: Path) -> Iterator[tuple[str, Path]]:
    """Markdown links and backticked paths into the repository (`docs/x.md`, `../y`)."""
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        yield target, doc.parent / target.split("#", 1)[0]
    for target in re.findall(r"`([^`\s]+)`", text):
        if re.search(r"[<>*{}$]|\.\.\.", target):
            continue  # a pattern or a placeholder, not a file
        if target.startswith("../"):
            yield target, doc.parent / target
        elif "/" in target and target.split("/", 1)[0] in TOP_FOLDERS:
            yield target, ROOT / target.split("::", 1)[0]  # a test's node id names its file


def test_readme_and_docs_reference_only_files_a_clone_has() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        for target, path in _doc_references(doc):
            resolved = path.resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                missing.append(f"{doc.relative_to(ROOT)}: {target}")
    assert missing == []


# -- admin commands from another folder ------------------------------------------------------


def _admin(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_admin_commands_elsewhere_name_where_they_looked_and_create_no_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AVIDENCE_DATA_DIR", "AVIDENCE_DATABASE", "AVIDENCE_SERVER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for args in (
        ["token", "list"],
        ["token", "create", "--role", "uploader", "--name", "x"],
        ["agency", "create", "--name", "Court"],
        ["hold", "list"],
        ["transfer", "inbox"],
    ):
        result = _admin(*args)
        assert result.exit_code == 2, (args, result.output)
        assert f"no catalog at {elsewhere / 'data' / 'catalog.db'}" in result.output
        assert "'data', the default, in the current folder" in result.output
        assert "AVIDENCE_DATA_DIR" in result.output and "migrate" in result.output
    assert list(elsewhere.iterdir()) == []  # no stray ./data

    server_data = tmp_path / "server-data"
    from_env = _admin("token", "list", env={"AVIDENCE_DATA_DIR": str(server_data)})
    assert from_env.exit_code == 2
    assert f"no catalog at {server_data / 'catalog.db'}" in from_env.output
    assert "from AVIDENCE_DATA_DIR" in from_env.output
    assert not server_data.exists()

    made = _admin("migrate", "--data-dir", str(server_data))
    assert made.exit_code == 0, made.output
    created = _admin(
        "token", "create", "--role", "uploader", "--name", "room 3",
        env={"AVIDENCE_DATA_DIR": str(server_data)},
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    settings = tmp_path / "server.toml"
    settings.write_text(f'data_dir = "{server_data}"\n', encoding="utf-8")
    listed = _admin("token", "list", env={"AVIDENCE_SERVER_CONFIG": str(settings)})
    assert listed.exit_code == 0 and "room 3" in listed.output
    assert list(elsewhere.iterdir()) == []


# -- holds name cases that exist ----------------------------------------------------------------


@pytest.fixture()
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for value in local_app(tmp_path):
        yield value


async def test_a_hold_on_a_case_nobody_has_is_refused(api: Api) -> None:
    await upload(api, b"recording", case="GA-9")
    data = ["--data-dir", str(api.settings.data_dir)]
    refused = await invoke(main, ["hold", "add", *data, "--case", "NO-SUCH-CASE", "--reason", "r"])
    assert refused.exit_code == 2
    assert refused.output.strip() == "avidence-server: error: no case 'NO-SUCH-CASE'"
    placed = await invoke(main, ["hold", "add", *data, "--case", "GA-9", "--reason", "order"])
    assert placed.exit_code == 0 and "placed on case GA-9" in placed.output
    response = await api.client.post(
        "/api/admin/holds",
        json={"scope": "case", "target": "GA-10", "reason": "order"},
        headers=api.auth(api.admin),
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "case_unknown"
    listed = await invoke(main, ["hold", "list", *data])
    assert listed.output.count("\tcase\t") == 1


# -- the README's verify example, as written ------------------------------------------------------

EXAMPLE_SERVER = "http://127.0.0.1:8080"
EXAMPLE_ID = "ev_0123456789abcdef01234567"


def _readme_example() -> list[str]:
    """The `avidence receipt|keys|verify` lines of the README's custody example."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("checks it offline against the server's signed receipt:", 1)[1]
    block = block.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("   #", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "srv", free_port(), [], dict(os.environ))
    process.data_dir.mkdir()
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_readme_verify_example_works_as_written(server: ServerProcess, tmp_path: Path) -> None:
    example = _readme_example()
    assert [line.split()[:2] for line in example] == [
        ["avidence", "receipt"],
        ["avidence", "keys"],
        ["avidence", "verify"],
    ]
    env = client_env(tmp_path)
    desk = tmp_path / "desk"
    desk.mkdir()
    (desk / "rec-0931.ts").write_bytes(os.urandom(300_000))

    def avidence(line: str, **more: str) -> subprocess.CompletedProcess[str]:
        argv = line.split()
        return subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=desk,
            env={**env, **more},
            capture_output=True,
            text=True,
            timeout=120,
        )

    token = server.token()
    sent = avidence(
        f"avidence upload rec-0931.ts --server {server.url} --token {token} --case 2026-0001"
    )
    assert sent.returncode == 0, sent.stderr
    evidence_id = re.findall(r"ev_[0-9a-f]{24}", sent.stdout)[0]
    outputs = []
    for line in example:
        run = avidence(line.replace(EXAMPLE_SERVER, server.url).replace(EXAMPLE_ID, evidence_id))
        assert run.returncode == 0, (line, run.stdout, run.stderr)
        outputs.append(run.stdout)
    receipt = json.loads((desk / "rec-0931.receipt.json").read_text())
    assert receipt["receipt"]["evidence_id"] == evidence_id
    assert "written to rec-0931.receipt.json" in outputs[0]
    history = json.loads((desk / "pinned-keys.json").read_text())
    root = history["keys"][0]["id"]
    assert f"root key {root}" in outputs[1] and history["type"] == "avidence.key-history/v1"
    assert outputs[2].startswith("OK rec-0931.ts size=300000 ")

    # Again later: the pinned file only grows by keys certified by the pinned ones.
    again = avidence(example[1].replace(EXAMPLE_SERVER, server.url))
    assert again.returncode == 0 and "0 new key(s)" in again.stdout
    # A changed recording fails with the integrity exit code `--help` documents.
    with (desk / "rec-0931.ts").open("r+b") as recording:
        recording.write(b"\0")
    changed = avidence(example[2])
    assert changed.returncode == 5, changed.stderr
    assert changed.stderr.startswith("FAILED rec-0931.ts: ")
    assert "5  integrity failure" in avidence("avidence verify --help").stdout
    # Another client (no saved receipt) asks the server, with a token.
    other = str(tmp_path / "other-state")
    missing = avidence(f"avidence receipt {evidence_id}", AVIDENCE_STATE_DIR=other)
    assert missing.returncode == 2 and "give --server and --token" in missing.stderr
    fetched = avidence(
        f"avidence receipt {evidence_id} --server {server.url} --token {token}",
        AVIDENCE_STATE_DIR=other,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout) == receipt
