"""The audit chain under the `gm` suite: entries are hashed with SM3 (GB/T 32905) and say so,
as `openssl dgst -sm3` computes over the stored canonical bytes; a log that moves from
`international` to `gm` keeps its SHA-256 entries, switches by an entry hashed under SHA-256,
and verifies whole, from a checkpoint and split between two processes. An insider who moves
entries to another algorithm, or to one nobody knows, without an audited switch is named by the
walk; the offline bundle check holds the same rules. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_custody_api import invoke

from avidence.client import verify as offline
from avidence.client.canonical import PublicKeys, canonical_json
from avidence.server import config, signing
from avidence.server.audit import entries, state, tsa, unit, walk, witness
from avidence.server.audit import log as audit
from avidence.server.audit.events import AdminCommand
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_checkpoints, audit_head, audit_log
from avidence.server.cli import main

from support.tsa import LocalTsa, make_authority


@dataclass
class Log:
    catalog: Catalog
    signer: signing.Signer

    @property
    def engine(self) -> Any:
        return self.catalog.engine

    async def keys(self) -> PublicKeys:
        return PublicKeys.load(json.dumps({"keys": await signing.published(self.engine)}))

    async def verify(self, since: audit.Anchor | None = None) -> audit.Verdict:
        return await audit.verify(self.engine, await self.keys(), since=since)

    async def record(self, count: int) -> None:
        for n in range(count):
            await unit.record(
                self.engine,
                AdminCommand(actor="cli", object=f"case:C-{n} 审讯", command=f"x {n}", items=n),
            )

    async def rows(self) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)))

    async def sql(self, statement: sa.Executable) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(statement)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None for the data dir's SQLite file, else a fresh PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


async def _open(database: str | None, data: Path, suite: str) -> Log:
    settings = config.load(env={}, data_dir=data, database=database, suite=suite)
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    signer = signing.load_signer(settings)
    await signing.register(catalog.engine, signer)
    await audit.follow_suite(catalog.engine, settings.suite, actor="server")
    return Log(catalog, signer)


@pytest.fixture()
async def gm(database: str | None, tmp_path: Path) -> AsyncIterator[Log]:
    """A gm deployment's log from its first entry: five entries and a checkpoint."""
    log = await _open(database, tmp_path / "data", "gm")
    await log.record(5)
    await audit.checkpoint(log.engine, log.signer)
    try:
        yield log
    finally:
        await log.catalog.close()


@pytest.fixture()
async def mixed(database: str | None, tmp_path: Path) -> AsyncIterator[Log]:
    """Three international entries and a checkpoint (Ed25519); `key rotate` into gm writes the
    switch (entry 4, SHA-256) and `key.rotated` (entry 5, SM3); a checkpoint (SM2), two gm
    entries and a checkpoint: seven entries."""
    log = await _open(database, tmp_path / "data", "international")
    await log.record(3)
    await audit.checkpoint(log.engine, log.signer)
    await log.catalog.close()
    path = tmp_path / "gm.toml"
    path.write_text('suite = "gm"\n' + (f'database = "{database}"\n' if database else ""))
    args = ["--config", str(path), "--data-dir", str(tmp_path / "data")]
    rotated = await invoke(main, ["key", "rotate", *args])
    assert rotated.exit_code == 0, rotated.output
    log = await _open(database, tmp_path / "data", "gm")
    await audit.checkpoint(log.engine, log.signer)
    await log.record(2)
    await audit.checkpoint(log.engine, log.signer)
    try:
        yield log
    finally:
        await log.catalog.close()


