"""Domain errors: what a rule of the catalog refused, named by a stable code.

Domain modules (cases, retention, ...) raise these without knowing HTTP; `server/errors.py`
turns each `Code` into its status in one place, and a test fails when a code has no answer
there. Callers decide on `code`, never on the message: messages are for people and get
reworded. `DomainError` stays a `ValueError` so the admin CLI's existing handling still
prints it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Code(StrEnum):
    INVALID = "bad_request"  # the input breaks a rule (format, length, unknown choice)
    REASON_REQUIRED = "reason_required"  # audited actions need a reason a person wrote
    CASE_EXISTS = "case_exists"
    EVIDENCE_UNKNOWN = "evidence_unknown"
    CASE_UNKNOWN = "case_unknown"
    HOLD_UNKNOWN = "hold_unknown"
    RETENTION_REFUSED = "retention_refused"  # the record's state or holds forbid the change
    INTEGRITY_WITHHELD = "integrity_withheld"  # a scrub flagged it: served to no one
    INTEGRITY_UNRESOLVED = "integrity_unresolved"  # nothing flagged there, or still damaged


class DomainError(ValueError):
    """A refusal with a stable `code`; subclasses pick the code used when none is given."""

    default_code: ClassVar[Code] = Code.INVALID

    def __init__(self, message: str, *, code: Code | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code: Code = code or self.default_code
