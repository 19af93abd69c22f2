"""Whole-file digests declared on a PATCH instead of at creation (`Avidence-Digests`).

A client streaming one plain upload cannot know the file's digests when it creates the upload:
it hashes while it sends. Declaring them in `Upload-Metadata` would mean reading a 100 GB file
twice, or splitting it into partial uploads only to have the server join and re-read them. So
any PATCH may carry `Avidence-Digests: blake3=<hex>, sha256=<hex>` (the names and format of the
metadata fields); the server records them on the upload before taking the body, and finishing
compares them exactly as if they had come with the metadata: a mismatch is quarantined, never
evidence. A value that contradicts one already declared is refused (409): a declaration is
never changed once made. OPTIONS names the header in `Avidence-Digest-Algorithms`.
"""

from __future__ import annotations

import dataclasses

from ..catalog import uploads as uploads_db
from ..catalog.uploads import Upload
from ..errors import BadRequest, Conflict
from .context import TusContext
from .headers import DIGEST_KEYS, validate_evidence_fields

HEADER = "Avidence-Digests"
ADVERTISED = "Avidence-Digest-Algorithms"


def parse(raw: str | None) -> dict[str, str]:
    """`blake3=<hex>, sha256=<hex>` -> {"blake3": ..., "sha256": ...}; BadRequest if malformed."""
    if raw is None:
        return {}
    found: dict[str, str] = {}
    for item in raw.split(","):
        name, sep, value = item.strip().partition("=")
        name, value = name.strip().lower(), value.strip().lower()
        if not sep or name not in DIGEST_KEYS:
            raise BadRequest(
                f"{HEADER} must be `name=hex` pairs with names from {', '.join(DIGEST_KEYS)}"
            )
        if name in found:
            raise BadRequest(f"{HEADER} names {name} twice")
        found[name] = value
    validate_evidence_fields(found, require_case=False)  # 64 hexadecimal characters each
    return found


async def declare(ctx: TusContext, upload: Upload, digests: dict[str, str]) -> Upload:
    """Record `digests` on the upload (idempotent); Conflict when one contradicts the record."""
    if not digests:
        return upload
    clashes = sorted(k for k, v in digests.items() if upload.metadata.get(k, v) != v)
    if clashes:
        raise Conflict(f"{HEADER}: {', '.join(clashes)} differ from the digests already declared")
    if all(upload.metadata.get(k) == v for k, v in digests.items()):
        return upload
    metadata = {**upload.metadata, **digests}
    await uploads_db.update(ctx.engine, upload.id, metadata=metadata)
    return dataclasses.replace(upload, metadata=metadata)
