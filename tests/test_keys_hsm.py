"""Signing through a PKCS#11 token (SoftHSM2): the server never holds the private key.

Receipts signed in the token verify with the published key; a restarted server signs with the
same token key; a token that cannot be used stops `serve` at start-up with one line, and one
that goes away while serving makes custody actions answer 503 `signing_unavailable` (the
upload's bytes kept) instead of being signed with any other key.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from avidence.client import trust
from avidence.client.canonical import PublicKeys, key_id
from avidence.server.catalog import uploads as uploads_db
from avidence.server.cli import main
from avidence.storage.local import LocalStore

from support.hsm import PIN, Hsm
from support.servers import BIN, Api, free_port, make_api, metadata


@pytest.fixture()
async def hsm_api(tmp_path: Path, hsm: Hsm) -> AsyncIterator[Api]:
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store, **hsm.settings()):
            yield api
    finally:
        await store.close()


def upload_headers(token: str, size: int, filename: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(size),
        "Upload-Metadata": metadata(case="C-1", filename=filename),
        "Content-Type": "application/offset+octet-stream",
    }


async def test_receipts_are_signed_in_the_token_and_verify(hsm_api: Api, hsm: Hsm) -> None:
    data = os.urandom(70_000)
    headers = upload_headers(hsm_api.uploader, len(data), "room1.ts")
    created = await hsm_api.client.post("/files/", data=io.BytesIO(data), headers=headers)
    assert created.status == 201, await created.text()
    evidence_id = created.headers["Avidence-Evidence-Id"]
    receipt = await (
        await hsm_api.client.get(f"/api/evidence/{evidence_id}/receipt", headers=hsm_api.auth())
    ).json()
    keys = PublicKeys.load(await (await hsm_api.client.get("/api/keys")).text())
    assert keys.verify(receipt, body="receipt")["size"] == len(data)
    assert receipt["key_id"] == hsm.key_id and list(keys.keys) == [hsm.key_id]
    # Nothing fell back to a key file: the data dir holds no private key.
    assert not (hsm_api.settings.data_dir / "keys").exists()


def _config(tmp_path: Path, hsm: Hsm, **changes: str) -> Path:
    values = {k: v for k, v in hsm.settings().items() if k != "pkcs11_pin_file"}
    values.update(changes)
    path = tmp_path / "avidence.toml"
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()))
    return path


async def _upload(url: str, token: str, data: bytes, filename: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        headers = upload_headers(token, len(data), filename)
        async with session.post(f"{url}/files/", data=data, headers=headers) as created:
            if created.status != 201:
                return created.status, await created.json()
            evidence_id = created.headers["Avidence-Evidence-Id"]
        auth = {"Authorization": f"Bearer {token}"}
        async with session.get(f"{url}/api/evidence/{evidence_id}/receipt", headers=auth) as r:
            receipt = await r.json()
        async with session.get(f"{url}/api/keys") as r:
            keys = PublicKeys.load(await r.text())
        return 201, (receipt, keys)


async def test_a_restarted_server_signs_with_the_same_token_key(
    tmp_path: Path, hsm: Hsm, server_factory: Any
) -> None:
    env = {"SOFTHSM2_CONF": str(hsm.conf), "AVIDENCE_PKCS11_PIN": PIN}
    server = await asyncio.to_thread(
        server_factory, "--config", str(_config(tmp_path, hsm)), env=env
    )
    token = await asyncio.to_thread(server.token)
    receipts = []
    for round_ in range(2):
        status, (receipt, keys) = await _upload(server.url, token, os.urandom(5000), f"{round_}.ts")
        assert status == 201
        receipts.append(receipt)
        if round_ == 0:
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
    for receipt in receipts:
        keys.verify(receipt, body="receipt")
        assert receipt["key_id"] == hsm.key_id
    assert list(keys.keys) == [hsm.key_id]
    assert not (server.data_dir / "keys").exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"pkcs11_module": "/nonexistent/libpkcs11.so"}, "module /nonexistent/libpkcs11.so cannot"),
        ({"pkcs11_token": "no-such-token"}, "token 'no-such-token' is not present"),
        ({"pkcs11_key": "no-such-key"}, "no Ed25519 key labelled 'no-such-key'"),
        ({"pin": "999999"}, "wrong PIN for PKCS#11 token"),
    ],
    ids=["module", "token", "key", "pin"],
)
def test_serve_stops_with_one_line_when_the_token_cannot_be_used(
    tmp_path: Path, hsm: Hsm, change: dict[str, str], reason: str
) -> None:
    pin = change.pop("pin", PIN)
    data = tmp_path / "srv"
    config = _config(tmp_path, hsm, **change)
    command = [str(BIN / "avidence-server"), "serve", "--data-dir", str(data)]
    out = subprocess.run(
        [*command, "--config", str(config), "--port", str(free_port())],
        env={**os.environ, "SOFTHSM2_CONF": str(hsm.conf), "AVIDENCE_PKCS11_PIN": pin},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("avidence-server: error: signing key unavailable: "), out.stderr
    assert reason in last and "Traceback" not in out.stderr and PIN not in out.stderr
    assert not (data / "keys").exists()  # no key file was made to sign instead


async def test_a_token_gone_while_serving_refuses_custody_with_503(
    hsm_api: Api, hsm: Hsm, tmp_path: Path
) -> None:
    (token_dir,) = hsm.token_dirs
    away = tmp_path / "unplugged"
    token_dir.rename(away)  # the token is pulled out
    data = os.urandom(40_000)
    headers = upload_headers(hsm_api.uploader, len(data), "pulled.ts")
    answer = await hsm_api.client.post("/files/", data=io.BytesIO(data), headers=headers)
    assert answer.status == 503
    error = (await answer.json())["error"]
    assert error["code"] == "signing_unavailable" and "Retry-After" in answer.headers
    pending = await uploads_db.in_state(hsm_api.catalog.engine, "verifying")
    assert [u.length for u in pending] == [len(data)]  # every byte kept, no evidence made
    assert pending[0].evidence_id is None
    away.rename(token_dir)  # plugged back in: the client's retry finishes the upload
    upload = pending[0]
    retry = await hsm_api.client.patch(
        f"/files/{upload.id}",
        data=b"",
        headers={
            **hsm_api.auth(),
            "Upload-Offset": str(len(data)),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert retry.status == 204, await retry.text()
    evidence_id = retry.headers["Avidence-Evidence-Id"]
    receipt = await (
        await hsm_api.client.get(f"/api/evidence/{evidence_id}/receipt", headers=hsm_api.auth())
    ).json()
    assert receipt["key_id"] == hsm.key_id


def test_key_create_makes_the_key_in_the_token_once(tmp_path: Path, hsm: Hsm) -> None:
    def create(label: str) -> Any:
        config = _config(tmp_path, hsm, pkcs11_key=label, pkcs11_pin_file=str(hsm.pin_file))
        args = ["key", "create", "--config", str(config), "--data-dir", str(tmp_path / "d")]
        return CliRunner().invoke(main, args)

    again = create(hsm.key)
    assert again.exit_code == 2 and f"already holds key {hsm.key_id}" in again.output
    made = create("second")
    assert made.exit_code == 0, made.output
    (created,) = PublicKeys.load(made.stdout).keys.values()
    assert f"created key {key_id(created)} in token" in made.stderr


def test_rotation_inside_the_token_is_certified_by_the_old_key(tmp_path: Path, hsm: Hsm) -> None:
    config = _config(tmp_path, hsm, pkcs11_pin_file=str(hsm.pin_file))
    common = ["--config", str(config), "--data-dir", str(tmp_path / "d")]
    runner = CliRunner()
    assert runner.invoke(main, ["migrate", *common]).exit_code == 0
    refused = runner.invoke(main, ["key", "rotate", *common])
    assert refused.exit_code == 2 and "--new-label" in refused.output
    rotated = runner.invoke(main, ["key", "rotate", "--new-label", "second", *common])
    assert rotated.exit_code == 0, rotated.output
    assert f"certified by {hsm.key_id}" in rotated.stdout
    exported = runner.invoke(main, ["key", "export", *common])
    keys = trust.load_pinned(exported.stdout).keys
    assert len(keys) == 2 and hsm.key_id in keys
