"""Every route of the app, described: the table the OpenAPI document is built from.

`{tus}` stands for the `tus_path` setting (`/files/` by default). Roles name the bearer-token
roles allowed; everything is answered within the caller's agency (others' items are 404).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..evidence.search import describe

SEARCH_PARAMETERS = describe()

ANY = ("uploader", "handler", "admin", "auditor")
HANDLERS = ("handler", "admin")
SITE_READERS = ("admin", "auditor")
ASSETS = ("text/javascript", "text/css", "text/plain")  # by the file's suffix (server/assets.py)


@dataclass(slots=True, frozen=True)
class Op:
    method: str
    path: str
    tag: str
    summary: str
    roles: tuple[str, ...] | None = None  # None: no bearer token (public or ticket link)
    body: str | None = None  # component schema of the JSON request body
    status: int = 200
    answer: str | None = None  # component schema of the JSON answer
    media: str | tuple[str, ...] = "application/json"  # several: any of these, by resource
    query: tuple[tuple[str, str], ...] = ()  # documented query parameters: (name, meaning)


OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/healthz", "service", "Liveness and catalog/store reachability"),
    Op("GET", "/metrics", "service", "Prometheus metrics", media="text/plain"),
    Op("GET", "/api/version", "service", "Server name and version"),
    Op("GET", "/api/openapi.json", "service", "This document"),
    Op("GET", "/api/keys", "custody", "Public keys that signed and chain to the key history",
       answer="Keys"),
    Op("GET", "/api/me", "service", "Who the bearer token is: name, role, agency, and whether "
       "it may read the site's storage administration", ANY, answer="Me"),
    Op("GET", "/api/kinds", "evidence", "Evidence kinds and their metadata JSON Schemas",
       answer="Kinds"),
    Op("OPTIONS", "{tus}", "tus", "tus 1.0 capabilities (Tus-Version, Tus-Extension, ...)",
       status=204),
    Op("POST", "{tus}", "tus", "Create an upload (creation, with-upload, defer-length, "
       "concatenation); Upload-Metadata is checked against its kind", ("uploader", "admin"),
       status=201),
    Op("OPTIONS", "{tus_bare}", "tus", "Same as OPTIONS {tus}", status=204),
    Op("POST", "{tus_bare}", "tus", "Same as POST {tus}", ("uploader", "admin"), status=201),
    Op("OPTIONS", "{tus}{upload_id}", "tus", "tus capabilities", status=204),
    Op("HEAD", "{tus}{upload_id}", "tus", "Upload offset, length and state",
       ("uploader", "admin")),
    Op("PATCH", "{tus}{upload_id}", "tus", "Append bytes at Upload-Offset (Upload-Checksum)",
       ("uploader", "admin"), status=204),
    Op("DELETE", "{tus}{upload_id}", "tus", "Terminate an unfinished upload",
       ("uploader", "admin"), status=204),
    Op("GET", "/api/uploads/{upload_id}", "evidence", "An upload's state", ANY, answer="Upload"),
    Op("GET", "/api/evidence", "evidence", "Search the evidence the agency may see, or look "
       "a recording up by digest; keyset pages, newest first", ANY, answer="EvidencePage",
       query=tuple(SEARCH_PARAMETERS.items())),
    Op("GET", "/api/evidence/{evidence_id}", "evidence", "An evidence record with media facts",
       ANY, answer="Evidence"),
    Op("GET", "/api/evidence/{evidence_id}/receipt", "custody", "The signed receipt", ANY,
       answer="Signed"),
    Op("POST", "/api/cases", "cases", "Create a case of the caller's agency", HANDLERS,
       "CaseCreate", 201, "Case"),
    Op("GET", "/api/cases", "cases", "Cases the agency holds (?number=)", ANY[1:]),
    Op("GET", "/api/cases/{case_id}", "cases", "A case with the agency's items", ANY[1:],
       answer="Case"),
    Op("GET", "/api/cases/{case_id}/custody", "cases", "Custody timeline: uploaded, hashed, "
       "transferred, acknowledged, viewed, exported", ANY[1:], answer="Custody"),
    Op("GET", "/api/cases/{case_id}/list", "cases", "Printable list of the agency's items in "
       "the case: size, digests, receipt id, who sent and acknowledged each, a check code",
       ANY[1:], answer="PaperList"),
    Op("POST", "/api/cases/{case_id}/transfers", "transfers", "Transfer items to another "
       "agency with a signed manifest", HANDLERS, "TransferCreate", 201, "Transfer"),
    Op("GET", "/api/transfers", "transfers", "Transfers of the agency (?inbox=1, ?state=)",
       ANY[1:]),
    Op("GET", "/api/transfers/{transfer_id}", "transfers", "One transfer", ANY[1:],
       answer="Transfer"),
    Op("GET", "/api/transfers/{transfer_id}/list", "transfers", "Printable transfer list "
       "(随案移送清单) from the signed manifest, with a check code and QR", ANY[1:],
       answer="PaperList"),
    Op("POST", "/api/transfers/{transfer_id}/review", "transfers", "A short view-only ticket "
       "to review a pending transfer", HANDLERS, status=201, answer="TicketIssued"),
    Op("POST", "/api/transfers/{transfer_id}/ack", "transfers", "Acknowledge (signed); 409 "
       "when the manifest or digests do not check out", HANDLERS, "Acknowledge",
       answer="Transfer"),
    Op("POST", "/api/transfers/{transfer_id}/reject", "transfers", "Reject with a reason",
       HANDLERS, "Reject", answer="Transfer"),
    Op("POST", "/api/tickets", "tickets", "Issue a viewer link", ("uploader", *HANDLERS),
       "TicketCreate", 201, "TicketIssued"),
    Op("GET", "/api/tickets", "tickets", "The agency's tickets", ANY),
    Op("GET", "/api/tickets/{ticket_id}", "tickets", "One ticket", ANY, answer="Ticket"),
    Op("GET", "/api/tickets/{ticket_id}/views", "tickets", "View sessions of a ticket", ANY),
    Op("POST", "/api/tickets/{ticket_id}/revoke", "tickets", "Revoke at once",
       ("uploader", *HANDLERS), answer="Ticket"),
    Op("GET", "/t/{token}", "viewer", "Viewer page (?embed=1 for framing by allowed origins)",
       media="text/html"),
    Op("POST", "/t/{token}/code", "viewer", "Enter the access code", media="text/html"),
    Op("POST", "/t/{token}/views", "viewer", "Start a counted view", status=201),
    Op("GET", "/t/{token}/media/{evidence_id}", "viewer", "Ranged media stream",
       media="application/octet-stream"),
    Op("GET", "/t/{token}/poster/{evidence_id}", "viewer",
       "Poster frame shown before playing (no view counted)", media="image/jpeg"),
    Op("GET", "/t/{token}/download/{evidence_id}", "viewer", "Download the original",
       media="application/octet-stream"),
    Op("GET", "/t/{token}/receipt/{evidence_id}", "viewer", "The item's signed receipt",
       answer="Signed"),
    Op("GET", "/viewer/{name}", "viewer", "Viewer assets (script, style)", media=ASSETS),
    Op("GET", "/upload", "upload", "Browser upload page (drag and drop, resumable; the "
       "uploader token is entered in the page)", media="text/html"),
    Op("GET", "/upload/{name}", "upload", "Upload page assets (tus-js-client, script, style)",
       media=ASSETS),
    Op("GET", "/desk", "desk", "The case desk: inbox, cases, links, administration (the "
       "token is entered in the page)", media="text/html"),
    Op("GET", "/desk/{name}", "desk", "Desk assets (scripts, style)", media=ASSETS),
    Op("POST", "/api/webhooks", "webhooks", "Register a webhook; the secret is shown once",
       ("admin",), "WebhookCreate", 201, "WebhookCreated"),
    Op("GET", "/api/webhooks", "webhooks", "The agency's webhooks", ("admin", "auditor")),
    Op("DELETE", "/api/webhooks/{webhook_id}", "webhooks", "Stop a webhook", ("admin",),
       status=204),
    Op("GET", "/api/webhooks/{webhook_id}/deliveries", "webhooks", "Recent deliveries",
       ("admin", "auditor"), answer="Deliveries"),
    Op("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", "webhooks",
       "Send a delivery again", ("admin",), status=202),
    # Storage administration: the site operator's agency only (server/retention/api.py).
    Op("GET", "/api/admin/retention", "retention", "Retention classes, rules and what the "
       "store can lock", SITE_READERS),
    Op("GET", "/api/admin/evidence/{evidence_id}/retention", "retention", "A record's class, "
       "retain-until, lock, holds and tombstone", SITE_READERS),
    Op("PUT", "/api/admin/evidence/{evidence_id}/retention", "retention", "Change a record's "
       "class (upward; `override` to lower)", ("admin",)),
    Op("POST", "/api/admin/evidence/{evidence_id}/restore", "retention", "Restore a deleted "
       "record within its recovery period", ("admin",)),
    Op("GET", "/api/admin/integrity", "custody", "The scrub's state (originals by last check, "
       "last and next round, failures) and every unresolved finding on an original or a "
       "derivative, withheld from viewers", SITE_READERS, answer="Integrity"),
    Op("POST", "/api/admin/evidence/{evidence_id}/integrity/resolve", "custody", "Resolve a "
       "finding: re-check a restored original, or re-derive a damaged copy", ("admin",)),
    Op("GET", "/api/admin/holds", "retention", "Legal holds (?all=1 with lifted ones)",
       SITE_READERS),
    Op("POST", "/api/admin/holds", "retention", "Place a legal hold on a case or an item",
       ("admin",), status=201),
    Op("POST", "/api/admin/holds/{hold_id}/release", "retention", "Lift a legal hold",
       ("admin",)),
    Op("GET", "/api/admin/purge", "retention", "What a purge would do now (dry run)",
       SITE_READERS),
    Op("POST", "/api/admin/purge", "retention", "Soft-delete what is due, hard-delete what "
       "is past recovery", ("admin",)),
    Op("GET", "/api/admin/usage", "retention", "Bytes and counts by case, class, uploader, "
       "store; growth per day; abandoned uploads", SITE_READERS),
    Op("GET", "/api/admin/audit", "retention", "Audit log state: head, newest signed "
       "checkpoint, entries not yet sealed, what each witness holds", SITE_READERS,
       answer="AuditState"),
    Op("GET", "/api/admin/quotas", "retention", "Quotas per uploader token and site",
       SITE_READERS),
    Op("PUT", "/api/admin/quotas/{scope}", "retention", "Set or clear a quota", ("admin",)),
)  # fmt: skip
