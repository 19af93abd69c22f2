"""Scale-out as deployed: three `avidence-server serve` processes on one PostgreSQL and one S3
bucket, behind a round-robin balancer, so consecutive requests of one upload land on different
replicas. Uploads finish with the right digests, the upload lock holds across replicas, and
evidence, receipts and keys read the same from every replica (tickets, streaming and workers:
`test_replicas_viewing.py`)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import blake3
import pytest
from cryptography.hazmat.primitives import serialization
from tusclient import client as tus
from yarl import URL

from avidence.client.canonical import PublicKeys, key_id

from support.cluster import (
    OCTET,
    REPLICAS,
    Cluster,
    backends_used,
    get_json,
    head_of,
    signing_pem,
)
from support.servers import metadata

MiB = 1024 * 1024


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
            head = await head_of(session, uploader.url, cluster)
            assert head["Avidence-Upload-State"] == "done"
            record = await get_json(
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
        record = await get_json(
            session, f"{cluster.url}/api/evidence/{evidence_id}", cluster.auth()
        )
        head = await head_of(session, final, cluster)  # the final upload, asked of another replica
    assert record["size"] == len(data)
    assert record["blake3"] == blake3.blake3(data).hexdigest()
    assert head["Upload-Offset"] == str(len(data))
    assert head["Avidence-Evidence-Id"] == evidence_id
    assert backends_used(cluster, since) == {r.url for r in cluster.replicas}


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
            int((await head_of(session, replica.url + path, cluster))["Upload-Offset"])
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
        record = await get_json(
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
                await get_json(session, f"{r.url}/api/evidence/{evidence_id}", cluster.auth()),
                await get_json(
                    session, f"{r.url}/api/evidence/{evidence_id}/receipt", cluster.auth()
                ),
                await get_json(session, f"{r.url}/api/keys", {}),
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
            health = await get_json(session, f"{replica.url}/healthz", {})
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
    from avidence.server.keys.files import FileKey

    catalogs = [Catalog(normalize_database_url(postgres_url)) for _ in range(REPLICAS * 2)]
    try:
        await catalogs[0].migrate()
        for _ in range(5):
            private, _ = signing_pem()
            signer = signing.Signer(FileKey(private))
            await asyncio.gather(*(signing.register(c.engine, signer) for c in catalogs))
    finally:
        for catalog in catalogs:
            await catalog.close()
