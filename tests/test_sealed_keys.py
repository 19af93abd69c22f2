"""Key-encryption keys of sealed storage: `key rotate-kek` and `key rewrap` move every data key
to a new KEK without touching the objects; a data folder whose KEK is lost refuses to start."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from avidence.server import config
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_log
from avidence.server.cli import main
from avidence.server.stores import configured_store
from avidence.storage.sealed import SealedStore

from support.stores import chunks_of, collect

DATA = os.urandom(200_000)


async def _put(data_dir: Path, key: str) -> None:
    settings = config.load(env={}, data_dir=data_dir)
    catalog = Catalog(settings.database_url)
    try:
        store = await configured_store(settings, catalog.engine)
        assert isinstance(store, SealedStore)  # a new data folder seals
        await store.open()
        target = await store.create(key)
        await store.append(target, offset=0, chunks=chunks_of(DATA, 50_000))
        await store.finish(target, size=len(DATA))
        await store.close()
    finally:
        await catalog.close()


async def _read(data_dir: Path, key: str) -> bytes:
    settings = config.load(env={}, data_dir=data_dir)
    catalog = Catalog(settings.database_url)
    try:
        store = await configured_store(settings, catalog.engine)
        await store.open()
        try:
            return await collect(await store.read(key))
        finally:
            await store.close()
    finally:
        await catalog.close()


async def _actions(data_dir: Path) -> list[str]:
    catalog = Catalog(config.load(env={}, data_dir=data_dir).database_url)
    try:
        async with catalog.engine.connect() as conn:
            return list((await conn.execute(sa.select(audit_log.c.action))).scalars())
    finally:
        await catalog.close()


def test_rewrap_moves_every_data_key_to_the_new_kek(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert CliRunner().invoke(main, ["migrate", "--data-dir", str(data_dir)]).exit_code == 0
    asyncio.run(_put(data_dir, "ev/1/a.bin"))
    old = [p.name for p in (data_dir / "keys").glob("kek-*.json")]
    assert len(old) == 1
    rotated = CliRunner().invoke(main, ["key", "rotate-kek", "--data-dir", str(data_dir)])
    assert rotated.exit_code == 0, rotated.output
    rewrapped = CliRunner().invoke(main, ["key", "rewrap", "--data-dir", str(data_dir)])
    assert rewrapped.exit_code == 0, rewrapped.output
    assert "rewrapped 1 data keys" in rewrapped.output
    # The old KEK can go: the object opens under the new one alone.
    (data_dir / "keys" / old[0]).unlink()
    assert asyncio.run(_read(data_dir, "ev/1/a.bin")) == DATA
    assert "keys.rewrapped" in asyncio.run(_actions(data_dir))
    again = CliRunner().invoke(main, ["key", "rewrap", "--data-dir", str(data_dir)])
    assert "rewrapped 0 data keys" in again.output


def test_lost_kek_folder_stops_start_up_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert CliRunner().invoke(main, ["migrate", "--data-dir", str(data_dir)]).exit_code == 0
    asyncio.run(_put(data_dir, "ev/1/a.bin"))
    for path in (data_dir / "keys").glob("kek*"):
        path.unlink()
    with pytest.raises(config.ConfigError, match="restore the KEK folder"):
        asyncio.run(_read(data_dir, "ev/1/a.bin"))
    # Nothing was made in its place: a new KEK would hide the loss.
    assert not list((data_dir / "keys").glob("kek*"))
