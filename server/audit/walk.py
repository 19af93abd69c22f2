"""Walking the audit chain at the speed the database hands rows over.

`entries.entry_hash` re-encodes a parsed row as canonical JSON, which costs more than reading
it. Here the same bytes are assembled from the stored columns: the database formats the time
(`YYYY-MM-DDTHH:MM:SS.ffffffZ`), strings are JSON-quoted with the C encoder, and the stored
`details` text is used as it is, since the catalog writes JSON columns in the canonical form
(`catalog.db.compact_json`). The bytes are then hashed here with hashlib: the database never
computes a hash the verifier relies on, so an insider who can change its functions cannot make an
edited row pass.

Why splicing the stored text cannot hide an edit: every piece but `details` is a JSON literal
that ends where its syntax says (a quoted string, `null`, an integer checked against the
expected sequence number, a hex hash checked against the previous entry's). `details` is
checked to be exactly one JSON value before it is used, so it too ends where its syntax says,
and the assembled bytes parse back to exactly these columns. Equal bytes, equal hash; a changed
column, other bytes. A row whose text is not canonical (written before the catalog wrote JSON
canonically, or by hand) is hashed by the definition instead, so it is never wrongly refused.

Rows come in keyset pages (`seq > last ORDER BY seq LIMIT n`) through the driver's own
connection, so the cost per entry does not grow with the log and the next page is read while
this one is hashed. A long walk is split in two halves, the second walked by another process
(`walk_range`, on its own connection) while this one walks the first: hashing is CPU work, and
the machine has more than one core. The halves are joined by checking that the second's first
entry follows the first's last.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from json.scanner import make_scanner
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .entries import GENESIS, SHA256, SM3, SWITCH, entry_hash, following, iso

if TYPE_CHECKING:  # the worker process imports this module without SQLAlchemy
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("avidence.audit.walk")

PAGE = 20_000
SPLIT = 500_000  # walks longer than this are split between two processes
END = 2**63 - 1  # no upper bound

_COLUMNS = {
    # SQLite keeps `time` as text `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) and JSON as text.
    "sqlite": """SELECT seq, replace(time, ' ', 'T') || 'Z', actor, action, object, case_id,
  details, client, prev_hash, hash, hash_algorithm FROM audit_log
WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?""",
    # PostgreSQL's json type keeps the text exactly as written.
    "postgresql": """SELECT seq,
  to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor, action, object,
  case_id, details::text, client, prev_hash, hash, hash_algorithm
FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3""",
}

# The C scanner: one JSON value from an offset, and where it ends (typeshed mistypes its argument).
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

Row = Sequence[Any]
Fetch = Callable[[int, int], Awaitable[Sequence[Row]]]


@dataclass(slots=True)
class Walk:
    """How far the chain held: the last good entry, and the hashes at the asked-for seqs."""

    last_seq: int
    last_hash: str
    entries: int = 0
    heads: dict[int, str] = field(default_factory=dict)
    problem: str | None = None
    bad_seq: int | None = None
    first_prev: str | None = None  # the first entry's stored prev_hash (a half walked alone)
    first_seq: int | None = None
    # The chain hash the next entry must use; None: the first entry's own (the log's first
    # entry, or a half walked alone, whose first algorithm `join` checks).
    algorithm: str | None = None
    first_algorithm: str | None = None
    algorithms: dict[int, str] = field(default_factory=dict)  # at the seqs in `heads`

    def fail(self, problem: str, seq: int) -> None:
        self.problem, self.bad_seq = problem, seq


def _fetcher(dialect: str, driver: Any) -> Fetch:
    """`fetch(after, until)`: the next page of rows after seq `after` up to `until`, straight
    from the driver (aiosqlite, asyncpg)."""
    query = _COLUMNS[dialect]
    if dialect == "sqlite":

        async def page(after: int, until: int) -> Sequence[Row]:
            cursor = await driver.execute(query, (after, until, PAGE))
            try:
                rows: Sequence[Row] = await cursor.fetchall()
                return rows
            finally:
                await cursor.close()

        return page

    async def pg_page(after: int, until: int) -> Sequence[Row]:
        rows: Sequence[Row] = await driver.fetch(query, after, until, PAGE)
        return rows

    return pg_page


def _by_definition(row: Row) -> str | None:
    """The entry hash by `entries.entry_hash`, parsing the columns; None when they cannot be
    parsed at all (a time or details an insider typed in)."""
    number, time, actor, action, obj, case, details, client, prev_hash, _, named = row
    try:
        moment = datetime.fromisoformat(time[:-1] if time.endswith("Z") else time)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        body = {
            "seq": number,
            "time": iso(moment),
            "actor": actor,
            "action": action,
            "object": obj,
            "case_id": case,
            "details": json.loads(details),
            "client": client,
            "prev_hash": prev_hash,
        }
        if named is not None:
            body["hash_algorithm"] = named
        return entry_hash(body)
    except (AttributeError, TypeError, ValueError):
        return None


def check(rows: Sequence[Row], walk: Walk, want: set[int]) -> bool:
    """Hash and link `rows` onto `walk`, each from its stored text or else by the definition,
    with the algorithm the chain uses there; False (with the problem set) at the first that
    does not fit. This loop is the whole cost of `audit verify`: keep it to C calls."""
    # A fresh SM3 hasher is a copy of an empty one: copying skips the lookup by name.
    enc, scan, sha256, sm3 = encode_basestring, _scan, hashlib.sha256, hashlib.new(SM3).copy
    seq, prev, heads, good = walk.last_seq, walk.last_hash, walk.heads, 0
    algorithm = walk.algorithm
    for row in rows:
        number, time, actor, action, obj, case, details, client, prev_hash, digest, named = row
        seq += 1
        if number != seq:
            walk.fail(f"entry {seq} is missing or out of order", seq)
            break
        if prev_hash != prev:
            walk.fail(f"entry {seq} does not follow entry {seq - 1}", seq)
            break
        if named is None:
            used = SHA256
        elif named == SM3:
            used = SM3
        else:  # 'sha256' too: SHA-256 entries name no algorithm (`entries.stored`)
            walk.fail(f"entry {seq} names an unknown chain hash algorithm {named!r}", seq)
            break
        if used != algorithm:
            if algorithm is not None:
                walk.fail(
                    f"entry {seq} is hashed with {used}, but the chain uses {algorithm} there: "
                    "the algorithm changes only by an audit.chain_switched entry",
                    seq,
                )
                break
            algorithm = walk.first_algorithm = used
        try:
            text = (
                f'{{"action":{enc(action)},"actor":{enc(actor)},'
                f'"case_id":{"null" if case is None else enc(case)},'
                f'"client":{"null" if client is None else enc(client)},'
                f'"details":{details},'
                f'{"" if named is None else f""""hash_algorithm":"{named}","""}'
                f'"object":{enc(obj)},"prev_hash":"{prev_hash}",'
                f'"seq":{seq},"time":"{time}"}}'
            ).encode()
            if named is None:
                hashed = sha256(text)
            else:  # SM3, the only other name that gets here
                hashed = sm3()
                hashed.update(text)
            fits = scan(details, 0)[1] == len(details) and hashed.hexdigest() == digest
        except (StopIteration, TypeError, ValueError):
            fits = False
        if not fits and _by_definition(row) != digest:
            walk.fail(f"entry {seq} was altered", seq)
            break
        if action == SWITCH:
            try:
                algorithm = following(used, action, json.loads(details))
            except ValueError as exc:
                walk.fail(f"entry {seq} switches the chain hash wrongly: {exc}", seq)
                break
        if seq in want:
            heads[seq] = digest
            walk.algorithms[seq] = used
        prev = digest
        good += 1
    walk.entries += good
    walk.last_seq, walk.last_hash, walk.algorithm = walk.last_seq + good, prev, algorithm
    return walk.problem is None


async def _walk_pages(fetch: Fetch, state: Walk, want: set[int], until: int) -> None:
    ahead: asyncio.Future[Sequence[Row]] | None = asyncio.ensure_future(
        fetch(state.last_seq, until)
    )
    try:
        while ahead is not None and (rows := await ahead):
            if state.first_seq is None:
                state.first_seq = rows[0][0]
                if state.first_prev is None:  # a second half: joined to the first by `join`
                    state.first_prev = state.last_hash = rows[0][8]
            # The next page is read (by the database, the driver's thread) while this one is
            # hashed; one query at a time on the connection. A seq that is not a number ends
            # the walk in `check`.
            last = rows[-1][0]
            ahead = asyncio.ensure_future(fetch(last, until)) if type(last) is int else None
            if not check(rows, state, want):
                break
    finally:
        if ahead is not None:
            with contextlib.suppress(Exception):
                await ahead  # the query finishes before the connection is returned


async def _walk_engine(
    engine: AsyncEngine, state: Walk, want: set[int], until: int
) -> Walk:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await _walk_pages(_fetcher(conn.dialect.name, raw.driver_connection), state, want, until)
    return state


def walk_range(dialect: str, dsn: str, after: int, until: int, want: set[int]) -> Walk:
    """Walk entries `after < seq <= until` on a connection of its own (in a worker process),
    starting from the first entry's stored prev_hash; the caller joins it to the walk before."""
    if dialect == "sqlite":
        dsn = Path(dsn).resolve().as_uri() + "?mode=ro"
    return asyncio.run(_walk_range(dialect, dsn, after, until, want))