@pytest.fixture()
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 2 rows, and walks split between two processes after entry 3 (of 7)."""
    monkeypatch.setattr(walk, "PAGE", 2)
    monkeypatch.setattr(walk, "SPLIT", 2)


async def rewrite(log: Log, edits: dict[int, dict[str, Any]]) -> None:
    """Edit entries and re-chain every one from the first edited, each with the algorithm it
    then names, moving the head row: the chain is self-consistent again, as a careful insider
    leaves it."""
    rows = await log.rows()
    first = min(edits)
    prev = rows[first - 2].hash if first > 1 else entries.GENESIS
    async with log.engine.begin() as conn:
        for row in rows[first - 1 :]:
            values = {**row._asdict(), **edits.get(row.seq, {}), "prev_hash": prev}
            prev = audit.entry_hash(audit.entry_body(values))
            await conn.execute(
                audit_log.update()
                .where(audit_log.c.seq == row.seq)
                .values(prev_hash=f"tmp{row.seq}", hash=f"tmp-{row.seq}")
            )
            values.update(hash=prev)
            await conn.execute(audit_log.update().where(audit_log.c.seq == row.seq).values(values))
        await conn.execute(audit_head.update().values(hash=prev))


async def test_gm_entries_chain_with_sm3_as_openssl_computes(gm: Log, tmp_path: Path) -> None:
    rows = await gm.rows()
    assert [r.hash_algorithm for r in rows] == ["sm3"] * 5
    body = audit.entry_body(rows[2])
    assert body["hash_algorithm"] == "sm3" and body["prev_hash"] == rows[1].hash
    # The stored columns as canonical JSON, hashed by a peer nobody here wrote.
    (tmp_path / "entry.json").write_bytes(canonical_json(body))
    done = await asyncio.to_thread(
        subprocess.run,
        ["openssl", "dgst", "-sm3", "-r", str(tmp_path / "entry.json")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.split()[0] == rows[2].hash
    assert offline.audit_entry_hash(body) == rows[2].hash  # the client agrees
    verdict = await gm.verify()
    assert verdict.ok and (verdict.entries, verdict.checkpoints) == (5, 1), verdict
    shown = await state.state(gm.engine, config.load(env={}, data_dir=tmp_path, suite="gm"))
    assert shown["hash_algorithm"] == "sm3" and shown["entries"] == 5
    checkpoint = await audit.latest_checkpoint(gm.engine)
    assert checkpoint is not None and checkpoint["algorithm"] == "sm2-sm3"
    assert checkpoint["checkpoint"]["hash_algorithm"] == "sm3"


async def test_a_mixed_log_verifies_whole_split_and_from_each_checkpoint(
    mixed: Log, small_pages: None
) -> None:
    rows = await mixed.rows()
    assert [r.hash_algorithm for r in rows] == [None] * 4 + ["sm3"] * 3
    switch = rows[3]
    assert (switch.action, switch.object) == ("audit.chain_switched", "audit:chain")
    assert switch.details == {"from": "sha256", "to": "sm3"}
    assert rows[4].action == "key.rotated"
    whole = await mixed.verify()
    assert whole.ok and (whole.entries, whole.checkpoints) == (7, 3), whole
    for seq in (3, 4):  # before the switch, and at it: the walk takes up SM3 after entry 4
        since = audit.Anchor(seq, rows[seq - 1].hash)
        verdict = await mixed.verify(since)
        assert verdict.ok and verdict.entries == 7 - seq, verdict
    documents = await audit.checkpoints(mixed.engine)
    assert [d["checkpoint"]["hash_algorithm"] for d in documents] == ["sha256", "sm3", "sm3"]
    assert [d["algorithm"] for d in documents] == ["ed25519", "sm2-sm3", "sm2-sm3"]
    # Starting again under the same suite switches nothing.
    assert await audit.follow_suite(mixed.engine, "gm", actor="server") is None
    assert len(await mixed.rows()) == 7


@pytest.mark.parametrize(
    ("edits", "bad_seq", "problem"),
    [
        ({6: {"hash_algorithm": None}}, 6, "entry 6 is hashed with sha256, but the chain uses sm3"),
        (
            {s: {"hash_algorithm": None} for s in (5, 6, 7)},
            5,
            "entry 5 is hashed with sha256, but the chain uses sm3",
        ),
        # The switch undone: the entries after it keep SM3, which nothing switched to.
        (
            {4: {"action": "admin.command", "details": {"command": "x", "items": 0}}},
            5,
            "entry 5 is hashed with sm3, but the chain uses sha256",
        ),
        # An extra switch back to SHA-256 would be audited; one that names no known algorithm
        # is refused.
        (
            {5: {"action": "audit.chain_switched", "details": {"from": "sm3", "to": "md5"}}},
            5,
            "entry 5 switches the chain hash wrongly",
        ),
    ],
    ids=["one_entry_downgraded", "every_later_entry", "switch_erased", "switch_to_unknown"],
)
async def test_an_algorithm_changed_without_an_audited_switch_is_named(
    mixed: Log, small_pages: None, edits: dict[int, dict[str, Any]], bad_seq: int, problem: str
) -> None:
    await rewrite(mixed, edits)
    verdict = await mixed.verify()
    assert not verdict.ok and verdict.bad_seq == bad_seq, verdict
    assert (verdict.problem or "").startswith(problem), verdict
    since = await mixed.verify(audit.Anchor(3, (await mixed.rows())[2].hash))
    assert not since.ok and since.bad_seq == bad_seq, since


async def test_an_upgrade_at_the_split_is_named_as_in_one_piece(
    database: str | None, tmp_path: Path, small_pages: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entry 4 opens the second process's half: the join checks its algorithm."""
    log = await _open(database, tmp_path / "data", "international")
    try:
        await log.record(7)
        await rewrite(log, {4: {"hash_algorithm": "sm3"}})
        split = await log.verify()
        monkeypatch.setattr(walk, "SPLIT", 10**9)
        whole = await log.verify()
        assert not split.ok and split.bad_seq == 4, split
        assert (split.problem, split.bad_seq, split.entries) == (
            whole.problem,
            whole.bad_seq,
            whole.entries,
        )
        assert (split.problem or "").startswith("entry 4 is hashed with sm3, but the chain uses")
    finally:
        await log.catalog.close()


