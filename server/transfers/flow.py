"""Creating, acknowledging and rejecting transfers; each step is audited, none can be skipped.

Errors are `TransferError` (the caller's request is wrong, 400), `TransferConflict` (the state
forbids it, 409) and `TransferBlocked` (the manifest or the digests do not check out, 409).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import PublicKeys

from ..agencies import records as agencies_db
from ..agencies.access import holding, narrow, normalize_limits
from ..audit import log as audit
from ..audit import unit
from ..audit.events import (
    TransferAcknowledged,
    TransferCreated,
    TransferEvent,
    TransferRejected,
)
from ..audit.events import TransferBlocked as TransferBlockedEvent
from ..audit.unit import unit_of_work
from ..cases import records as cases_db
from ..catalog.schema_exchange import holdings
from ..evidence import records as evidence_db
from ..signing import Signer
from . import checks, manifest, records
from .records import Transfer

T = TypeVar("T", bound=TransferEvent)


class TransferError(ValueError):
    """A malformed request: unknown agency, items not in the case, a bad note or limits."""


class TransferConflict(Exception):
    """The transfer is not pending (already acknowledged or rejected)."""


class TransferBlocked(Exception):
    """The acknowledgement is refused: `problems` names each failed check, `report` says
    what the check covered."""

    def __init__(self, problems: list[str], *, report: checks.Report | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.report = report


@dataclass(slots=True, frozen=True)
class Actor:
    """Who acts: the audit label, the token (if any) and the agency it acts for."""

    label: str
    agency_id: str
    token_id: str | None = None
    client: str | None = None


def _text(name: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise TransferError(f"{name}: text of at most {limit} characters")
    return value.strip() or None


async def create(
    engine: AsyncEngine,
    signer: Signer,
    *,
    case_id: str,
    to: str,
    actor: Actor,
    items: list[str] | None = None,
    note: str | None = None,
    limits: Any = None,
) -> Transfer:
    """Sign a manifest of the case's items (all the sender holds, or `items`) for agency `to`."""
    case = await cases_db.get(engine, case_id, agency_id=actor.agency_id)
    if case is None:
        raise LookupError(f"no such case {case_id}")
    sender = await agencies_db.by_id(engine, actor.agency_id)
    receiver = await agencies_db.resolve(engine, to) if isinstance(to, str) else None
    if receiver is None:
        raise TransferError(f"to: no agency {to!r}")
    if sender is None or receiver.id == sender.id:
        raise TransferError("to: a transfer goes to another agency")
    try:
        checked_limits = normalize_limits(limits)
    except ValueError as exc:
        raise TransferError(str(exc)) from None
    held = await cases_db.evidence_ids(engine, case.id, agency_id=actor.agency_id)
    if items is None:
        chosen = held
    else:
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise TransferError("items: a list of evidence ids")
        chosen = list(dict.fromkeys(items))
        unknown = [i for i in chosen if i not in held]
        if unknown:
            raise TransferError(f"items not in this case for your agency: {', '.join(unknown)}")
    if not chosen:
        raise TransferError("the case holds no evidence to transfer")
    for evidence_id in chosen:  # items the sender only holds pass on under its own limits
        given = await holding(engine, actor.agency_id, evidence_id)
        if given is not None:
            checked_limits = narrow(checked_limits, given)
    entries = []
    for evidence_id in chosen:
        record = await evidence_db.get(engine, evidence_id)
        assert record is not None
        if record.integrity == "failed":
            raise TransferConflict(f"{evidence_id} failed its integrity check; it cannot be sent")
        entries.append(await manifest.item_entry(engine, record))
    now = datetime.now(UTC)
    transfer_id = "trf_" + secrets.token_hex(12)
    checked_note = _text("note", note, 2000)
    body: dict[str, Any] = {
        "type": manifest.MANIFEST_TYPE,
        "transfer_id": transfer_id,
        "case": {"id": case.id, "number": case.number, "title": case.title},
        "from": {"id": sender.id, "name": sender.name},
        "to": {"id": receiver.id, "name": receiver.name},
        "created_by": actor.label,
        "created_at": manifest.iso(now),
        "note": checked_note,
        "limits": checked_limits,
        "items": entries,
        # The sender's latest signed log head: the receiver's acknowledgement countersigns it,
        # so each agency holds proof of how far the other's audit log had come.
        "sender_log": await audit.latest_checkpoint(engine),
    }
    transfer = Transfer(
        id=transfer_id,
        case_id=case.id,
        from_agency=sender.id,
        to_agency=receiver.id,
        state="pending",
        note=checked_note,
        reason=None,
        limits=checked_limits,
        manifest=signer.sign("manifest", body),
        acknowledgement=None,
        created_by=actor.label[:200],
        created_at=now,
        decided_by=None,
        decided_at=None,
    )
    async with unit_of_work(engine) as unit:
        await records.insert(unit.conn, transfer)
        unit.record(_event(TransferCreated, transfer, actor, case.number, items=chosen))
    return transfer


async def _pending(engine: AsyncEngine, transfer_id: str, actor: Actor) -> Transfer:
    transfer = await records.get(engine, transfer_id, agency_id=actor.agency_id)
    if transfer is None or transfer.to_agency != actor.agency_id:
        raise LookupError(f"no such transfer {transfer_id} in your inbox")
    if transfer.state != "pending":
        raise TransferConflict(f"the transfer is already {transfer.state}")
    return transfer


