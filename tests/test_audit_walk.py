"""The fast chain walk (`audit.walk`) on SQLite and PostgreSQL: it hashes the stored text of each
entry instead of re-encoding it, so every column edit must still be named, text that was stored
non-canonically must still verify, and text moved between columns so that the hashed bytes stay
the same must be caught. `audit verify --since-checkpoint` walks only what is new."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_custody_api import invoke

from avidence.client.canonical import PublicKeys
from avidence.server import config, signing
from avidence.server.audit import log as audit
from avidence.server.audit import progress, unit, walk
from avidence.server.audit.events import AdminCommand
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_log
from avidence.server.cli import main

from support.forgery import rechain


@dataclass
class Chain:
    catalog: Catalog
    settings: config.Settings
    signer: signing.Signer

    async def keys(self) -> PublicKeys:
        return PublicKeys.load(json.dumps({"keys": await signing.published(self.catalog.engine)}))

    async def sql(self, statement: sa.Executable, **params: object) -> None:
        async with self.catalog.engine.begin() as conn:
            await conn.execute(statement, params)

    async def details_text(self, seq: int, text: str) -> None:
        """Store `text` as entry `seq`'s details exactly as given (no re-encoding)."""
        cast = "CAST(:t AS json)" if self.catalog.dialect == "postgresql" else ":t"
        update = sa.text(f"UPDATE audit_log SET details = {cast} WHERE seq = :s")
        await self.sql(update, t=text, s=seq)

    async def verify(self, since: audit.Anchor | None = None) -> audit.Verdict:
        return await audit.verify(self.catalog.engine, await self.keys(), since=since)


