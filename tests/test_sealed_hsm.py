"""Sealed storage with its key-encryption key in a PKCS#11 token (SoftHSM2): data keys are
wrapped by the token, the KEK never leaves it, rotation moves them to a new token key, and a
token that is gone is a clear error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from avidence.server import config
from avidence.server.catalog.db import Catalog
from avidence.server.keys import kekhsm
from avidence.server.keys.datakeys import CatalogKeyRing
from avidence.server.keys.rewrap import remaining, rewrap_all
from avidence.server.stores import configured_store
from avidence.storage.errors import KeysUnavailable
from avidence.storage.local import LocalStore
from avidence.storage.sealed import SealedStore, seal

from support.hsm import Hsm
from support.stores import chunks_of, collect

DATA = os.urandom(150_000)


async def test_kek_in_the_token_seals_rotates_and_refuses_when_gone(
    hsm: Hsm, tmp_path: Path
) -> None:
    settings = config.load(env={}, data_dir=tmp_path / "data", **hsm.settings())
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    try:
        store = await configured_store(settings, catalog.engine)
        assert isinstance(store, SealedStore)
        assert store.kek.kek_id.startswith("p11-")
        assert not list((tmp_path / "data").glob("keys/kek-*"))  # nothing on disk
        await store.open()
        target = await store.create("ev/h/a.bin")
        await store.append(target, offset=0, chunks=chunks_of(DATA, 40_000))
        await store.finish(target, size=len(DATA))
        assert await collect(await store.read("ev/h/a.bin", start=10)) == DATA[10:]
        old = store.kek.kek_id
        # Rotation: a new token key, every data key re-wrapped under it.
        new = kekhsm.load(settings, create=True, label="avidence-kek-2")
        assert new.kek_id != old
        assert await rewrap_all(catalog.engine, new, actor="test") == 1
        assert await remaining(catalog.engine) == {new.kek_id: 1}
        rotated = seal(
            LocalStore(tmp_path / "data" / "store"), ring=CatalogKeyRing(catalog.engine), kek=new
        )
        await rotated.open()
        assert await collect(await rotated.read("ev/h/a.bin")) == DATA
        # The token removed (its files gone): a clear error, nothing served or lost.
        aside = hsm.folder.with_name("hsm-aside")
        shutil.move(hsm.folder, aside)
        with pytest.raises(KeysUnavailable):
            await rotated.read("ev/h/a.bin")
        shutil.move(aside, hsm.folder)
        rotated.kek = kekhsm.load(settings, create=False, label="avidence-kek-2")
        assert await collect(await rotated.read("ev/h/a.bin")) == DATA  # back: nothing lost
        await rotated.close()
        await store.close()
    finally:
        await catalog.close()
