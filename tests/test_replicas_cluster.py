"""Scale-out as deployed: three `avidence-server serve` processes on one PostgreSQL and one S3
bucket, behind a round-robin balancer, so consecutive requests of one upload land on different
replicas. Uploads finish with the right digests, the upload lock holds across replicas, and
evidence, receipts and keys read the same from every replica.

Tickets, ranged streaming and worker jobs across replicas are tested with those features."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import blake3
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tusclient import client as tus
from yarl import URL

from avidence.client.canonical import PublicKeys, key_id

from support.postgres import create_database, drop_database
from support.seaweed import SeaweedServer
from support.servers import ServerProcess, free_port, metadata

MiB = 1024 * 1024
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

    @property
    def url(self) -> str:
        return self.balancer.url

    def auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Tus-Resumable": "1.0.0", **extra}


def _signing_pem() -> tuple[Ed25519PrivateKey, str]:
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
    private, pem = _signing_pem()
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
    }
    args = [
        "--database",
        database,
        "--storage",
        "s3",
        "--s3-endpoint",
        seaweed.endpoint,
        "--s3-bucket",
        bucket,
    ]
    replicas = []
    for n in range(REPLICAS):
        data = base / f"replica-{n}"
        data.mkdir()
        replicas.append(ServerProcess(data, free_port(), list(args), dict(env)))
    balancer = RoundRobin([r.url for r in replicas], port=balancer_port)
    try:
        _start_together(replicas)
        balancer.start()
        yield Cluster(replicas, balancer, replicas[0].token(), private, seaweed, bucket)
    finally:
        balancer.stop()
        for replica in replicas:
            replica.stop()
        drop_database(database)
        shutil.rmtree(base, ignore_errors=True)


def _start_together(replicas: list[ServerProcess]) -> None:
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


def _backends_used(cluster: Cluster, since: int) -> set[str]:
    return {backend for _, _, backend in cluster.balancer.served[since:]}


async def _json(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    async with session.get(url, headers=headers) as r:
        assert r.status == 200, (url, r.status, await r.text())
        return await r.json()


async def _head(session: aiohttp.ClientSession, url: str, cluster: Cluster) -> dict[str, str]:
    async with session.head(url, headers=cluster.auth()) as r:
        assert r.status == 200, (url, r.status)
        return dict(r.headers)


# -- uploads through the balancer ----------------------------------------------------------------


def test_tuspy_upload_hopping_across_replicas_finishes_with_right_digests(
    cluster: Cluster,
) -> None:
    data = os.urandom(11 * MiB + 7)
    since = len(cluster.balancer.served)
    uploader = tus.TusClient(
        cluster.url + "/files/", headers={"Authorization": f"Bearer {cluster.token}"}
    ).uploader(
        file_stream=io.BytesIO(data),
        chunk_size=MiB,
        metadata={
            "case": "R-1",
            "filename": "hop.ts",
            "blake3": blake3.blake3(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    uploader.upload()
    patches = [b for m, _, b in cluster.balancer.served[since:] if m == "PATCH"]
    assert len(patches) == 12
    # Round robin: no two consecutive PATCHes of the upload went to the same replica.
    assert all(a != b for a, b in itertools.pairwise(patches))
    assert set(patches) == {r.url for r in cluster.replicas}
    assert uploader.url is not None and uploader.url.startswith(cluster.url + "/files/")

    async def check() -> None:
        async with aiohttp.ClientSession() as session:
            head = await _head(session, uploader.url, cluster)
            assert head["Avidence-Upload-State"] == "done"
            record = await _json(
                session,
                f"{cluster.url}/api/evidence/{head['Avidence-Evidence-Id']}",
                cluster.auth(),
            )
        assert record["size"] == len(data)
        assert record["blake3"] == blake3.blake3(data).hexdigest()
        assert record["sha256"] == hashlib.sha256(data).hexdigest()

    asyncio.run(check())


async def test_parallel_concatenation_through_the_balancer_finishes_as_one_evidence(
    cluster: Cluster,
) -> None:
    sizes = [6 * MiB + 3, 5 * MiB, 7 * MiB - 1, MiB + 5]
    data = os.urandom(sum(sizes))
    pieces, start = [], 0
    for size in sizes:
        pieces.append(data[start : start + size])
        start += size
    since = len(cluster.balancer.served)
    async with aiohttp.ClientSession() as session:

        async def send_partial(piece: bytes) -> str:
            headers = cluster.auth(**{"Upload-Length": str(len(piece)), "Upload-Concat": "partial"})
            async with session.post(f"{cluster.url}/files/", headers=headers) as r:
                assert r.status == 201, await r.text()
                location = r.headers["Location"]
            offset = 0
            for i in range(0, len(piece), 2 * MiB):  # several PATCHes, several replicas
                chunk = piece[i : i + 2 * MiB]
                headers = cluster.auth(**{"Upload-Offset": str(offset), "Content-Type": OCTET})
                async with session.patch(location, data=io.BytesIO(chunk), headers=headers) as r:
                    assert r.status == 204, await r.text()
                    offset = int(r.headers["Upload-Offset"])
            assert offset == len(piece)
            return str(URL(location).path)

        paths = await asyncio.gather(*(send_partial(p) for p in pieces))
        headers = cluster.auth(
            **{
                "Upload-Concat": "final;" + " ".join(paths),
                "Upload-Metadata": metadata(
                    case="R-2", filename="joined.ts", blake3=blake3.blake3(data).hexdigest()
                ),
            }
        )
        async with session.post(f"{cluster.url}/files/", headers=headers) as r:
            assert r.status == 201, await r.text()
            assert r.headers["Avidence-Upload-State"] == "done"
            evidence_id = r.headers["Avidence-Evidence-Id"]
            final = r.headers["Location"]
        record = await _json(session, f"{cluster.url}/api/evidence/{evidence_id}", cluster.auth())
        head = await _head(session, final, cluster)  # the final upload, asked of another replica
    assert record["size"] == len(data)
    assert record["blake3"] == blake3.blake3(data).hexdigest()
    assert head["Upload-Offset"] == str(len(data))
    assert head["Avidence-Evidence-Id"] == evidence_id
    assert _backends_used(cluster, since) == {r.url for r in cluster.replicas}


# -- one writer at a time, across replicas -------------------------------------------------------


async def _drip(
    data: bytes, *, step: int = 128 * 1024, pause: float = 0.04
) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]
        await asyncio.sleep(pause)


@pytest.mark.parametrize("pause", [0.04, 0.12], ids=["taken-over-after-a-part", "before-a-part"])
async def test_concurrent_patches_via_different_replicas_have_one_writer_at_a_time(
    cluster: Cluster, pause: float
) -> None:
    """Three writers, each with different bytes, PATCH offset 0 of one upload at once, each on
    another replica. Whatever was kept must be one writer's bytes alone: if two had written
    together, the stored prefix would mix them and match nobody's."""
    length = 8 * MiB
    writers = [os.urandom(length) for _ in range(REPLICAS)]
    async with aiohttp.ClientSession() as session:
        headers = cluster.auth(
            **{"Upload-Length": str(length), "Upload-Metadata": metadata(case="R-3")}
        )
        async with session.post(f"{cluster.replicas[0].url}/files/", headers=headers) as r:
            assert r.status == 201
            path = str(URL(r.headers["Location"]).path)

        async def write(n: int) -> Any:
            await asyncio.sleep(0.4 * n)  # staggered, so each arrives while another writes
            url = cluster.replicas[n].url + path
            headers = cluster.auth(**{"Upload-Offset": "0", "Content-Type": OCTET})
            try:
                async with session.patch(
                    url, data=_drip(writers[n], pause=pause), headers=headers
                ) as r:
                    return r.status, r.headers.get("Upload-Offset")
            except aiohttp.ClientError as exc:  # taken over: the replica closed the request
                return type(exc).__name__

        results = await asyncio.gather(*(write(n) for n in range(REPLICAS)))
        offsets = [
            int((await _head(session, replica.url + path, cluster))["Upload-Offset"])
            for replica in cluster.replicas
        ]
        assert len(set(offsets)) == 1, offsets  # every replica reports the same durable offset
        kept = offsets[0]
        assert 0 < kept <= length, (kept, results)
        # Finish with writer 0's remaining bytes; exactly one writer's prefix can explain it.
        headers = cluster.auth(**{"Upload-Offset": str(kept), "Content-Type": OCTET})
        async with session.patch(
            cluster.replicas[1].url + path, data=io.BytesIO(writers[0][kept:]), headers=headers
        ) as r:
            assert r.status == 204, await r.text()
            evidence_id = r.headers["Avidence-Evidence-Id"]
        record = await _json(
            session, f"{cluster.replicas[2].url}/api/evidence/{evidence_id}", cluster.auth()
        )
    explained = [
        n
        for n, writer in enumerate(writers)
        if blake3.blake3(writer[:kept] + writers[0][kept:]).hexdigest() == record["blake3"]
    ]
    assert len(explained) == 1, (kept, results)
    for result in results:
        assert isinstance(result, str) or result[0] in (204, 400, 409, 423), results


