"""JSON API for uploads and evidence, for our client and for agencies' case systems."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..agencies.access import owns_upload
from ..auth import require, require_site
from ..cases import records as cases_db
from ..catalog import uploads as uploads_db
from ..catalog.uploads import ConcatKind, Upload, UploadState
from ..errors import BadRequest, Conflict, Gone, NotFound
from ..jobs.views import with_media
from ..keys import history
from ..requests import json_body
from ..retention import records as retention_records
from ..retention.purge import tombstone
from ..state import CATALOG, PINNED_KEYS, SETTINGS, SIGNER, STORE
from ..tokens import Role
from . import integrity, receipts, search
from . import records as evidence_db

READERS: tuple[Role, ...] = ("uploader", "handler", "admin", "auditor")


def upload_json(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "state": upload.state,
        "length": upload.length,
        "offset": upload.offset,
        "concat": upload.concat or None,
        "parts": upload.parts if upload.concat == ConcatKind.FINAL else None,
        "consumed_by": (
            upload.parts[0] if upload.state == UploadState.CONSUMED and upload.parts else None
        ),
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
    if record is None or not await evidence_db.can_see(engine, principal, record):
        raise NotFound("no such evidence")
    return record


async def search_evidence(request: web.Request) -> web.Response:
    """GET /api/evidence?case=N&filename=...&sha256=HEX...: what the caller's agency may see
    that matches, newest first, one keyset page: `{"evidence": [...], "next": cursor|null}`."""
    principal = await require(request, *READERS)
    engine = request.app[CATALOG].engine
    query = search.parse(request.query)  # a SearchError answers 400 through the error table
    if query.case is not None:
        try:
            case = await cases_db.resolve(engine, query.case, agency_id=principal.agency_id)
        except cases_db.CaseNotFound as exc:
            raise NotFound(str(exc)) from None
        except cases_db.CaseAmbiguous as exc:
            raise Conflict(str(exc)) from None
        query.case_id = case.id
    found, after = await search.search(engine, principal, query)
    return web.json_response({"evidence": [r.to_json() for r in found], "next": after})


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


async def list_findings(request: web.Request) -> web.Response:
    """GET /api/admin/integrity: the scrub's state (counts by outcome, last and next round,
    failed originals) and every unresolved finding on an original or a copy, originals first."""
    await require_site(request, "admin", "auditor")
    engine = request.app[CATALOG].engine
    interval = float(request.app[SETTINGS].scrub_interval)
    state = await integrity.summary(engine, interval=interval)
    found = await integrity.findings(engine)
    return web.json_response({**state, "findings": [f.to_json() for f in found]})


async def resolve_finding(request: web.Request) -> web.Response:
    """POST /api/admin/evidence/{id}/integrity/resolve {"target", "reason"}: check a restored
    original again, or re-derive a damaged copy; 409 `integrity_unresolved` otherwise."""
    principal = await require_site(request, "admin")
    body = await json_body(request, required=True)
    target, reason = body.get("target", "original"), body.get("reason")
    if not isinstance(target, str) or not isinstance(reason, str):
        raise BadRequest('give {"target": "original" or "derivative:<id>", "reason": "..."}')
    engine = request.app[CATALOG].engine
    evidence_id = request.match_info["evidence_id"]
    if await evidence_db.get(engine, evidence_id) is None:
        raise NotFound("no such evidence")
    done = await integrity.resolve(
        engine,
        request.app[STORE],
        evidence_id=evidence_id,
        target=target,
        reason=reason,
        actor=principal.label,
        client=request.remote,
    )
    remaining = await integrity.findings(engine, evidence_id=evidence_id)
    return web.json_response(
        {
            "evidence_id": done.evidence_id,
            "target": done.target,
            "how": done.how,
            "job": done.job_id,
            "findings": [f.to_json() for f in remaining],
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/uploads/{upload_id}", get_upload)
    app.router.add_get("/api/evidence", search_evidence)
    app.router.add_get("/api/evidence/{evidence_id}", get_evidence)
    app.router.add_get("/api/evidence/{evidence_id}/receipt", get_receipt)
    app.router.add_get("/api/keys", get_keys)
    app.router.add_get("/api/admin/integrity", list_findings)
    app.router.add_post("/api/admin/evidence/{evidence_id}/integrity/resolve", resolve_finding)