async def _walk_range(dialect: str, dsn: str, after: int, until: int, want: set[int]) -> Walk:
    state = Walk(after, "")
    if dialect == "sqlite":
        import aiosqlite

        async with aiosqlite.connect(dsn, uri=True) as driver:
            await _walk_pages(_fetcher(dialect, driver), state, want, until)
        return state
    import asyncpg

    driver = await asyncpg.connect(dsn)
    try:
        await _walk_pages(_fetcher(dialect, driver), state, want, until)
    finally:
        await driver.close()
    return state


async def walk(
    engine: AsyncEngine,
    *,
    after_seq: int = 0,
    after_hash: str = GENESIS,
    after_algorithm: str | None = None,
    want: set[int],
) -> Walk:
    """Check every entry after `after_seq` (whose hash is `after_hash`, and after which the
    chain hashes with `after_algorithm`; None from the start) to the end of the log, keeping
    the hashes at the seqs in `want` (the checkpoints to compare)."""
    state = Walk(after_seq, after_hash, first_prev=after_hash, algorithm=after_algorithm)
    async with engine.connect() as conn:
        end = (await conn.exec_driver_sql("SELECT max(seq) FROM audit_log")).scalar() or 0
    dialect, url = engine.dialect.name, engine.url
    alone = dialect == "sqlite" and url.database in (None, "", ":memory:")
    if alone or not isinstance(end, int) or end - after_seq < SPLIT or (os.cpu_count() or 1) < 2:
        return await _walk_engine(engine, state, want, END)
    middle = after_seq + (end - after_seq) // 2
    dsn = (
        str(url.database)
        if dialect == "sqlite"
        else url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    spawn = multiprocessing.get_context("spawn")  # no copy of this process's loop or threads
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        second = asyncio.get_running_loop().run_in_executor(
            pool, walk_range, dialect, dsn, middle, END, want
        )
        try:
            await _walk_engine(engine, state, want, middle)
        finally:
            try:
                later = await second
            except (BrokenProcessPool, OSError) as exc:  # no worker: walk it here instead
                log.warning("audit.walk_worker_failed error=%r", exc)
                later = await _walk_engine(engine, Walk(middle, ""), want, END)
    return join(state, later, middle)


def join(first: Walk, second: Walk, middle: int) -> Walk:
    """The walk of both halves, split after entry `middle`, with the first problem found."""
    if first.problem is not None:
        return first
    if first.last_seq != middle:
        first.fail(f"entry {first.last_seq + 1} is missing or out of order", first.last_seq + 1)
        return first
    joined = Walk(
        second.last_seq,
        second.last_hash,
        first.entries + second.entries,
        first.heads | second.heads,
        second.problem,
        second.bad_seq,
        algorithm=second.algorithm,
        algorithms=first.algorithms | second.algorithms,
    )
    if second.first_seq is None:  # nothing after the middle
        joined.last_seq, joined.last_hash = first.last_seq, first.last_hash
        joined.algorithm = first.algorithm
    elif second.first_seq == middle + 1 and second.first_prev != first.last_hash:
        joined.entries = first.entries  # as a walk in one piece would stop there
        joined.problem = None
        joined.fail(f"entry {middle + 1} does not follow entry {middle}", middle + 1)
    elif second.first_seq == middle + 1 and second.first_algorithm not in (None, first.algorithm):
        joined.entries = first.entries
        joined.problem = None
        joined.fail(
            f"entry {middle + 1} is hashed with {second.first_algorithm}, but the chain uses "
            f"{first.algorithm} there: the algorithm changes only by an audit.chain_switched "
            "entry",
            middle + 1,
        )
    return joined
