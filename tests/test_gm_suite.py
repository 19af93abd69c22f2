"""The `gm` suite end to end: a server with `suite = "gm"` signs every document with SM2 (SM3,
GB/T 32918), states SM3 digests, and what it hands out verifies offline with `avidence verify`
and `verify-bundle`; one flipped signature byte fails. A deployment moves from `international`
to `gm` by `key rotate`, and its old Ed25519 receipts keep verifying through the history."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import blake3
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_custody_api import invoke, local_app, upload_evidence

import avidence.server.evidence.cli  # noqa: F401  (registers `export` on `main`)
from avidence.client import trust
from avidence.client.canonical import PublicKeys, SuiteUnavailable, VerificationError
from avidence.client.signatures import key_id, sm2_available
from avidence.client.verify_cli import verify, verify_bundle
from avidence.server import config, signing
from avidence.server.cli import main
from avidence.server.config import ConfigError
from avidence.server.keys import files, history
from avidence.server.tickets import seals
from avidence.storage.local import LocalStore
from avidence.storage.sealformat import HEADER, Header, Suite

from support.agencies import make_agency
from support.client_runs import client_env
from support.servers import BIN, Api, make_api
from support.tickets import upload

CASE = "GM-1"


@pytest.fixture()
async def gm_api(tmp_path: Path) -> AsyncIterator[Api]:
    """A `suite = "gm"` server over a local store in its data dir (where `export` looks)."""
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store, suite="gm"):
            yield api
    finally:
        await store.close()


def gm_config(tmp_path: Path) -> list[str]:
    """Command-line arguments that run admin commands on the same gm deployment."""
    path = tmp_path / "gm.toml"
    path.write_text('suite = "gm"\n')
    return ["--config", str(path), "--data-dir", str(tmp_path / "data")]


def flip_signature(document: dict[str, Any]) -> dict[str, Any]:
    raw = bytearray(base64.b64decode(document["signature"]))
    raw[len(raw) // 2] ^= 0x01
    return {**document, "signature": base64.b64encode(bytes(raw)).decode()}


def cli(command: Any, args: list[str]) -> Result:
    return CliRunner().invoke(command, args)


async def test_gm_upload_receipt_transfer_ack_bundle_verify_offline(
    gm_api: Api, tmp_path: Path
) -> None:
    api = gm_api
    assert (api.settings.encryption_suite, api.settings.signature_algorithm) == ("gm", "sm2-sm3")
    police = await make_agency(api, "City police")
    court = await make_agency(api, "City court")
    data = [os.urandom(200_000), os.urandom(3000)]
    ids = [
        await upload(api, blob, case=CASE, item=str(n), token=police.tokens["uploader"])
        for n, blob in enumerate(data)
    ]
    keys_text = await (await api.client.get("/api/keys")).text()
    (entry,) = json.loads(keys_text)["keys"]
    assert entry["algorithm"] == "sm2-sm3"
    keys = PublicKeys.load(keys_text)

    # receipt: SM2-signed, SM3 digest of the uploaded bytes stated
    url = f"/api/evidence/{ids[0]}/receipt"
    receipt = await (await api.client.get(url, headers=police.auth("uploader"))).json()
    assert receipt["algorithm"] == "sm2-sm3" and receipt["key_id"] == entry["id"]
    body = keys.verify(receipt, body="receipt")
    assert body["sm3"] == hashlib.new("sm3", data[0]).hexdigest()
    folder = tmp_path / "clerk"
    folder.mkdir()
    (folder / "clip.ts").write_bytes(data[0])
    (folder / "keys.json").write_text(keys_text)
    (folder / "receipt.json").write_text(json.dumps(receipt))
    args = [str(folder / "clip.ts"), "--receipt", str(folder / "receipt.json")]
    ok = cli(verify, [*args, "--key", str(folder / "keys.json")])
    assert ok.exit_code == 0, ok.output
    assert f"sm3={body['sm3']}" in ok.output
    (folder / "receipt.json").write_text(json.dumps(flip_signature(receipt)))
    bad = cli(verify, [*args, "--key", str(folder / "keys.json")])
    assert bad.exit_code == 5 and "signature" in bad.output, bad.output

    # transfer to the court, acknowledged: manifest and acknowledgement are SM2-signed
    case_id = (
        await (await api.client.get(f"/api/cases?number={CASE}", headers=police.auth())).json()
    )["cases"][0]["id"]
    sent = await api.client.post(
        f"/api/cases/{case_id}/transfers", json={"to": court.name}, headers=police.auth()
    )
    assert sent.status == 201, await sent.text()
    manifest = (await sent.json())["manifest"]
    assert manifest["algorithm"] == "sm2-sm3"
    items = keys.verify(manifest, body="manifest")["items"]
    assert {i["evidence_id"]: i["sm3"] for i in items} == {
        i: hashlib.new("sm3", blob).hexdigest() for i, blob in zip(ids, data, strict=True)
    }
    checked = {i["evidence_id"]: {"sha256": i["sha256"]} for i in items}
    transfer_id = (await sent.json())["id"]
    acked = await api.client.post(
        f"/api/transfers/{transfer_id}/ack", json={"checked": checked}, headers=court.auth()
    )
    assert acked.status == 200, await acked.text()
    acknowledgement = (await acked.json())["acknowledgement"]
    assert acknowledgement["algorithm"] == "sm2-sm3"
    assert keys.verify(acknowledgement, body="acknowledgement")["items"]
    with pytest.raises(VerificationError, match="does not match"):
        keys.verify(flip_signature(acknowledgement), body="acknowledgement")

    # export bundle (manifest and audit checkpoints SM2-signed), verified offline
    out = tmp_path / "bundle"
    made = await invoke(main, ["export", "--case", CASE, "--out", str(out), *gm_config(tmp_path)])
    assert made.exit_code == 0, made.output
    document = json.loads((out / "manifest.json").read_text())
    assert document["algorithm"] == "sm2-sm3"
    checkpoints = [
        json.loads(line)
        for line in (out / "audit.jsonl").read_text().splitlines()
        if json.loads(line).get("type") == "checkpoint"
    ]
    assert checkpoints and {c["algorithm"] for c in checkpoints} == {"sm2-sm3"}
    # The excerpt's entries are chained with SM3 and say so; the bundle check recomputes them.
    excerpt = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    chained = [line for line in excerpt if line["type"] == "entry"]
    assert chained and {line.get("hash_algorithm") for line in chained} == {"sm3"}
    assert {c["checkpoint"]["hash_algorithm"] for c in checkpoints} == {"sm3"}
    pinned = tmp_path / "pinned.json"
    exported = await invoke(main, ["key", "export", "--out", str(pinned), *gm_config(tmp_path)])
    assert exported.exit_code == 0, exported.output
    audited = await invoke(main, ["audit", "verify", "--keys", str(pinned), *gm_config(tmp_path)])
    assert audited.exit_code == 0 and "audit log OK" in audited.output, audited.output
    good = cli(verify_bundle, [str(out), "--keys", str(pinned)])
    assert good.exit_code == 0, good.output
    (out / "manifest.json").write_text(json.dumps(flip_signature(document)))
    broken = cli(verify_bundle, [str(out), "--keys", str(pinned)])
    assert broken.exit_code == 5, broken.output
    assert "FAILED manifest.json: signature" in broken.output


async def test_international_deployment_moves_to_gm_by_key_rotate(tmp_path: Path) -> None:
    folder = tmp_path / "clerk"
    folder.mkdir()
    pinned = tmp_path / "pinned-v1.json"
    data = [os.urandom(4000), os.urandom(5000)]

    async def receipt(api: Api, n: int) -> tuple[Path, Path]:
        evidence_id = await upload_evidence(api, data[n], filename=f"{n}.ts")
        url = f"/api/evidence/{evidence_id}/receipt"
        document = await (await api.client.get(url, headers=api.auth())).json()
        (folder / f"{n}.ts").write_bytes(data[n])
        (folder / f"{n}.json").write_text(json.dumps(document))
        (folder / "api-keys.json").write_text(await (await api.client.get("/api/keys")).text())
        return folder / f"{n}.ts", folder / f"{n}.json"

    async for api in local_app(tmp_path):
        old = await receipt(api, 0)
        exported = await invoke(
            main, ["key", "export", "--out", str(pinned), "--data-dir", str(api.settings.data_dir)]
        )
        assert exported.exit_code == 0, exported.output
    gm = config.load(env={}, data_dir=tmp_path / "data", suite="gm")
    with pytest.raises(ConfigError, match="key rotate"):  # never goes on signing with Ed25519
        signing.load_signer(gm)
    rotated = await invoke(main, ["key", "rotate", *gm_config(tmp_path)])
    assert rotated.exit_code == 0, rotated.output
    assert len(list((tmp_path / "data" / "keys").glob("sm2-*.pem"))) == 1
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store, suite="gm"):
            new = await receipt(api, 1)
    finally:
        await store.close()
    documents = [json.loads(path.read_text()) for _, path in (old, new)]
    assert [d["algorithm"] for d in documents] == ["ed25519", "sm2-sm3"]
    listed = json.loads((folder / "api-keys.json").read_text())["keys"]
    assert [k["algorithm"] for k in listed] == ["ed25519", "sm2-sm3"]
    assert listed[1]["certificate"]["algorithm"] == "ed25519"  # signed by the outgoing key
    # The pinned Ed25519 root vouches for the SM2 key through the certificate it signed.
    for file, receipt_path in (old, new):
        args = [str(file), "--receipt", str(receipt_path), "--keys", str(pinned)]
        result = cli(verify, [*args, "--key", str(folder / "api-keys.json")])
        assert result.exit_code == 0, result.output
    stranded = cli(verify, [str(new[0]), "--receipt", str(new[1]), "--keys", str(pinned)])
    assert stranded.exit_code == 5 and "does not chain to the pinned keys" in stranded.output
    # A certificate naming another algorithm than its key's does not chain.
    forged = [listed[0], {**listed[1], "certificate": dict(listed[1]["certificate"])}]
    forged[1]["certificate"]["certificate"] = {
        **listed[1]["certificate"]["certificate"],
        "algorithm": "ed25519",
    }
    assert trust.certified(forged[1], trust.load_pinned(pinned.read_text()).keys) is None


def test_gm_suite_settings_and_their_errors(tmp_path: Path) -> None:
    gm = config.load(env={}, data_dir=tmp_path, suite="gm")
    assert gm.encryption_suite == "gm" and "sm3" in gm.digests
    assert gm.signature_algorithm == "sm2-sm3"
    mixed = config.load(env={}, data_dir=tmp_path, suite="gm", encryption_suite="international")
    assert mixed.encryption_suite == "international"
    default = config.load(env={}, data_dir=tmp_path)
    assert (default.suite, default.encryption_suite) == ("international", "international")
    assert default.signature_algorithm == "ed25519" and "sm3" not in default.digests
    with pytest.raises(ConfigError, match=r"^suite: choose international or gm, not 'sm9'$"):
        config.load(env={}, data_dir=tmp_path, suite="sm9")
    with pytest.raises(ConfigError) as refused:
        config.load(
            env={}, data_dir=tmp_path, suite="gm", key_provider="pkcs11", pkcs11_token="t"
        )
    message = str(refused.value)
    assert message.startswith("suite: gm signs with SM2") and "SoftHSM2 has no SM2" in message
    assert "\n" not in message


def test_sm2_file_key_derives_the_same_viewer_secret_on_every_load(tmp_path: Path) -> None:
    """SM2 signatures are randomised; the viewer's MAC key must still be one per deployment."""
    gm = config.load(env={}, data_dir=tmp_path, suite="gm")
    first, again = signing.load_signer(gm), signing.load_signer(gm)
    assert first.key_id == again.key_id
    assert first.provider.sign(b"x") != again.provider.sign(b"x")  # randomised signatures
    assert seals.derive_secret(first) == seals.derive_secret(again)
    other = config.load(env={}, data_dir=tmp_path / "other", suite="gm")
    assert seals.derive_secret(signing.load_signer(other)) != seals.derive_secret(first)