async def _record(chain: Chain, count: int) -> None:
    for n in range(count):
        await unit.record(
            chain.catalog.engine,
            AdminCommand(
                actor="cli",
                object=f'case:C-{n} "quoted" \\ 审讯',
                case_id=f"C-{n}" if n % 2 else None,
                command=f"export {n} 审讯录像\n\t\u2028",
                items=n,
            ),
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None for the data dir's SQLite file, else a fresh PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture()
async def chain(database: str | None, tmp_path: Path) -> AsyncIterator[Chain]:
    """Seven entries, written by the unit of work, on each catalog."""
    url = database
    settings = config.load(env={}, data_dir=tmp_path / "data", database=url)
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    signer = signing.load_signer(settings)
    await signing.register(catalog.engine, signer)
    chain = Chain(catalog, settings, signer)
    await _record(chain, 7)
    try:
        yield chain
    finally:
        await catalog.close()


@pytest.fixture()
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 2 rows, so edits fall on page edges and the read-ahead runs many times, and
    walks split between two processes after entry 3 (of 7) as long ones are."""
    monkeypatch.setattr(walk, "PAGE", 2)
    monkeypatch.setattr(walk, "SPLIT", 2)


async def test_an_untouched_log_walks_in_pages(chain: Chain, small_pages: None) -> None:
    await audit.checkpoint(chain.catalog.engine, chain.signer)
    verdict = await chain.verify()
    assert verdict.ok and verdict.entries == 7 and verdict.checkpoints == 1, verdict
    assert verdict.newest is not None and verdict.newest.seq == 7


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (audit_log.update().where(audit_log.c.seq == 4).values(prev_hash="f" * 64), "follow"),
        (audit_log.delete().where(audit_log.c.seq == 3), "missing"),
        (audit_log.delete().where(audit_log.c.seq == 4), "missing"),
        (audit_log.update().where(audit_log.c.seq == 2).values(actor="x"), "altered"),
    ],
    ids=["link_at_the_split", "last_of_the_first_half", "first_of_the_second_half", "first_half"],
)
async def test_a_split_walk_names_what_a_walk_in_one_piece_would(
    chain: Chain,
    small_pages: None,
    statement: sa.Executable,
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await chain.sql(statement)
    joins: list[int] = []
    join = walk.join
    monkeypatch.setattr(walk, "join", lambda *a: joins.append(a[2]) or join(*a))
    split = await chain.verify()
    assert joins == [3]  # walked in two processes, split after entry 3
    monkeypatch.setattr(walk, "SPLIT", 10**9)
    whole = await chain.verify()
    assert not split.ok and problem in (split.problem or ""), split
    assert (split.problem, split.bad_seq, split.entries) == (
        whole.problem,
        whole.bad_seq,
        whole.entries,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "someone else"},
        {"action": "token.created"},
        {"object": "case:C-9"},
        {"case_id": "C-9"},
        {"case_id": None},
        {"client": "10.0.0.9"},
        {"details": {"command": "export 3", "items": 3}},
        {"time": sa.func.current_timestamp()},
    ],
    ids=["actor", "action", "object", "case", "case_null", "client", "details", "time"],
)
async def test_every_column_edit_is_named_on_both_catalogs(
    chain: Chain, small_pages: None, change: dict[str, object]
) -> None:
    await chain.sql(audit_log.update().where(audit_log.c.seq == 4).values(**change))
    verdict = await chain.verify()
    assert not verdict.ok and verdict.bad_seq == 4, verdict
    assert verdict.problem == "entry 4 was altered"


async def test_details_stored_non_canonically_still_verify(chain: Chain) -> None:
    # As entries written before JSON columns were stored canonically: same value, other text.
    async with chain.catalog.engine.connect() as conn:
        details = (
            await conn.execute(sa.select(audit_log.c.details).where(audit_log.c.seq == 4))
        ).scalar_one()
    await chain.details_text(4, json.dumps(dict(reversed(list(details.items())))))
    assert (await chain.verify()).ok
    # ... but a different value in that loose text is still an edit.
    await chain.details_text(4, json.dumps({**details, "items": 99}))
    verdict = await chain.verify()
    assert not verdict.ok and verdict.bad_seq == 4


async def test_text_moved_out_of_details_keeping_the_hashed_bytes_is_named(
    chain: Chain,
) -> None:
    """The hashed bytes end `"details":<details>,"object":<object>,"prev_hash":..,"time":"<time>"}`.
    When details hold a dict with the same keys (`object`, `prev_hash`, `seq`, `time`), an
    insider can cut details short and push the rest into the object and time columns so that
    the assembled bytes stay exactly the same. Details are then not one JSON value: the walk
    refuses to splice them and the definition does not match."""
    if chain.catalog.dialect == "postgresql":
        pytest.skip("PostgreSQL's timestamp column cannot hold the text this needs")
    async with chain.catalog.engine.connect() as conn:
        last = sa.select(audit_log.c.hash).where(audit_log.c.seq == 7)
        prev = (await conn.execute(last)).scalar()
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    inner = {"a": 1, "object": "x", "prev_hash": prev, "seq": 8, "time": "Q"}
    row = {
        "seq": 8,
        "time": when,
        "actor": "cli",
        "action": "admin.command",
        "object": "case:C-8",
        "case_id": None,
        "details": {"z": inner},
        "client": None,
        "prev_hash": prev,
    }
    row["hash"] = audit.entry_hash(audit.entry_body(row))
    await chain.sql(audit_log.insert().values(**row))
    assert (await chain.verify()).ok
    tail = f'Q"}}}},"object":"case:C-8","prev_hash":"{prev}","seq":8,"time":"'
    tail += "2026-01-02T03:04:05.678901"
    await chain.sql(
        sa.text("UPDATE audit_log SET details = :d, object = 'x', time = :t WHERE seq = 8"),
        d='{"z":{"a":1',
        t=tail,
    )
    verdict = await chain.verify()
    assert not verdict.ok and verdict.bad_seq == 8 and verdict.problem == "entry 8 was altered"


async def test_since_a_verified_checkpoint_only_new_entries_are_walked(
    chain: Chain, small_pages: None
) -> None:
    first = await chain.verify()
    assert first.ok and first.newest is None  # no checkpoint yet: nothing to start from
    await audit.checkpoint(chain.catalog.engine, chain.signer)
    anchor = (await chain.verify()).newest
    assert anchor == audit.Anchor(7, anchor.head_hash if anchor else "")
    await _record(chain, 3)
    verdict = await chain.verify(since=anchor)
    assert verdict.ok and verdict.entries == 3 and verdict.since == 7, verdict
    # An edit after the anchor is named; a rewrite through the anchor changes its hash.
    await chain.sql(audit_log.update().where(audit_log.c.seq == 9).values(actor="x"))
    assert (await chain.verify(since=anchor)).bad_seq == 9
    async with chain.catalog.engine.begin() as conn:
        await rechain(conn, edit_seq=2, actor="forger")
    verdict = await chain.verify(since=anchor)
    assert not verdict.ok and verdict.bad_seq == 7
    assert "verified before, is changed" in (verdict.problem or "")


async def test_verify_command_since_checkpoint_records_and_resumes(
    chain: Chain, tmp_path: Path
) -> None:
    state = tmp_path / "verified.json"
    base = ["audit", "verify", "--data-dir", str(chain.settings.data_dir), "--state", str(state)]
    base += ["--database", chain.settings.database_url]
    await audit.checkpoint(chain.catalog.engine, chain.signer)
    result = await invoke(main, [*base, "--since-checkpoint"])
    assert result.exit_code == 0, result.output
    assert "walking the whole log" in result.output and "audit log OK: 7 entries" in result.output
    recorded = progress.load(state)
    assert recorded is not None and recorded[0].seq == 7
    await _record(chain, 2)
    result = await invoke(main, [*base, "--since-checkpoint"])
    assert result.exit_code == 0, result.output
    assert "audit log OK: 2 entries after checkpoint 7" in result.output
