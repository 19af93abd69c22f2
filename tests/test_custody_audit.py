"""The audit chain: any edit, deletion, reordering or truncation of stored rows is named.

Each test changes the database directly, as someone with catalog access could, and expects
`audit verify` (the command or the library) to fail at the right entry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from sqlalchemy.ext.asyncio import AsyncEngine
from test_custody_api import invoke

from avidence.client.canonical import PublicKeys
from avidence.client.verify import audit_entry_hash
from avidence.server import config, signing
from avidence.server.audit import log as audit
from avidence.server.audit import unit
from avidence.server.audit.events import AdminCommand
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_log
from avidence.server.cli import main

from support.forgery import rechain


@dataclass
class Log:
    catalog: Catalog
    settings: config.Settings
    signer: signing.Signer

    @property
    def engine(self) -> AsyncEngine:
        return self.catalog.engine

    async def keys(self) -> PublicKeys:
        return PublicKeys.load(json.dumps({"keys": await signing.published(self.engine)}))

    async def execute(self, statement: sa.Executable) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(statement)

    async def verify_command(self) -> Result:
        return await invoke(main, ["audit", "verify", "--data-dir", str(self.settings.data_dir)])


@pytest.fixture()
async def chain(tmp_path: Path) -> AsyncIterator[Log]:
    """A catalog whose audit log holds five entries (1..5), none checkpointed yet."""
    settings = config.load(env={}, data_dir=tmp_path / "data")
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    signer = signing.load_signer(settings)
    await signing.register(catalog.engine, signer)
    for n in range(1, 6):
        await unit.record(
            catalog.engine,
            AdminCommand(
                actor="cli",
                object=f"case:C-{n}",
                case_id=f"C-{n % 2}",
                command=f"export {n} 审讯录像",
                items=n,
            ),
        )
    try:
        yield Log(catalog, settings, signer)
    finally:
        await catalog.close()


async def test_untouched_log_verifies(chain: Log) -> None:
    await audit.checkpoint(chain.engine, chain.signer)
    result = await chain.verify_command()
    assert result.exit_code == 0, result.output
    assert "audit log OK: 5 entries, 1 signed checkpoints" in result.output


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "someone else"},
        {"action": "token.created"},
        {"details": {"n": 3, "note": "审讯录像 (edited)"}},
        {"case_id": "C-9"},
        {"prev_hash": "f" * 64},
    ],
    ids=["actor", "action", "details", "case", "prev_hash"],
)
async def test_verify_names_the_edited_entry(chain: Log, change: dict[str, object]) -> None:
    await chain.execute(audit_log.update().where(audit_log.c.seq == 3).values(**change))
    result = await chain.verify_command()
    assert result.exit_code == 1
    assert "audit log BROKEN at entry 3" in result.output
    verdict = await audit.verify(chain.engine, await chain.keys())
    assert not verdict.ok and verdict.bad_seq == 3


async def test_verify_names_a_deleted_entry(chain: Log) -> None:
    await chain.execute(audit_log.delete().where(audit_log.c.seq == 3))
    result = await chain.verify_command()
    assert result.exit_code == 1
    assert "BROKEN at entry 3: entry 3 is missing or out of order" in result.output


async def test_verify_names_reordered_entries(chain: Log) -> None:
    # Swap rows 2 and 3 through a free seq: both keep their own (valid) hashes.
    await chain.execute(audit_log.update().where(audit_log.c.seq == 2).values(seq=-2))
    await chain.execute(audit_log.update().where(audit_log.c.seq == 3).values(seq=2))
    await chain.execute(audit_log.update().where(audit_log.c.seq == -2).values(seq=3))
    result = await chain.verify_command()
    assert result.exit_code == 1
    assert "BROKEN at entry 2: entry 2 does not follow entry 1" in result.output


async def test_truncation_after_a_checkpoint_is_detected(chain: Log) -> None:
    assert await audit.checkpoint(chain.engine, chain.signer) is not None
    await chain.execute(audit_log.delete().where(audit_log.c.seq >= 4))
    verdict = await audit.verify(chain.engine, await chain.keys())
    assert not verdict.ok and verdict.bad_seq == 5
    assert "truncated or rewritten" in (verdict.problem or "")
    result = await chain.verify_command()
    assert result.exit_code == 1 and "BROKEN at entry 5" in result.output


async def test_rewritten_chain_with_recomputed_hashes_fails_the_checkpoint(chain: Log) -> None:
    await audit.checkpoint(chain.engine, chain.signer)
    async with chain.engine.begin() as conn:
        await rechain(conn, edit_seq=3, actor="forger")
    verdict = await audit.verify(chain.engine, await chain.keys())
    assert not verdict.ok and verdict.bad_seq == 5 and verdict.entries == 5


async def test_client_entry_hash_equals_the_server_chain_hash(chain: Log) -> None:
    async for row in audit.rows(chain.engine):
        body = audit.entry_body(row)
        assert audit_entry_hash(body) == audit.entry_hash(body) == row.hash