# -- custody reads from any replica --------------------------------------------------------------


async def test_evidence_receipt_and_keys_read_the_same_from_every_replica(
    cluster: Cluster,
) -> None:
    data = os.urandom(3 * MiB)
    async with aiohttp.ClientSession() as session:
        headers = cluster.auth(
            **{
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(case="R-4", filename="r4.ts"),
                "Content-Type": OCTET,
            }
        )  # creation-with-upload: one request, one replica
        async with session.post(
            f"{cluster.url}/files/", data=io.BytesIO(data), headers=headers
        ) as r:
            assert r.status == 201, await r.text()
            evidence_id = r.headers["Avidence-Evidence-Id"]
        answers = [
            (
                await _json(session, f"{r.url}/api/evidence/{evidence_id}", cluster.auth()),
                await _json(session, f"{r.url}/api/evidence/{evidence_id}/receipt", cluster.auth()),
                await _json(session, f"{r.url}/api/keys", {}),
            )
            for r in cluster.replicas
        ]
    assert all(answer == answers[0] for answer in answers)
    record, receipt, keys = answers[0]
    # One shared key, registered once although three replicas started with it at the same time.
    ours = key_id(cluster.signing_key.public_key())
    assert [k["id"] for k in keys["keys"]] == [ours]
    assert receipt["key_id"] == ours
    # Verified offline with the key the operator gave the replicas, not one they made up.
    public = cluster.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = PublicKeys.load(public.decode()).verify(receipt, body="receipt")
    assert body["evidence_id"] == evidence_id
    assert body["blake3"] == record["blake3"]


