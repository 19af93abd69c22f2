"""Admin API for retention, holds, purges, usage and quotas.

Admins act; auditors read (classes, a record's retention, holds, the purge plan, usage,
quotas). `setup` also checks the retention settings when the app is built, so a bad class
stops the server before it listens, and at start-up reports what the store can lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from avidence.storage.base import LockSupport

from ..auth import require_site
from ..digits import decimal
from ..errors import BadRequest, NotFound
from ..evidence import records as evidence_db
from ..requests import json_body, known_fields
from ..state import CATALOG, SETTINGS, STORE
from ..tokens import Role
from . import changes, holds, locks, purge, quotas, records, usage
from .classes import Policy, load_policy

log = logging.getLogger("avidence.retention")

ADMIN: tuple[Role, ...] = ("admin",)
READERS: tuple[Role, ...] = ("admin", "auditor")


@dataclass(slots=True)
class Detected:
    """What the store can lock, filled in at start-up (the app is frozen by then)."""

    support: LockSupport = field(default_factory=lambda: LockSupport(object_lock=False))


POLICY = web.AppKey("retention_policy", Policy)
LOCKS = web.AppKey("lock_support", Detected)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name}: a non-empty string is required")
    return value


def _size(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{name}: a number of bytes >= 0, or null for no limit")
    return value


async def get_policy(request: web.Request) -> web.Response:
    await require_site(request, *READERS)
    policy, support = request.app[POLICY], request.app[LOCKS].support
    return web.json_response(
        {
            "classes": [c.to_json() for c in policy.classes.values()],
            "default": policy.default,
            "rules": [{"class": r.name, "match": dict(r.match)} for r in policy.rules],
            "grace_days": policy.grace.days,
            "recovery_days": policy.recovery.days,
            "storage": {
                "object_lock": support.object_lock,
                "default_mode": support.default_mode,
                "default_days": support.default_days,
            },
        }
    )


async def get_retention(request: web.Request) -> web.Response:
    await require_site(request, *READERS)
    engine, evidence_id = request.app[CATALOG].engine, request.match_info["evidence_id"]
    await records.backfill(engine, request.app[POLICY], now=records.utcnow())
    current = await records.get(engine, evidence_id)
    if current is None:
        raise NotFound("no such evidence")
    record = await evidence_db.get(engine, evidence_id)
    assert record is not None
    covering = [
        h.to_json()
        for h in await holds.listing(engine)
        if (h.scope, h.target) in (("evidence", evidence_id), ("case", record.case_id))
    ]
    return web.json_response(
        {
            "retention": current.to_json(),
            "holds": covering,
            "tombstone": await purge.tombstone(engine, evidence_id),
        }
    )


async def put_retention(request: web.Request) -> web.Response:
    principal = await require_site(request, *ADMIN)
    body = await json_body(request, required=True)
    override = body.get("override", False)
    if not isinstance(override, bool):
        raise BadRequest("override: true or false")
    # Refusals are DomainErrors; the error table answers them by their code.
    changed = await changes.change_class(
        request.app[CATALOG].engine,
        request.app[STORE],
        request.app[POLICY],
        request.match_info["evidence_id"],
        new_class=_text(body, "class"),
        actor=principal.label,
        reason=_text(body, "reason"),
        override=override,
    )
    return web.json_response({"retention": changed.to_json()})


async def get_holds(request: web.Request) -> web.Response:
    await require_site(request, *READERS)
    everything = request.query.get("all", "") in ("1", "true", "yes")
    found = await holds.listing(request.app[CATALOG].engine, include_released=everything)
    return web.json_response({"holds": [h.to_json() for h in found]})


async def post_hold(request: web.Request) -> web.Response:
    principal = await require_site(request, *ADMIN)
    body = await json_body(request, required=True)
    hold = await holds.add(
        request.app[CATALOG].engine,
        request.app[STORE],
        scope=_text(body, "scope"),
        target=_text(body, "target"),
        reason=_text(body, "reason"),
        actor=principal.label,
    )
    return web.json_response({"hold": hold.to_json()}, status=201)


async def release_hold(request: web.Request) -> web.Response:
    principal = await require_site(request, *ADMIN)
    body = await json_body(request, required=True)
    hold = await holds.remove(
        request.app[CATALOG].engine,
        request.app[STORE],
        request.match_info["hold_id"],
        reason=_text(body, "reason"),
        actor=principal.label,
    )
    return web.json_response({"hold": hold.to_json()})


async def get_purge(request: web.Request) -> web.Response:
    """The dry run: what a purge would delete and purge now, and what holds or locks keep."""
    await require_site(request, *READERS)
    planned = await purge.plan(request.app[CATALOG].engine, request.app[POLICY])
    return web.json_response(planned.to_json())


async def post_purge(request: web.Request) -> web.Response:
    principal = await require_site(request, *ADMIN)
    body = await json_body(request, required=True)
    outcomes = await purge.apply(
        request.app[CATALOG].engine,
        request.app[STORE],
        request.app[POLICY],
        actor=principal.label,
        reason=_text(body, "reason"),
    )
    return web.json_response({"outcomes": [o.to_json() for o in outcomes]})


async def post_restore(request: web.Request) -> web.Response:
    principal = await require_site(request, *ADMIN)
    body = await json_body(request, required=True)
    restored = await purge.restore(
        request.app[CATALOG].engine,
        request.app[POLICY],
        request.match_info["evidence_id"],
        actor=principal.label,
        reason=_text(body, "reason"),
    )
    return web.json_response({"retention": restored.to_json()})


async def get_usage(request: web.Request) -> web.Response:
    await require_site(request, *READERS)
    raw = request.query.get("days", "30")
    days = decimal(raw)
    if days is None or not 1 <= days <= 366:
        raise BadRequest("days: a whole number from 1 to 366")
    engine = request.app[CATALOG].engine
    await records.backfill(engine, request.app[POLICY], now=records.utcnow())
    return web.json_response(await usage.report(engine, days=days))


async def get_quotas(request: web.Request) -> web.Response:
    await require_site(request, *READERS)
    listed = await quotas.listing(request.app[CATALOG].engine, request.app[SETTINGS])
    return web.json_response({"quotas": listed})


async def put_quota(request: web.Request) -> web.Response:
    principal = await require_site(request, *ADMIN)
    body = known_fields(await json_body(request, required=True), "max_bytes", "max_upload")
    try:
        limit = await quotas.set_limit(
            request.app[CATALOG].engine,
            request.match_info["scope"],
            max_bytes=_size(body, "max_bytes"),
            max_upload=_size(body, "max_upload"),
            actor=principal.label,
        )
    except quotas.QuotaError as exc:
        raise BadRequest(str(exc)) from None
    return web.json_response({"quota": limit.to_json()})


async def _detect(app: web.Application) -> None:
    """Report what the store can lock, warn when classes ask for more, backfill old records."""
    support = await locks.support(app[STORE])
    app[LOCKS].support = support
    policy = app[POLICY]
    log.info(
        "storage.capabilities store=%s object_lock=%s default_mode=%s default_days=%s",
        app[STORE].name,
        support.object_lock,
        support.default_mode,
        support.default_days,
    )
    wanting = sorted(c.name for c in policy.classes.values() if c.lock)
    if wanting and not support.object_lock:
        log.warning(
            "retention.no_object_lock classes=%s: the store cannot lock objects; retention "
            "is enforced by the catalog only",
            ",".join(wanting),
        )
    filled = await records.backfill(app[CATALOG].engine, policy, now=records.utcnow())
    if filled:
        log.info("retention.backfilled records=%s", filled)


def setup(app: web.Application) -> None:
    app[POLICY] = load_policy(app[SETTINGS])  # ConfigError here stops `serve` with one line
    app[LOCKS] = Detected()
    app.on_startup.append(_detect)
    add = app.router
    add.add_get("/api/admin/retention", get_policy)
    add.add_get("/api/admin/evidence/{evidence_id}/retention", get_retention)
    add.add_put("/api/admin/evidence/{evidence_id}/retention", put_retention)
    add.add_post("/api/admin/evidence/{evidence_id}/restore", post_restore)
    add.add_get("/api/admin/holds", get_holds)
    add.add_post("/api/admin/holds", post_hold)
    add.add_post("/api/admin/holds/{hold_id}/release", release_hold)
    add.add_get("/api/admin/purge", get_purge)
    add.add_post("/api/admin/purge", post_purge)
    add.add_get("/api/admin/usage", get_usage)
    add.add_get("/api/admin/quotas", get_quotas)
    add.add_put("/api/admin/quotas/{scope}", put_quota)
