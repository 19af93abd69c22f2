"""Scale-out for the people downstream: a ticket issued on one replica opens, streams and is
revoked from any replica, the view's bytes add up across replicas, and two `avidence-server
worker` processes on the cluster's PostgreSQL and bucket never run one job twice."""

from __future__ import annotations

import asyncio
import collections
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.cluster import OCTET, Cluster, backends_used, get_json
from support.servers import metadata

MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(180)


async def _upload(
    session: aiohttp.ClientSession, cluster: Cluster, data: bytes, *, filename: str, item: str
) -> str:
    headers = cluster.auth(
        **{
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(case="R-VIEW", item=item, filename=filename),
            "Content-Type": OCTET,
        }
    )
    async with session.post(f"{cluster.url}/files/", data=io.BytesIO(data), headers=headers) as r:
        assert r.status == 201, await r.text()
        return str(r.headers["Avidence-Evidence-Id"])


async def _views(session: aiohttp.ClientSession, url: str, admin: str) -> list[dict[str, Any]]:
    views: list[dict[str, Any]] = (
        await get_json(session, url, {"Authorization": f"Bearer {admin}"})
    )["views"]
    return views


async def test_ticket_from_one_replica_streams_counts_and_revokes_on_every_replica(
    cluster: Cluster,
) -> None:
    admin = cluster.replicas[0].token(role="admin", name="clerk")
    data = os.urandom(6 * MiB + 123)
    async with aiohttp.ClientSession() as session:
        evidence_id = await _upload(session, cluster, data, filename="cctv.mp4", item="1")
        async with session.post(
            f"{cluster.url}/api/tickets",
            json={"evidence": [evidence_id], "recipient": "Wang Fang (judge)"},
            headers={"Authorization": f"Bearer {admin}"},
        ) as r:
            assert r.status == 201, await r.text()
            issued = await r.json()
        token, ticket_id = issued["url"].rsplit("/", 1)[1], issued["ticket"]["id"]
        async with session.get(f"{cluster.url}/t/{token}") as r:
            assert r.status == 200 and evidence_id in await r.text()
        async with session.post(
            f"{cluster.url}/t/{token}/views", json={"evidence": evidence_id}
        ) as r:
            assert r.status == 201, await r.text()
            grant = (await r.json())["view"]
        media = f"{cluster.url}/t/{token}/media/{evidence_id}?view={grant}"

        # The player's ranged requests land on every replica in turn; together they are the file.
        since = len(cluster.balancer.served)
        received, etags = bytearray(), set()
        for start in range(0, len(data), MiB):
            end = min(start + MiB, len(data)) - 1
            async with session.get(media, headers={"Range": f"bytes={start}-{end}"}) as r:
                assert r.status == 206, await r.text()
                assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
                etags.add(r.headers["ETag"])
                received += await r.read()
        assert bytes(received) == data
        assert len(backends_used(cluster, since)) == len(cluster.replicas)
        assert len(etags) == 1, "every replica names the same representation"
        # If-Range with that ETag is honoured by whichever replica gets it.
        async with session.get(media, headers={"Range": "bytes=-10", "If-Range": etags.pop()}) as r:
            assert r.status == 206 and await r.read() == data[-10:]

        # Each replica writes the part of the view it served; the view row adds them up.
        url = f"{cluster.url}/api/tickets/{ticket_id}/views"
        deadline = time.monotonic() + 30
        while True:
            views = await _views(session, url, admin)
            if views and views[0]["bytes_served"] == len(data) + 10:
                break
            assert time.monotonic() < deadline, views
            await asyncio.sleep(0.5)
        assert len(views) == 1 and views[0]["requests"] == 8

        async with session.post(
            f"{cluster.url}/api/tickets/{ticket_id}/revoke",
            headers={"Authorization": f"Bearer {admin}"},
        ) as r:
            assert r.status == 200, await r.text()
        # Revoked on one replica means revoked on all, from the very next request.
        for replica in cluster.replicas:
            base = f"{replica.url}/t/{token}"
            async with session.get(f"{base}/media/{evidence_id}?view={grant}") as r:
                assert r.status == 410, (replica.url, r.status)
                assert len(await r.read()) < 2000, "an error answer, not the media"
            async with session.get(base) as r:
                assert r.status == 410


def _started(log: Path) -> list[tuple[str, str]]:
    """(evidence, job label) of every job this worker started, from its log."""
    pattern = re.compile(r"job\.started id=\S+ job=(\S+) evidence=(\S+) attempt=(\d+)")
    return [(m.group(2), m.group(1)) for m in pattern.finditer(log.read_text(errors="replace"))]


async def test_two_workers_on_the_cluster_run_every_job_exactly_once(
    cluster: Cluster, small_ts_clip: Path
) -> None:
    clip = await asyncio.to_thread(small_ts_clip.read_bytes)
    logs = [
        cluster.start_worker(f"worker-{n}", "--config", str(_profiles(cluster, n)))
        for n in range(2)
    ]
    async with aiohttp.ClientSession() as session:
        ids = [
            await _upload(session, cluster, clip, filename=f"room-{n}.ts", item=str(n))
            for n in range(4)
        ]
        deadline = time.monotonic() + 150
        documents: dict[str, Any] = {}
        while len(documents) < len(ids):
            assert time.monotonic() < deadline, "jobs did not finish:\n" + "\n".join(
                log.read_text(errors="replace")[-2000:] for log in logs
            )
            for evidence_id in ids:
                document = await get_json(
                    session, f"{cluster.url}/api/evidence/{evidence_id}", cluster.auth()
                )
                jobs = document["jobs"]
                if jobs and all(j["state"] == "done" for j in jobs) and document["derivatives"]:
                    documents[evidence_id] = document
            await asyncio.sleep(0.5)
    for document in documents.values():
        assert {j["kind"] for j in document["jobs"]} >= {"analyse", "derive"}
        assert all(j["attempts"] == 1 for j in document["jobs"]), document["jobs"]
        profiles = [d["profile"] for d in document["derivatives"]]
        assert len(profiles) == len(set(profiles)), "one derivative per profile and output"
        assert document["continuity"]["ok"] is True
    started = [entry for log in logs for entry in _started(log)]
    counted = collections.Counter(started)
    ours = {key: n for key, n in counted.items() if key[0] in documents}
    assert ours and all(n == 1 for n in ours.values()), counted
    expected = {
        (e, j["kind"] if not j["profile"] else f"{j['kind']}:{j['profile']}")
        for e, d in documents.items()
        for j in d["jobs"]
    }
    assert set(ours) == expected


def _profiles(cluster: Cluster, n: int) -> Path:
    """A worker config with the one quick profile the test needs."""
    path = cluster.base / f"worker-{n}.toml"
    path.write_text('transcode_profiles = ["mp4-h264"]\nworker_concurrency = 1\n')
    return path
