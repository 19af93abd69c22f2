"""An insider who can write the catalog against the witnesses: every checkpoint is also kept in an
append-only file outside the catalog, and `audit verify` (no extra flags) names the tail cut
after the newest checkpoint, a deleted checkpoint with the entries after the previous one, a
chain recomputed and re-signed with an injected key, a catalog replaced by a forgery, and a
rollback to a backup older than a witnessed checkpoint. A current backup still verifies."""

from __future__ import annotations

import base64
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_custody_api import invoke

from avidence.client.canonical import canonical_json, key_id
from avidence.server import config, signing
from avidence.server.audit import log as audit
from avidence.server.audit import witness
from avidence.server.catalog.schema import audit_checkpoints, audit_head, audit_log, signing_keys
from avidence.server.cli import main
from avidence.server.state import SIGNER
from avidence.storage.local import LocalStore

from support.forgery import rechain
from support.seaweed import SeaweedServer
from support.servers import Api, make_api
from support.tickets import upload


@pytest.fixture()
async def site(tmp_path: Path) -> AsyncIterator[Api]:
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store):
            yield api
    finally:
        await store.close()


async def seal(api: Api) -> int:
    """A signed checkpoint of the current head, handed to the configured witnesses."""
    signer = api.client.server.app[SIGNER]
    document = await audit.checkpoint(
        api.catalog.engine, signer, witnesses=witness.configured(api.settings)
    )
    assert document is not None
    return int(document["checkpoint"]["seq"])


async def verify(api: Api) -> Result:
    return await invoke(main, ["audit", "verify", "--data-dir", str(api.settings.data_dir)])


def broken(result: Result, kind: str) -> None:
    assert result.exit_code == 1, result.output
    assert f"BROKEN ({kind})" in result.output, result.output


async def _sql(api: Api, *statements: sa.Executable) -> None:
    async with api.catalog.engine.begin() as conn:
        for statement in statements:
            await conn.execute(statement)


async def test_a_fresh_site_witnesses_to_a_file_and_verifies(site: Api) -> None:
    await upload(site, b"first", case="W-1")
    await seal(site)
    await upload(site, b"second", case="W-1")
    await seal(site)
    kept = site.settings.data_dir / "witness" / "checkpoints.jsonl"
    assert len(kept.read_text().splitlines()) == 2
    result = await verify(site)
    assert result.exit_code == 0, result.output
    assert "2 witnessed checkpoints extended" in result.output


async def test_tail_deleted_after_the_newest_checkpoint_is_named(site: Api) -> None:
    await upload(site, b"one", case="W-2")
    sealed = await seal(site)
    await upload(site, b"two", case="W-2")  # entries no checkpoint covers yet
    await _sql(site, audit_log.delete().where(audit_log.c.seq > sealed))
    result = await verify(site)
    broken(result, "truncation")  # the head row still counts the deleted entries
    broken(result, "missing")  # evidence two has no evidence.created any more
    # An insider who also fixes the head row is still caught by the facts.
    await _sql(site, audit_head.update().values(seq=sealed))
    broken(await verify(site), "missing")


async def test_newest_checkpoint_deleted_with_the_entries_after_the_previous_one(
    site: Api,
) -> None:
    await upload(site, b"one", case="W-3")
    first = await seal(site)
    await upload(site, b"two", case="W-3")
    second = await seal(site)
    head = await _head_hash(site, first)
    await _sql(
        site,
        audit_checkpoints.delete().where(audit_checkpoints.c.seq == second),
        audit_log.delete().where(audit_log.c.seq > first),
        audit_head.update().values(seq=first, hash=head),
    )
    result = await verify(site)
    broken(result, "rollback")
    assert f"checkpoint {second}" in result.output


async def test_injected_key_with_recomputed_chain_and_resigned_checkpoints_is_a_fork(
    site: Api,
) -> None:
    await upload(site, b"one", case="W-4")
    await seal(site)
    await upload(site, b"two", case="W-4")
    await seal(site)
    await _rewrite_with_own_key(site, edit_seq=2)
    result = await verify(site)
    broken(result, "fork")
    assert "BROKEN at entry" not in result.output  # the chain itself is self-consistent


async def test_a_catalog_replaced_by_a_self_consistent_forgery_is_caught(
    site: Api, tmp_path: Path
) -> None:
    await upload(site, b"one", case="W-5")
    await seal(site)
    # The forger builds a new catalog with a key of their own and puts it in place.
    forged = await make_forgery(tmp_path / "forger")
    await site.catalog.engine.dispose()
    _replace_catalog(site, forged)
    result = await verify(site)
    assert result.exit_code == 1, result.output
    assert "BROKEN (unsigned)" in result.output or "BROKEN (rollback)" in result.output


