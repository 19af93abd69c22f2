"""Pinned trust roots: verifiers trust the exported key history, never the catalog's key list.

The insider (a DBA, a cloud admin) can write every catalog table: add a key to `signing_keys`,
edit an audit entry, recompute the chain and re-sign every checkpoint with that key. Against
the catalog's own keys that passes; against the pinned history it is named. A genuine
rotation, certified by the outgoing key, keeps old and new receipts verifying.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_custody_api import invoke, local_app, upload_evidence

from avidence.client import trust
from avidence.client.canonical import ALGORITHM, canonical_json, key_id
from avidence.client.verify_cli import verify, verify_bundle
from avidence.server import config, signing
from avidence.server.audit import log as audit
from avidence.server.audit import unit
from avidence.server.audit.events import AdminCommand
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_checkpoints
from avidence.server.catalog.schema_exchange import transfers
from avidence.server.cli import main
from avidence.server.state import SIGNER
from avidence.storage.local import LocalStore

from support.agencies import two_agencies
from support.forgery import insert_key, rechain
from support.servers import BIN, Api, free_port, make_api
from support.tickets import upload


def forge(private: Ed25519PrivateKey, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        name: body,
        "algorithm": ALGORITHM,
        "key_id": key_id(private.public_key()),
        "signature": base64.b64encode(private.sign(canonical_json(body))).decode(),
    }


def data_args(settings: config.Settings) -> list[str]:
    return ["--data-dir", str(settings.data_dir)]


@pytest.fixture()
async def catalog(tmp_path: Path) -> AsyncIterator[tuple[Catalog, config.Settings]]:
    """Five audit entries under one signed checkpoint, by the data dir's key."""
    settings = config.load(env={}, data_dir=tmp_path / "data")
    db = Catalog(settings.database_url)
    await db.migrate()
    signer = signing.load_signer(settings)
    await signing.register(db.engine, signer)
    for n in range(1, 6):
        event = AdminCommand(actor="cli", object=f"case:C-{n}", command="test", items=n)
        await unit.record(db.engine, event)
    await audit.checkpoint(db.engine, signer)
    try:
        yield db, settings
    finally:
        await db.close()


async def inject_and_rewrite(db: Catalog, intruder: Ed25519PrivateKey, certificate: Any) -> str:
    """The insider's attack: add a key, edit entry 3, re-chain 3..5, re-sign every checkpoint."""
    async with db.engine.begin() as conn:
        kid = await insert_key(conn, intruder, certificate=certificate)
        prev = await rechain(conn, edit_seq=3, actor="nobody")
        for point in (await conn.execute(sa.select(audit_checkpoints))).all():
            signed = forge(intruder, "checkpoint", dict(point.document["checkpoint"]))
            signed["checkpoint"]["head_hash"] = prev
            signed = forge(intruder, "checkpoint", signed["checkpoint"])
            await conn.execute(
                audit_checkpoints.update()
                .where(audit_checkpoints.c.seq == point.seq)
                .values(head_hash=prev, document=signed)
            )
    return kid


@pytest.mark.parametrize("certificate", ["none", "self-signed", "replayed"])
async def test_injected_key_and_resigned_log_fail_audit_verify_with_pinned_keys(
    catalog: tuple[Catalog, config.Settings], tmp_path: Path, certificate: str
) -> None:
    db, settings = catalog
    pinned = tmp_path / "pinned.json"
    exported = await invoke(main, ["key", "export", "--out", str(pinned), *data_args(settings)])
    assert exported.exit_code == 0, exported.output
    root = signing.load_signer(settings).key_id
    intruder = Ed25519PrivateKey.generate()
    kid = key_id(intruder.public_key())
    body = trust.certificate_body(
        public_key_pem=signing.public_pem(intruder),
        new_id=kid,
        previous_id=root,
        issued_at="2026-12-06T00:00:00Z",
    )
    forged: Any = {
        "none": None,
        "self-signed": forge(intruder, "certificate", body),
        # A genuine certificate the root once signed, for another key, pasted onto this one.
        "replayed": signing.load_signer(settings).sign("certificate", {**body, "key_id": "0" * 16}),
    }[certificate]
    await inject_and_rewrite(db, intruder, forged)

    trusting_catalog = await invoke(main, ["audit", "verify", *data_args(settings)])
    assert trusting_catalog.exit_code == 0  # the attack works against the catalog's own keys
    assert "audit log OK: 5 entries, 1 signed checkpoints" in trusting_catalog.output
    assert "NOTE trusting the public keys stored in the catalog" in trusting_catalog.output

    result = await invoke(main, ["audit", "verify", "--keys", str(pinned), *data_args(settings)])
    assert result.exit_code == 1, result.output
    assert (
        f"audit log BROKEN at entry 5: checkpoint 5 is signed by key {kid}, "
        "which does not chain to the pinned keys"
    ) in result.output
    again = await invoke(main, ["key", "export", *data_args(settings)])
    assert [k["id"] for k in json.loads(again.stdout)["keys"]] == [root]
    assert f"WARNING key {kid} is in the catalog but not certified" in again.stderr


