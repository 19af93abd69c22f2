"""The key history: each new key certified by the previous one, exported for verifiers to pin.

`key rotate` signs a certificate of the new public key with the outgoing key and stores it
beside the new key's row; `key export` writes the root (the first key) and each certified
successor as one JSON file (`client.trust`, `avidence.key-history/v1`). Verifiers pin that
file, obtained out of band, and trust catalog keys only as far as certificates chain to it:
someone who can write to the catalog can add a row, but cannot make an existing key sign for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.client import trust
from avidence.client.canonical import PublicKeys, VerificationError

from .. import signing
from ..catalog.schema import signing_keys
from ..config import ConfigError, Settings
from ..signing import Signer


def certify(previous: Signer, successor: Signer) -> dict[str, Any]:
    """The outgoing key's signed statement that `successor` follows it."""
    issued = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    body = trust.certificate_body(
        public_key_pem=successor.public_pem,
        algorithm=successor.algorithm,
        new_id=successor.key_id,
        previous_id=previous.key_id,
        issued_at=issued,
    )
    return previous.sign("certificate", body)


async def uncertified_successors(
    engine: AsyncEngine, held: Sequence[Signer]
) -> list[tuple[Signer, Signer, dict[str, Any]]]:
    """Certificates to make: for each held key that carries none, one by the held key before
    it in the catalog's order, as (previous, key, certificate). Written by `attach`.

    For keys that predate certificates (rotated before key history existed). Only keys this
    server holds are certified, and only by one another: their private halves live outside
    the catalog, so a row someone added to the catalog is never vouched for. The oldest held
    key stays the root."""
    entries = await signing.published(engine)
    by_id = {signer.key_id: signer for signer in held}
    ordered = [(by_id[str(e["id"])], e) for e in entries if e["id"] in by_id]
    return [
        (previous, successor, certify(previous, successor))
        for (previous, _), (successor, entry) in pairwise(ordered)
        if entry.get("certificate") is None
    ]


async def attach(conn: AsyncConnection, key: str, certificate: dict[str, Any]) -> bool:
    """Store `certificate` on catalog key `key` unless it has one; True when stored."""
    column = signing_keys.c.certificate
    # Written as JSON null by `signing.register`, or SQL NULL by the migration that added it.
    empty = sa.or_(column.is_(None), sa.cast(column, sa.Text) == "null")
    done = await conn.execute(
        signing_keys.update()
        .where(signing_keys.c.id == key)
        .where(empty)
        .values(certificate=certificate)
    )
    return bool(done.rowcount)


@dataclass(slots=True)
class Exported:
    """The history document and the catalog keys left out because they do not chain."""

    document: dict[str, Any]
    left_out: list[str] = field(default_factory=list)


async def export(engine: AsyncEngine, *, active: str) -> Exported:
    """The root and every key certified along the chain from it to the `active` key (the one
    the provider holds, not one the catalog names), as `trust.history` picks them."""
    try:
        document, left = trust.history(await signing.published(engine), reaching=active)
    except VerificationError:
        raise ValueError(
            f"the active signing key {active} is not in the catalog or not reached by "
            "certificates from any key there: start the server once, or re-certify it with "
            "key rotate"
        ) from None
    return Exported(document, left)


async def publishable(
    engine: AsyncEngine, *, active: str, pinned: PublicKeys | None = None
) -> Exported:
    """The catalog's key entries that chain to the key history, as `GET /api/keys` and a
    bundle's `keys.json` publish them, and the ids left out. The history is the pinned one
    (`trusted_keys`) when the server has it, else the one `export` finds for the `active` key;
    a row someone added to the catalog is in neither, so it is never published."""
    entries = await signing.published(engine)
    if pinned is not None:
        chained = set(trust.extend(pinned, entries).keys)
    else:
        try:
            chained = {str(k["id"]) for k in (await export(engine, active=active)).document["keys"]}
        except ValueError:
            chained = set()
    kept = [e for e in entries if e["id"] in chained]
    return Exported({"keys": kept}, [str(e["id"]) for e in entries if e["id"] not in chained])


def load_pinned(path: Path) -> PublicKeys:
    """The keys of a pinned history file; ConfigError (one line) when it cannot be read or a
    key in it does not chain."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"keys: cannot read {path}: {exc.strerror}") from None
    try:
        return trust.load_pinned(text, where=f"keys {path}")
    except VerificationError as exc:
        raise ConfigError(str(exc)) from None


async def trusted(engine: AsyncEngine, pinned: PublicKeys) -> PublicKeys:
    """The pinned keys plus catalog keys whose certificates chain to them."""
    return trust.extend(pinned, await signing.published(engine))


async def pinned_for(engine: AsyncEngine, settings: Settings, signer: Signer) -> PublicKeys:
    """The `trusted_keys` history the server (and its admin commands) verify with; ConfigError
    when the signing key does not chain to it, since everything it signed would then be
    refused by its own verifiers."""
    pinned = load_pinned(Path(settings.trusted_keys))
    if signer.key_id not in (await trusted(engine, pinned)).keys:
        raise ConfigError(
            f"trusted_keys: the signing key {signer.key_id} does not chain to the pinned keys "
            f"in {settings.trusted_keys}"
        )
    return pinned
