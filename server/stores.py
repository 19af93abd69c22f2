"""Build the configured Store; the only place that names backends and decides on sealing."""

from __future__ import annotations

import logging
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store
from avidence.storage.errors import KeysUnavailable
from avidence.storage.local import LocalStore
from avidence.storage.sealed import seal
from avidence.storage.sealformat import Suite

from .catalog.schema import data_keys, uploads
from .config import ConfigError, Settings
from .evidence import tallies
from .keys import kek
from .keys.datakeys import CatalogKeyRing

log = logging.getLogger("avidence.server.stores")


def build_store(settings: Settings) -> Store:
    """The backend itself, unsealed (`configured_store` decides on sealing)."""
    if settings.storage == "s3":
        from avidence.storage.s3 import S3Store  # boto3 is only imported when S3 is used
        from avidence.storage.s3body import PartChecksum

        return S3Store(
            endpoint_url=settings.s3_endpoint or None,
            bucket=settings.s3_bucket,
            region=settings.s3_region or None,
            prefix=settings.s3_prefix,
            part_size=settings.s3_part_size,
            part_checksum=cast("PartChecksum", settings.s3_part_checksum),
        )
    return LocalStore(settings.store_root)


async def _count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


def _shared_kek(settings: Settings) -> bool:
    """Whether every replica will find the same KEK: one box (a SQLite catalog cannot be
    shared), a KEK folder named or already holding a KEK, or the KEK in the PKCS#11 token."""
    if settings.database_url.startswith("sqlite") or settings.key_provider == "pkcs11":
        return True
    return bool(settings.kek_dir) or (kek.kek_folder(settings) / kek.ACTIVE).exists()


async def sealing(settings: Settings, engine: AsyncEngine) -> tuple[bool, int]:
    """Whether to seal, and how many data keys the catalog holds. `auto` seals a new store
    (nothing stored yet) and one sealed before, and leaves a store that was plain plain. On a
    shared catalog it seals a new store only when the KEK is shared too: replicas starting
    together must not each make a KEK of their own."""
    keys = await _count(engine, data_keys)
    if settings.encryption != "auto":
        return settings.encryption == "on", keys
    if keys:
        return True, keys
    async with engine.connect() as conn:
        stored = await tallies.any_stored(conn)
    if stored or await _count(engine, uploads):
        log.warning("store.plain reason=existing_plain_store hint=set_encryption_on")
        return False, keys
    if not _shared_kek(settings):
        log.warning("store.plain reason=no_shared_kek hint=set_kek_dir_or_encryption_on")
        return False, keys
    return True, keys


async def configured_store(settings: Settings, engine: AsyncEngine) -> Store:
    """The configured store, sealed when `encryption` says so (not opened yet). A missing KEK
    is created only while no data key exists; otherwise start-up stops with one line."""
    inner = build_store(settings)
    sealed, keys = await sealing(settings, engine)
    if not sealed:
        return inner
    try:
        keks = kek.configured(settings, create=keys == 0)
    except KeysUnavailable as exc:
        raise ConfigError(
            f"kek_dir: {exc}, but {keys} sealed objects need one: restore the KEK folder"
        ) from None
    log.info("store.sealed suite=%s kek=%s", settings.encryption_suite, keks.kek_id)
    return seal(
        inner,
        ring=CatalogKeyRing(engine),
        kek=keks,
        suite=Suite.named(settings.encryption_suite),
    )
