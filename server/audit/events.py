"""Audit events: one frozen dataclass per action, the action's name and its fields in one place.

An event's `details` (the JSON the hash chain covers) are its own fields, beyond the five every
entry has (actor, object, case, client, time); a field whose JSON key is a Python keyword names
it with `key(...)`. `log.append` chains an event inside the transaction of the action it records
(`unit.unit_of_work`), so an entry exists exactly when its action committed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from .. import clock

_BASE = frozenset({"actor", "object", "case_id", "client", "time"})
_REGISTRY: dict[str, type[AuditEvent]] = {}
E = TypeVar("E", bound="type[AuditEvent]")


def key(name: str, **kwargs: Any) -> Any:
    """A field stored under another JSON key (`from`, `class`)."""
    return field(metadata={"key": name}, **kwargs)


def action(name: str) -> Any:
    """Register an event class under its action name."""

    def register(cls: E) -> E:
        if name in _REGISTRY:
            raise ValueError(f"audit action {name!r} is defined twice")
        cls.action = name
        _REGISTRY[name] = cls
        return cls

    return register


@dataclass(slots=True, frozen=True, kw_only=True)
class AuditEvent:
    """One audit entry before it is chained. `object` is `kind:id` of what the action touched;
    `case_id` the case number it belongs to, when there is one."""

    action: ClassVar[str] = ""
    actor: str
    object: str
    case_id: str | None = None
    client: str | None = None
    time: datetime = field(default_factory=clock.now)

    def details(self) -> dict[str, Any]:
        """The action's own fields as the JSON object the chain hashes. An optional field
        (default None) is left out while it is None; a required one is always there."""
        return {
            f.metadata.get("key", f.name): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _BASE and not (f.default is None and getattr(self, f.name) is None)
        }


def actions() -> tuple[str, ...]:
    """Every action the log knows; a test checks each is written somewhere."""
    return tuple(_REGISTRY)


def event_class(name: str) -> type[AuditEvent]:
    """The class of an action (KeyError for an unknown one)."""
    return _REGISTRY[name]


# -- uploads and evidence ---------------------------------------------------------------------


@action("upload.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class UploadCreated(AuditEvent):
    length: int | None
    metadata: dict[str, str]
    parts: list[str] | None = None


@action("upload.terminated")
@dataclass(slots=True, frozen=True, kw_only=True)
class UploadTerminated(AuditEvent):
    offset: int
    length: int | None


@action("upload.expired")
@dataclass(slots=True, frozen=True, kw_only=True)
class UploadExpired(AuditEvent):
    offset: int
    length: int | None


@action("upload.quarantined")
@dataclass(slots=True, frozen=True, kw_only=True)
class UploadQuarantined(AuditEvent):
    """The received bytes differ from the digests the uploader declared: never evidence."""

    reason: str
    declared: dict[str, str]
    computed: dict[str, str]


@action("evidence.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class EvidenceCreated(AuditEvent):
    upload: str
    size: int
    filename: str
    item: str
    blake3: str
    sha256: str | None = None
    sm3: str | None = None
    receipt_key: str | None = None


@action("integrity.checked")
@dataclass(slots=True, frozen=True, kw_only=True)
class IntegrityChecked(AuditEvent):
    """A scrub re-read an object and found the digests its record holds."""

    size: int
    blake3: str | None = None
    sha256: str | None = None
    sm3: str | None = None
    target: str = "original"  # or "derivative:<id>"


@action("integrity.failed")
@dataclass(slots=True, frozen=True, kw_only=True)
class IntegrityFailed(AuditEvent):
    """A scrub found an object missing or different from its record."""

    reason: str  # "missing" or "failed"
    expected: dict[str, Any]
    found: dict[str, Any] | None = None
    mismatched: list[str] | None = None
    target: str = "original"


@action("integrity.resolved")
@dataclass(slots=True, frozen=True, kw_only=True)
class IntegrityResolved(AuditEvent):
    """An admin cleared a scrub's flag after re-deriving or restoring the object."""

    target: str
    how: str
    reason: str


# -- tokens, agencies, keys, the log itself -----------------------------------------------------


@action("auth.failed")
@dataclass(slots=True, frozen=True, kw_only=True)
class AuthFailed(AuditEvent):
    """Unknown bearer tokens from one address, summarised: the first, then one entry a period
    with how many failures it stands for (and whether the address was being refused)."""

    token_sha256_prefix: str
    failures_since_last_entry: int = 1
    limited: bool = False


