"""Retention test helpers: a policy file, a movable clock, uploads with any metadata, and a
look at what the catalog and audit log hold, for the retention, purge and quota tests."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from avidence.server.catalog.schema import audit_log, evidence_retention, jobs, tombstones
from avidence.server.retention.classes import Policy, load_policy
from avidence.storage.base import Store

from support.servers import Api, make_api, metadata

OCTET = "application/offset+octet-stream"

# brief: kept a day, no storage lock; long: ten days under a GOVERNANCE lock.
POLICY = """
retention_default_class = "brief"
retention_grace_days = 1
purge_recovery_days = 2

[retention.classes.brief]
days = 1

[retention.classes.long]
days = 10
lock = "governance"

[retention.classes.forever]
days = "forever"

[[retention.rules]]
class = "long"
match = { kind = "interrogation" }
"""


def policy_file(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "avidence.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Clock:
    """An injected clock: tests move it, nothing sleeps."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def clock() -> Clock:
    return Clock(datetime.now(UTC))


async def retention_api(
    tmp_path: Path, store: Store, *, database: str | None = None, **settings: Any
) -> AsyncIterator[Api]:
    """`make_api` with the test policy file (unless `config_file` is given)."""
    settings.setdefault("config_file", policy_file(tmp_path))
    async for api in make_api(tmp_path, store, database=database, **settings):
        yield api


def policy_of(api: Api) -> Policy:
    return load_policy(api.settings)


# The elements the built-in `interrogation` kind requires (server/kinds/builtin.py).
INTERROGATION = {
    "subject": "Zhang San",
    "interviewers": "Wang Wu, Zhao Liu",
    "room": "R-3",
    "start": "2026-03-01T09:30:00+08:00",
    "end": "2026-03-01T11:05:00+08:00",
}


async def upload(api: Api, data: bytes, *, token: str | None = None, **fields: str) -> str:
    """Upload `data` with creation-with-upload and the given metadata; the evidence id.
    An interrogation recording gets the elements its kind requires unless given."""
    fields.setdefault("case", "R-1")
    if fields.get("kind") == "interrogation":
        fields = {**INTERROGATION, **fields}
    headers = {
        **api.auth(token),
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(**fields),
        "Content-Type": OCTET,
    }
    response = await api.client.post("/files/", data=io.BytesIO(data), headers=headers)
    assert response.status == 201, await response.text()
    return str(response.headers["Avidence-Evidence-Id"])


async def audit_count(api: Api, action: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(audit_log)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    async with api.catalog.engine.connect() as conn:
        return int((await conn.execute(query)).scalar() or 0)


async def snapshot(api: Api) -> tuple[Any, ...]:
    """Everything a purge may change in the catalog, to compare before and after a dry run."""
    async with api.catalog.engine.connect() as conn:
        kept = (await conn.execute(sa.select(evidence_retention))).all()
        stones = (await conn.execute(sa.select(tombstones))).all()
        entries = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar()
    return tuple(kept), tuple(stones), entries


async def wait_for_jobs(api: Api, *, within: float = 60.0) -> None:
    """Until every media job is done or failed (the embedded worker runs them)."""
    deadline = time.monotonic() + within
    while True:
        async with api.catalog.engine.connect() as conn:
            states = list((await conn.execute(sa.select(jobs.c.state))).scalars())
        if states and all(s in ("done", "failed") for s in states):
            assert set(states) == {"done"}, states
            return
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.1)