async def test_pinned_file_with_an_uncertified_key_is_refused(
    catalog: tuple[Catalog, config.Settings], tmp_path: Path
) -> None:
    _, settings = catalog
    pinned = tmp_path / "pinned.json"
    await invoke(main, ["key", "export", "--out", str(pinned), *data_args(settings)])
    document = json.loads(pinned.read_text())
    stranger = Ed25519PrivateKey.generate()
    document["keys"].append({"id": "x", "public_key_pem": signing.public_pem(stranger)})
    pinned.write_text(json.dumps(document))
    result = await invoke(main, ["audit", "verify", "--keys", str(pinned), *data_args(settings)])
    assert result.exit_code == 2
    assert "key 2 (x) is not certified by the key before it" in result.output


async def test_key_export_roots_the_chain_at_the_real_key_not_an_older_injected_one(
    catalog: tuple[Catalog, config.Settings],
) -> None:
    db, settings = catalog
    intruder = Ed25519PrivateKey.generate()
    async with db.engine.begin() as conn:
        # "Older" than every real key.
        await insert_key(conn, intruder, created_at=datetime(2000, 1, 1, tzinfo=UTC))
    result = await invoke(main, ["key", "export", *data_args(settings)])
    assert result.exit_code == 0, result.output
    ids = [k["id"] for k in json.loads(result.stdout)["keys"]]
    assert ids == [signing.load_signer(settings).key_id]
    assert f"WARNING key {key_id(intruder.public_key())} is in the catalog" in result.stderr


def run_cli(command: Any, args: list[str]) -> Result:
    return CliRunner().invoke(command, args)


async def _receipt(api: Api, folder: Path, data: bytes, name: str) -> tuple[Path, Path]:
    evidence_id = await upload_evidence(api, data, filename=name)
    url = f"/api/evidence/{evidence_id}/receipt"
    receipt = await (await api.client.get(url, headers=api.auth())).json()
    (folder / name).write_bytes(data)
    (folder / f"{name}.receipt.json").write_text(json.dumps(receipt))
    return folder / name, folder / f"{name}.receipt.json"


async def test_rotation_keeps_old_receipts_verifying_through_the_chain(tmp_path: Path) -> None:
    folder = tmp_path / "clerk"
    folder.mkdir()
    pinned_v1, pinned_v2 = tmp_path / "pinned-v1.json", tmp_path / "pinned-v2.json"
    async for api in local_app(tmp_path):
        first = await _receipt(api, folder, os.urandom(3000), "before.ts")
        settings = api.settings
        assert (
            await invoke(main, ["key", "export", "--out", str(pinned_v1), *data_args(settings)])
        ).exit_code == 0
        rotated = await invoke(main, ["key", "rotate", *data_args(settings)])
        assert rotated.exit_code == 0, rotated.output
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store):  # the restarted server signs with the new key
            second = await _receipt(api, folder, os.urandom(3000), "after.ts")
            (folder / "api-keys.json").write_text(await (await api.client.get("/api/keys")).text())
            await audit.checkpoint(api.catalog.engine, api.client.app[SIGNER])
    finally:
        await store.close()
    old_id = json.loads(first[1].read_text())["key_id"]
    new_id = json.loads(second[1].read_text())["key_id"]
    assert old_id != new_id

    def check(pair: tuple[Path, Path], *keys: str) -> Result:
        return run_cli(verify, [str(pair[0]), "--receipt", str(pair[1]), *keys])

    assert check(first, "--keys", str(pinned_v1)).exit_code == 0
    stranded = check(second, "--keys", str(pinned_v1))
    assert stranded.exit_code == 5
    assert f"signed by key {new_id}, which does not chain to the pinned keys" in stranded.output
    # The server's current key list carries the certificate: the new key chains to the root.
    cached = ["--keys", str(pinned_v1), "--key", str(folder / "api-keys.json")]
    assert check(second, *cached).exit_code == 0
    exported = await invoke(main, ["key", "export", "--out", str(pinned_v2), *data_args(settings)])
    assert "exported 2 keys" in exported.output
    for pair in (first, second):
        result = check(pair, "--keys", str(pinned_v2))
        assert result.exit_code == 0, result.output
    audit_ok = await invoke(
        main, ["audit", "verify", "--keys", str(pinned_v1), *data_args(settings)]
    )
    # Checkpoints by the old key and by the new one: the new key counts through its certificate.
    assert audit_ok.exit_code == 0 and "audit log OK" in audit_ok.output, audit_ok.output


