"""One table of HTTP errors and one exit path for them.

Handlers raise an `ApiError` subclass; `error_middleware` turns it (and storage errors, and
anything unexpected) into the same JSON body everywhere:
`{"error": {"code": "...", "message": "...", "status": N}}`. Tus clients that only accept text get
the message as plain text. Anything untyped is logged with its traceback and becomes a 500 that
leaks no detail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from aiohttp import web
from sqlalchemy import exc as sa_exc

from avidence.storage import errors as store_errors

from .catalog.db import CatalogUnavailable
from .catalog.retryable import code, retryable
from .failures import Code, DomainError
from .keys.base import KeyUnavailable

log = logging.getLogger("avidence.http")


class ApiError(Exception):
    """Base of every error answer; subclasses fix `status` and `code`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.headers = dict(headers or {})
        self.details = dict(details or {})  # machine-readable specifics, e.g. the fields at fault


def _error(status: int, code: str, message: str) -> type[ApiError]:
    return type(
        "".join(part.title() for part in code.split("_")),
        (ApiError,),
        {"status": status, "code": code, "default_message": message},
    )


BadRequest = _error(400, "bad_request", "the request is malformed")
Unauthorized = _error(401, "unauthorized", "a valid bearer token is required")
Forbidden = _error(403, "forbidden", "this token may not do that")
NotFound = _error(404, "not_found", "no such resource")
MethodNotAllowed = _error(405, "method_not_allowed", "method not allowed")
Conflict = _error(409, "conflict", "the request conflicts with the resource's state")
Gone = _error(410, "gone", "the resource has expired or was terminated")
PreconditionFailed = _error(412, "unsupported_version", "unsupported protocol version")
TooLarge = _error(413, "too_large", "the upload exceeds the maximum size")
UnsupportedMediaType = _error(415, "unsupported_media_type", "wrong Content-Type")
RangeNotSatisfiable = _error(416, "range_not_satisfiable", "the requested range is not satisfiable")
Locked = _error(423, "locked", "the upload is in use by another request")
TooManyRequests = _error(429, "too_many_requests", "too many requests; slow down")
UploadsTooFast = _error(429, "uploads_too_fast", "this token creates uploads too fast; slow down")
TooManyOpenUploads = _error(
    429, "too_many_open_uploads", "this token has too many unfinished uploads; finish some first"
)
DigestNotComputed = _error(400, "digest_not_computed", "a declared digest is not computed here")
JsonTooDeep = _error(400, "json_too_deep", "the JSON body is nested too deeply")
WebhookTargetRefused = _error(
    400, "webhook_target_refused", "webhooks go to public http(s) addresses or allowed ones"
)
ChecksumMismatch = _error(460, "checksum_mismatch", "the chunk does not match its checksum")
InsufficientStorage = _error(507, "insufficient_storage", "no room left to store the upload")
ServiceUnavailable = _error(503, "unavailable", "storage is unreachable; retry later")
Internal = _error(500, "internal", "internal error")
BodyTooLarge = _error(413, "body_too_large", "the request body is larger than 1 MiB")
HeadersTooLarge = _error(431, "headers_too_large", "the request's headers are too large")

# Access tickets (viewer links): the holder learns why a link stopped working, nothing more.
TicketUnknown = _error(404, "ticket_unknown", "this link is not valid")
TicketExpired = _error(410, "ticket_expired", "this link has expired")
TicketRevoked = _error(410, "ticket_revoked", "this link was revoked")
TicketExhausted = _error(410, "ticket_exhausted", "this link has no views left")
AccessCodeRequired = _error(401, "access_code_required", "enter the link's access code first")
AccessCodeWrong = _error(403, "access_code_wrong", "wrong access code")
AccessCodeLocked = _error(403, "access_code_locked", "too many wrong access codes; try later")

# Agencies, kinds and transfers (issue 7).
MetadataIncomplete = _error(400, "metadata_incomplete", "the metadata misses required fields")
TransferBlocked = _error(409, "transfer_blocked", "the transfer cannot be acknowledged")

