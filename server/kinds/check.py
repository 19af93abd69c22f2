"""The tus creation check: metadata against its kind, as one 400 naming every field at fault."""

from __future__ import annotations

from ..errors import BadRequest, MetadataIncomplete
from .registry import MetadataInvalid, Registry


def check_kind(registry: Registry, metadata: dict[str, str]) -> str:
    """The kind's name; BadRequest for an unknown kind, MetadataIncomplete (400) otherwise."""
    try:
        return registry.check(metadata)
    except MetadataInvalid as exc:
        raise MetadataIncomplete(
            str(exc),
            details={"kind": exc.kind, "missing": exc.missing, "malformed": exc.malformed},
        ) from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