@pytest.mark.parametrize("seq", [2, 6], ids=["in_sha256", "in_sm3"])
@pytest.mark.parametrize("name", ["md5", "sha256", "SM3"])
async def test_an_unknown_or_unwritten_algorithm_name_is_refused(
    mixed: Log, small_pages: None, name: str, seq: int
) -> None:
    await mixed.sql(audit_log.update().where(audit_log.c.seq == seq).values(hash_algorithm=name))
    verdict = await mixed.verify()
    assert not verdict.ok and verdict.bad_seq == seq, verdict
    assert verdict.problem == f"entry {seq} names an unknown chain hash algorithm {name!r}"


async def test_a_checkpoint_naming_another_algorithm_does_not_match(gm: Log) -> None:
    """The signed head names the algorithm of the entry it covers."""
    async with gm.engine.begin() as conn:
        await conn.execute(sa.delete(audit_checkpoints))
    await gm.record(1)
    seq, head = 6, (await gm.rows())[5].hash
    document = gm.signer.sign(
        "checkpoint",
        {"seq": seq, "head_hash": head, "count": seq, "time": "x", "hash_algorithm": "sha256"},
    )
    async with gm.engine.begin() as conn:
        await conn.execute(
            audit_checkpoints.insert().values(
                seq=seq, head_hash=head, count=seq, time=datetime.now(UTC), document=document
            )
        )
    verdict = await gm.verify()
    assert not verdict.ok and verdict.bad_seq == 6 and "signed a head" in (verdict.problem or "")


def _bundle_check(root: Path, lines: list[dict[str, Any]], keys: PublicKeys) -> list[str]:
    (root / "audit.jsonl").write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    report = offline.BundleReport()
    offline._check_audit(root, {"audit": {"path": "audit.jsonl"}, "case": None}, keys, report)
    return report.problems


async def test_bundle_entries_in_sm3_verify_offline_and_a_downgrade_is_named(
    mixed: Log, tmp_path: Path
) -> None:
    """The excerpt as `export` writes it (the client needs no server code), then edited."""
    rows = await mixed.rows()
    lines = [{"type": "entry", **audit.entry_body(r), "hash": r.hash} for r in rows]
    lines += [{"type": "checkpoint", **d} for d in await audit.checkpoints(mixed.engine)]
    keys = await mixed.keys()
    assert _bundle_check(tmp_path, lines, keys) == []
    assert "hash_algorithm" not in lines[3] and lines[4]["hash_algorithm"] == "sm3"
    # Entry 6 re-hashed with SHA-256 and entry 7 re-chained onto it.
    forged = [dict(line) for line in lines]
    del forged[5]["hash_algorithm"]
    forged[5]["hash"] = offline.audit_entry_hash(
        {k: v for k, v in forged[5].items() if k not in ("type", "hash")}
    )
    forged[6]["prev_hash"] = forged[5]["hash"]
    forged[6]["hash"] = offline.audit_entry_hash(
        {k: v for k, v in forged[6].items() if k not in ("type", "hash")}
    )
    problems = _bundle_check(tmp_path, forged, keys)
    assert any("entry 6 is hashed with sha256, but the chain uses sm3" in p for p in problems)
    assert any("checkpoint 7 signed a different entry 7" in p for p in problems)
    unknown = [dict(line) for line in lines]
    unknown[5]["hash_algorithm"] = "sha256"
    assert any(
        "entry 6: unknown chain hash algorithm 'sha256'" in p
        for p in _bundle_check(tmp_path, unknown, keys)
    )