async def acknowledge(
    engine: AsyncEngine,
    signer: Signer,
    *,
    transfer_id: str,
    actor: Actor,
    checked: Mapping[str, Any] | None = None,
    pinned: PublicKeys | None = None,
) -> Transfer:
    """Check and sign the acknowledgement (see `acknowledge_checked`)."""
    transfer, _ = await acknowledge_checked(
        engine, signer, transfer_id=transfer_id, actor=actor, checked=checked, pinned=pinned
    )
    return transfer


async def acknowledge_checked(
    engine: AsyncEngine,
    signer: Signer,
    *,
    transfer_id: str,
    actor: Actor,
    checked: Mapping[str, Any] | None = None,
    pinned: PublicKeys | None = None,
) -> tuple[Transfer, checks.Report]:
    """Check (`checks.check`) and sign the acknowledgement; the receiver then holds the items
    and the case. `pinned` (the `trusted_keys` history) decides which keys the manifest may be
    signed by. A refusal is audited and raises TransferBlocked carrying the report; on
    success the report says what the acknowledgement rests on."""
    transfer = await _pending(engine, transfer_id, actor)
    report = await checks.check(engine, transfer, checked=checked, pinned=pinned)
    if not report.ok:
        await unit.record(
            engine, _event(TransferBlockedEvent, transfer, actor, None, problems=report.problems)
        )
        raise TransferBlocked(report.problems, report=report)
    body = report.body
    now = datetime.now(UTC)
    document = signer.sign(
        "acknowledgement",
        {
            "type": manifest.ACK_TYPE,
            "transfer_id": transfer.id,
            "manifest_sha256": manifest.fingerprint(transfer.manifest),
            "case": body["case"],
            "from": body["from"],
            "to": body["to"],
            "acknowledged_by": actor.label,
            "acknowledged_at": manifest.iso(now),
            "items": [item.to_json() for item in report.items],
            "sender_log": manifest.countersign(body.get("sender_log")),
        },
    )
    async with unit_of_work(engine) as work:
        conn = work.conn
        if not await records.decide(
            conn,
            transfer.id,
            state="acknowledged",
            acknowledgement=document,
            decided_by=actor.label[:200],
            decided_at=now,
        ):
            raise TransferConflict("the transfer was decided meanwhile")
        for evidence_id in transfer.evidence_ids:
            await _hold(conn, transfer, evidence_id, now)
        await cases_db.add_holder(conn, case_id=transfer.case_id, agency_id=transfer.to_agency)
        decided = replace(transfer, state="acknowledged")
        work.record(_event(TransferAcknowledged, decided, actor, body["case"]["number"]))
    fresh = await records.get(engine, transfer.id)
    assert fresh is not None
    return fresh, report


async def _hold(conn: Any, transfer: Transfer, evidence_id: str, now: datetime) -> None:
    """The receiver holds the item under the sender's limits (its owner needs no holding)."""
    record = await evidence_db.get(conn, evidence_id)
    if record is not None and record.agency_id == transfer.to_agency:
        return  # a return (退回): the owner gets its own item back
    where = (holdings.c.agency_id == transfer.to_agency) & (holdings.c.evidence_id == evidence_id)
    values = {"transfer_id": transfer.id, "limits": transfer.limits, "acquired_at": now}
    if (await conn.execute(sa.select(holdings.c.evidence_id).where(where))).first() is None:
        await conn.execute(
            holdings.insert().values(
                agency_id=transfer.to_agency, evidence_id=evidence_id, **values
            )
        )
    else:
        await conn.execute(holdings.update().where(where).values(**values))


async def reject(engine: AsyncEngine, *, transfer_id: str, actor: Actor, reason: Any) -> Transfer:
    """Refuse the transfer with a reason; nobody's holdings change."""
    text = _text("reason", reason, 2000)
    if not text:
        raise TransferError("reason: say why the transfer is rejected")
    transfer = await _pending(engine, transfer_id, actor)
    async with unit_of_work(engine) as work:
        if not await records.decide(
            work.conn,
            transfer.id,
            state="rejected",
            reason=text,
            decided_by=actor.label[:200],
            decided_at=datetime.now(UTC),
        ):
            raise TransferConflict("the transfer was decided meanwhile")
        decided = replace(transfer, state="rejected")
        work.record(_event(TransferRejected, decided, actor, None, reason=text))
    fresh = await records.get(engine, transfer.id)
    assert fresh is not None
    return fresh


def _event(
    kind: type[T],
    transfer: Transfer,
    actor: Actor,
    case_number: str | None,
    **extra: Any,
) -> T:
    """A transfer's audit event: who, which case, from and to whom, which items, what state."""
    number = case_number or transfer.manifest.get("manifest", {}).get("case", {}).get("number")
    return kind(
        actor=actor.label,
        object=f"transfer:{transfer.id}",
        case_id=number,
        case=transfer.case_id,
        from_agency=transfer.from_agency,
        to_agency=transfer.to_agency,
        evidence=transfer.evidence_ids,
        state=transfer.state,
        client=actor.client,
        **extra,
    )
