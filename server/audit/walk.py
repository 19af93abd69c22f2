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
this one is hashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from json.scanner import make_scanner
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .entries import GENESIS, entry_hash, iso

PAGE = 20_000

_COLUMNS = {
    # SQLite keeps `time` as text `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) and JSON as text.
    "sqlite": """SELECT seq, replace(time, ' ', 'T') || 'Z', actor, action, object, case_id,
  details, client, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?""",
    # PostgreSQL's json type keeps the text exactly as written.
    "postgresql": """SELECT seq,
  to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor, action, object,
  case_id, details::text, client, prev_hash, hash
FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2""",
}

# The C scanner: one JSON value from an offset, and where it ends (typeshed mistypes its argument).
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

Row = Sequence[Any]
Fetch = Callable[[int], Awaitable[Sequence[Row]]]


@dataclass(slots=True)
class Walk:
    """How far the chain held: the last good entry, and the hashes at the asked-for seqs."""

    last_seq: int
    last_hash: str
    entries: int = 0
    heads: dict[int, str] = field(default_factory=dict)
    problem: str | None = None
    bad_seq: int | None = None

    def fail(self, problem: str, seq: int) -> None:
        self.problem, self.bad_seq = problem, seq


def _fetcher(dialect: str, driver: Any) -> Fetch:
    """`fetch(after)`: the next page of rows after seq `after`, straight from the driver."""
    query = _COLUMNS[dialect]
    if dialect == "sqlite":  # aiosqlite

        async def page(after: int) -> Sequence[Row]:
            cursor = await driver.execute(query, (after, PAGE))
            try:
                rows: Sequence[Row] = await cursor.fetchall()
                return rows
            finally:
                await cursor.close()

        return page

    async def pg_page(after: int) -> Sequence[Row]:  # asyncpg
        rows: Sequence[Row] = await driver.fetch(query, after, PAGE)
        return rows

    return pg_page


def _by_definition(row: Row) -> str | None:
    """The entry hash by `entries.entry_hash`, parsing the columns; None when they cannot be
    parsed at all (a time or details an insider typed in)."""
    number, time, actor, action, obj, case, details, client, prev_hash, _ = row
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
        return entry_hash(body)
    except (AttributeError, TypeError, ValueError):
        return None


def check(rows: Sequence[Row], walk: Walk, want: set[int]) -> bool:
    """Hash and link `rows` onto `walk`, each from its stored text or else by the definition;
    False (with the problem set) at the first that does not fit. This loop is the whole cost
    of `audit verify`: keep it to C calls."""
    enc, scan, sha256 = encode_basestring, _scan, hashlib.sha256
    seq, prev, heads, good = walk.last_seq, walk.last_hash, walk.heads, 0
    for row in rows:
        number, time, actor, action, obj, case, details, client, prev_hash, digest = row
        seq += 1
        if number != seq:
            walk.fail(f"entry {seq} is missing or out of order", seq)
            break
        if prev_hash != prev:
            walk.fail(f"entry {seq} does not follow entry {seq - 1}", seq)
            break
        try:
            fits = scan(details, 0)[1] == len(details) and sha256(
                f'{{"action":{enc(action)},"actor":{enc(actor)},'
                f'"case_id":{"null" if case is None else enc(case)},'
                f'"client":{"null" if client is None else enc(client)},'
                f'"details":{details},"object":{enc(obj)},"prev_hash":"{prev_hash}",'
                f'"seq":{seq},"time":"{time}"}}'.encode()
            ).hexdigest() == digest
        except (StopIteration, TypeError, ValueError):
            fits = False
        if not fits and _by_definition(row) != digest:
            walk.fail(f"entry {seq} was altered", seq)
            break
        if seq in want:
            heads[seq] = digest
        prev = digest
        good += 1
    walk.entries += good
    walk.last_seq, walk.last_hash = walk.last_seq + good, prev
    return walk.problem is None


async def walk(
    engine: AsyncEngine, *, after_seq: int = 0, after_hash: str = GENESIS, want: set[int]
) -> Walk:
    """Check every entry after `after_seq` (whose hash is `after_hash`) to the end of the log,
    keeping the hashes at the seqs in `want` (the checkpoints to compare)."""
    state = Walk(after_seq, after_hash)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        fetch = _fetcher(conn.dialect.name, raw.driver_connection)
        ahead: asyncio.Future[Sequence[Row]] | None = asyncio.ensure_future(fetch(after_seq))
        try:
            while ahead is not None and (rows := await ahead):
                # The next page is read (by the database, the driver's thread) while this
                # one is hashed; one query at a time on the connection. A seq that is not a
                # number ends the walk in `check`.
                last = rows[-1][0]
                ahead = asyncio.ensure_future(fetch(last)) if type(last) is int else None
                if not check(rows, state, want):
                    break
        finally:
            if ahead is not None:
                with contextlib.suppress(Exception):
                    await ahead  # the query finishes before the connection is returned
    return state