async def test_rollback_to_a_backup_older_than_a_witnessed_checkpoint_is_named(
    site: Api, tmp_path: Path
) -> None:
    await upload(site, b"one", case="W-6")
    await seal(site)
    old = await _backup(site, tmp_path / "old.db")
    await upload(site, b"two", case="W-6")
    await seal(site)
    current = await _backup(site, tmp_path / "current.db")
    await site.catalog.engine.dispose()
    _replace_catalog(site, old)
    broken(await verify(site), "rollback")
    _replace_catalog(site, current)  # a backup taken after the newest checkpoint is fine
    result = await verify(site)
    assert result.exit_code == 0, result.output


# -- the insider's tools ------------------------------------------------------------------------


async def _head_hash(api: Api, seq: int) -> str:
    async with api.catalog.engine.connect() as conn:
        found = await conn.execute(sa.select(audit_log.c.hash).where(audit_log.c.seq == seq))
        return str(found.scalar_one())


async def _rewrite_with_own_key(api: Api, *, edit_seq: int) -> None:
    """Edit one entry, recompute every later hash, replace the checkpoints with ones signed by
    a key of the insider's, registered in the catalog."""
    own = Ed25519PrivateKey.generate()
    own_id = key_id(own.public_key())
    async with api.catalog.engine.begin() as conn:
        await conn.execute(
            signing_keys.insert().values(
                id=own_id,
                algorithm="ed25519",
                public_key_pem=signing.public_pem(own),
                created_at=datetime.now(UTC),
            )
        )
        prev = await rechain(conn, edit_seq=edit_seq, actor="someone else")
        last = (await conn.execute(sa.select(sa.func.max(audit_log.c.seq)))).scalar_one()
        await conn.execute(audit_checkpoints.delete())
        body = {"seq": last, "head_hash": prev, "count": last, "time": "now"}
        document = {
            "checkpoint": body,
            "algorithm": "ed25519",
            "key_id": own_id,
            "signature": base64.b64encode(own.sign(canonical_json(body))).decode(),
        }
        await conn.execute(
            audit_checkpoints.insert().values(
                seq=last,
                head_hash=prev,
                count=last,
                time=datetime.now(UTC),
                document=document,
            )
        )


async def make_forgery(tmp_path: Path) -> Path:
    """A whole catalog of the forger's: its own key, its own uploads, its own checkpoint."""
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        async for forger in make_api(tmp_path, store):
            await upload(forger, b"something else", case="W-5")
            await seal(forger)
            return await _backup(forger, tmp_path / "forged.db")
    finally:
        await store.close()
    raise AssertionError("unreachable")


async def _backup(api: Api, path: Path) -> Path:
    async with api.catalog.engine.connect() as conn:
        await conn.execute(sa.text(f"VACUUM INTO '{path}'"))
    return path


def _replace_catalog(api: Api, source: Path) -> None:
    target = api.settings.data_dir / "catalog.db"
    for leftover in (target.with_name("catalog.db-wal"), target.with_name("catalog.db-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(source, target)


async def test_an_s3_witness_keeps_checkpoints_under_compliance_lock(
    tmp_path: Path, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    """On a bucket with Object Lock, a witnessed checkpoint cannot be deleted or overwritten,
    not even by the credentials the server itself uses."""
    s3_env.client().create_bucket(Bucket=s3_bucket, ObjectLockEnabledForBucket=True)
    settings = config.load(
        env={},
        data_dir=tmp_path / "data",
        s3_endpoint=s3_env.endpoint,
        audit_witnesses=f"s3://{s3_bucket}/witness,file://{tmp_path / 'w.jsonl'}",
    )
    witnesses = witness.configured(settings)
    assert [w.name for w in witnesses] == [
        f"s3://{s3_bucket}/witness",
        f"file://{tmp_path}/w.jsonl",
    ]
    document = {"checkpoint": {"seq": 7, "head_hash": "ab" * 32}, "signature": "x"}
    assert await witness.publish(witnesses, document) == 2
    assert await witnesses[0].read() == [document]
    key = f"witness/{7:012d}-{'ab' * 32}.json"
    client = s3_env.client()
    versions = client.list_object_versions(Bucket=s3_bucket, Prefix=key)["Versions"]
    with pytest.raises(ClientError):
        client.delete_object(Bucket=s3_bucket, Key=key, VersionId=versions[0]["VersionId"])
    with pytest.raises(ClientError):  # If-None-Match: the same checkpoint is not written twice
        await witnesses[0].publish({**document, "signature": "forged"})
    assert await witnesses[0].read() == [document]
