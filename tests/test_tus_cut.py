"""A PATCH whose connection ends mid-body keeps what arrived, and HEAD right after tells it.

tus 1.0.0, PATCH: "The Server SHOULD accept PATCH requests against any upload URL and apply the
bytes contained in the message at the given offset"; core protocol on a broken connection: the
server should store as much of the received data as possible. A cut checksummed body is the
exception: its checksum cannot be verified, and the checksum extension says such a chunk is
discarded. HEAD right after the cut must answer the offset the next PATCH has to carry, or the
client's resume gets 409.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import blake3
import pytest

from avidence.storage.local import LocalStore

from support.servers import Api, make_api, metadata

OCTET = "application/offset+octet-stream"
MiB = 1024 * 1024


async def _create(api: Api, length: int) -> str:
    data_meta = metadata(case="CUT-1", filename="cut.ts")
    headers = {**api.auth(), "Upload-Length": str(length), "Upload-Metadata": data_meta}
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201, await response.text()
    return "/files/" + response.headers["Location"].rsplit("/", 1)[1]


async def cut_patch(
    api: Api,
    url: str,
    body: bytes,
    *,
    offset: int,
    sent: int,
    reset: bool = False,
    **extra: str,
) -> None:
    """Send a PATCH announcing all of `body` but only its first `sent` bytes, then end the
    connection: a clean close (FIN) or, with `reset`, an abortive one (RST)."""
    port = api.client.port
    fields = {
        **api.auth(),
        "Host": f"127.0.0.1:{port}",
        "Upload-Offset": str(offset),
        "Content-Type": OCTET,
        "Content-Length": str(len(body)),
        **extra,
    }
    head = f"PATCH {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + b"\r\n" + body[:sent])
    await writer.drain()
    if reset:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()
    reader.feed_eof()


async def head_offset(api: Api, url: str) -> int:
    response = await api.client.head(url, headers=api.auth())
    assert response.status == 200, response.status
    return int(response.headers["Upload-Offset"])


async def finish(
    api: Api, url: str, data: bytes, offset: int, *, token: str | None = None
) -> None:
    """The client's resume: PATCH the rest from the offset HEAD gave; it must not be 409."""
    headers = {**api.auth(token), "Upload-Offset": str(offset), "Content-Type": OCTET}
    response = await api.client.patch(url, data=io.BytesIO(data[offset:]), headers=headers)
    assert response.status == 204, (response.status, await response.text())
    assert response.headers["Avidence-Upload-State"] == "done"
    evidence_id = response.headers["Avidence-Evidence-Id"]
    record = await (
        await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth(token))
    ).json()
    assert record["blake3"] == blake3.blake3(data).hexdigest()


@pytest.mark.parametrize("sent", [40, MiB - 1, 3_500_000])
async def test_cut_patch_keeps_every_byte_that_arrived(api: Api, sent: int) -> None:
    data = os.urandom(6 * MiB + 5)
    url = await _create(api, len(data))
    await cut_patch(api, url, data, offset=0, sent=sent)
    # HEAD at once: no sleep. It must not answer an offset the next PATCH would conflict with.
    assert await head_offset(api, url) == sent
    await finish(api, url, data, sent)


async def test_cut_after_earlier_chunks_keeps_the_tail_too(api: Api) -> None:
    data = os.urandom(8 * MiB)
    url = await _create(api, len(data))
    first = 2 * MiB + 3
    headers = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
    response = await api.client.patch(url, data=io.BytesIO(data[:first]), headers=headers)
    assert response.status == 204
    await cut_patch(api, url, data[first:], offset=first, sent=700_001)
    assert await head_offset(api, url) == first + 700_001
    await finish(api, url, data, first + 700_001)


async def test_reset_connection_resumes_without_conflict(api: Api) -> None:
    """An RST may drop bytes the kernel held unread, so the offset is at most what was sent;
    whatever HEAD says, the next PATCH from there is accepted."""
    data = os.urandom(4 * MiB)
    url = await _create(api, len(data))
    await cut_patch(api, url, data, offset=0, sent=2 * MiB + 11, reset=True)
    offset = await head_offset(api, url)
    assert offset <= 2 * MiB + 11
    await finish(api, url, data, offset)


async def test_cut_checksummed_patch_keeps_nothing(api: Api) -> None:
    """A body whose Upload-Checksum could not be checked is unverified: it never counts."""
    data = os.urandom(3 * MiB)
    url = await _create(api, len(data))
    digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
    await cut_patch(
        api, url, data, offset=0, sent=MiB + 1, **{"Upload-Checksum": f"sha1 {digest}"}
    )
    assert await head_offset(api, url) == 0
    await finish(api, url, data, 0)


async def _drip(data: bytes, *, first: int) -> AsyncIterator[bytes]:
    """`first` bytes at once, then nothing: a client that vanished without closing."""
    yield data[:first]
    await asyncio.sleep(60)


async def test_head_on_another_replica_ends_a_vanished_writer_first(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two apps on one PostgreSQL catalog and one store folder, as two replicas: a PATCH on one
    whose client vanished mid-body (no FIN, no RST) holds the upload; HEAD on the other asks it
    to let go through the catalog, and answers only once its bytes are written."""
    roots = tmp_path / "store"
    stores = [LocalStore(roots), LocalStore(roots)]
    for store in stores:
        await store.open()
    async with contextlib.AsyncExitStack() as stack:
        one, two = [
            await stack.enter_async_context(
                contextlib.asynccontextmanager(make_api)(
                    tmp_path / name, store, database=postgres_url
                )
            )
            for name, store in zip(("one", "two"), stores, strict=True)
        ]
        data = os.urandom(3 * MiB)
        url = await _create(one, len(data))
        headers = {**one.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
        vanished = asyncio.create_task(
            one.client.patch(
                url,
                data=_drip(data, first=300_001),
                headers={**headers, "Content-Length": str(len(data))},
            )
        )
        await asyncio.sleep(0.5)
        two_auth = {**two.auth(one.uploader)}
        response = await two.client.head(url, headers=two_auth)
        assert response.status == 200
        assert int(response.headers["Upload-Offset"]) == 300_001
        await finish(two, url, data, 300_001, token=one.uploader)
        with contextlib.suppress(aiohttp.ClientError):
            await asyncio.wait_for(vanished, 30)
    for store in stores:
        await store.close()
