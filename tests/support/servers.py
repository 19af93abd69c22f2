"""Servers under test: an in-process app over any store, and real `avidence-server` processes."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Middleware

from avidence.server import config, tokens
from avidence.server.app import create_app
from avidence.server.catalog.db import Catalog
from avidence.storage.base import Store

BIN = Path(sys.executable).parent


@dataclass
class Api:
    """An in-process server with a test client and tokens of each role."""

    client: TestClient[Any, Any]
    catalog: Catalog
    store: Store
    settings: config.Settings
    uploader: str
    admin: str
    other_uploader: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.uploader}", "Tus-Resumable": "1.0.0"}


class ServedTestServer(TestServer):
    """aiohttp's TestServer as `avidence-server serve` runs it: a request's handler is not
    cancelled when its client goes away (TestServer turns cancellation on; aiohttp's default and
    our `Runner` leave it off), so tests see what the server does with a dropped request."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = False
        runner = await super()._make_runner(**kwargs)
        assert isinstance(runner, web.AppRunner)
        return runner


def metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


async def make_api(
    tmp_path: Path,
    store: Store,
    *,
    database: str | None = None,
    config_file: Path | None = None,
    outer: Sequence[Middleware] = (),
    port: int | None = None,
    **settings: Any,
) -> AsyncIterator[Api]:
    """An app whose background work runs only when a test asks for it (`embedded_worker=True`,
    `scrub_interval=N`), so no test sees audit entries it did not cause."""
    settings.setdefault("embedded_worker", False)
    settings.setdefault("scrub_interval", 0)
    cfg = config.load(
        config_file=config_file,
        env={},
        data_dir=tmp_path / "data",
        database=database,
        storage=store.name,
        s3_bucket="unused" if store.name == "s3" else None,
        **settings,
    )
    catalog = Catalog(cfg.database_url)
    await catalog.migrate()
    _, uploader = await tokens.create(catalog.engine, role="uploader", name="room 1")
    _, admin = await tokens.create(catalog.engine, role="admin", name="admin")
    _, other = await tokens.create(catalog.engine, role="uploader", name="room 2")
    app = create_app(cfg, catalog=catalog, store=store)
    app.middlewares[:0] = list(outer)  # outermost: they see every answer as sent
    # A fixed port lets `public_url` name this server, so the links it makes open in a browser.
    client: TestClient[Any, Any] = TestClient(ServedTestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    try:
        yield Api(client, catalog, store, cfg, uploader, admin, other)
    finally:
        await client.close()
        await catalog.close()


@pytest.fixture()
async def api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """The app over each store (the `store` fixture is parametrized local/s3), SQLite catalog."""
    async for value in make_api(tmp_path, store, max_size=64 * 1024 * 1024):
        yield value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A real `avidence-server serve` child process, restartable on the same port and data."""

    data_dir: Path
    port: int
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        banner = self.data_dir / f"banner-{self.port}.txt"
        banner.unlink(missing_ok=True)
        with (self.data_dir / f"server-{self.port}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "avidence-server"),
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--banner-file",
                    str(banner),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while not banner.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        path = self.data_dir / f"server-{self.port}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def kill(self) -> None:
        """SIGKILL: no clean-up code runs, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def token(self, role: str = "uploader", name: str = "test") -> str:
        out = subprocess.run(
            [
                str(BIN / "avidence-server"),
                "token",
                "create",
                "--data-dir",
                str(self.data_dir),
                "--role",
                role,
                "--name",
                name,
                *self._db_args(),
            ],
            check=True,
            capture_output=True,
            env=self.env,
            timeout=60,
        )
        return out.stdout.decode().strip().splitlines()[-1]

    def _db_args(self) -> list[str]:
        if "--database" in self.args:
            i = self.args.index("--database")
            return self.args[i : i + 2]
        return []


@pytest.fixture()
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start real server processes; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(
        *args: str, data_dir: Path | None = None, env: dict[str, str] | None = None
    ) -> ServerProcess:
        data = data_dir or tmp_path / "srv"
        data.mkdir(parents=True, exist_ok=True)
        server = ServerProcess(data, free_port(), list(args), {**os.environ, **(env or {})})
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