async def test_every_replica_received_bytes_and_reports_healthy(cluster: Cluster) -> None:
    received = {}
    async with aiohttp.ClientSession() as session:
        for replica in cluster.replicas:
            health = await _json(session, f"{replica.url}/healthz", {})
            assert health["status"] == "ok" and health["store"] == "s3"
            async with session.get(f"{replica.url}/metrics") as r:
                text = await r.text()
            match = re.search(r'^avidence_upload_bytes_total\{store="s3"\} (\S+)$', text, re.M)
            received[replica.url] = float(match.group(1)) if match else 0.0
    # The balancer spread every upload's bytes over all three replicas.
    assert all(value > 0 for value in received.values()), received


async def test_replicas_registering_the_shared_key_together_all_start(postgres_url: str) -> None:
    from avidence.server import signing
    from avidence.server.catalog.db import Catalog
    from avidence.server.config import normalize_database_url

    catalogs = [Catalog(normalize_database_url(postgres_url)) for _ in range(REPLICAS * 2)]
    try:
        await catalogs[0].migrate()
        for _ in range(5):
            private, _ = _signing_pem()
            signer = signing.Signer(private, key_id(private.public_key()))
            await asyncio.gather(*(signing.register(c.engine, signer) for c in catalogs))
    finally:
        for catalog in catalogs:
            await catalog.close()
