"""Accepting a verified upload as evidence: the completion hook the tus handler calls.

tus stops at "every byte is stored and the digests match what was declared"; from there the custody
core takes over. In one unit of work it writes the evidence record, its retention class, the signed
receipt, the case link and the first media job, marks the upload `done` and chains
`evidence.created` (and its webhook deliveries). A crash before the commit leaves the upload in
`verifying`, to be accepted again; after it, everything is there. Nothing here knows HTTP or tus.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store

from .. import clock, tokens
from ..audit.events import EvidenceCreated
from ..audit.unit import unit_of_work
from ..cases import records as cases_db
from ..catalog import uploads as uploads_db
from ..catalog.uploads import Upload
from ..config import Settings
from ..jobs import queue as jobs_queue
from ..retention import hooks as retention_hooks
from ..signing import Signer
from . import receipts
from . import records as evidence_db

log = logging.getLogger("avidence.evidence")


def new_evidence_id() -> str:
    return "ev_" + secrets.token_hex(12)


class AlreadyAccepted(Exception):
    """Another process accepted the upload first; carries the evidence id it made."""

    def __init__(self, evidence_id: str | None) -> None:
        super().__init__(evidence_id or "")
        self.evidence_id = evidence_id


@dataclass(slots=True, frozen=True)
class Custody:
    """What accepting evidence needs: the catalog, the store it lives in, the signing key."""

    engine: AsyncEngine
    store: Store
    settings: Settings
    signer: Signer

    async def accept(self, upload: Upload, digests: dict[str, str]) -> str:
        """Make evidence of `upload`, whose bytes matched every declared digest; return its id.

        Safe to call again after a crash, and from two processes at once: the upload moves from
        `verifying` to `done` by a conditional update inside the unit, so exactly one record is
        made; the loser answers the winner's evidence id."""
        now = clock.now()
        record = evidence_db.Evidence(
            id=new_evidence_id(),
            upload_id=upload.id,
            case_id=upload.metadata.get("case", ""),
            item=upload.metadata.get("item", ""),
            filename=upload.metadata.get("filename", ""),
            filetype=upload.metadata.get("filetype", ""),
            size=upload.length or 0,
            blake3=digests["blake3"],
            sha256=digests.get("sha256"),
            sm3=digests.get("sm3"),
            uploader=upload.uploader,
            store=self.store.name,
            storage_key=upload.storage_key,
            metadata=upload.metadata,
            received_at=now,
            agency_id=upload.agency_id,
        )
        # The case is a fact of its own (with its own entry), made first: two uploads racing to
        # open the same case must not fail each other's evidence.
        case = await cases_db.ensure(self.engine, agency_id=record.agency_id, number=record.case_id)
        try:
            async with unit_of_work(self.engine) as unit:
                conn = unit.conn
                if not await uploads_db.finish(
                    conn, upload.id, digests=digests, evidence_id=record.id, now=now
                ):
                    current = await uploads_db.get(conn, upload.id)
                    raise AlreadyAccepted(current.evidence_id if current else None)
                uploader_name = await tokens.name_of(conn, upload.uploader)
                await evidence_db.insert(conn, record)
                await retention_hooks.classify_new(
                    conn,
                    self.settings,
                    evidence_id=record.id,
                    metadata=record.metadata,
                    received_at=now,
                )
                await receipts.issue(conn, self.signer, record, uploader_name=uploader_name)
                await jobs_queue.enqueue(conn, record.id, kind="analyse")
                await cases_db.attach(conn, case_id=case, evidence_id=record.id)
                unit.record(
                    EvidenceCreated(
                        actor=f"{upload.uploader} ({uploader_name})",
                        object=f"evidence:{record.id}",
                        case_id=record.case_id,
                        upload=upload.id,
                        size=record.size,
                        filename=record.filename,
                        item=record.item,
                        blake3=record.blake3,
                        sha256=record.sha256,
                        sm3=record.sm3,
                        receipt_key=self.signer.key_id,
                        time=now,
                    )
                )
        except AlreadyAccepted as exc:
            log.info("evidence.already_accepted upload=%s evidence=%s", upload.id, exc.evidence_id)
            return exc.evidence_id or ""
        # A case hold placed before this record existed covers it in storage too; the catalog
        # hold (what purges obey) already does, so a failure here is only logged.
        await retention_hooks.evidence_created(self.engine, self.store, record.id)
        log.info(
            "evidence.created id=%s upload=%s case=%s size=%s blake3=%s",
            record.id,
            upload.id,
            record.case_id,
            record.size,
            record.blake3,
        )
        return record.id
