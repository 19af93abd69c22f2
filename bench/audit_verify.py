"""`audit verify` over a long log: entries per second at several lengths, so the growth shows.

    .venv/bin/python bench/audit_verify.py [--sizes 100000,300000,1000000] [--database URL]
        [--chains sha256,sm3]

Builds a catalog per size (SQLite in a temporary folder by default, or a fresh PostgreSQL
database per size when `--database` names a server's admin URL), fills the audit log with chained
entries shaped like `evidence.created` ones (bulk inserts, not the server's append path), signs a
checkpoint every 10,000 entries, then times `log.verify` (the hash chain walk and every
checkpoint signature), `extends.facts_without_entries`, and an incremental run from the newest
checkpoint after 10,000 more entries (`audit verify --since-checkpoint`). Walks longer than
`walk.SPLIT` entries are split between two processes; the same walk in one process is timed
beside it. The baseline, run on the smallest size, is the walk by the definition: every row read
through SQLAlchemy and re-encoded as canonical JSON (`entries.entry_hash`), as `audit verify`
did before. Prints entries/s per size, the ratio to the baseline, and the ratio of the
per-entry cost at the largest size to the smallest (1.0 means linear). Each size is built and
walked once per chain hash (`--chains`: SHA-256 as under `international`, SM3 as under `gm`), and
the SM3 rate is printed as a ratio to the SHA-256 rate of the same size and run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from avidence.client.canonical import PublicKeys
from avidence.server import signing
from avidence.server.audit import entries, extends, walk
from avidence.server.audit import log as audit
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_checkpoints, audit_head, audit_log
from avidence.server.config import Settings, normalize_database_url

BATCH = 10_000


def _rows(
    count: int, *, first: int = 1, prev: str = audit.GENESIS, algorithm: str = "sha256"
) -> tuple[list[dict[str, object]], list[tuple[int, str]]]:
    """Chained entries from seq `first` and the (seq, head) of every BATCH-th one."""
    rows, heads = [], []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for seq in range(first, first + count):
        row = {
            "seq": seq,
            "time": start + timedelta(seconds=seq),
            "actor": "tok_0123456789abcdef (interrogation room 3)",
            "action": "admin.command",
            "object": f"case:GA-{seq % 10_000}",
            "case_id": f"GA-{seq % 10_000}",
            "details": {"command": "bench", "items": seq, "blake3": secrets.token_hex(32)},
            "client": "127.0.0.1",
            "prev_hash": prev,
            "hash_algorithm": entries.column(algorithm),
        }
        row["hash"] = prev = audit.entry_hash(audit.entry_body(row))
        rows.append(row)
        if seq % BATCH == 0 or seq == first + count - 1:
            heads.append((seq, prev))
    return rows, heads


async def _fill(
    catalog: Catalog,
    count: int,
    signer: signing.Signer,
    *,
    first: int = 1,
    prev: str = "",
    algorithm: str = "sha256",
) -> None:
    rows, heads = _rows(count, first=first, prev=prev or audit.GENESIS, algorithm=algorithm)
    now = datetime.now(UTC)
    async with catalog.engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            await conn.execute(audit_log.insert(), rows[start : start + BATCH])
        for seq, head in heads:
            body = {
                "seq": seq,
                "head_hash": head,
                "count": seq,
                "time": now.isoformat(),
                "hash_algorithm": algorithm,
            }
            await conn.execute(
                audit_checkpoints.insert().values(
                    seq=seq,
                    head_hash=head,
                    count=seq,
                    time=now,
                    document=signer.sign("checkpoint", body),
                )
            )
        await conn.execute(
            audit_head.update().values(
                seq=first + count - 1,
                hash=rows[-1]["hash"],
                hash_algorithm=entries.column(algorithm),
            )
        )


async def _by_definition(catalog: Catalog) -> int:
    """The baseline: every row through SQLAlchemy, re-encoded and hashed by the definition."""
    prev, count = audit.GENESIS, 0
    async for row in audit.rows(catalog.engine):
        body = audit.entry_body(row)
        assert row.prev_hash == prev and audit.entry_hash(body) == row.hash, row.seq
        prev, count = row.hash, count + 1
    return count


def _hash_loop(count: int, algorithm: str) -> float:
    """CPU seconds (best of three) of the walk's hashing loop (`walk.check`) over `count` rows
    held in memory, as the driver hands them over: the chain hash's own cost, without the
    database, so a loaded machine moves it less than the walks."""
    rows, _ = _rows(count, algorithm=algorithm)
    tuples = [
        (
            r["seq"],
            audit.iso(r["time"]),  # type: ignore[arg-type]
            r["actor"],
            r["action"],
            r["object"],
            r["case_id"],
            json.dumps(r["details"], sort_keys=True, separators=(",", ":")),
            r["client"],
            r["prev_hash"],
            r["hash"],
            r["hash_algorithm"],
        )
        for r in rows
    ]
    best = float("inf")
    for _ in range(3):
        state = walk.Walk(0, audit.GENESIS)
        began = time.process_time()
        assert walk.check(tuples, state, set()), state.problem
        best = min(best, time.process_time() - began)
    return best


async def _one(
    size: int, admin_url: str | None, work: Path, *, baseline: bool, algorithm: str
) -> dict[str, float]:
    name = f"avidence_bench_{secrets.token_hex(4)}"
    if admin_url:
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    else:
        url = f"sqlite:///{work / f'{size}-{algorithm}.db'}"
    settings = Settings(data_dir=work / f"data-{size}-{algorithm}")
    catalog = Catalog(normalize_database_url(url))
    try:
        await catalog.migrate()
        signer = signing.load_signer(settings)
        await signing.register(catalog.engine, signer)
        began = time.perf_counter()
        await _fill(catalog, size, signer, algorithm=algorithm)
        filled = time.perf_counter() - began
        keys = PublicKeys.load(json.dumps({"keys": await signing.published(catalog.engine)}))
        # The one-process walk goes first: the first read after a bulk load is the slowest on
        # PostgreSQL (it sets the rows' hint bits), which would flatter the split walk.
        split = walk.SPLIT
        walk.SPLIT = size + 1
        try:
            began = time.perf_counter()
            assert (await audit.verify(catalog.engine, keys)).ok
            alone = time.perf_counter() - began
        finally:
            walk.SPLIT = split
        began = time.perf_counter()
        verdict = await audit.verify(catalog.engine, keys)
        walked = time.perf_counter() - began
        assert verdict.ok and verdict.entries == size, verdict
        began = time.perf_counter()
        assert await extends.facts_without_entries(catalog.engine) == []
        facts = time.perf_counter() - began
        base = 0.0
        if baseline:
            began = time.perf_counter()
            assert await _by_definition(catalog) == size
            base = time.perf_counter() - began
        assert verdict.newest is not None
        await _fill(
            catalog,
            BATCH,
            signer,
            first=size + 1,
            prev=verdict.newest.head_hash,
            algorithm=algorithm,
        )
        began = time.perf_counter()
        more = await audit.verify(catalog.engine, keys, since=verdict.newest)
        since = time.perf_counter() - began
        assert more.ok and more.entries == BATCH, more
    finally:
        await catalog.close()
        if admin_url:
            conn = await asyncpg.connect(admin_url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()
    return {
        "fill_s": filled,
        "verify_s": walked,
        "alone_s": alone,
        "facts_s": facts,
        "baseline_s": base,
        "since_s": since,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--database", default=None, help="PostgreSQL admin URL (default SQLite)")
    parser.add_argument("--chains", default="sha256,sm3", help="chain hashes to walk, in order")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chains = args.chains.split(",")
    with tempfile.TemporaryDirectory(prefix="avidence-verify-") as tmp:
        results = {
            (chain, size): await _one(
                size,
                args.database,
                Path(tmp),
                baseline=size == sizes[0] and chain == chains[0],
                algorithm=chain,
            )
            for size in sizes
            for chain in chains
        }
    print(f"catalog: {'postgresql' if args.database else 'sqlite'}")
    print(
        "| chain | entries | verify s | entries/s | one process, entries/s | facts check s "
        f"| --since-checkpoint, {BATCH:,} new |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (chain, size), r in results.items():
        rate, alone = size / r["verify_s"], size / r["alone_s"]
        print(
            f"| {chain} | {size:,} | {r['verify_s']:.2f} | {rate:,.0f} | {alone:,.0f} "
            f"| {r['facts_s']:.2f} | {r['since_s']:.3f} s |"
        )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    small, large, first = sizes[0], sizes[-1], chains[0]
    base = results[first, small]["baseline_s"]
    print(
        f"baseline (by the definition, through SQLAlchemy, {first}) at {small:,}: "
        f"{small / base:,.0f} entries/s; walk / baseline: "
        f"{base / results[first, small]['verify_s']:.1f}x"
    )
    for chain in chains[1:]:
        for size in sizes:
            ours, theirs = results[chain, size], results[first, size]
            print(
                f"{chain} / {first} at {size:,} entries/s: as audit verify runs "
                f"{theirs['verify_s'] / ours['verify_s']:.2f}x, in one process "
                f"{theirs['alone_s'] / ours['alone_s']:.2f}x"
            )
    loops = {chain: sizes[0] / _hash_loop(sizes[0], chain) for chain in chains}
    print(
        f"hashing loop alone ({sizes[0]:,} rows in memory, CPU, best of 3): "
        + ", ".join(f"{chain} {rate:,.0f} entries/s" for chain, rate in loops.items())
        + "".join(f"; {c} / {first}: {loops[c] / loops[first]:.2f}x" for c in chains[1:])
    )
    for chain in chains:
        per_small = results[chain, small]["verify_s"] / small
        per_large = results[chain, large]["verify_s"] / large
        print(
            f"{chain}: cost per entry at {large:,} / at {small:,}: "
            f"{per_large / per_small:.2f} (1.0 = linear)"
        )


if __name__ == "__main__":
    asyncio.run(main())
