"""The backup and restore procedures of docs/operations.md, run for real: a catalog dumped with
pg_dump (or copied with SQLite's online `.backup` while the server runs) and restored elsewhere
still verifies (`avidence-server audit verify`) and serves the same evidence and receipts."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import blake3
import pytest

from support.postgres import create_database, drop_database
from support.servers import BIN, ServerProcess, metadata

MiB = 1024 * 1024
# Media jobs are not what is backed up here; without them the servers start in a second.
QUIET = {"AVIDENCE_EMBEDDED_WORKER": "false", "AVIDENCE_SCRUB_INTERVAL": "0"}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "avidence-server"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def _upload(server: ServerProcess, token: str) -> tuple[str, bytes]:
    data = os.urandom(2 * MiB + 3)
    headers = {
        "Authorization": f"Bearer {token}",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(case="B-1", filename="b.ts"),
        "Content-Type": "application/offset+octet-stream",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/files/", data=io.BytesIO(data), headers=headers) as r,
    ):
        assert r.status == 201, await r.text()
        return r.headers["Avidence-Evidence-Id"], data


async def _read(server: ServerProcess, token: str, evidence_id: str) -> tuple[Any, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/api/evidence/{evidence_id}", headers=auth) as r:
            assert r.status == 200, await r.text()
            record = await r.json()
        async with session.get(
            f"{server.url}/api/evidence/{evidence_id}/receipt", headers=auth
        ) as r:
            assert r.status == 200
            receipt = await r.json()
    return record, receipt


def _same(before: tuple[Any, Any], after: tuple[Any, Any]) -> None:
    """The receipt is byte for byte the one issued; the record's facts are unchanged (its
    media probe and jobs may move on in the meantime)."""
    assert after[1] == before[1]
    facts = ("id", "case_id", "size", "blake3", "sha256", "storage_key", "received_at")
    changed = {k: (before[0][k], after[0][k]) for k in facts if before[0][k] != after[0][k]}
    assert not changed, changed


def _verify(*args: str) -> None:
    result = _cli("audit", "verify", *args)
    assert result.returncode == 0 and "audit log OK" in result.stdout, result.stderr


def test_pg_dump_and_pg_restore_give_back_a_verifiable_catalog(
    server_factory: Any, postgres_url: str, tmp_path: Path
) -> None:
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian package postgresql-client)")
    data_dir = tmp_path / "box"
    server = server_factory("--database", postgres_url, data_dir=data_dir, env=QUIET)
    token = server.token()
    evidence_id, data = asyncio.run(_upload(server, token))
    before = asyncio.run(_read(server, token, evidence_id))
    server.stop()
    # docs/operations.md: pg_dump --format=custom ... ; pg_restore --no-owner --dbname ...
    dump = tmp_path / "catalog.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={dump}", f"--dbname={postgres_url}"],
        check=True,
        timeout=60,
    )
    restored = create_database()
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={restored}", str(dump)],
            check=True,
            timeout=60,
        )
        _verify("--data-dir", str(data_dir), "--database", restored)
        again = ServerProcess(data_dir, server.port, ["--database", restored], server.env)
        again.start()
        try:
            after = asyncio.run(_read(again, token, evidence_id))
        finally:
            again.stop()
    finally:
        drop_database(restored)
    _same(before, after)
    assert after[0]["blake3"] == blake3.blake3(data).hexdigest()


def test_sqlite_online_backup_while_serving_restores_elsewhere(
    server_factory: Any, tmp_path: Path
) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("sqlite3 not installed (Debian package sqlite3)")
    box = tmp_path / "box"
    server = server_factory(data_dir=box, env=QUIET)
    token = server.token()
    evidence_id, _ = asyncio.run(_upload(server, token))
    before = asyncio.run(_read(server, token, evidence_id))
    # docs/operations.md: while serve runs, copy the catalog with SQLite's online backup, then
    # the keys and the store (the store is write-once: a plain copy is consistent).
    spare = tmp_path / "spare"
    spare.mkdir()
    subprocess.run(
        ["sqlite3", str(box / "catalog.db"), f".backup '{spare / 'catalog.db'}'"],
        check=True,
        timeout=60,
    )
    shutil.copytree(box / "keys", spare / "keys")
    shutil.copytree(box / "store", spare / "store")
    server.stop()
    _verify("--data-dir", str(spare))
    moved = ServerProcess(spare, server.port, [], server.env)
    moved.start()
    try:
        after = asyncio.run(_read(moved, token, evidence_id))
    finally:
        moved.stop()
    _same(before, after)
