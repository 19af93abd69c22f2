"""`GET /api/keys` (and a bundle's `keys.json`) publish only keys that chain to the key history:
a row an insider adds to the catalog is never published, whatever certificate it carries. Keys
rotated before certificates existed are certified once (`key certify`, or `key rotate`) by the
key before them that this server still holds, so they stay published and join the history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_custody_api import invoke, local_app
from test_keys_pinned import forge

from avidence.client import trust
from avidence.client.canonical import key_id
from avidence.server import config, signing
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_log
from avidence.server.cli import main
from avidence.server.keys import files

from support.forgery import insert_key
from support.servers import Api


async def _published(api: Api) -> list[str]:
    response = await api.client.get("/api/keys")
    assert response.status == 200
    return [k["id"] for k in (await response.json())["keys"]]


async def _insert_key(catalog: Catalog, private: Ed25519PrivateKey, **values: Any) -> str:
    async with catalog.engine.begin() as conn:
        return await insert_key(conn, private, **values)


async def _before_key_history(tmp_path: Path) -> tuple[config.Settings, str, str]:
    """A data dir as a server left it before key history: a key, then a rotation that wrote a
    new key file and registered it without a certificate; the settings and both key ids."""
    settings = config.load(env={}, data_dir=tmp_path / "data")
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    try:
        first = signing.load_signer(settings)
        await signing.register(catalog.engine, first)
        second = signing.Signer(files.rotate(settings))
        await signing.register(catalog.engine, second)
    finally:
        await catalog.close()
    return settings, first.key_id, second.key_id


@pytest.mark.parametrize("certificate", ["none", "self-signed", "by-itself-as-successor"])
async def test_an_injected_key_row_is_not_published(tmp_path: Path, certificate: str) -> None:
    intruder = Ed25519PrivateKey.generate()
    kid = key_id(intruder.public_key())
    forged = None
    if certificate != "none":
        body = trust.certificate_body(
            public_key_pem=signing.public_pem(intruder),
            new_id=kid,
            previous_id=kid,
            issued_at="2026-01-01T00:00:00Z",
        )
        forged = forge(intruder, "certificate", body)
    async for api in local_app(tmp_path):
        real = signing.load_signer(api.settings).key_id
        older = datetime.now(UTC) - timedelta(days=3650)
        await _insert_key(api.catalog, intruder, certificate=forged, created_at=older)
        assert await _published(api) == [real]


async def test_a_key_rotated_before_certificates_is_certified_once(tmp_path: Path) -> None:
    settings, first, second = await _before_key_history(tmp_path)
    args = ["--data-dir", str(settings.data_dir)]
    async for api in local_app(tmp_path):
        assert await _published(api) == [second]  # the first key's receipts: stranded
    result = await invoke(main, ["key", "certify", *args])
    assert result.exit_code == 0, result.output
    assert f"certified key {second} by key {first}" in result.output
    again = await invoke(main, ["key", "certify", *args])
    assert "every key this server holds is certified already" in again.output
    async for api in local_app(tmp_path):
        assert await _published(api) == [first, second]
        async with api.catalog.engine.connect() as conn:
            actions = (await conn.execute(sa.select(audit_log.c.action))).scalars().all()
        assert actions.count("key.certified") == 1
    exported = await invoke(main, ["key", "export", *args])
    history = json.loads(exported.stdout)
    assert [k["id"] for k in history["keys"]] == [first, second]
    assert trust.load_pinned(exported.stdout).keys.keys() == {first, second}


async def test_key_rotate_certifies_earlier_uncertified_keys_first(tmp_path: Path) -> None:
    settings, first, second = await _before_key_history(tmp_path)
    args = ["--data-dir", str(settings.data_dir)]
    assert (await invoke(main, ["key", "rotate", *args])).exit_code == 0
    exported = await invoke(main, ["key", "export", *args])
    assert "exported 3 keys" in exported.output, exported.output
    ids = [k["id"] for k in json.loads(exported.stdout)["keys"]]
    assert ids[:2] == [first, second]


async def test_a_previous_key_kept_outside_the_data_dir_certifies_its_successor(
    tmp_path: Path,
) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    for path in (old, new):
        path.write_bytes(files._private_pem(Ed25519PrivateKey.generate()))
    data = tmp_path / "data"
    old_key, new_key = signing.Signer(files.load_file(old)), signing.Signer(files.load_file(new))
    settings = config.load(env={}, data_dir=data, signing_key=str(new))
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    try:
        await signing.register(catalog.engine, old_key)  # signed with old.pem before the swap
        await signing.register(catalog.engine, new_key)
    finally:
        await catalog.close()
    (tmp_path / "avidence.toml").write_text(f'signing_key = "{new}"\n')
    args = ["--data-dir", str(data), "--config", str(tmp_path / "avidence.toml")]
    intruder = Ed25519PrivateKey.generate()
    catalog = Catalog(settings.database_url)
    try:
        injected = await _insert_key(catalog, intruder)
    finally:
        await catalog.close()
    result = await invoke(main, ["key", "certify", *args, "--previous-key", str(old)])
    assert result.exit_code == 0, result.output
    assert f"certified key {new_key.key_id} by key {old_key.key_id}" in result.output
    # The row this server holds no key for is never certified, and stays unpublished.
    assert f"WARNING key {injected} is in the catalog but does not chain" in result.output