def test_client_without_the_gm_extra_names_it_for_sm2_and_still_checks_ed25519(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm2 = signing.load_signer(config.load(env={}, data_dir=tmp_path / "gm", suite="gm"))
    ed = signing.load_signer(config.load(env={}, data_dir=tmp_path / "intl"))
    documents = {s.algorithm: (s.public_pem, s.sign("receipt", {"n": 1})) for s in (sm2, ed)}
    # On disk for `avidence verify`: a recording, its SM2 receipt, the SM2 key, and a pinned
    # Ed25519 root with the SM2 key certified by it in a cached list.
    data = b"recording"
    (tmp_path / "clip.ts").write_bytes(data)
    receipt = sm2.sign(
        "receipt",
        {
            "type": "avidence.receipt/v1",
            "size": len(data),
            "blake3": blake3.blake3(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    (tmp_path / "sm2.pem").write_text(sm2.public_pem)
    root = {"id": ed.key_id, "algorithm": "ed25519", "public_key_pem": ed.public_pem}
    successor = {
        "id": sm2.key_id,
        "algorithm": "sm2-sm3",
        "public_key_pem": sm2.public_pem,
        "certificate": history.certify(ed, sm2),
    }
    (tmp_path / "pinned.json").write_text(json.dumps({"keys": [root]}))
    (tmp_path / "cached.json").write_text(json.dumps({"keys": [root, successor]}))
    checked = ["--receipt", str(tmp_path / "receipt.json")]
    pinned = ["--keys", str(tmp_path / "pinned.json"), "--key", str(tmp_path / "cached.json")]
    for keys in (["--key", str(tmp_path / "sm2.pem")], pinned):
        result = cli(verify, [str(tmp_path / "clip.ts"), *checked, *keys])
        assert result.exit_code == 0, result.output
    for name in [m for m in sys.modules if m == "tongsuopy" or m.startswith("tongsuopy.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if `avidence[gm]` were not installed
    assert not sm2_available()
    pem, document = documents["ed25519"]
    assert PublicKeys.load(pem).verify(document, body="receipt") == {"n": 1}
    pem, document = documents["sm2-sm3"]
    with pytest.raises(SuiteUnavailable, match=r"pip install 'avidence\[gm\]'"):
        PublicKeys.load(pem)
    # `avidence verify` says NOT CHECKED with exit 2, never FAILED (5) or "does not chain"
    for keys in (["--key", str(tmp_path / "sm2.pem")], pinned):
        result = cli(verify, [str(tmp_path / "clip.ts"), *checked, *keys])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("NOT CHECKED clip.ts: ") and "avidence[gm]" in result.output


def test_gm_server_process_seals_with_sm4_and_the_client_proves_sm2_receipts(
    server_factory: Any, tmp_path: Path
) -> None:
    """A real `serve` with `AVIDENCE_SUITE=gm` on a new data folder: the store is sealed with
    SM4-GCM, and `avidence upload` and `watch --once` check the SM2-signed receipt before a
    recording may leave its folder."""
    server = server_factory(env={"AVIDENCE_SUITE": "gm"})
    token = server.token()
    env = client_env(tmp_path)
    recording = tmp_path / "room-3.ts"
    recording.write_bytes(os.urandom(1024 * 1024 + 5))
    args = ["--server", server.url, "--token", token, "--case", "GM-9"]
    uploaded = subprocess.run(
        [str(BIN / "avidence"), "upload", str(recording), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    found = re.search(r"; receipt (\S+)", uploaded.stdout + uploaded.stderr)
    assert found is not None, uploaded.stdout + uploaded.stderr
    receipt = json.loads(Path(found.group(1)).read_text())
    assert receipt["algorithm"] == "sm2-sm3"
    assert receipt["receipt"]["sm3"] == hashlib.new("sm3", recording.read_bytes()).hexdigest()
    folder = tmp_path / "recorder"
    folder.mkdir()
    (folder / "room-4.ts").write_bytes(os.urandom(300_000))
    watched = subprocess.run(
        [str(BIN / "avidence"), "watch", str(folder), "--once", "--settle", "0", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert not (folder / "room-4.ts").exists(), "a verified recording leaves the watched folder"
    stored = [p for p in (server.data_dir / "store").rglob("*") if p.is_file()]
    originals = [p.read_bytes()[: HEADER.size] for p in stored if p.stat().st_size > 300_000]
    assert len(originals) >= 2
    for head in originals:
        parsed = Header.parse(head)
        assert parsed is not None and parsed.suite is Suite.GM, head[:9]
    # A client without the `gm` extra cannot check the receipt: it says what to install (exit
    # 2, a setup problem, not an integrity failure) and the recording stays unproven.
    blocker = tmp_path / "no-gm" / "tongsuopy"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("not installed")\n')
    lean = {**env, "PYTHONPATH": str(blocker.parent)}
    other = tmp_path / "room-5.ts"
    other.write_bytes(os.urandom(4000))
    refused = subprocess.run(
        [str(BIN / "avidence"), "upload", str(other), *args],
        capture_output=True, text=True, timeout=120, env=lean,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "pip install 'avidence[gm]'" in refused.stderr, refused.stderr
    started = server.log_tail(400)
    assert "suite=gm signing=sm2-sm3" in started and "digests=blake3,sha256,sm3" in started


def test_ed25519_key_ids_and_documents_are_unchanged_by_the_second_suite(tmp_path: Path) -> None:
    """Existing keys keep their ids (receipts name them) and still sign `ed25519` documents."""
    private = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)
    assert key_id(private.public_key()) == "34750f98bd59fcfc"  # SHA-256 of the raw key, as before
    key_file = tmp_path / "ed25519.pem"
    key_file.write_bytes(files._private_pem(private))
    signer = signing.Signer(files.load_file(key_file))
    assert (signer.key_id, signer.algorithm) == ("34750f98bd59fcfc", "ed25519")
    document = signer.sign("receipt", {"n": 1})
    assert set(document) == {"receipt", "algorithm", "key_id", "signature"}
    assert document["algorithm"] == "ed25519"
    assert PublicKeys.load(signer.public_pem).verify(document, body="receipt") == {"n": 1}
