"""A catalog of millions on PostgreSQL: how listings, lookups, timelines, usage and purge planning
grow from 10 thousand to 1 million evidence records.

    .venv/bin/python bench/catalog.py --database postgresql://postgres@127.0.0.1:5432/test \
        [--sizes 10000,100000,1000000] [--runs 40]

For each size a fresh PostgreSQL database is migrated and filled with COPY (not the server's
append path): evidence across 20 agencies and size/100 cases (one case of 1,000 items), their
uploads, retention rows and case memberships, a ticket per 10 items and two audit entries per
item (created and a view). Then every query is run `runs` times on the filled catalog through
the code the API handlers call (`evidence.search`, `evidence.records`, `cases.custody`,
`retention.usage`, `retention.purge`, the scrub's choice of what is due), and p50/p95
milliseconds are printed per size with the growth from the smallest size to the largest (1.0:
flat, as keyset pages and indexed lookups should be; a full scan grows with the size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from avidence.server.cases import custody
from avidence.server.cases import records as cases_db
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import (
    evidence,
    evidence_retention,
    tickets,
    tokens,
)
from avidence.server.catalog.schema_exchange import agencies, case_agencies, cases
from avidence.server.config import normalize_database_url
from avidence.server.evidence import records as evidence_db
from avidence.server.evidence import scrub, search
from avidence.server.retention import purge, usage
from avidence.server.retention.classes import Policy, RetentionClass
from avidence.server.tokens import Principal

AGENCIES = 20
BIG_CASE_ITEMS = 1_000
START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class World:
    size: int
    agencies: list[str]
    uploaders: list[str]
    big_case: str  # case id of the 1,000-item case
    sample: list[dict[str, Any]]  # a few records to look up


def _hex() -> str:
    return secrets.token_hex(32)


def _records(size: int, world: World) -> Iterator[dict[str, Iterator[tuple[Any, ...]]]]:
    """Rows per table, in COPY batches of 50,000 items."""
    cases_per_agency = max(size // 100 // AGENCIES, 1)
    batch = 50_000
    for start in range(0, size, batch):
        rows: dict[str, list[tuple[Any, ...]]] = {
            "uploads": [],
            "evidence": [],
            "evidence_retention": [],
            "case_evidence": [],
            "tickets": [],
            "ticket_evidence": [],
            "audit_log": [],
        }
        for n in range(start, min(start + batch, size)):
            big = n < BIG_CASE_ITEMS
            agency = 0 if big else n % AGENCIES
            case_no = 0 if big else 1 + (n // AGENCIES) % cases_per_agency
            number = f"GA-{case_no}"
            case_id = f"case_{agency:02d}_{case_no:06d}"
            evidence_id = f"ev_{n:024d}"
            upload_id = f"up_{n:024d}"
            received = START + timedelta(seconds=n * 7)
            sha = _hex()
            blake = _hex()
            name = f"room{n % 9}-{n}.mp4"
            meta = json.dumps({"case": number, "kind": "interrogation", "filename": name})
            rows["uploads"].append(
                (upload_id, "done", 1000 + n, 1000 + n, meta, "", "local", f"ev/{evidence_id}",
                 f"ev/{evidence_id}", world.uploaders[agency], evidence_id, received, received,
                 world.agencies[agency])
            )  # fmt: skip
            rows["evidence"].append(
                (evidence_id, upload_id, number, str(n % 5), name, "video/mp4", 1000 + n, blake,
                 sha, None, world.uploaders[agency], "local", f"ev/{evidence_id}", meta, received,
                 "ok" if n % 3 else "unchecked", received if n % 3 else None,
                 world.agencies[agency])
            )  # fmt: skip
            retain = received + timedelta(days=365 * (1 + n % 10))
            rows["evidence_retention"].append(
                (evidence_id, "standard", retain, "", None, "active", None, 0, None, None, received)
            )
            rows["case_evidence"].append((case_id, evidence_id, received))
            if n % 10 == 0:
                ticket = f"tk_{n:024d}"
                rows["tickets"].append(
                    (ticket, _hex(), "judge", None, number, False, None, 0, None, 0, None,
                     "bench", None, received, received + timedelta(days=30), None, None, None,
                     world.agencies[agency])
                )  # fmt: skip
                rows["ticket_evidence"].append((ticket, evidence_id, 0))
            for step, action in enumerate(("evidence.created", "ticket.viewed")):
                seq = 2 * n + step + 1
                rows["audit_log"].append(
                    (seq, received + timedelta(seconds=step), "bench", action,
                     f"evidence:{evidence_id}", number, json.dumps({"bytes": n}), None,
                     _hex(), _hex())
                )  # fmt: skip
        if start == 0:
            world.sample = [
                {"id": r[0], "sha256": r[8], "filename": r[4], "agency": r[17]}
                for r in rows["evidence"][BIG_CASE_ITEMS : BIG_CASE_ITEMS + 200]
            ]
        yield {name: iter(value) for name, value in rows.items()}


COLUMNS = {
    "uploads": ["id", "state", "length", "offset", "metadata", "concat", "store", "storage_key",
                "store_handle", "uploader", "evidence_id", "created_at", "updated_at",
                "agency_id"],
    "evidence": [c.name for c in evidence.columns],
    "evidence_retention": [c.name for c in evidence_retention.columns],
    "case_evidence": ["case_id", "evidence_id", "added_at"],
    "tickets": [c.name for c in tickets.columns],
    "ticket_evidence": ["ticket_id", "evidence_id", "position"],
    "audit_log": ["seq", "time", "actor", "action", "object", "case_id", "details", "client",
                  "prev_hash", "hash"],
}  # fmt: skip


async def _fill(url: str, size: int) -> World:
    """Agencies, tokens and cases by INSERT; the bulk by COPY; then ANALYZE."""
    conn = await asyncpg.connect(url)
    try:
        world = World(size, [], [], "", [])
        for a in range(AGENCIES):
            agency = f"agc_{a:02d}"
            token = f"tok_{a:02d}"
            world.agencies.append(agency)
            world.uploaders.append(token)
            await conn.execute(
                f"INSERT INTO {agencies.name} (id, name, created_at) VALUES ($1, $2, $3)",
                agency, f"Agency {a}", START,
            )  # fmt: skip
            await conn.execute(
                f"INSERT INTO {tokens.name} (id, name, role, secret_hash, created_at, agency_id) "
                "VALUES ($1, $2, 'uploader', $3, $4, $5)",
                token, f"room {a}", _hex(), START, agency,
            )  # fmt: skip
        cases_per_agency = max(size // 100 // AGENCIES, 1)
        case_rows = [
            (f"case_{a:02d}_{c:06d}", world.agencies[a], f"GA-{c}", "", "open", START)
            for a in range(AGENCIES)
            for c in range(cases_per_agency + 1)
        ]
        await conn.copy_records_to_table(
            cases.name, records=case_rows,
            columns=["id", "agency_id", "number", "title", "status", "created_at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            case_agencies.name,
            records=[(row[0], row[1], START) for row in case_rows],
            columns=["case_id", "agency_id", "since"],
        )
        world.big_case = "case_00_000000"
        for batch in _records(size, world):
            for table in COLUMNS:
                await conn.copy_records_to_table(
                    table, records=batch[table], columns=COLUMNS[table]
                )
        await conn.execute(
            "UPDATE audit_head SET seq = $1, hash = $2", 2 * size, "0" * 64
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return world


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1000, p95 * 1000


async def _time(runs: int, call: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    await call(0)  # warm the plan cache and the buffers once
    samples = []
    for n in range(runs):
        began = time.perf_counter()
        await call(n)
        samples.append(time.perf_counter() - began)
    return _ms(samples)


async def _measure(catalog: Catalog, world: World, runs: int) -> dict[str, tuple[float, float]]:
    engine = catalog.engine
    rng = random.Random(7)

    def handler(agency: str) -> Principal:
        return Principal(token_id="tok_bench", name="clerk", role="handler", agency_id=agency)

    def sample(n: int) -> dict[str, Any]:
        return world.sample[(n * 37) % len(world.sample)]

    async def first_page(n: int) -> None:
        agency = world.agencies[n % AGENCIES]
        await search.search(engine, handler(agency), search.Query(limit=50))

    async def deep_page(n: int) -> None:
        agency = world.agencies[n % AGENCIES]
        query = search.Query(limit=50)
        _, after = await search.search(engine, handler(agency), query)
        for _ in range(10):  # ten pages in: the 11th costs what the 1st did
            if after is None:
                break
            query.after = search._cursor(after)
            _, after = await search.search(engine, handler(agency), query)

    async def by_case(n: int) -> None:
        agency = n % AGENCIES
        case_no = 1 + rng.randrange(max(world.size // 100 // AGENCIES, 1))
        query = search.Query(limit=50, case_id=f"case_{agency:02d}_{case_no:06d}")
        await search.search(engine, handler(world.agencies[agency]), query)

    async def by_digest(n: int) -> None:
        item = sample(n)
        query = search.Query(digests={"sha256": item["sha256"]})
        found, _ = await search.search(engine, handler(item["agency"]), query)
        assert [r.id for r in found] == [item["id"]]

    async def by_filename(n: int) -> None:
        item = sample(n)
        query = search.Query(equals={"filename": item["filename"]})
        found, _ = await search.search(engine, handler(item["agency"]), query)
        assert [r.id for r in found] == [item["id"]]

    async def lookup(n: int) -> None:
        assert await evidence_db.get(engine, sample(n)["id"]) is not None

    async def timeline(n: int) -> None:
        case = await cases_db.get(engine, world.big_case, agency_id=world.agencies[0])
        assert case is not None
        ids = await evidence_db.ids_in_case(engine, case.id, agency_id=case.agency_id)
        steps = await custody.timeline(engine, case, agency_id=case.agency_id, evidence_ids=ids)
        assert len(ids) == BIG_CASE_ITEMS and len(steps) >= BIG_CASE_ITEMS

    async def scrub_page(n: int) -> None:
        due = scrub._originals(datetime.now(UTC) - timedelta(days=30), None).limit(100)
        async with engine.connect() as conn:
            assert len((await conn.execute(due)).all()) == 100

    policy = Policy(
        classes={"standard": RetentionClass("standard", 3650)},
        default="standard",
        rules=(),
        grace=timedelta(days=30),
        recovery=timedelta(days=30),
        forever_lock=timedelta(days=365),
    )
    results = {
        "search, first page (50)": await _time(runs, first_page),
        "search, 11 pages deep": await _time(max(runs // 4, 5), deep_page),
        "search by case": await _time(runs, by_case),
        "lookup by sha256": await _time(runs, by_digest),
        "search by filename": await _time(runs, by_filename),
        "evidence by id": await _time(runs, lookup),
        "custody timeline, big case": await _time(max(runs // 4, 5), timeline),
        "usage report": await _time(3, lambda n: usage.report(engine)),
        "purge dry run": await _time(3, lambda n: purge.plan(engine, policy)),
        "scrub, next 100 due": await _time(max(runs // 4, 5), scrub_page),
    }
    return results


async def _one(size: int, admin_url: str, runs: int) -> dict[str, tuple[float, float]]:
    name = f"avidence_catalog_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    catalog = Catalog(normalize_database_url(url))
    try:
        await catalog.migrate()
        began = time.perf_counter()
        world = await _fill(url, size)
        print(f"{size:,} records filled in {time.perf_counter() - began:.0f} s", flush=True)
        return await _measure(catalog, world, runs)
    finally:
        await catalog.close()
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="PostgreSQL admin URL")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {size: await _one(size, args.database, args.runs) for size in sizes}
    print("| query | " + " | ".join(f"{s:,}: p50 / p95 ms" for s in sizes) + " | growth p95 |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for query in results[sizes[0]]:
        cells = [f"{results[s][query][0]:.1f} / {results[s][query][1]:.1f}" for s in sizes]
        growth = results[sizes[-1]][query][1] / max(results[sizes[0]][query][1], 1e-6)
        print(f"| {query} | " + " | ".join(cells) + f" | {growth:.1f}x |")


if __name__ == "__main__":
    asyncio.run(main())