@action("token.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class TokenCreated(AuditEvent):
    role: str
    name: str
    agency: str


@action("token.revoked")
@dataclass(slots=True, frozen=True, kw_only=True)
class TokenRevoked(AuditEvent):
    pass


@action("agency.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class AgencyCreated(AuditEvent):
    name: str


@action("key.rotated")
@dataclass(slots=True, frozen=True, kw_only=True)
class KeyRotated(AuditEvent):
    previous: str
    algorithm: str = "ed25519"
    certificate: dict[str, Any] | None = None  # the new key signed by the previous one


@action("audit.chain_switched")
@dataclass(slots=True, frozen=True, kw_only=True)
class ChainSwitched(AuditEvent):
    """The audit chain's hash changes (`entries.following`): this entry is hashed with `from`,
    every entry after it with `to`. `object` is `audit:chain`."""

    from_: str = key("from")
    to: str


@action("keys.rewrapped")
@dataclass(slots=True, frozen=True, kw_only=True)
class DataKeysRewrapped(AuditEvent):
    """Data keys of sealed objects re-wrapped under the active key-encryption key (`object`
    is `kek:<id>`); the objects themselves are untouched."""

    count: int
    previous: list[str]


@action("export.encrypted")
@dataclass(slots=True, frozen=True, kw_only=True)
class BundleEncrypted(AuditEvent):
    """An export bundle written encrypted (age format) for its recipients; the bundle's own
    export entry comes just before. `sha256` identifies the encrypted file handed over."""

    recipients: list[str]  # public keys
    size: int
    sha256: str


@action("object.sealed")
@dataclass(slots=True, frozen=True, kw_only=True)
class ObjectSealed(AuditEvent):
    """A plain stored object replaced by its sealed copy (`encrypt-existing`), after the
    copy's plaintext matched the recorded digests; `object` is the evidence."""

    key: str
    role: str  # "original" or the derivative's role
    size: int
    checked: list[str]  # the digests compared


@action("store.encrypt_existing")
@dataclass(slots=True, frozen=True, kw_only=True)
class EncryptExistingRun(AuditEvent):
    """One `encrypt-existing` run: how many objects each outcome had, and the keys left plain
    (locked by retention, or a copy that did not match its digests)."""

    counts: dict[str, int]
    left_plain: list[str]


@action("key.certified")
@dataclass(slots=True, frozen=True, kw_only=True)
class KeyCertified(AuditEvent):
    """A key that predates certificates, certified afterwards by the key before it."""

    previous: str
    certificate: dict[str, Any]


@action("admin.command")
@dataclass(slots=True, frozen=True, kw_only=True)
class AdminCommand(AuditEvent):
    """An admin command that reads custody data out (exports)."""

    command: str
    items: int | None = None
    entries: int | None = None
    manifests_only: bool | None = None


# -- media jobs ---------------------------------------------------------------------------------


@action("media.analysed")
@dataclass(slots=True, frozen=True, kw_only=True)
class MediaAnalysed(AuditEvent):
    container: str | None
    duration: str | None  # text: canonical JSON has no floats
    video_streams: int
    audio_streams: int
    profiles: list[str]
    continuity: dict[str, Any] | None = None


@action("derivative.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class DerivativeCreated(AuditEvent):
    derivative: str
    profile: str
    storage_key: str
    size: int
    blake3: str
    sha256: str
    source_blake3: str
    ffmpeg_version: str
    command: list[str]


@action("job.failed")
@dataclass(slots=True, frozen=True, kw_only=True)
class JobFailed(AuditEvent):
    job: str
    kind: str
    profile: str
    attempts: int
    reason: str


# -- tickets ------------------------------------------------------------------------------------


@action("ticket.issued")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketIssued(AuditEvent):
    recipient: str
    evidence: list[str]
    permissions: list[str]
    expires_at: str
    max_views: int | None
    access_code: bool
    note: str | None
    token_sha256_prefix: str


@action("ticket.revoked")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketRevoked(AuditEvent):
    recipient: str | None


@action("ticket.opened")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketOpened(AuditEvent):
    recipient: str
    evidence: list[str]
    user_agent: str


@action("ticket.viewed")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketViewed(AuditEvent):
    """One view session (a player on one item); `time` is when the view started."""

    ticket: str
    view: str
    recipient: str
    user_agent: str
    started_at: str
    first_byte_at: str | None
    last_byte_at: str | None
    bytes: int
    requests: int


@action("ticket.view_ended")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketViewEnded(AuditEvent):
    """A view used up what it allows: its time window (`reason` "time") or its byte budget
    ("bytes"); its grant serves nothing more. Written once per view, by whichever replica
    refused first."""

    ticket: str
    view: str
    recipient: str
    reason: str
    started_at: str
    expires_at: str | None
    byte_budget: int | None
    bytes_taken: int


@action("ticket.downloaded")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketDownloaded(AuditEvent):
    ticket: str
    recipient: str
    filename: str
    status: int
    offset: int
    bytes: int
    complete: bool
    stopped: str | None
    user_agent: str


@action("ticket.code_failed")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketCodeFailed(AuditEvent):
    tries_left: int
    locked_until: str | None
    user_agent: str


@action("ticket.probing")
@dataclass(slots=True, frozen=True, kw_only=True)
class TicketProbing(AuditEvent):
    refused_since_last_entry: int
    user_agent: str


# -- cases, transfers, webhooks -----------------------------------------------------------------


@action("case.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class CaseCreated(AuditEvent):
    number: str
    title: str
    agency: str


@action("case.attached")
@dataclass(slots=True, frozen=True, kw_only=True)
class CaseAttached(AuditEvent):
    """An original already held became evidence of one more case (its own record)."""

    case: str
    source_evidence: str


@dataclass(slots=True, frozen=True, kw_only=True)
class TransferEvent(AuditEvent):
    case: str
    from_agency: str = key("from")
    to_agency: str = key("to")
    evidence: list[str]
    state: str


@action("transfer.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class TransferCreated(TransferEvent):
    items: list[str] | None = None


@action("transfer.acknowledged")
@dataclass(slots=True, frozen=True, kw_only=True)
class TransferAcknowledged(TransferEvent):
    pass


@action("transfer.rejected")
@dataclass(slots=True, frozen=True, kw_only=True)
class TransferRejected(TransferEvent):
    reason: str


@action("transfer.blocked")
@dataclass(slots=True, frozen=True, kw_only=True)
class TransferBlocked(TransferEvent):
    problems: list[str]


@dataclass(slots=True, frozen=True, kw_only=True)
class _WebhookEvent(AuditEvent):
    url: str
    events: list[str]


@action("webhook.created")
@dataclass(slots=True, frozen=True, kw_only=True)
class WebhookCreated(_WebhookEvent):
    pass


@action("webhook.deleted")
@dataclass(slots=True, frozen=True, kw_only=True)
class WebhookDeleted(_WebhookEvent):
    pass


@action("webhook.replayed")
@dataclass(slots=True, frozen=True, kw_only=True)
class WebhookReplayed(_WebhookEvent):
    delivery: str


# -- retention, holds, purges, quotas -----------------------------------------------------------


@action("retention.changed")
@dataclass(slots=True, frozen=True, kw_only=True)
class RetentionChanged(AuditEvent):
    from_class: str = key("from")
    to_class: str = key("to")
    upward: bool
    override: bool
    reason: str
    retain_until: str | None


@action("hold.added")
@dataclass(slots=True, frozen=True, kw_only=True)
class HoldAdded(AuditEvent):
    scope: str
    target: str
    reason: str
    evidence: list[str]


@action("hold.removed")
@dataclass(slots=True, frozen=True, kw_only=True)
class HoldRemoved(AuditEvent):
    scope: str
    target: str
    reason: str
    released: list[str]


@action("evidence.deleted")
@dataclass(slots=True, frozen=True, kw_only=True)
class EvidenceDeleted(AuditEvent):
    class_name: str = key("class")
    reason: str
    retain_until: str | None
    size: int
    blake3: str
    sha256: str | None
    objects: int


@action("evidence.restored")
@dataclass(slots=True, frozen=True, kw_only=True)
class EvidenceRestored(AuditEvent):
    reason: str
    was: str
    retain_until: str | None


@action("evidence.purged")
@dataclass(slots=True, frozen=True, kw_only=True)
class EvidencePurged(AuditEvent):
    reason: str
    objects_deleted: int
    keys: list[str]


@action("purge.blocked")
@dataclass(slots=True, frozen=True, kw_only=True)
class PurgeBlocked(AuditEvent):
    error: str
    attempt: int
    next_attempt: str | None
    objects_deleted_before: int


@action("quota.set")
@dataclass(slots=True, frozen=True, kw_only=True)
class QuotaSet(AuditEvent):
    max_bytes: int | None
    max_upload: int | None
