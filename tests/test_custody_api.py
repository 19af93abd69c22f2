"""Receipts and keys over HTTP; also the helpers the other custody tests share.

The helpers live here (not in `support/`) so the custody tests stay in the files they own:
`upload_evidence` makes one evidence record through the tus endpoint, `local_app` is the app over
a local store rooted where `avidence-server` commands with the same `--data-dir` look for it,
`invoke` runs an `avidence-server` command beside the running test loop, `tamper` changes or
removes a stored original behind the store's back.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import blake3
import click
import pytest
from click.testing import CliRunner, Result

from avidence.client.canonical import PublicKeys
from avidence.server.state import SIGNER
from avidence.storage.local import LocalStore

from support.servers import Api, make_api, metadata


async def upload_evidence(
    api: Api, data: bytes, *, case: str = "C-1", filename: str = "clip.ts"
) -> str:
    """Upload `data` in one creation-with-upload request; return the evidence id."""
    headers = {
        **api.auth(),
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(case=case, filename=filename),
        "Content-Type": "application/offset+octet-stream",
    }
    response = await api.client.post("/files/", data=io.BytesIO(data), headers=headers)
    assert response.status == 201, await response.text()
    return str(response.headers["Avidence-Evidence-Id"])


async def local_app(tmp_path: Path) -> AsyncIterator[Api]:
    """The app over a local store at the data dir's `store/`, as `avidence-server` sees it."""
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store):
            yield api
    finally:
        await store.close()


async def invoke(command: click.Command, args: Sequence[str]) -> Result:
    """Run a click command in a thread: server commands start an event loop of their own."""
    return await asyncio.to_thread(CliRunner().invoke, command, list(args))


async def record(api: Api, evidence_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())
    assert response.status == 200
    document: dict[str, Any] = await response.json()
    return document


def object_path(api: Api, key: str) -> Path:
    """Where the local store keeps a finished object."""
    assert isinstance(api.store, LocalStore)
    return api.store.root / "objects" / key


async def tamper(api: Api, request: pytest.FixtureRequest, key: str, data: bytes | None) -> None:
    """Overwrite (or, with None, delete) a stored object without going through the store."""
    if isinstance(api.store, LocalStore):
        path = object_path(api, key)
        if data is None:
            path.unlink()
            return
        path.chmod(0o644)  # originals are published read-only
        path.write_bytes(data)
        path.chmod(0o444)
        return
    seaweed = request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("s3_bucket")
    client = seaweed.client()
    try:
        if data is None:
            await asyncio.to_thread(client.delete_object, Bucket=bucket, Key=key)
        else:
            await asyncio.to_thread(client.put_object, Bucket=bucket, Key=key, Body=data)
    finally:
        client.close()


def flipped(data: bytes, at: int | None = None) -> bytes:
    """`data` with one bit changed in one byte (the middle one by default)."""
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


async def test_receipt_200_is_signed_and_states_the_uploaded_bytes(api: Api) -> None:
    data = os.urandom(300_000)
    evidence_id = await upload_evidence(api, data, case="C-7", filename="room3.ts")
    response = await api.client.get(f"/api/evidence/{evidence_id}/receipt", headers=api.auth())
    assert response.status == 200
    document = await response.json()
    keys = PublicKeys.load(await (await api.client.get("/api/keys")).text())
    body = keys.verify(document, body="receipt")
    assert body["evidence_id"] == evidence_id
    assert (body["case"], body["filename"], body["size"]) == ("C-7", "room3.ts", len(data))
    assert body["blake3"] == blake3.blake3(data).hexdigest()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert document["key_id"] == api.client.app[SIGNER].key_id


async def test_receipt_401_without_token_and_404_for_others_evidence(api: Api) -> None:
    evidence_id = await upload_evidence(api, b"evidence bytes")
    url = f"/api/evidence/{evidence_id}/receipt"
    assert (await api.client.get(url)).status == 401
    assert (await api.client.get(url, headers=api.auth(api.other_uploader))).status == 404
    assert (await api.client.get(url, headers=api.auth(api.admin))).status == 200
    missing = await api.client.get("/api/evidence/ev_nope/receipt", headers=api.auth())
    assert missing.status == 404


async def test_keys_200_without_token_lists_the_active_public_key(api: Api) -> None:
    response = await api.client.get("/api/keys")
    assert response.status == 200
    document = await response.json()
    assert [k["id"] for k in document["keys"]] == [api.client.app[SIGNER].key_id]
    assert document["keys"][0]["algorithm"] == "ed25519"
    assert document["keys"][0]["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert set(PublicKeys.load(json.dumps(document)).keys) == {document["keys"][0]["id"]}


async def test_new_evidence_is_unchecked_until_a_scrub(api: Api) -> None:
    evidence_id = await upload_evidence(api, b"not yet scrubbed")
    document = await record(api, evidence_id)
    assert (document["integrity"], document["checked_at"]) == ("unchecked", None)
