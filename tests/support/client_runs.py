"""What the `avidence` client tests share: one real server per test module, and an environment
that keeps the machine's own client settings out of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import ServerProcess, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """One server for a module's tests that do not kill it (a start plus a token costs seconds),
    with an uploader token."""
    data = tmp_path_factory.mktemp("srv")
    process = ServerProcess(data, free_port(), [], dict(os.environ))
    process.start()
    try:
        yield process, process.token()
    finally:
        process.stop()


def client_env(tmp_path: Path, *, state_dir: bool = True) -> dict[str, str]:
    """The environment of a client run: no config file, server or token from the machine running
    the tests, and (unless `state_dir` is False) resume state kept in the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIDENCE_")}
    env["AVIDENCE_CONFIG"] = str(tmp_path / "no-config.toml")
    if state_dir:
        env["AVIDENCE_STATE_DIR"] = str(tmp_path / "state")
    return env
