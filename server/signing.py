"""The server's Ed25519 signing keys.

The private key lives in the data dir (`keys/ed25519-<id>.pem`, mode 0600, created on first
start), in a file named by the `signing_key` setting, or in `AVIDENCE_SIGNING_KEY_PEM`; replicas
share one key through the last two. Public keys are also recorded in the catalog, so
`GET /api/keys` lists every key that ever signed, on every replica, after any rotation.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import ALGORITHM, canonical_json, key_id

from .catalog.schema import signing_keys
from .config import ConfigError, Settings

ENV_PEM = "AVIDENCE_SIGNING_KEY_PEM"


def public_pem(private: Ed25519PrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _private_pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"signing_key: {where} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing_key: {where} is not an Ed25519 key")
    return key


@dataclass(slots=True, frozen=True)
class Signer:
    """The active private key and its id."""

    private: Ed25519PrivateKey
    key_id: str

    def sign(self, body_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """`{body_name: body, "algorithm", "key_id", "signature"}` over canonical JSON."""
        signature = self.private.sign(canonical_json(body))
        return {
            body_name: body,
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "signature": base64.b64encode(signature).decode(),
        }


def _key_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def load_signer(settings: Settings) -> Signer:
    """The active key from env, the configured file, or the data dir (created when absent)."""
    pem = os.environ.get(ENV_PEM)
    if pem:
        private = _load_pem(pem.encode(), ENV_PEM)
    elif settings.signing_key:
        path = Path(settings.signing_key)
        try:
            private = _load_pem(path.read_bytes(), str(path))
        except FileNotFoundError:
            raise ConfigError(f"signing_key: {path} not found") from None
    else:
        folder = _key_dir(settings)
        active = folder / "active"
        if active.exists():
            path = folder / active.read_text().strip()
            private = _load_pem(path.read_bytes(), str(path))
        else:
            private = _write_new(folder)
    return Signer(private, key_id(private.public_key()))


def _write_new(folder: Path) -> Ed25519PrivateKey:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    name = f"ed25519-{key_id(private.public_key())}.pem"
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_private_pem(private))
    tmp = folder / "active.tmp"
    tmp.write_text(name + "\n")
    tmp.replace(folder / "active")
    return private


def rotate(settings: Settings) -> Signer:
    """Make a new data-dir key the active one; old keys stay on disk and in the catalog."""
    if os.environ.get(ENV_PEM) or settings.signing_key:
        raise ConfigError("signing_key: the key is managed outside the data dir; rotate it there")
    private = _write_new(_key_dir(settings))
    return Signer(private, key_id(private.public_key()))


async def register(engine: AsyncEngine, signer: Signer) -> None:
    """Record the public key in the catalog (once) so every replica can publish it. Replicas
    starting together race to insert the same key; the loser finds it there."""
    try:
        async with engine.begin() as conn:
            known = await conn.execute(
                sa.select(signing_keys.c.id).where(signing_keys.c.id == signer.key_id)
            )
            if known.first() is not None:
                return
            await conn.execute(
                signing_keys.insert().values(
                    id=signer.key_id,
                    algorithm=ALGORITHM,
                    public_key_pem=public_pem(signer.private),
                    created_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        pass  # another replica registered it a moment ago


async def published(engine: AsyncEngine) -> list[dict[str, str]]:
    """Every public key that ever signed, oldest first (the `GET /api/keys` document)."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(signing_keys).order_by(signing_keys.c.created_at))
        return [
            {
                "id": row.id,
                "algorithm": row.algorithm,
                "public_key_pem": row.public_key_pem,
                "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
            }
            for row in rows
        ]
