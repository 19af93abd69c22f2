"""JSON API for uploads and evidence, for our client and for agencies' case systems."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..agencies.access import can_see, owns_upload
from ..auth import require
from ..catalog import uploads as uploads_db
from ..catalog.uploads import Upload
from ..errors import Gone, NotFound
from ..jobs.views import with_media
from ..keys import history
from ..retention import records as retention_records
from ..retention.purge import tombstone
from ..state import CATALOG, PINNED_KEYS, SIGNER
from ..tokens import Role
from . import receipts
from . import records as evidence_db

READERS: tuple[Role, ...] = ("uploader", "handler", "admin", "auditor")


def upload_json(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "state": upload.state,
        "length": upload.length,
        "offset": upload.offset,
        "concat": upload.concat or None,
        "parts": upload.parts if upload.concat == "final" else None,
        "consumed_by": upload.parts[0] if upload.state == "consumed" and upload.parts else None,
        "metadata": upload.metadata,
        "digests": upload.digests,
        "evidence_id": upload.evidence_id,
        "error": upload.error,
        "created_at": upload.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": upload.updated_at.isoformat().replace("+00:00", "Z"),
        "expires_at": upload.expires_at.isoformat().replace("+00:00", "Z")
        if upload.expires_at
        else None,
    }


async def get_upload(request: web.Request) -> web.Response:
    principal = await require(request, *READERS)
    upload = await uploads_db.get(request.app[CATALOG].engine, request.match_info["upload_id"])
    if upload is None or not owns_upload(
        principal, agency_id=upload.agency_id, uploader=upload.uploader
    ):
        raise NotFound("no such upload")
    return web.json_response(upload_json(upload))


async def _readable_evidence(request: web.Request) -> evidence_db.Evidence:
    principal = await require(request, *READERS)
    engine = request.app[CATALOG].engine
    record = await evidence_db.get(engine, request.match_info["evidence_id"])
    if record is None or not await can_see(engine, principal, record):
        raise NotFound("no such evidence")
    return record


async def get_evidence(request: web.Request) -> web.Response:
    record = await _readable_evidence(request)
    engine = request.app[CATALOG].engine
    kept = await retention_records.get(engine, record.id)
    if kept is not None and kept.state == "purged":
        # The receipt stays available: it proves what existed; the tombstone says what became of it.
        raise Gone(
            f"evidence {record.id} was purged when its retention ended",
            details={"tombstone": await tombstone(engine, record.id)},
        )
    document = record.to_json()
    if kept is not None:
        document["retention"] = {
            "class": kept.class_name,
            "retain_until": kept.to_json()["retain_until"],
            "state": kept.state,
        }
    return web.json_response(await with_media(engine, document))


async def get_receipt(request: web.Request) -> web.Response:
    """The signed receipt exactly as issued; verify it with `avidence verify`."""
    record = await _readable_evidence(request)
    document = await receipts.get(request.app[CATALOG].engine, record.id)
    if document is None:
        raise NotFound("this evidence has no receipt")
    return web.json_response(document)


async def get_keys(request: web.Request) -> web.Response:
    """Every public key that signed receipts or checkpoints and chains to the key history (the
    catalog's other rows are not vouched for by any key, so they are not published). Public by
    design."""
    keys = await history.publishable(
        request.app[CATALOG].engine,
        active=request.app[SIGNER].key_id,
        pinned=request.app.get(PINNED_KEYS),
    )
    return web.json_response(keys.document)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/uploads/{upload_id}", get_upload)
    app.router.add_get("/api/evidence/{evidence_id}", get_evidence)
    app.router.add_get("/api/evidence/{evidence_id}/receipt", get_receipt)
    app.router.add_get("/api/keys", get_keys)
