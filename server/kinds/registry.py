"""Loading kinds from built-ins and `[kinds.NAME]` config tables, and checking metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from ..config import ConfigError, Settings
from .builtin import BUILTIN, DEFAULT_KIND

# JSON Schema's "format" only annotates unless a checker asserts it. Ours knows "date-time",
# so "2026-13-45T99:99:99Z", which the built-in kinds' pattern lets through, is refused.
FORMATS = FormatChecker(formats=())


def _date_time(value: object) -> bool:
    """A real moment with its zone (RFC 3339), in ASCII digits."""
    if not isinstance(value, str):
        return True  # "format" applies to strings only; "type" speaks for the rest
    if not value.isascii() or "T" not in value.upper():
        return False
    return datetime.fromisoformat(value.replace("z", "Z")).tzinfo is not None


FORMATS.checks("date-time", raises=ValueError)(_date_time)


class MetadataInvalid(Exception):
    """Metadata a kind refuses: `missing` and `malformed` name every field at fault."""

    def __init__(self, kind: str, *, missing: list[str], malformed: dict[str, str]) -> None:
        self.kind, self.missing, self.malformed = kind, missing, malformed
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if malformed:
            parts.append("malformed " + "; ".join(f"{k} ({v})" for k, v in malformed.items()))
        super().__init__(f"metadata for kind {kind!r} is incomplete: " + "; ".join(parts))


@dataclass(slots=True, frozen=True)
class Kind:
    name: str
    title: str
    schema: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "schema": self.schema}


@dataclass(slots=True, frozen=True)
class Registry:
    kinds: dict[str, Kind]

    def check(self, metadata: dict[str, str]) -> str:
        """The upload's kind; raises ValueError for an unknown kind, MetadataInvalid for
        metadata that misses or garbles what the kind requires."""
        name = metadata.get("kind", DEFAULT_KIND)
        kind = self.kinds.get(name)
        if kind is None:
            raise ValueError(f"unknown kind {name!r}; choose one of {', '.join(self.kinds)}")
        missing: list[str] = []
        malformed: dict[str, str] = {}
        validator = Draft202012Validator(kind.schema, format_checker=FORMATS)
        for error in sorted(validator.iter_errors(metadata), key=lambda e: list(e.path)):
            if error.validator == "required":
                present = list(error.instance) if isinstance(error.instance, dict) else []
                missing += [f for f in error.validator_value if f not in present + missing]
            elif error.path:
                field = str(error.path[0])
                hint = kind.schema.get("properties", {}).get(field, {}).get("description")
                malformed.setdefault(field, str(hint or error.message))
            else:
                malformed.setdefault("(metadata)", error.message)
        if missing or malformed:
            raise MetadataInvalid(name, missing=missing, malformed=malformed)
        return name


def _schema_of(name: str, table: dict[str, Any], settings: Settings) -> dict[str, Any]:
    if "schema" in table and "schema_file" in table:
        raise ConfigError(f"kinds.{name}: give schema or schema_file, not both")
    if "schema_file" in table:
        path = Path(str(table["schema_file"])).expanduser()
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"kinds.{name}.schema_file: cannot read {path}: {exc}") from None
    else:
        schema = table.get("schema", BUILTIN.get(name, {}).get("schema"))
    if not isinstance(schema, dict):
        raise ConfigError(f"kinds.{name}: a new kind needs a schema table or schema_file")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"kinds.{name}.schema: not a JSON Schema: {exc.message}") from None
    return schema


def load(settings: Settings) -> Registry:
    """Built-in kinds overridden or extended by the config; ConfigError naming a bad one."""
    configured = settings.extra.get("kinds", {})
    kinds = {name: Kind(name, spec["title"], spec["schema"]) for name, spec in BUILTIN.items()}
    for name, table in configured.items():
        if not isinstance(table, dict):
            raise ConfigError(f"kinds.{name}: expected a table")
        unknown = set(table) - {"title", "schema", "schema_file"}
        if unknown:
            raise ConfigError(f"kinds.{name}: unknown key(s) {', '.join(sorted(unknown))}")
        title = str(table.get("title", BUILTIN.get(name, {}).get("title", name)))
        kinds[name] = Kind(name, title, _schema_of(name, table, settings))
    return Registry(kinds)


KINDS = web.AppKey("kinds", Registry)


async def listing(request: web.Request) -> web.Response:
    """GET /api/kinds: the metadata standard every upload is checked against. Public."""
    return web.json_response({"kinds": [k.to_json() for k in request.app[KINDS].kinds.values()]})


def setup(app: web.Application, settings: Settings) -> None:
    app[KINDS] = load(settings)
    app.router.add_get("/api/kinds", listing)