async def test_verify_bundle_with_pinned_keys(tmp_path: Path) -> None:
    async for api in local_app(tmp_path):
        await upload_evidence(api, os.urandom(2000), case="C-4")
        settings = api.settings
        out = tmp_path / "bundle"
        made = await invoke(
            main, ["export", "--case", "C-4", "--out", str(out), *data_args(settings)]
        )
        assert made.exit_code == 0, made.output
        pinned = tmp_path / "pinned.json"
        await invoke(main, ["key", "export", "--out", str(pinned), *data_args(settings)])
    ok = run_cli(verify_bundle, [str(out), "--keys", str(pinned)])
    assert ok.exit_code == 0 and "NOTE" not in ok.output, ok.output
    other = tmp_path / "other.json"
    stranger = Ed25519PrivateKey.generate()
    other.write_text(json.dumps({"keys": [{"public_key_pem": signing.public_pem(stranger)}]}))
    refused = run_cli(verify_bundle, [str(out), "--keys", str(other)])
    assert refused.exit_code == 5
    kid = signing.load_signer(settings).key_id
    assert (
        f"FAILED manifest.json: unknown key: signed by key {kid}, which does not chain to the "
        "pinned keys"
    ) in refused.output


def _history(path: Path, *pems: str) -> Path:
    path.write_text(json.dumps({"keys": [{"public_key_pem": pem} for pem in pems]}))
    return path


async def test_transfer_ack_refuses_a_manifest_signed_by_a_key_outside_trusted_keys(
    tmp_path: Path,
) -> None:
    settings = config.load(env={}, data_dir=tmp_path / "data")
    pinned = _history(tmp_path / "pinned.json", signing.load_signer(settings).public_pem)
    async for agencies in two_agencies(tmp_path, trusted_keys=str(pinned)):
        api, court = agencies.api, agencies.court
        token = agencies.police.tokens["uploader"]
        for n in range(2):
            await upload(api, b"clip %d" % n, case=f"GA-{n}", item="1", token=token)
        sent = []
        for n in range(2):
            found = await api.client.get(
                f"/api/cases?number=GA-{n}", headers=agencies.police.auth()
            )
            case_id = (await found.json())["cases"][0]["id"]
            response = await api.client.post(
                f"/api/cases/{case_id}/transfers",
                json={"to": court.name},
                headers=agencies.police.auth(),
            )
            sent.append(await response.json())
        genuine = await api.client.post(f"/api/transfers/{sent[0]['id']}/ack", headers=court.auth())
        assert genuine.status == 200, await genuine.text()
        intruder = Ed25519PrivateKey.generate()
        forged = forge(intruder, "manifest", sent[1]["manifest"]["manifest"])
        async with api.catalog.engine.begin() as conn:
            kid = await insert_key(conn, intruder)
            await conn.execute(
                transfers.update().where(transfers.c.id == sent[1]["id"]).values(manifest=forged)
            )
        response = await api.client.post(
            f"/api/transfers/{sent[1]['id']}/ack", headers=court.auth()
        )
        assert response.status == 409
        error = (await response.json())["error"]
        assert error["code"] == "transfer_blocked"
        assert error["details"]["problems"] == [
            f"manifest: signed by key {kid}, which does not chain to the pinned keys"
        ]


def test_serve_refuses_a_signing_key_that_does_not_chain_to_trusted_keys(tmp_path: Path) -> None:
    stranger = signing.public_pem(Ed25519PrivateKey.generate())
    pinned = _history(tmp_path / "pinned.json", stranger)
    data = tmp_path / "srv"
    command = [str(BIN / "avidence-server"), "serve", "--data-dir", str(data)]
    out = subprocess.run(
        [*command, "--port", str(free_port())],
        env={**os.environ, "AVIDENCE_TRUSTED_KEYS": str(pinned)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    ours = signing.load_signer(config.load(env={}, data_dir=data)).key_id
    assert out.stderr.strip().splitlines()[-1] == (
        f"avidence-server: error: trusted_keys: the signing key {ours} does not chain to the "
        f"pinned keys in {pinned}"
    )
