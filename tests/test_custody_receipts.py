"""`avidence verify`: a receipt proves a file offline, and any change to either is named.

Every check goes through the click command, as a clerk would run it; receipts and keys come
from the server's own API.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_custody_api import flipped, local_app, upload_evidence

from avidence.client.verify_cli import verify
from avidence.server import signing
from avidence.server.keys import history
from avidence.server.state import SIGNER

from support.servers import Api


@pytest.fixture()
async def local_api(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in local_app(tmp_path):
        yield api


@dataclass
class Issued:
    """A local copy of an uploaded file with its receipt and the server's keys, on disk."""

    file: Path
    receipt_path: Path
    keys_path: Path
    receipt: dict[str, Any]

    def check(self, *, file: Path | None = None, receipt: dict[str, Any] | None = None) -> Result:
        if receipt is not None:
            self.receipt_path.write_text(json.dumps(receipt))
        return CliRunner().invoke(
            verify,
            [
                str(file or self.file),
                "--receipt",
                str(self.receipt_path),
                "--key",
                str(self.keys_path),
            ],
        )


async def issue(api: Api, folder: Path, data: bytes) -> Issued:
    evidence_id = await upload_evidence(api, data, filename="clip.ts")
    url = f"/api/evidence/{evidence_id}/receipt"
    receipt = await (await api.client.get(url, headers=api.auth())).json()
    keys = await (await api.client.get("/api/keys")).text()
    return await asyncio.to_thread(_save, folder, data, receipt, keys)


def _save(folder: Path, data: bytes, receipt: dict[str, Any], keys: str) -> Issued:
    folder.mkdir(exist_ok=True)
    (folder / "clip.ts").write_bytes(data)
    (folder / "receipt.json").write_text(json.dumps(receipt))
    (folder / "keys.json").write_text(keys)
    return Issued(folder / "clip.ts", folder / "receipt.json", folder / "keys.json", receipt)


def tool_digest(tool: str, path: Path) -> str:
    """The hex digest a coreutils-style tool (`b3sum`, `sha256sum`) prints for a file."""
    out = subprocess.run([tool, str(path)], check=True, capture_output=True, text=True)
    return out.stdout.split()[0]


def one_failure(result: Result) -> str:
    assert result.exit_code == 5, result.output  # ExitCode.INTEGRITY, as --help says
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAILED clip.ts: "), result.output
    return lines[0].removeprefix("FAILED clip.ts: ")


async def test_verify_ok_prints_one_line_with_size_digests_and_key(
    local_api: Api, tmp_path: Path
) -> None:
    data = os.urandom(123_457)
    issued = await issue(local_api, tmp_path / "in", data)
    body = issued.receipt["receipt"]
    expected = (
        f"OK clip.ts size={len(data)} blake3={body['blake3']} "
        f"sha256={hashlib.sha256(data).hexdigest()} key={issued.receipt['key_id']}\n"
    )
    assert issued.check().output == expected
    pem = tmp_path / "server.pem"
    pem.write_text(json.loads(issued.keys_path.read_text())["keys"][0]["public_key_pem"])
    issued.keys_path = pem
    assert issued.check().output == expected


async def test_verify_fails_when_any_receipt_field_or_the_signature_changes(
    local_api: Api, tmp_path: Path
) -> None:
    issued = await issue(local_api, tmp_path / "in", os.urandom(1000))
    original = issued.receipt
    for field, value in original["receipt"].items():
        forged = copy.deepcopy(original)
        if isinstance(value, bool | int):
            forged["receipt"][field] = value + 1
        elif isinstance(value, dict):
            forged["receipt"][field] = {**value, "name": "someone else"}
        else:
            forged["receipt"][field] = str(value) + "0"
        assert one_failure(issued.check(receipt=forged)).startswith("signature: "), field
    added = copy.deepcopy(original)
    added["receipt"]["note"] = "added later"
    assert one_failure(issued.check(receipt=added)).startswith("signature: ")
    resigned = copy.deepcopy(original)
    other = Ed25519PrivateKey.generate().sign(b"something else")
    resigned["signature"] = base64.b64encode(other).decode()
    assert one_failure(issued.check(receipt=resigned)).startswith("signature: ")
    stranger = {**original, "key_id": "0123456789abcdef"}
    assert one_failure(issued.check(receipt=stranger)).startswith("unknown key: ")
    assert "unsupported signature algorithm" in one_failure(
        issued.check(receipt={**original, "algorithm": "rsa"})
    )
    assert issued.check(receipt=original).exit_code == 0


