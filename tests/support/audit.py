"""The audit chain as a fault test checks it afterwards: every entry linked, every checkpoint
signed by a published key."""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import PublicKeys
from avidence.server import signing
from avidence.server.audit import log as audit


async def assert_chain_valid(engine: AsyncEngine) -> int:
    """Fail naming the first bad entry; return how many entries the chain holds."""
    keys = PublicKeys.load(json.dumps({"keys": await signing.published(engine)}))
    verdict = await audit.verify(engine, keys)
    assert verdict.ok, f"audit chain broken at seq {verdict.bad_seq}: {verdict.problem}"
    return verdict.entries
