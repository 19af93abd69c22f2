"""The server's signer (Ed25519, or SM2 with SM3 under `suite = "gm"`), whichever provider
holds the key.

Every signed document (receipts, transfer manifests and acknowledgements, export manifests,
audit checkpoints, key certificates) goes through `Signer.sign`, which asks a
`keys.base.KeyProvider` for the signature: key files outside the catalog (`keys.files`, the
default) or a PKCS#11 token (`keys.pkcs11`, `key_provider = "pkcs11"`). Private keys never
enter the catalog. Public keys are recorded there (`register`) so `GET /api/keys` lists every
key that ever signed, on every replica; that list is a cache for convenience, never a trust
root: verifiers pin the exported key history (`keys.history`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import canonical_json

from .catalog.schema import signing_keys
from .config import ConfigError, Settings
from .keys import algorithms, base, files
from .keys.base import KeyProvider, KeyUnavailable

ENV_PEM = files.ENV_PEM

__all__ = ["ENV_PEM", "KeyUnavailable", "Signer", "load_signer", "published", "register"]


def public_pem(private: algorithms.Private) -> str:
    """The public PEM of a private key held in memory (tests and file keys)."""
    return base.public_pem(algorithms.public(private))


@dataclass(slots=True, frozen=True)
class Signer:
    """Signs canonical JSON documents with the active key, through its provider."""

    provider: KeyProvider

    @property
    def key_id(self) -> str:
        return self.provider.key_id

    @property
    def public_pem(self) -> str:
        return base.public_pem(self.provider.public_key)

    @property
    def algorithm(self) -> str:
        """`ed25519` or `sm2-sm3`: the name every document it signs carries."""
        return self.provider.public_key.algorithm

    def sign(self, body_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """`{body_name: body, "algorithm", "key_id", "signature"}` over canonical JSON.
        Raises `KeyUnavailable` when the provider cannot sign now."""
        signature = self.provider.sign(canonical_json(body))
        return {
            body_name: body,
            "algorithm": self.algorithm,
            "key_id": self.key_id,
            "signature": base64.b64encode(signature).decode(),
        }


def load_signer(settings: Settings, *, any_suite: bool = False) -> Signer:
    """The active key from the configured provider; `KeyUnavailable` or `ConfigError` (one
    line each) when it cannot be used, never a fallback to another key. A key of another
    algorithm than the suite's is refused too (a `gm` deployment must not go on signing with
    Ed25519), except for `key rotate` (`any_suite`), which is how it gets a key of the suite."""
    if settings.key_provider == "pkcs11":
        from .keys import pkcs11  # the PKCS#11 binding loads only where a token is configured

        signer = Signer(pkcs11.open_key(settings))
    else:
        signer = Signer(files.load(settings))
    if not any_suite and signer.algorithm != settings.signature_algorithm:
        raise ConfigError(
            f"suite: the active signing key {signer.key_id} is {signer.algorithm}, but suite = "
            f"{settings.suite} signs with {settings.signature_algorithm}; run "
            "`avidence-server key rotate` to make and certify a key of the suite"
        )
    return signer


def rotate(settings: Settings) -> Signer:
    """Make a new data-dir key the active one; old keys stay on disk and in the catalog."""
    return Signer(files.rotate(settings))


async def register(
    engine: AsyncEngine, signer: Signer, *, certificate: dict[str, Any] | None = None
) -> None:
    """Record the public key in the catalog (once) so every replica can publish it, with the
    certificate its predecessor signed when there is one. Replicas starting together race to
    insert the same key; the loser finds it there."""
    try:
        async with engine.begin() as conn:
            known = (
                await conn.execute(
                    sa.select(signing_keys.c.id, signing_keys.c.certificate).where(
                        signing_keys.c.id == signer.key_id
                    )
                )
            ).first()
            if known is not None:
                if certificate is not None and known.certificate is None:
                    await conn.execute(
                        signing_keys.update()
                        .where(signing_keys.c.id == signer.key_id)
                        .values(certificate=certificate)
                    )
                return
            await conn.execute(
                signing_keys.insert().values(
                    id=signer.key_id,
                    algorithm=signer.algorithm,
                    public_key_pem=signer.public_pem,
                    created_at=datetime.now(UTC),
                    certificate=certificate,
                )
            )
    except IntegrityError:
        pass  # another replica registered it a moment ago


async def published(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every public key that ever signed, oldest first (the `GET /api/keys` document), each
    with the certificate by its predecessor when it was rotated in by `key rotate`."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(signing_keys).order_by(signing_keys.c.created_at))
        keys: list[dict[str, Any]] = []
        for row in rows:
            entry: dict[str, Any] = {
                "id": row.id,
                "algorithm": row.algorithm,
                "public_key_pem": row.public_key_pem,
                "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
            }
            if row.certificate is not None:
                entry["certificate"] = dict(row.certificate)
            keys.append(entry)
        return keys