async def test_verify_names_the_size_or_the_digest_that_differs(
    local_api: Api, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    issued = await issue(local_api, tmp_path / "in", data)
    longer, changed = tmp_path / "clip.ts", tmp_path / "in" / "clip.ts"
    longer.write_bytes(data + b"\0")
    reason = one_failure(issued.check(file=longer))
    assert reason == f"size differs: receipt says {len(data)}, the file has {len(data) + 1}"
    changed.write_bytes(flipped(data))
    assert one_failure(issued.check()).startswith("blake3 differs: receipt says ")
    changed.write_bytes(data)
    # Re-signed by the server's own key, so only the digest comparison can catch these.
    signer = local_api.client.app[SIGNER]
    body = dict(issued.receipt["receipt"])
    wrong_sha = signer.sign("receipt", {**body, "sha256": "0" * 64})
    assert one_failure(issued.check(receipt=wrong_sha)).startswith("sha256 differs: ")
    sm3 = hashlib.new("sm3", data).hexdigest()
    assert f"sm3={sm3}" in issued.check(receipt=signer.sign("receipt", {**body, "sm3": sm3})).output
    wrong_sm3 = signer.sign("receipt", {**body, "sm3": "1" * 64})
    assert one_failure(issued.check(receipt=wrong_sm3)).startswith("sm3 differs: ")


async def test_verify_fails_for_a_key_that_did_not_sign(local_api: Api, tmp_path: Path) -> None:
    issued = await issue(local_api, tmp_path / "in", b"signed by the server")
    stranger = Ed25519PrivateKey.generate()
    issued.keys_path.write_text(signing.public_pem(stranger))
    assert one_failure(issued.check()).startswith("unknown key: signed by key ")


async def test_receipt_digests_equal_b3sum_and_sha256sum(local_api: Api, tmp_path: Path) -> None:
    issued = await issue(local_api, tmp_path / "in", os.urandom(3 * 1024 * 1024 + 5))
    body = issued.receipt["receipt"]
    for tool, name in (("b3sum", "blake3"), ("sha256sum", "sha256")):
        assert await asyncio.to_thread(tool_digest, tool, issued.file) == body[name], tool


async def test_key_rotation_keeps_old_receipts_valid(local_api: Api, tmp_path: Path) -> None:
    issued = await issue(local_api, tmp_path / "in", b"before the rotation")
    old_key = issued.receipt["key_id"]
    new = signing.rotate(local_api.settings)
    # Certified by the outgoing key, as `key rotate` does: only keys that chain are published.
    certificate = history.certify(local_api.client.app[SIGNER], new)
    await signing.register(local_api.catalog.engine, new, certificate=certificate)
    document = await (await local_api.client.get("/api/keys")).json()
    assert [k["id"] for k in document["keys"]] == [old_key, new.key_id]
    issued.keys_path.write_text(json.dumps(document))
    result = issued.check()
    assert result.exit_code == 0 and result.output.endswith(f"key={old_key}\n"), result.output
    # Publishing only the new key would strand the old receipts: the key list must keep both.
    issued.keys_path.write_text(document["keys"][1]["public_key_pem"])
    assert one_failure(issued.check()).startswith("unknown key: ")


def test_offline_verification_imports_no_server_code() -> None:
    code = (
        "import sys, avidence.client.verify, avidence.client.verify_cli; "
        "print(sorted(m for m in sys.modules if m.startswith('avidence.server')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
