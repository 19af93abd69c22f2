"""Disk full, on the local store and on the temporary folder that holds checksummed bodies,
with small tmpfs filesystems made by the test: the PATCH gets 507, the upload keeps what was
stored and resumes once there is room, finished evidence is intact, the audit chain valid."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import pytest

from avidence.storage.base import Store
from avidence.storage.local import LocalStore

from support.corestore import CoreOnly
from support.integrity import assert_chain_valid, assert_evidence_intact
from support.servers import Api, make_api, metadata
from support.smallfs import resize, tmpfs

MiB = 1024 * 1024
OCTET = "application/offset+octet-stream"


async def _create(api: Api, length: int) -> str:
    response = await api.client.post(
        "/files/",
        headers={
            **api.auth(),
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(case="DF-1"),
        },
    )
    assert response.status == 201
    return "/files/" + response.headers["Location"].rsplit("/", 1)[1]


async def _offset(api: Api, url: str) -> int:
    head = await api.client.head(url, headers=api.auth())
    assert head.status == 200
    return int(head.headers["Upload-Offset"])


async def test_local_store_full_507_then_resumes_after_space_is_freed(tmp_path: Path) -> None:
    earlier = b"kept safe " * 20000
    data = bytes(range(256)) * (6 * MiB // 256)
    with tmpfs(tmp_path / "small", size=4 * MiB) as small:
        store = LocalStore(small / "store")
        await store.open()
        async for api in make_api(tmp_path, store):
            first = await _create(api, len(earlier))
            done = await api.client.patch(
                first,
                data=earlier,
                headers={**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET},
            )
            earlier_id = done.headers["Avidence-Evidence-Id"]
            url = await _create(api, len(data))
            full = await api.client.patch(
                url,
                data=io.BytesIO(data),
                headers={**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET},
            )
            assert full.status == 507
            assert (await full.json())["error"]["code"] == "insufficient_storage"
            offset = await _offset(api, url)
            assert offset < len(data)
            await assert_evidence_intact(api, earlier_id, earlier)

            resize(small, size=32 * MiB)  # the operator makes room
            rest = await api.client.patch(
                url,
                data=io.BytesIO(data[offset:]),
                headers={**api.auth(), "Upload-Offset": str(offset), "Content-Type": OCTET},
            )
            assert rest.status == 204, await rest.text()
            await assert_evidence_intact(api, rest.headers["Avidence-Evidence-Id"], data)
            await assert_evidence_intact(api, earlier_id, earlier)
            await assert_chain_valid(api.catalog.engine)
        await store.close()


async def test_temp_dir_full_507_for_checksummed_patch_then_it_goes_through(
    tmp_path: Path,
) -> None:
    # A store that can neither cut bytes back nor refuse them at the end (core contract only):
    # a checksummed body is held in the temporary folder until its checksum matches.
    data = bytes(range(256)) * (10 * MiB // 256)
    headers = {"Upload-Offset": "0", "Content-Type": OCTET, "Upload-Checksum": _sha1(data)}
    store = CoreOnly(LocalStore(tmp_path / "store"))
    await store.open()
    try:
        with tmpfs(tmp_path / "data" / "tmp", size=1 * MiB) as spool:
            async for api in make_api(tmp_path, store):
                url = await _create(api, len(data))
                full = await api.client.patch(
                    url, data=io.BytesIO(data), headers={**api.auth(), **headers}
                )
                assert full.status == 507
                assert "temporary folder" in (await full.json())["error"]["message"]
                assert await _offset(api, url) == 0  # nothing unverified reached the store
                resize(spool, size=32 * MiB)
                again = await api.client.patch(
                    url, data=io.BytesIO(data), headers={**api.auth(), **headers}
                )
                assert again.status == 204, await again.text()
                await assert_evidence_intact(api, again.headers["Avidence-Evidence-Id"], data)
                await assert_chain_valid(api.catalog.engine)
    finally:
        await store.close()


@pytest.mark.parametrize("store", ["s3"], indirect=True)
async def test_checksummed_patch_on_s3_streams_without_the_temporary_folder(
    tmp_path: Path, store: Store
) -> None:
    # S3 takes a checksummed body part by part and voids the parts if the checksum fails, so a
    # full temporary folder does not matter, and a mismatch still keeps nothing.
    data = bytes(range(256)) * (10 * MiB // 256)
    good = {"Upload-Offset": "0", "Content-Type": OCTET, "Upload-Checksum": _sha1(data)}
    bad = {**good, "Upload-Checksum": _sha1(data + b"x")}
    with tmpfs(tmp_path / "data" / "tmp", size=1 * MiB):
        async for api in make_api(tmp_path, store):
            url = await _create(api, len(data))
            refused = await api.client.patch(
                url, data=io.BytesIO(data), headers={**api.auth(), **bad}
            )
            assert refused.status == 460
            assert await _offset(api, url) == 0
            again = await api.client.patch(
                url, data=io.BytesIO(data), headers={**api.auth(), **good}
            )
            assert again.status == 204, await again.text()
            await assert_evidence_intact(api, again.headers["Avidence-Evidence-Id"], data)
            await assert_chain_valid(api.catalog.engine)


def _sha1(data: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()
