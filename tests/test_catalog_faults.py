"""The catalog's PostgreSQL connections cut mid-upload, through a fault proxy in front of the
shared PostgreSQL (the service itself is never touched): the PATCH in flight fails cleanly, the
upload resumes from the store's durable offset once the catalog answers again, finishes as the
right evidence, and the audit chain is valid."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

from avidence.storage.local import LocalStore

from support.integrity import assert_chain_valid, assert_evidence_intact
from support.proxy import fault_proxy
from support.servers import make_api, metadata

MiB = 1024 * 1024
OCTET = "application/offset+octet-stream"


async def test_postgres_cut_mid_patch_then_upload_resumes_and_finishes(
    tmp_path: Path, postgres_url: str
) -> None:
    data = bytes(range(256)) * (6 * MiB // 256)
    earlier = b"evidence finished before the fault " * 1000
    store = LocalStore(tmp_path / "store")
    await store.open()
    with fault_proxy(5432) as proxy:
        url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        async for api in make_api(tmp_path, store, database=url):
            auth = api.auth()
            done = await api.client.post(
                "/files/",
                data=io.BytesIO(earlier),
                headers={
                    **auth,
                    "Upload-Length": str(len(earlier)),
                    "Upload-Metadata": metadata(case="P-1"),
                    "Content-Type": OCTET,
                },
            )
            assert done.status == 201
            earlier_id = done.headers["Avidence-Evidence-Id"]
            created = await api.client.post(
                "/files/",
                headers={
                    **auth,
                    "Upload-Length": str(len(data)),
                    "Upload-Metadata": metadata(case="P-1", item="2"),
                },
            )
            assert created.status == 201
            path = "/files/" + created.headers["Location"].rsplit("/", 1)[1]
            cut = asyncio.Event()

            async def body(cut: asyncio.Event = cut) -> AsyncIterator[bytes]:
                yield data[: 2 * MiB]
                await asyncio.sleep(0.3)
                proxy.refuse = True  # PostgreSQL goes away (a restart, a failover) ...
                proxy.drop_connections()  # ... and every catalog connection dies mid-request
                cut.set()
                await asyncio.sleep(0.2)
                yield data[2 * MiB : 3 * MiB]

            patched = await api.client.patch(
                path, data=body(), headers={**auth, "Upload-Offset": "0", "Content-Type": OCTET}
            )
            assert cut.is_set()
            answer = await patched.text()
            # The catalog write after the bytes failed: 503 to retry, never a 500 or a hang.
            assert patched.status == 503, answer
            assert (await patched.json())["error"]["code"] == "unavailable"
            head = await api.client.head(path, headers=auth)
            assert head.status == 503 and "Retry-After" in head.headers
            proxy.refuse = False  # PostgreSQL is back
            offset = None
            for _ in range(50):  # the pool reconnects through the proxy, which still listens
                head = await api.client.head(path, headers=auth)
                if head.status == 200:
                    offset = int(head.headers["Upload-Offset"])
                    break
                await asyncio.sleep(0.1)
            assert offset is not None and 0 < offset <= 3 * MiB
            rest = await api.client.patch(
                path,
                data=io.BytesIO(data[offset:]),
                headers={**auth, "Upload-Offset": str(offset), "Content-Type": OCTET},
            )
            assert rest.status == 204, await rest.text()
            evidence_id = rest.headers["Avidence-Evidence-Id"]
            await assert_evidence_intact(api, evidence_id, data)
            await assert_evidence_intact(api, earlier_id, earlier)
            await assert_chain_valid(api.catalog.engine)
    await store.close()
