"""Export bundles encrypted for their recipients (issue 21): `export --encrypt-to` writes one
age-format file that the recipient opens with their own key and any age implementation (here
rage, through pyrage) into the ordinary bundle, which then verifies; no one else opens it, a
bad recipient key stops before any work, and no plaintext bundle is left behind."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pyrage
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from test_custody_api import invoke, local_app, upload_evidence

import avidence.server.evidence.cli  # noqa: F401  (registers `export` on `main`)
from avidence.client.verify_cli import verify_bundle
from avidence.server.catalog.schema import audit_log
from avidence.server.cli import main

from support.servers import Api

CASE = "C-21"


async def _export(api: Api, out: Path, *extra: str) -> tuple[int, str]:
    data_dir = str(api.settings.data_dir)
    result = await invoke(
        main, ["export", "--case", CASE, "--out", str(out), "--data-dir", data_dir, *extra]
    )
    return result.exit_code, result.output


def _open(sealed: Path, identity: pyrage.x25519.Identity | pyrage.ssh.Identity, into: Path) -> Path:
    plain = io.BytesIO()
    with sealed.open("rb") as source:
        pyrage.decrypt_io(source, plain, [identity])
    plain.seek(0)
    with tarfile.open(fileobj=plain, mode="r|") as tar:
        tar.extractall(into, filter="data")
    return into


async def test_encrypted_bundle_opens_with_the_recipient_key_and_verifies(
    tmp_path: Path,
) -> None:
    alice, bob, stranger = (pyrage.x25519.Identity.generate() for _ in range(3))
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(f"# the court's clerk\n{bob.to_public()}\n\n")
    async for api in local_app(tmp_path):
        data = os.urandom(200_000)
        await upload_evidence(api, data, case=CASE, filename="interview.ts")
        out = tmp_path / "handover" / "case-21.tar.age"
        code, output = await _export(
            api, out, "--encrypt-to", str(alice.to_public()), "--encrypt-to-file", str(recipients)
        )
        assert code == 0, output
        assert "encrypted to 2 recipients" in output
        raw = out.read_bytes()
        assert raw.startswith(b"age-encryption.org/v1\n")
        assert data[:64] not in raw and b"manifest" not in raw
        assert os.listdir(out.parent) == [out.name]  # no plaintext folder or part left

        for who, identity in (("alice", alice), ("bob", bob)):
            root = _open(out, identity, tmp_path / who) / "case-21"
            assert (root / "manifest.json").exists()
            checked = CliRunner().invoke(verify_bundle, [str(root)])
            assert checked.exit_code == 0, checked.output
            originals = list((root / "originals").iterdir())
            assert [p.read_bytes() for p in originals] == [data]
        with pytest.raises(pyrage.DecryptError):
            _open(out, stranger, tmp_path / "stranger")

        query = sa.select(audit_log.c.details).where(audit_log.c.action == "export.encrypted")
        async with api.catalog.engine.connect() as conn:
            rows = (await conn.execute(query)).scalars().all()
        assert len(rows) == 1
        assert rows[0]["recipients"] == [str(alice.to_public()), str(bob.to_public())]
        assert rows[0]["size"] == len(raw)
        assert rows[0]["sha256"] == hashlib.sha256(raw).hexdigest()  # taken while written


async def test_ssh_recipient_and_refusals(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]
    await asyncio.to_thread(subprocess.run, keygen, check=True)
    async for api in local_app(tmp_path):
        await upload_evidence(api, b"recorded", case=CASE, filename="a.ts")
        bad = tmp_path / "bad.tar.age"
        code, output = await _export(api, bad, "--encrypt-to", "not-a-key")
        assert code == 2 and "not an age (age1...) or SSH public key" in output
        assert not bad.exists()

        out = tmp_path / "ssh.tar.age"
        public = key.with_suffix(".pub").read_text().strip()
        code, output = await _export(api, out, "--encrypt-to", public)
        assert code == 0, output
        identity = pyrage.ssh.Identity.from_buffer(key.read_bytes())
        root = _open(out, identity, tmp_path / "opened") / "ssh"
        assert CliRunner().invoke(verify_bundle, [str(root)]).exit_code == 0

        code, output = await _export(api, out, "--encrypt-to", public)
        assert code == 2 and "is a file" in output  # never written over