# The signing key (a key file or an HSM) cannot sign: custody actions wait, never sign otherwise.
SigningUnavailable = _error(
    503, KeyUnavailable.code, "the signing key is unavailable; custody actions are refused"
)

# Sealed storage (issue 21): a data key that cannot be opened refuses the action, loses nothing;
# stored bytes that fail authentication are never served.
EncryptionKeysUnavailable = _error(
    503,
    "encryption_keys_unavailable",
    "the key-encryption key is unavailable; nothing was stored or served",
)
StoredObjectTampered = _error(
    500, "stored_object_tampered", "the stored object failed its integrity check; not served"
)

# Uploads (tus). A body that breaks off is a client-side event the server checkpointed: the
# client resumes from HEAD (tus 1.0.0: "the Client SHOULD send a HEAD request ... to retrieve
# the current offset"). The codes, not the wording, tell it so.
BodyInterrupted = _error(
    400, "body_interrupted", "the request body broke off or stalled; resume from HEAD"
)
ServerDraining = _error(
    503, "shutting_down", "the server is shutting down; the upload was checkpointed"
)
ConcatInvalid = _error(400, "concat_invalid", "Upload-Concat is malformed")
PartialTaken = _error(
    409, "partial_taken", "a partial upload named here is being joined by another final upload"
)
PartialUnusable = _error(
    400, "partial_unusable", "a partial upload is not yours, unknown, or not complete"
)
DigestMismatch = _error(
    460,
    "declared_digest_mismatch",
    "the file's digests differ from the declared ones; it is quarantined",
)
QuotaExceeded = _error(507, "quota_exceeded", "the storage quota is used up")
QuotaUploadTooLarge = _error(
    413, "quota_upload_too_large", "the upload is larger than the quota allows for one upload"
)

# Domain refusals (`failures.Code`), raised by modules that know no HTTP.
ReasonRequired = _error(400, "reason_required", "the action needs a reason")
CaseExists = _error(409, "case_exists", "the agency already has a case with this number")
EvidenceUnknown = _error(404, "evidence_unknown", "no such evidence")
CaseUnknown = _error(404, "case_unknown", "no such case")
HoldUnknown = _error(404, "hold_unknown", "no such active hold")
RetentionRefused = _error(409, "retention_refused", "the record's retention forbids this")

# Integrity findings (server/evidence/integrity.py): an original or derivative a scrub flagged
# is served to no one (viewing, download, new tickets) until an admin resolves the finding.
IntegrityWithheld = _error(
    409,
    "integrity_withheld",
    "this evidence failed an integrity check and is withheld until an administrator resolves it",
)
IntegrityUnresolved = _error(
    409, "integrity_unresolved", "the finding cannot be resolved: nothing flagged, or still damaged"
)

# What one counted view allows (server/tickets/allowance.py).
ViewExpired = _error(410, "view_expired", "this view's time window has ended; start a new view")
ViewSpent = _error(410, "view_spent", "this view's data allowance is used up; start a new view")

_DOMAIN: dict[Code, type[ApiError]] = {
    Code.INVALID: BadRequest,
    Code.REASON_REQUIRED: ReasonRequired,
    Code.CASE_EXISTS: CaseExists,
    Code.EVIDENCE_UNKNOWN: EvidenceUnknown,
    Code.CASE_UNKNOWN: CaseUnknown,
    Code.HOLD_UNKNOWN: HoldUnknown,
    Code.RETENTION_REFUSED: RetentionRefused,
    Code.INTEGRITY_WITHHELD: IntegrityWithheld,
    Code.INTEGRITY_UNRESOLVED: IntegrityUnresolved,
}


def table() -> list[type[ApiError]]:
    """Every error answer this module defines, for the docs and their test."""
    return [
        value
        for value in globals().values()
        if isinstance(value, type) and issubclass(value, ApiError) and value is not ApiError
    ]


# aiohttp's own answers (unknown route, wrong method, a JSON body over `client_max_size`) in
# the table's terms, so their codes are documented too.
_HTTP: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: BodyTooLarge,
    431: HeadersTooLarge,
}