async def test_audit_verify_with_witness_and_tsa_across_the_move_to_gm(tmp_path: Path) -> None:
    """As an operator runs it: an international site with a file witness and a TSA, `key rotate`
    into gm, more entries; `audit verify` (whole, then `--since-checkpoint`) extends every
    witnessed checkpoint and checks every time-stamp. Then entry 6 re-hashed with SHA-256,
    re-chained, and the head signed again by the real key: the walk names it, and the witness
    sees a fork."""
    authority = make_authority(tmp_path / "tsa")
    server = LocalTsa(authority)
    await server.start()
    data = tmp_path / "data"
    common = (
        f'data_dir = "{data}"\ntsa_url = "{server.url}"\n'
        f'tsa_certificates = "{authority.pinned}"\ntsa_timeout = 3\n'
    )
    (tmp_path / "intl.toml").write_text(common)
    (tmp_path / "gm.toml").write_text(common + 'suite = "gm"\n')

    async def seal(log: Log, file: str) -> None:
        settings = config.load(config_file=tmp_path / file, env={})
        document = await audit.checkpoint(
            log.engine,
            log.signer,
            witnesses=witness.configured(settings),
            stamper=tsa.configured(settings),
        )
        assert document is not None

    async def command(*args: str) -> Any:
        return await invoke(main, [*args, "--config", str(tmp_path / "gm.toml")])

    try:
        log = await _open(None, data, "international")
        await log.record(3)
        await seal(log, "intl.toml")
        await log.catalog.close()
        rotated = await command("key", "rotate")
        assert rotated.exit_code == 0, rotated.output
        log = await _open(None, data, "gm")
        try:
            await log.record(2)
            await seal(log, "gm.toml")
            witnessed = (data / "witness" / "checkpoints.jsonl").read_text().splitlines()
            kept = [json.loads(line) for line in witnessed]
            assert [d["checkpoint"]["hash_algorithm"] for d in kept] == ["sha256", "sm3"]
            whole = await command("audit", "verify")
            assert whole.exit_code == 0, whole.output
            assert "audit log OK: 7 entries, 2 signed checkpoints, 2 witnessed" in whole.output
            assert "2 checkpoints verified" in whole.output  # both time-stamps
            await log.record(1)
            await seal(log, "gm.toml")
            since = await command("audit", "verify", "--since-checkpoint")
            assert since.exit_code == 0, since.output
            assert "audit log OK: 1 entries after checkpoint 7" in since.output, since.output

            await rewrite(log, {6: {"hash_algorithm": None}})
            async with log.engine.begin() as conn:
                await conn.execute(sa.delete(audit_checkpoints).where(audit_checkpoints.c.seq > 3))
            await log.record(1)
            await audit.checkpoint(log.engine, log.signer)  # the insider holds the key
            broken = await command("audit", "verify")
            assert broken.exit_code == 1, broken.output
            assert (
                "BROKEN at entry 6: entry 6 is hashed with sha256, but the chain uses sm3"
                in broken.output
            )
            assert "BROKEN (fork)" in broken.output
        finally:
            await log.catalog.close()
    finally:
        await server.stop()


async def test_a_new_gm_deployment_set_up_by_commands_chains_with_sm3_from_entry_one(
    tmp_path: Path,
) -> None:
    """`migrate` and `token create` may run before the first `serve`: no SHA-256 entry, no
    switch, in a new gm log."""
    path = tmp_path / "gm.toml"
    path.write_text(f'suite = "gm"\ndata_dir = "{tmp_path / "data"}"\n')
    for args in (["migrate"], ["token", "create", "--role", "uploader", "--name", "room 1"]):
        done = await invoke(main, [*args, "--config", str(path)])
        assert done.exit_code == 0, done.output
    log = await _open(None, tmp_path / "data", "gm")
    try:
        rows = await log.rows()
        assert rows and {r.hash_algorithm for r in rows} == {"sm3"}, rows
        assert "audit.chain_switched" not in {r.action for r in rows}
        assert (await log.verify()).ok
    finally:
        await log.catalog.close()


def test_entry_hashes_are_fixed_vectors() -> None:
    """A SHA-256 entry hashes to what it did before the chain had a choice (its bytes name no
    algorithm), so existing logs and their checkpoints stay valid; the SM3 form is pinned too."""
    row: dict[str, Any] = {
        "seq": 7,
        "time": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "actor": "cli",
        "action": "admin.command",
        "object": "case:C-1 审讯",
        "case_id": "C-1",
        "details": {"command": "export", "items": 2},
        "client": None,
        "prev_hash": "ab" * 32,
    }
    body = audit.entry_body(row)
    assert "hash_algorithm" not in body
    old = "58e15e0acb951ab148ba23d50bb59f02ecf11849d66c911d81fac40aa70ca1eb"
    assert audit.entry_hash(body) == offline.audit_entry_hash(body) == old
    body = audit.entry_body({**row, "hash_algorithm": "sm3"})
    sm3 = "4125036c6d2872ed4f9eb82f80300e68d2347a6e5f1ed84fe0e7b1eaab2dedbb"
    assert audit.entry_hash(body) == offline.audit_entry_hash(body) == sm3
    with pytest.raises(entries.UnknownAlgorithm):
        audit.entry_hash({**body, "hash_algorithm": "sha256"})
