"""Whole-file digests declared on a PATCH instead of at creation (`Avidence-Digests`).

A client streaming one plain upload cannot know the file's digests when it creates the upload:
it hashes while it sends. Declaring them in `Upload-Metadata` would mean reading a 100 GB file
twice, or splitting it into partial uploads only to have the server join and re-read them. So
any PATCH may carry `Avidence-Digests: blake3=<hex>, sha256=<hex>` (the names and format of the
metadata fields); the server records them on the upload before taking the body, and finishing
compares them exactly as if they had come with the metadata: a mismatch is quarantined, never
evidence. A value that contradicts one already declared is refused (409): a declaration is
never changed once made. OPTIONS names the header in `Avidence-Digest-Algorithms`.

Only digests the server computes (`digests` setting) may be declared: a declared `sm3` while sm3
was off was stored unchecked and became part of the evidence record. Refusing it (400
`digest_not_computed`) rather than computing it for that one upload keeps the cost of every
upload what the operator chose (SM3 runs at a quarter of SHA-256's speed, on 100 GB files) and
tells the client at once instead of at the end of the transfer; OPTIONS advertises what is
computed. An upload declared before this rule is still checked: finishing computes any declared
digest the running hash lacks by reading the object back (`finish.verify`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from avidence.storage.digests import normalize

from ..catalog import uploads as uploads_db
from ..catalog.uploads import Upload
from ..errors import BadRequest, Conflict, DigestNotComputed
from .context import TusContext
from .headers import DIGEST_KEYS, validate_evidence_fields

HEADER = "Avidence-Digests"
ADVERTISED = "Avidence-Digest-Algorithms"


def computed(settings_digests: tuple[str, ...]) -> tuple[str, ...]:
    """The digests this server computes of every upload (BLAKE3 always)."""
    return normalize(settings_digests)


def require_computed(declared: Iterable[str], settings_digests: tuple[str, ...]) -> None:
    """DigestNotComputed (400) naming declared digests the server does not compute."""
    known = computed(settings_digests)
    missing = sorted(set(declared) - set(known))
    if missing:
        raise DigestNotComputed(
            f"this server does not compute {', '.join(missing)}; declare only "
            f"{', '.join(known)} (OPTIONS: {ADVERTISED})",
            details={"not_computed": missing, "computed": list(known)},
        )


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
