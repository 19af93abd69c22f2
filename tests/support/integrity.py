"""What a fault test checks afterwards: finished evidence unchanged, byte for byte, and the audit
chain whole (every entry linked, every checkpoint signed by a published key)."""

from __future__ import annotations

import json

import blake3
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import PublicKeys
from avidence.server import signing
from avidence.server.audit import log as audit

from support.servers import Api
from support.stores import collect


async def assert_chain_valid(engine: AsyncEngine) -> int:
    """Fail naming the first bad entry; return how many entries the chain holds."""
    keys = PublicKeys.load(json.dumps({"keys": await signing.published(engine)}))
    verdict = await audit.verify(engine, keys)
    assert verdict.ok, f"audit chain broken at seq {verdict.bad_seq}: {verdict.problem}"
    return verdict.entries


async def assert_evidence_intact(api: Api, evidence_id: str, data: bytes) -> None:
    """The record's BLAKE3 is that of `data`, and the store gives back exactly `data`."""
    record = await (
        await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth(api.admin))
    ).json()
    assert record["blake3"] == blake3.blake3(data).hexdigest()
    assert await collect(await api.store.read(record["storage_key"])) == data
