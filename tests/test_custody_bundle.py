"""Evidence bundles: `avidence-server export` writes one, `avidence verify-bundle`, `b3sum -c`
and `sha256sum -c` check it, and any changed, missing or added file is named."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_custody_api import flipped, invoke, local_app, record, tamper, upload_evidence

import avidence.server.evidence.cli  # noqa: F401  (registers `scrub` and `export` on `main`)
from avidence.client.verify import audit_entry_hash
from avidence.client.verify_cli import verify_bundle
from avidence.server import signing
from avidence.server.cli import main

from support.servers import Api

CASE = "C-9"


@pytest.fixture()
async def local_api(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in local_app(tmp_path):
        yield api


@dataclass
class Bundle:
    api: Api
    root: Path
    ids: list[str]
    data: list[bytes]

    def copy(self, name: str) -> Path:
        """A fresh copy to damage, so one export serves many cases."""
        target = self.root.parent / name
        shutil.copytree(self.root, target)
        return target


async def export(api: Api, out: Path, *extra: str, case: str = CASE) -> Result:
    data_dir = str(api.settings.data_dir)
    return await invoke(
        main, ["export", "--case", case, "--out", str(out), "--data-dir", data_dir, *extra]
    )


@pytest.fixture()
async def bundle(local_api: Api, tmp_path: Path) -> Bundle:
    """Case C-9 with two originals (names with Chinese, spaces and `#`) exported;
    another case's evidence stays out of the bundle."""
    data = [os.urandom(300_000), os.urandom(1000)]
    ids = [
        await upload_evidence(local_api, data[0], case=CASE, filename="审讯 录像 1.ts"),
        await upload_evidence(local_api, data[1], case=CASE, filename="cctv cam#2.mp4"),
    ]
    await upload_evidence(local_api, b"another case", case="C-10")
    result = await export(local_api, tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    assert f"exported case {CASE}: 2 items, 2 originals (301000 bytes)" in result.output
    return Bundle(local_api, tmp_path / "bundle", ids, data)


def check(root: Path, *args: str) -> Result:
    return CliRunner().invoke(verify_bundle, [str(root), *args])


def failures(result: Result) -> list[str]:
    assert result.exit_code == 5, result.output  # ExitCode.INTEGRITY, as --help says
    return [line for line in result.output.splitlines() if line.startswith("FAILED ")]


def coreutils(root: Path) -> tuple[int, int]:
    """Exit codes of `sha256sum -c SHA256SUMS` and `b3sum -c B3SUMS` run in the bundle."""
    codes = [
        subprocess.run([tool, "-c", sums], cwd=root, capture_output=True).returncode
        for tool, sums in (("sha256sum", "SHA256SUMS"), ("b3sum", "B3SUMS"))
    ]
    return codes[0], codes[1]


async def test_bundle_holds_originals_receipts_audit_keys_and_verifies(bundle: Bundle) -> None:
    root, (first, second) = bundle.root, bundle.ids
    originals = [f"originals/{first}-审讯_录像_1.ts", f"originals/{second}-cctv_cam_2.mp4"]
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files == {
        *originals,
        f"receipts/{first}.json",
        f"receipts/{second}.json",
        "manifest.json",
        "audit.jsonl",
        "keys.json",
        "SHA256SUMS",
        "B3SUMS",
        "README.txt",
    }
    assert [(root / p).read_bytes() for p in originals] == bundle.data
    manifest = json.loads((root / "manifest.json").read_text())["manifest"]
    assert [i["path"] for i in manifest["items"]] == originals
    assert manifest["items"][0]["sha256"] == (await record(bundle.api, first))["sha256"]
    result = check(root)
    assert result.exit_code == 0, result.output
    ok, note = result.output.strip().splitlines()
    assert ok.startswith(f"OK bundle {root}: case {CASE}, 2 items, 2 originals, ")
    assert note.startswith("NOTE the public key came from the bundle itself")
    assert await asyncio.to_thread(coreutils, root) == (0, 0)
    readme = (root / "README.txt").read_text()
    for text in ("b3sum -c B3SUMS", "sha256sum -c SHA256SUMS", "avidence verify-bundle", "核验"):
        assert text in readme
    assert "derivatives" not in readme


async def test_independent_key_verifies_without_the_note_and_a_stranger_key_fails(
    bundle: Bundle, tmp_path: Path
) -> None:
    keys = tmp_path / "from-the-server.json"
    keys.write_text(await (await bundle.api.client.get("/api/keys")).text())
    result = check(bundle.root, "--key", str(keys))
    assert result.exit_code == 0 and "NOTE" not in result.output, result.output
    keys.write_text(signing.public_pem(Ed25519PrivateKey.generate()))
    assert any(
        line.startswith("FAILED manifest.json: unknown key")
        for line in failures(check(bundle.root, "--key", str(keys)))
    )


async def test_a_changed_file_fails_naming_it(bundle: Bundle) -> None:
    first = bundle.ids[0]
    targets = [
        f"originals/{first}-审讯_录像_1.ts",
        f"receipts/{first}.json",
        "manifest.json",
        "audit.jsonl",
        "keys.json",
        "README.txt",
    ]
    for n, rel in enumerate(targets):
        root = bundle.copy(f"changed-{n}")
        path = root / rel
        raw = path.read_bytes()
        path.write_bytes(flipped(raw) if rel.startswith("originals/") else raw + b" ")
        lines = failures(check(root))
        assert any(line.startswith(f"FAILED {rel}: ") for line in lines), (rel, lines)
        assert await asyncio.to_thread(coreutils, root) != (0, 0)


async def test_a_missing_file_fails_naming_it(bundle: Bundle) -> None:
    second = bundle.ids[1]
    targets = [
        f"originals/{second}-cctv_cam_2.mp4",
        f"receipts/{second}.json",
        "manifest.json",
        "audit.jsonl",
        "README.txt",
        "SHA256SUMS",
        "B3SUMS",
    ]
    for n, rel in enumerate(targets):
        root = bundle.copy(f"missing-{n}")
        (root / rel).unlink()
        assert f"FAILED {rel}: missing" in "\n".join(failures(check(root))), rel
    root = bundle.copy("missing-keys")
    (root / "keys.json").unlink()
    assert failures(check(root))[0].startswith(f"FAILED keys: key {root / 'keys.json'}")


def rewrite_sums(root: Path) -> None:
    """What a careful forger does after editing: make SHA256SUMS and B3SUMS agree again."""
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("SHA256SUMS", "B3SUMS")
    )
    for tool, sums in (("sha256sum", "SHA256SUMS"), ("b3sum", "B3SUMS")):
        out = subprocess.run([tool, *files], cwd=root, check=True, capture_output=True)
        (root / sums).write_bytes(out.stdout)


