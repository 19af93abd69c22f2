"""Component schemas: the shapes of request and response bodies, loose where a document is
signed (its body is described in docs/api.md and verified with the public keys)."""

from __future__ import annotations

from typing import Any

from avidence.client.signatures import ALGORITHMS as SIGNATURE_ALGORITHMS

S = dict[str, Any]


def obj(properties: dict[str, S], required: list[str] | None = None) -> S:
    schema: S = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


STR: S = {"type": "string"}
INT: S = {"type": "integer"}
BOOL: S = {"type": "boolean"}
NSTR: S = {"type": ["string", "null"]}
TIME: S = {"type": "string", "format": "date-time"}
ANY_OBJ: S = {"type": "object"}


def ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


def array(item: S) -> S:
    return {"type": "array", "items": item}


SCHEMAS: dict[str, S] = {
    "Error": obj(
        {
            "error": obj(
                {"code": STR, "message": STR, "status": INT, "details": ANY_OBJ},
                ["code", "message", "status"],
            )
        },
        ["error"],
    ),
    "Signed": obj(
        {"algorithm": {"enum": list(SIGNATURE_ALGORITHMS)}, "key_id": STR, "signature": STR},
        ["algorithm", "key_id", "signature"],
    ),
    "Upload": obj(
        {
            "id": STR,
            "state": STR,
            "length": {"type": ["integer", "null"]},
            "offset": INT,
            "metadata": ANY_OBJ,
            "digests": {"type": ["object", "null"]},
            "evidence_id": NSTR,
        },
        ["id", "state", "offset"],
    ),
    "Evidence": obj(
        {
            "id": STR,
            "case_id": STR,
            "item": STR,
            "filename": STR,
            "size": INT,
            "blake3": STR,
            "sha256": NSTR,
            "sm3": NSTR,
            "metadata": ANY_OBJ,
            "received_at": TIME,
            "integrity": STR,
            "agency_id": STR,
        },
        ["id", "case_id", "size", "blake3"],
    ),
    "EvidencePage": obj(
        {"evidence": array(ref("Evidence")), "next": NSTR},
        ["evidence", "next"],
    ),
    # A cache for convenience, not a trust root: `certificate` is the predecessor's signature
    # over a rotated-in key, which verifiers follow from their pinned history (docs/api.md).
    "Keys": obj(
        {
            "keys": array(
                obj(
                    {
                        "id": STR,
                        "algorithm": {"enum": list(SIGNATURE_ALGORITHMS)},
                        "public_key_pem": STR,
                        "created_at": TIME,
                        "certificate": ANY_OBJ,
                    }
                )
            )
        }
    ),
    "Kinds": obj({"kinds": array(obj({"name": STR, "title": STR, "schema": ANY_OBJ}))}),
    "Case": obj(
        {
            "id": STR,
            "number": STR,
            "title": STR,
            "status": STR,
            "owner": STR,
            "agencies": array(STR),
            "created_at": TIME,
        },
        ["id", "number", "owner"],
    ),
    "CaseCreate": obj({"number": STR, "title": STR}, ["number"]),
    "Custody": obj(
        {
            "case": ref("Case"),
            "evidence": array(STR),
            "timeline": array(
                obj(
                    {
                        "seq": INT,
                        "time": TIME,
                        "step": STR,
                        "action": STR,
                        "actor": STR,
                        "object": STR,
                    }
                )
            ),
        },
    ),
    "Limits": obj({"tickets": BOOL, "download": BOOL, "max_ticket_days": INT}),
    "TransferCreate": obj(
        {"to": STR, "items": array(STR), "note": STR, "limits": ref("Limits")}, ["to"]
    ),
    "Transfer": obj(
        {
            "id": STR,
            "case": STR,
            "from": STR,
            "to": STR,
            "state": {"enum": ["pending", "acknowledged", "rejected"]},
            "note": NSTR,
            "reason": NSTR,
            "limits": ref("Limits"),
            "evidence": array(STR),
            "manifest": ref("Signed"),
            "acknowledgement": {"oneOf": [ref("Signed"), {"type": "null"}]},
            "created_at": TIME,
        },
        ["id", "case", "from", "to", "state", "manifest"],
    ),
    "Acknowledge": obj({"checked": {"type": "object", "additionalProperties": ANY_OBJ}}),
    "Reject": obj({"reason": STR}, ["reason"]),
    "TicketCreate": obj(
        {
            "evidence": array(STR),
            "case": STR,
            "recipient": STR,
            "expires": {"type": ["string", "integer"]},
            "download": BOOL,
            "max_views": INT,
            "note": STR,
            "access_code": BOOL,
        },
        ["recipient"],
    ),
    "Ticket": obj(
        {
            "id": STR,
            "state": STR,
            "recipient": STR,
            "evidence": array(STR),
            "permissions": array(STR),
            "expires_at": TIME,
        },
        ["id", "state"],
    ),
    "TicketIssued": obj(
        {"ticket": ref("Ticket"), "url": STR, "token": STR, "access_code": NSTR}, ["ticket", "url"]
    ),
    "WebhookCreate": obj({"url": STR, "events": array(STR)}, ["url"]),
    "Webhook": obj(
        {"id": STR, "agency": STR, "url": STR, "events": array(STR), "active": BOOL}, ["id", "url"]
    ),
    "WebhookCreated": obj({"webhook": ref("Webhook"), "secret": STR}, ["webhook", "secret"]),
    "Deliveries": obj(
        {
            "webhook": STR,
            "deliveries": array(
                obj(
                    {
                        "id": STR,
                        "event": STR,
                        "state": STR,
                        "attempts": INT,
                        "last_status": {"type": ["integer", "null"]},
                        "last_error": NSTR,
                        "payload": ANY_OBJ,
                    }
                )
            ),
        },
    ),
    "Me": obj(
        {
            "token": STR,
            "name": STR,
            "role": {"enum": ["uploader", "handler", "admin", "auditor"]},
            "agency": obj({"id": STR, "name": STR}, ["id", "name"]),
            "site": BOOL,
        },
        ["token", "name", "role", "agency", "site"],
    ),
    "PaperList": obj(
        {
            "kind": {"enum": ["transfer", "case"]},
            "case": obj({"id": STR, "number": STR, "title": STR}),
            "items": array(
                obj(
                    {
                        "evidence_id": STR,
                        "filename": NSTR,
                        "size": {"type": ["integer", "null"]},
                        "blake3": STR,
                        "sha256": STR,
                        "receipt_id": NSTR,
                        "uploaded_by": NSTR,
                        "sent_by": NSTR,
                        "acknowledged_by": NSTR,
                    },
                    ["evidence_id"],
                )
            ),
            "total_bytes": INT,
            "verify": obj(
                {"code": STR, "url": STR, "qr": STR, "command": STR},
                ["code", "url", "qr", "command"],
            ),
        },
        ["kind", "case", "items", "verify"],
    ),
    "Integrity": obj(
        {
            "counts": obj({"ok": INT, "failed": INT, "unchecked": INT}),
            "last_checked_at": {"type": ["string", "null"]},
            "scrub_interval": {"type": "number"},
            "failures": array(ANY_OBJ),
            "findings": array(ANY_OBJ),
        },
        ["counts", "failures", "findings"],
    ),
    "AuditState": obj(
        {
            "entries": INT,
            "head_hash": NSTR,
            "checkpoint": {"type": ["object", "null"]},
            "unsealed": INT,
            "checkpoint_interval": INT,
            "witnesses": array(
                obj(
                    {"name": STR, "holds_latest": {"type": ["boolean", "null"]}, "error": NSTR},
                    ["name", "holds_latest", "error"],
                )
            ),
        },
        ["entries", "checkpoint", "unsealed", "witnesses"],
    ),
}
