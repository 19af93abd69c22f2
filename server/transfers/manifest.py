"""Transfer manifests and acknowledgements: canonical JSON signed with the server's key.

The manifest states what the sender hands over: for each item its case, kind, metadata, size,
digests and the receipt the server signed when it received the original. Verifying it needs
only the public keys (`GET /api/keys`), so the receiving agency can check it offline too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client import trust
from avidence.client.canonical import PublicKeys, VerificationError, canonical_json

from .. import signing
from ..evidence import receipts
from ..evidence.records import Evidence

MANIFEST_TYPE = "avidence.transfer/v1"
ACK_TYPE = "avidence.transfer-ack/v1"
DIGESTS = ("blake3", "sha256", "sm3")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


async def item_entry(engine: AsyncEngine, record: Evidence) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "evidence_id": record.id,
        "case": record.case_id,
        "item": record.item,
        "kind": record.metadata.get("kind", "other"),
        "filename": record.filename,
        "size": record.size,
        "metadata": dict(record.metadata),
        "receipt": await receipts.get(engine, record.id),
    }
    entry.update({name: getattr(record, name) for name in DIGESTS if getattr(record, name)})
    return entry


def digests_of(entry: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(entry[name]) for name in DIGESTS if entry.get(name)}


def fingerprint(signed: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical signed manifest: what an acknowledgement refers to."""
    return hashlib.sha256(canonical_json(dict(signed))).hexdigest()


def countersign(checkpoint: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What an acknowledgement says of the sender's log head: the checkpoint's body and the
    SHA-256 of the signed document, so the receiver's signature vouches for both."""
    if not checkpoint:
        return None
    return {"checkpoint": checkpoint.get("checkpoint"), "document_sha256": fingerprint(checkpoint)}


async def _keys(engine: AsyncEngine, pinned: PublicKeys | None) -> PublicKeys:
    """The catalog's published keys (with `pinned`, the `trusted_keys` history: only those
    that chain to it)."""
    published = await signing.published(engine)
    if pinned is not None:
        return trust.extend(pinned, published)
    return PublicKeys.load(json.dumps({"keys": published}))


async def verify_checkpoint(
    engine: AsyncEngine, signed: Mapping[str, Any], *, pinned: PublicKeys | None = None
) -> dict[str, Any]:
    """The body of a sender's signed log head; VerificationError when it does not verify."""
    return (await _keys(engine, pinned)).verify(signed, body="checkpoint")


async def verify(
    engine: AsyncEngine, signed: Mapping[str, Any], *, pinned: PublicKeys | None = None
) -> dict[str, Any]:
    """The manifest body when its signature holds under a key this server published (with
    `pinned`, the `trusted_keys` history: only catalog keys that chain to it); VerificationError
    otherwise (an edited manifest, or a key that is unknown or does not chain)."""
    keys = await _keys(engine, pinned)
    body = keys.verify(signed, body="manifest")
    if body.get("type") != MANIFEST_TYPE:
        raise VerificationError(f"not a transfer manifest: {body.get('type')!r}")
    return body
