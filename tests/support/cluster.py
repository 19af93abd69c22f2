"""A cluster as deployed, for the scale-out tests: three `avidence-server serve` processes on one
PostgreSQL database and one S3 bucket, behind a round-robin balancer, so consecutive requests of
one upload (or one viewer) land on different replicas."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yarl import URL

from support.postgres import create_database, drop_database
from support.seaweed import SeaweedServer
from support.servers import ServerProcess, free_port

MiB = 1024 * 1024
BIN = Path(sys.executable).parent
OCTET = "application/offset+octet-stream"
REPLICAS = 3
# Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
# framing ones aiohttp sets itself for the forwarded message.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}

pytestmark = pytest.mark.timeout(120)


# -- the balancer -------------------------------------------------------------------------------


class RoundRobin:
    """A loopback HTTP balancer: each request goes to the next replica, bodies streamed both ways
    (as nginx with `proxy_request_buffering off`). It runs its own event loop in a thread so it
    outlives every test's loop; `served` records which replica answered what."""

    def __init__(self, backends: list[str], *, port: int) -> None:
        self.backends = backends
        self.port = port
        self.served: list[tuple[str, str, str]] = []
        self._next = itertools.cycle(backends)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="round-robin", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("balancer did not start")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._close())
        self._loop.close()

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=90, sock_read=60),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        backend = next(self._next)
        self.served.append((request.method, request.path, backend))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = request.remote or ""
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Host"] = request.host
        if request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(256 * 1024):
                yield chunk

        try:
            async with self._session.request(
                request.method,
                URL(backend + request.raw_path, encoded=True),
                headers=headers,
                data=body() if request.body_exists else None,
                allow_redirects=False,
            ) as upstream:
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                if request.method == "HEAD" or upstream.status in (204, 304):
                    return web.Response(status=upstream.status, headers=out)
                response = web.StreamResponse(status=upstream.status, headers=out)
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(256 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The replica closed the connection (a request taken over by another writer, say).
            return web.Response(status=502, text=f"upstream {backend}: {type(exc).__name__}")


# -- the cluster --------------------------------------------------------------------------------


@dataclass
class Cluster:
    replicas: list[ServerProcess]
    balancer: RoundRobin
    token: str
    signing_key: Ed25519PrivateKey
    seaweed: SeaweedServer
    bucket: str
    args: list[str] = field(default_factory=list)  # the replicas' shared catalog and store
    env: dict[str, str] = field(default_factory=dict)
    base: Path = Path()
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.balancer.url

    def start_worker(self, name: str, *extra: str) -> Path:
        """`avidence-server worker` on the replicas' database and bucket; returns its log file.
        Stopped with the cluster."""
        data = self.base / name
        data.mkdir(exist_ok=True)
        log_path = data / "worker.log"
        with log_path.open("ab") as log:
            argv = [str(BIN / "avidence-server"), "worker", "--data-dir", str(data)]
            self.workers.append(
                subprocess.Popen(
                    [*argv, *self.args, *extra], stdout=log, stderr=subprocess.STDOUT, env=self.env
                )
            )
        return log_path

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.workers.clear()

    def auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Tus-Resumable": "1.0.0", **extra}


def signing_pem() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return private, pem


@pytest.fixture(scope="module")
def cluster(
    postgres_server: str, seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three replicas started at the same moment on a fresh database (as a Deployment rolls out
    on a new catalog: they race for the migration and the key registration), one shared key."""
    database = create_database()
    bucket = f"replicas-{os.urandom(4).hex()}"
    private, pem = signing_pem()
    base = tmp_path_factory.mktemp("replicas")
    balancer_port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AVIDENCE_S3_PART_SIZE": str(5 * MiB),
        "AVIDENCE_SIGNING_KEY_PEM": pem,
        "AVIDENCE_PUBLIC_URL": f"http://127.0.0.1:{balancer_port}",
        "AVIDENCE_EMBEDDED_WORKER": "false",  # as deployed: jobs run in worker processes
        "AVIDENCE_VIEW_IDLE": "1",  # view sessions written within a test's patience
        # Sealed at rest, the KEKs in one folder every replica and worker mounts: replicas
        # starting together may each make one, and each record names the KEK it used.
        "AVIDENCE_KEK_DIR": str(tmp_path_factory.mktemp("replica-keks")),
    }
    # The store by environment, as the deploy manifests do, so `worker` processes share it too.
    env |= {
        "AVIDENCE_STORAGE": "s3",
        "AVIDENCE_S3_ENDPOINT": seaweed.endpoint,
        "AVIDENCE_S3_BUCKET": bucket,
    }
    args = ["--database", database]
    replicas = []
    cluster: Cluster | None = None
    for n in range(REPLICAS):
        data = base / f"replica-{n}"
        data.mkdir()
        replicas.append(ServerProcess(data, free_port(), list(args), dict(env)))
    balancer = RoundRobin([r.url for r in replicas], port=balancer_port)
    try:
        start_together(replicas)
        balancer.start()
        cluster = Cluster(
            replicas, balancer, replicas[0].token(), private, seaweed, bucket, args, env, base
        )
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop_workers()
        balancer.stop()
        for replica in replicas:
            replica.stop()
        drop_database(database)
        shutil.rmtree(base, ignore_errors=True)


def start_together(replicas: list[ServerProcess]) -> None:
    """Start every replica at once; one that exits is started again, once, as Kubernetes or
    systemd would restart it (start-up races are tested on their own below)."""

    def start(replica: ServerProcess) -> None:
        try:
            replica.start(timeout=45)
        except RuntimeError:
            replica.start(timeout=45)

    threads = [threading.Thread(target=start, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)
    down = [r for r in replicas if r.proc is None or r.proc.poll() is not None]
    assert not down, "replica(s) did not start:\n" + "\n---\n".join(r.log_tail() for r in down)


def backends_used(cluster: Cluster, since: int) -> set[str]:
    return {backend for _, _, backend in cluster.balancer.served[since:]}


async def get_json(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    async with session.get(url, headers=headers) as r:
        assert r.status == 200, (url, r.status, await r.text())
        return await r.json()


async def head_of(session: aiohttp.ClientSession, url: str, cluster: Cluster) -> dict[str, str]:
    async with session.head(url, headers=cluster.auth()) as r:
        assert r.status == 200, (url, r.status)
        return dict(r.headers)
