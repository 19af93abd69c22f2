"""The server's check of a transfer before the receiver acknowledges it, as a report.

The same check gates an acknowledgement (API and CLI, through `flow.acknowledge`) and shows a
reviewer what an acknowledgement would rest on (`avidence-server transfer review`): the
manifest's signature and key, the sender's signed log head, and for every item the catalog's
digests against the manifest's, the stored original's integrity state and any digests the
receiver computed itself. Nothing here writes: recording a refusal is the flow's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import PublicKeys, VerificationError

from ..evidence import records as evidence_db
from . import manifest
from .records import Transfer


@dataclass(slots=True, frozen=True)
class ItemCheck:
    """One item: its manifest digests, whether the catalog's equal them, who checked them."""

    evidence_id: str
    digests: dict[str, str]
    integrity: str  # the stored original's last scrub state ("ok", "unchecked", "failed", "")
    checked_by: str  # "server", or "receiver" when the receiver declared digests it computed

    def to_json(self) -> dict[str, Any]:
        """The entry an acknowledgement signs for this item."""
        return {"evidence_id": self.evidence_id, **self.digests, "checked_by": self.checked_by}


@dataclass(slots=True, frozen=True)
class Report:
    """What the check found; `problems` is empty when the transfer may be acknowledged."""

    body: dict[str, Any]  # the manifest body (unverified when its signature failed)
    key_id: str | None
    signature_ok: bool
    sender_log: int | None  # the sequence number of the sender's log head that verified
    items: list[ItemCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "key_id": self.key_id,
            "signature_ok": self.signature_ok,
            "sender_log_seq": self.sender_log,
            "items": [{**i.to_json(), "integrity": i.integrity} for i in self.items],
            "problems": list(self.problems),
        }


async def _sender_log(
    engine: AsyncEngine, body: Mapping[str, Any], pinned: PublicKeys | None, problems: list[str]
) -> int | None:
    signed = body.get("sender_log")
    if signed is None:
        return None
    try:
        checkpoint = await manifest.verify_checkpoint(engine, signed, pinned=pinned)
    except VerificationError as exc:
        problems.append(f"the sender's log head: {exc}")
        return None
    seq = checkpoint.get("seq")
    return seq if isinstance(seq, int) else None


async def check(
    engine: AsyncEngine,
    transfer: Transfer,
    *,
    checked: Mapping[str, Any] | None = None,
    pinned: PublicKeys | None = None,
) -> Report:
    """Verify the manifest and every digest; `checked` holds digests the receiver computed
    (evidence id -> {algorithm: hex}); `pinned` (the `trusted_keys` history) decides which
    keys the manifest may be signed by."""
    declared_all = checked or {}
    signed = transfer.manifest
    key_id = signed.get("key_id") if isinstance(signed.get("key_id"), str) else None
    try:
        body = await manifest.verify(engine, signed, pinned=pinned)
    except VerificationError as exc:
        unverified = signed.get("manifest")
        return Report(
            body=dict(unverified) if isinstance(unverified, Mapping) else {},
            key_id=key_id,
            signature_ok=False,
            sender_log=None,
            problems=[f"manifest: {exc}"],
        )
    problems: list[str] = []
    sender_log = await _sender_log(engine, body, pinned, problems)
    if body.get("transfer_id") != transfer.id or body.get("to", {}).get("id") != transfer.to_agency:
        problems.append("manifest: signed for another transfer")
    entries = {str(e.get("evidence_id")): e for e in body.get("items", [])}
    unknown = sorted(set(declared_all) - set(entries))
    if unknown:
        problems.append(f"checked items not in the manifest: {', '.join(unknown)}")
    items = []
    for evidence_id, entry in entries.items():
        listed = manifest.digests_of(entry)
        record = await evidence_db.get(engine, evidence_id)
        if record is None:
            problems.append(f"{evidence_id}: no longer in the catalog")
            continue
        held = {n: str(getattr(record, n)) for n in manifest.DIGESTS if getattr(record, n)}
        if held != listed:
            problems.append(f"{evidence_id}: the catalog's digests differ from the manifest's")
        if record.integrity == "failed":
            problems.append(f"{evidence_id}: the stored original failed its integrity check")
        declared = declared_all.get(evidence_id)
        if declared is not None:
            if not isinstance(declared, dict) or not declared:
                problems.append(f"{evidence_id}: checked digests must be an object")
                continue
            wrong = sorted(n for n, v in declared.items() if listed.get(str(n)) != v)
            if wrong:
                problems.append(f"{evidence_id}: {', '.join(wrong)} differ from the manifest")
        items.append(
            ItemCheck(
                evidence_id=evidence_id,
                digests=listed,
                integrity=str(record.integrity or ""),
                checked_by="receiver" if declared is not None else "server",
            )
        )
    return Report(
        body=body,
        key_id=key_id,
        signature_ok=True,
        sender_log=sender_log,
        items=items,
        problems=problems,
    )
