"""The printable transfer list (随案移送清单), per transfer or per case, as JSON any client prints.

Each item comes with its size, BLAKE3 and SHA-256 (SM3 when kept), the id of its signed receipt
(`receipts.receipt_id`), who uploaded it, who sent it and who acknowledged it. A transfer's
items are read from its signed manifest, so the paper shows what was handed over, not what the
catalog says today. The `verify` block makes the paper checkable:

- `code`: the first 20 hex digits of the SHA-256 of the list's canonical JSON (without the
  block), shown in groups of four. The desk's check page (`url`, also drawn as a QR code)
  fetches the list again and compares codes: a paper that no longer matches the record (a
  pending transfer since acknowledged, an item added to the case) says so.
- `command`: the offline check. `avidence verify-bundle` on the case's export bundle verifies
  every receipt and original; their digests must equal the ones on the paper, and a transfer's
  `manifest_sha256` is what its signed acknowledgement names.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import canonical_json

from .. import qrcodes
from ..agencies import records as agencies_db
from ..cases import records as cases_db
from ..cases.records import Case
from ..evidence import receipts
from ..evidence import records as evidence_db
from . import manifest, records
from .records import Transfer

CODE_DIGITS = 20
OFFLINE = "avidence verify-bundle BUNDLE --keys KEYS.json"


def _code(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()[:CODE_DIGITS]


async def _verify(
    body: dict[str, Any], *, base_url: str, kind: str, object_id: str
) -> dict[str, Any]:
    code = _code(body)
    url = f"{base_url}/desk#verify/{kind}/{object_id}/{code}"
    qr = await asyncio.to_thread(qrcodes.svg_data_uri, url)  # ~12 ms of CPU: off the loop
    return {"code": code, "url": url, "qr": qr, "command": OFFLINE}


def _uploader(receipt: dict[str, Any] | None) -> str | None:
    if not receipt:
        return None
    name = (receipt.get("receipt") or {}).get("uploader", {}).get("name")
    return str(name) if name else None


def _moves(transfer: Transfer) -> dict[str, Any]:
    """Who sent a transfer and who decided it."""
    body = transfer.manifest.get("manifest", {})
    return {
        "transfer": transfer.id,
        "state": transfer.state,
        "from": body.get("from", {}).get("name", transfer.from_agency),
        "to": body.get("to", {}).get("name", transfer.to_agency),
        "sent_by": transfer.created_by,
        "sent_at": manifest.iso(transfer.created_at),
        "acknowledged_by": transfer.decided_by if transfer.state == "acknowledged" else None,
        "decided_at": manifest.iso(transfer.decided_at) if transfer.decided_at else None,
    }


def transfer_body(transfer: Transfer) -> dict[str, Any]:
    """The list of one transfer, from its signed manifest."""
    body = transfer.manifest.get("manifest", {})
    moved = _moves(transfer)
    items = []
    for entry in body.get("items", []):
        receipt = entry.get("receipt")
        items.append(
            {
                "evidence_id": entry.get("evidence_id"),
                "filename": entry.get("filename"),
                "item": entry.get("item"),
                "kind": entry.get("kind"),
                "size": entry.get("size"),
                **manifest.digests_of(entry),
                "receipt_id": receipts.receipt_id(receipt) if receipt else None,
                "uploaded_by": _uploader(receipt),
                "sent_by": moved["sent_by"],
                "acknowledged_by": moved["acknowledged_by"],
            }
        )
    return {
        "kind": "transfer",
        "transfer": {**moved, "note": transfer.note, "reason": transfer.reason},
        "case": body.get("case", {"id": transfer.case_id}),
        "from": body.get("from", {"id": transfer.from_agency}),
        "to": body.get("to", {"id": transfer.to_agency}),
        "manifest_sha256": manifest.fingerprint(transfer.manifest),
        "signed_by": transfer.manifest.get("key_id"),
        "acknowledgement_signed_by": (transfer.acknowledgement or {}).get("key_id"),
        "items": items,
        "total_bytes": sum(int(i["size"] or 0) for i in items),
    }


async def for_transfer(transfer: Transfer, *, base_url: str) -> dict[str, Any]:
    body = transfer_body(transfer)
    check = await _verify(body, base_url=base_url, kind="transfer", object_id=transfer.id)
    return {**body, "verify": check}


async def case_body(engine: AsyncEngine, case: Case, *, agency_id: str) -> dict[str, Any]:
    """The list of a case: every item the agency holds in it, with the transfers that moved it."""
    ids = await cases_db.evidence_ids(engine, case.id, agency_id=agency_id)
    moves = await records.listing(engine, agency_id=agency_id, case_id=case.id)
    owner = await agencies_db.by_id(engine, case.agency_id)
    items = []
    for evidence_id in ids:
        record = await evidence_db.get(engine, evidence_id)
        if record is None:
            continue
        receipt = await receipts.get(engine, evidence_id)
        moved = [_moves(t) for t in reversed(moves) if evidence_id in t.evidence_ids]
        last = next((m for m in reversed(moved) if m["state"] == "acknowledged"), None)
        items.append(
            {
                "evidence_id": record.id,
                "filename": record.filename,
                "item": record.item,
                "kind": record.metadata.get("kind", "other"),
                "size": record.size,
                **{n: getattr(record, n) for n in manifest.DIGESTS if getattr(record, n)},
                "receipt_id": receipts.receipt_id(receipt) if receipt else None,
                "uploaded_by": _uploader(receipt),
                "sent_by": last["sent_by"] if last else None,
                "acknowledged_by": last["acknowledged_by"] if last else None,
                "transfers": moved,
            }
        )
    return {
        "kind": "case",
        "case": {"id": case.id, "number": case.number, "title": case.title},
        "owner": {"id": case.agency_id, "name": owner.name if owner else case.agency_id},
        "items": items,
        "total_bytes": sum(i["size"] for i in items),
    }


async def for_case(
    engine: AsyncEngine, case: Case, *, agency_id: str, base_url: str
) -> dict[str, Any]:
    body = await case_body(engine, case, agency_id=agency_id)
    check = await _verify(body, base_url=base_url, kind="case", object_id=case.id)
    return {**body, "verify": check}
