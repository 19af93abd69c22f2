"""Retention classes and the rules that pick one for each evidence record.

Classes come from the `[retention]` section of the config file; one built-in class,
`indefinite` (kept forever, no storage lock), is always there and is the default until the
operator names another, so evidence is never purged because nobody configured anything:

    retention_default_class = "standard"

    [retention.classes.standard]
    days = 2555                  # or "forever"
    lock = "governance"          # none, governance or compliance (S3 Object Lock mode)

    [[retention.rules]]
    class = "interrogation"
    match = { kind = "interrogation" }   # Upload-Metadata fields; a list matches any value

When several rules match, the longest-kept class wins: keeping evidence a day too long is a
storage cost, a day too short can end a prosecution.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ..config import ConfigError, Settings
from ..failures import DomainError

LockMode = Literal["", "GOVERNANCE", "COMPLIANCE"]
LOCK_RANK: dict[str, int] = {"": 0, "GOVERNANCE": 1, "COMPLIANCE": 2}
BUILT_IN = "indefinite"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(slots=True, frozen=True)
class RetentionClass:
    """How long evidence of this class is kept (`days` None: forever) and how it is locked."""

    name: str
    days: int | None
    lock: LockMode = ""

    def until(self, start: datetime) -> datetime | None:
        """When evidence received at `start` stops being protected; None for forever."""
        return None if self.days is None else start + timedelta(days=self.days)

    def rank(self) -> tuple[float, int]:
        """Order for "upward" changes: longer keeping first, then a stronger lock."""
        return (float("inf") if self.days is None else float(self.days), LOCK_RANK[self.lock])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "days": self.days,
            "forever": self.days is None,
            "lock": self.lock.lower() or "none",
        }


@dataclass(slots=True, frozen=True)
class Rule:
    """Evidence whose metadata has every `match` field (one of the listed values) gets `name`."""

    match: Mapping[str, tuple[str, ...]]
    name: str

    def applies(self, metadata: Mapping[str, str]) -> bool:
        return all(metadata.get(field) in values for field, values in self.match.items())


@dataclass(slots=True, frozen=True)
class Policy:
    """Every class, the default, the rules and the timing of purges, validated."""

    classes: Mapping[str, RetentionClass]
    default: str
    rules: tuple[Rule, ...]
    grace: timedelta  # past retain-until before evidence is due for deletion
    recovery: timedelta  # a deleted item stays restorable this long before its bytes go
    forever_lock: timedelta  # S3 retention set on forever classes (extended on each change)
    legacy_mode: LockMode = ""  # object_lock_mode/object_lock_days: for classes with no lock
    legacy_days: int = 0

    def get(self, name: str) -> RetentionClass:
        """The class called `name`; DomainError (a ValueError) naming the known ones otherwise."""
        found = self.classes.get(name)
        if found is None:
            known = ", ".join(sorted(self.classes))
            raise DomainError(f"unknown retention class {name!r}; classes: {known}")
        return found

    def classify(self, metadata: Mapping[str, str]) -> RetentionClass:
        matched = [self.classes[rule.name] for rule in self.rules if rule.applies(metadata)]
        return max(matched, key=RetentionClass.rank, default=self.classes[self.default])

    def lock_for(
        self, cls: RetentionClass, *, start: datetime, now: datetime
    ) -> tuple[LockMode, datetime] | None:
        """The storage lock (mode, retain-until) evidence of `cls` gets, or None."""
        if cls.lock:
            until = cls.until(start)
            if until is None:
                until = max(start, now) + self.forever_lock
            return (cls.lock, until) if until > now else None
        if self.legacy_mode and self.legacy_days > 0:
            return self.legacy_mode, start + timedelta(days=self.legacy_days)
        return None


def _lock_mode(value: Any, where: str) -> LockMode:
    text = str(value).strip().upper()
    if text in ("", "NONE"):
        return ""
    if text == "GOVERNANCE":
        return "GOVERNANCE"
    if text == "COMPLIANCE":
        return "COMPLIANCE"
    raise ConfigError(f"{where}: lock must be none, governance or compliance, not {value!r}")


def _days(value: Any, where: str) -> int | None:
    if isinstance(value, str) and value.strip().lower() == "forever":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f'{where}: days must be a whole number of days >= 0 or "forever"')
    return value


def _class(name: str, body: Any) -> RetentionClass:
    where = f"retention.classes.{name}"
    if not _NAME.match(name):
        raise ConfigError(f"{where}: names are lower-case letters, digits, '-' and '_'")
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected a table with days and lock")
    unknown = set(body) - {"days", "lock"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if "days" not in body:
        raise ConfigError(f'{where}: days is required (a number or "forever")')
    return RetentionClass(name, _days(body["days"], where), _lock_mode(body.get("lock", ""), where))


def _rule(index: int, body: Any, classes: Mapping[str, RetentionClass]) -> Rule:
    where = f"retention.rules[{index}]"
    if not isinstance(body, dict) or set(body) != {"class", "match"}:
        raise ConfigError(f"{where}: expected exactly `class` and `match`")
    name, match = body["class"], body["match"]
    if name not in classes:
        raise ConfigError(f"{where}: unknown class {name!r}")
    if not isinstance(match, dict) or not match:
        raise ConfigError(f"{where}: match must be a non-empty table of metadata fields")
    fields: dict[str, tuple[str, ...]] = {}
    for field, wanted in match.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: match.{field} must be a string or a list of strings")
        fields[str(field)] = tuple(values)
    return Rule(fields, str(name))


def load_policy(settings: Settings) -> Policy:
    """The validated policy of `settings`; ConfigError (one line) naming what is wrong."""
    section = settings.extra.get("retention", {})
    if not isinstance(section, dict):
        raise ConfigError("retention: expected a table")
    unknown = set(section) - {"classes", "rules"}
    if unknown:
        raise ConfigError(f"retention: unknown key {sorted(unknown)[0]!r}")
    raw_classes = section.get("classes", {})
    if not isinstance(raw_classes, dict):
        raise ConfigError("retention.classes: expected tables, one per class")
    classes = {BUILT_IN: RetentionClass(BUILT_IN, None, "")}
    classes.update({name: _class(name, body) for name, body in raw_classes.items()})
    raw_rules = section.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError("retention.rules: expected [[retention.rules]] tables")
    rules = tuple(_rule(i, body, classes) for i, body in enumerate(raw_rules))
    default = settings.retention_default_class or BUILT_IN
    if default not in classes:
        raise ConfigError(f"retention_default_class: unknown class {default!r}")
    return Policy(
        classes=classes,
        default=default,
        rules=rules,
        grace=timedelta(days=settings.retention_grace_days),
        recovery=timedelta(days=settings.purge_recovery_days),
        forever_lock=timedelta(days=settings.forever_lock_days),
        legacy_mode=_lock_mode(settings.object_lock_mode, "object_lock_mode"),
        legacy_days=settings.object_lock_days,
    )


def as_mode(text: str) -> LockMode:
    """A lock mode read back from the catalog (anything unknown counts as no lock)."""
    return "GOVERNANCE" if text == "GOVERNANCE" else "COMPLIANCE" if text == "COMPLIANCE" else ""
