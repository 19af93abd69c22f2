"""Audit events: one dataclass per entry, named by the action, written by `log.append`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import clock

# The actions the log knows; a test checks every one is written somewhere.
ACTIONS = (
    "upload.created",
    "upload.finished",
    "upload.terminated",
    "upload.expired",
    "evidence.created",
    "integrity.failed",
    "integrity.checked",
    "auth.failed",
    "token.created",
    "token.revoked",
    "key.rotated",
    "audit.checkpoint",
    "admin.command",
    "media.analysed",
    "derivative.created",
    "job.failed",
    "ticket.issued",
    "ticket.opened",
    "ticket.viewed",
    "ticket.downloaded",
    "ticket.revoked",
    "ticket.code_failed",
    # agencies, cases, transfers, webhooks (issue 7)
    "agency.created",
    "case.created",
    "transfer.created",
    "transfer.acknowledged",
    "transfer.rejected",
    "transfer.blocked",
    "webhook.created",
    "webhook.deleted",
    "webhook.replayed",
    # retention, holds, purge, quotas (issue 9)
    "retention.changed",
    "hold.added",
    "hold.removed",
    "evidence.deleted",
    "evidence.restored",
    "evidence.purged",
    "purge.blocked",
    "quota.set",
    # reliability and security (issue 10)
    "ticket.probing",
)


@dataclass(slots=True, frozen=True)
class Event:
    """One audit entry before it is chained."""

    action: str
    actor: str
    object: str
    case_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    client: str | None = None
    time: datetime = field(default_factory=clock.now)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")