async def test_edits_with_rewritten_sums_are_still_caught_by_signatures(bundle: Bundle) -> None:
    first = bundle.ids[0]
    root = bundle.copy("forged-receipt")
    receipt_path = root / "receipts" / f"{first}.json"
    receipt = json.loads(receipt_path.read_text())
    receipt["receipt"]["size"] += 1
    receipt_path.write_text(json.dumps(receipt))
    rewrite_sums(root)
    assert await asyncio.to_thread(coreutils, root) == (0, 0)
    assert f"FAILED receipts/{first}.json: signature: " in check(root).output

    root = bundle.copy("forged-audit")
    lines = (root / "audit.jsonl").read_text().splitlines()
    entry = json.loads(lines[0])
    entry["actor"] = "somebody else"
    (root / "audit.jsonl").write_text("\n".join([json.dumps(entry), *lines[1:]]) + "\n")
    rewrite_sums(root)
    output = check(root).output
    assert "FAILED audit.jsonl: differs from the digest the signed manifest states" in output
    assert f"FAILED audit.jsonl line 1: entry {entry['seq']} was altered" in output

    root = bundle.copy("added-file")
    (root / "originals" / "extra.ts").write_bytes(b"planted")
    rewrite_sums(root)
    assert "FAILED originals/extra.ts: not part of the signed manifest" in check(root).output


async def test_audit_excerpt_equals_audit_export_and_records_the_export(bundle: Bundle) -> None:
    data_dir = str(bundle.api.settings.data_dir)
    exported = await invoke(main, ["audit", "export", "--case", CASE, "--data-dir", data_dir])
    assert exported.exit_code == 0
    expected = [line for line in exported.stdout.splitlines() if '"type": "keys"' not in line]
    assert (bundle.root / "audit.jsonl").read_text().splitlines() == expected
    entries = [json.loads(line) for line in expected if json.loads(line)["type"] == "entry"]
    assert {e["case_id"] for e in entries} == {CASE}
    last = entries[-1]
    assert last["action"] == "admin.command" and last["object"].startswith("case:case_")
    assert last["case_id"] == CASE
    assert last["details"] == {"command": "export", "items": 2, "manifests_only": False}
    body = {k: v for k, v in last.items() if k not in ("type", "hash")}
    assert audit_entry_hash(body) == last["hash"]
    assert "(1 under a signed checkpoint)" in check(bundle.root).output


async def test_manifests_only_bundle_leaves_originals_out_and_verifies(
    bundle: Bundle, tmp_path: Path
) -> None:
    out = tmp_path / "manifests"
    result = await export(bundle.api, out, "--manifests-only")
    assert result.exit_code == 0, result.output
    assert not (out / "originals").exists()
    manifest = json.loads((out / "manifest.json").read_text())["manifest"]
    assert manifest["originals_included"] is False
    assert [i["path"] for i in manifest["items"]] == [None, None]
    verified = check(out)
    assert verified.exit_code == 0 and "no originals included" in verified.output
    assert await asyncio.to_thread(coreutils, out) == (0, 0)


async def test_export_exits_2_when_the_store_bytes_differ_and_writes_nothing(
    local_api: Api, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = os.urandom(2000)
    evidence_id = await upload_evidence(local_api, data, case=CASE)
    await tamper(
        local_api, request, (await record(local_api, evidence_id))["storage_key"], flipped(data)
    )
    out = tmp_path / "exports" / "bundle"
    result = await export(local_api, out)
    assert result.exit_code == 2
    assert f"evidence {evidence_id}: the stored bytes differ from the record" in result.output
    assert not out.exists() and list((tmp_path / "exports").iterdir()) == []


async def test_export_exits_2_for_an_unknown_case_or_a_used_folder(
    bundle: Bundle, tmp_path: Path
) -> None:
    unknown = await export(bundle.api, tmp_path / "none", case="C-404")
    assert unknown.exit_code == 2 and "no case 'C-404'" in unknown.output
    used = await export(bundle.api, bundle.root)
    assert used.exit_code == 2 and "is not an empty folder" in used.output