def from_http_exception(exc: web.HTTPException) -> ApiError:
    kind = _HTTP.get(exc.status)
    if kind is not None:
        return kind()
    return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)()


def from_domain_error(exc: DomainError) -> ApiError:
    """The one place domain refusals become HTTP answers: by code, never by message."""
    return _DOMAIN[exc.code](exc.message)


def from_store_error(exc: store_errors.StoreError) -> ApiError:
    """The one place storage errors become HTTP answers."""
    if isinstance(exc, store_errors.NotFound):
        return NotFound("no such object")
    if isinstance(exc, store_errors.InvalidKey):
        return BadRequest(f"invalid key: {exc}")
    if isinstance(exc, store_errors.OffsetMismatch):
        return Conflict(f"offset mismatch: the upload is at {exc.expected}")
    if isinstance(exc, store_errors.AlreadyExists):
        return Conflict("the object already exists and is never overwritten")
    if isinstance(exc, store_errors.InvalidRange):
        return BadRequest(str(exc))
    if isinstance(exc, store_errors.StoreFull):
        return InsufficientStorage()
    if isinstance(exc, store_errors.ObjectLocked):
        return Forbidden("the object is under retention or legal hold")
    if isinstance(exc, store_errors.KeysUnavailable):
        log.error("sealed.keys_unavailable error=%s", exc)  # the detail is for the operator
        return EncryptionKeysUnavailable(headers={"Retry-After": "30"})
    if isinstance(exc, store_errors.Tampered):
        log.error("sealed.tampered key=%s error=%s", exc.key, exc)
        return StoredObjectTampered()
    # The operator needs the store's own reason; the client only that it may retry.
    log.error("store.unavailable type=%s key=%s error=%s", type(exc).__name__, exc.key, exc)
    return ServiceUnavailable()


def render(request: web.Request, error: ApiError) -> web.Response:
    """JSON body by default; plain text for clients that accept only text."""
    accept = request.headers.get("Accept", "")
    headers = dict(error.headers)
    if "text/plain" in accept and "json" not in accept:
        return web.Response(status=error.status, text=error.message + "\n", headers=headers)
    body: dict[str, Any] = {
        "error": {"code": error.code, "message": error.message, "status": error.status}
    }
    if error.details:
        body["error"]["details"] = error.details
    return web.Response(
        status=error.status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        error = exc
    except store_errors.StoreError as exc:
        error = from_store_error(exc)
    except DomainError as exc:
        error = from_domain_error(exc)
    except (sa_exc.DBAPIError, CatalogUnavailable, ConnectionError) as exc:
        if isinstance(exc, sa_exc.DBAPIError) and not retryable(exc):
            # The catalog refused the statement itself: it would fail the same way again.
            log.exception(
                "http.unhandled catalog_refused code=%s error=%s", code(exc), type(exc.orig)
            )
            error = Internal()
        else:
            # Client disconnects are caught where bodies are read; a broken connection here
            # is the catalog's (PostgreSQL restarting, a failover): worth a retry, not a 500.
            log.warning("catalog.unreachable error=%s", type(exc).__name__)
            error = ServiceUnavailable(
                "the catalog is unreachable; retry later", headers={"Retry-After": "5"}
            )
    except KeyUnavailable as exc:
        log.error("signing.unavailable error=%s", exc)  # the detail is for the operator only
        error = SigningUnavailable(headers={"Retry-After": "30"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = from_http_exception(exc)
        error.headers.update({k: v for k, v in exc.headers.items() if k.lower() == "allow"})
    except Exception:
        log.exception(
            "http.unhandled method=%s route=%s",
            request.method,
            request.match_info.route.resource.canonical
            if request.match_info.route.resource
            else "unmatched",
        )
        error = Internal()
    level = logging.WARNING if error.status < 500 else logging.ERROR
    # The route template, not the path: paths can carry ticket tokens and upload ids.
    resource = request.match_info.route.resource
    log.log(
        level,
        "http.error method=%s route=%s status=%s code=%s message=%s",
        request.method,
        resource.canonical if resource is not None else "unmatched",
        error.status,
        error.code,
        error.message,
    )
    return render(request, error)
