"""Evidence bundles: one folder a court or the next agency can check without our server.

Layout (every path relative to the bundle folder):

* `originals/<evidence_id>-<filename>`: the stored bytes, streamed from the store and hashed on
  the way; a copy that differs from its evidence record stops the export (run a scrub);
* `receipts/<evidence_id>.json`: the signed receipts exactly as issued;
* `keys.json`: the `GET /api/keys` document;
* `audit.jsonl`: the case's audit entries (the lines `audit export --case` writes) and then every
  signed checkpoint; the export is itself audited and checkpointed first, so the excerpt ends
  with an entry a signed checkpoint covers;
* `manifest.json`: signed with the server key; lists every item with its digests, bundle path and
  receipt, and the SHA-256 of `audit.jsonl`, `keys.json` and `README.txt`, so one signature
  covers every file (receipts carry signatures of their own);
* `SHA256SUMS`, `B3SUMS`: every other file, in `sha256sum` / `b3sum` format, for tools a clerk
  already has; `README.txt` says how to check, in English and Chinese.

The bundle is built in a sibling temporary folder and renamed into place at the end, so `--out`
holds a complete bundle or nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store
from avidence.storage.digests import MultiDigest
from avidence.storage.errors import NotFound

from ..audit import log as audit
from ..audit import unit
from ..audit.events import AdminCommand
from ..audit.witness import Witness
from ..cases import custody
from ..cases import records as cases_db
from ..cases.records import Case
from ..catalog.schema import evidence
from ..keys import history
from ..retention import records as retention_records
from ..retention.purge import tombstone
from ..signing import Signer
from . import receipts
from . import records as evidence_db

MANIFEST_TYPE = "avidence.manifest/v1"
SUMS = ("SHA256SUMS", "B3SUMS")
_UNSAFE = re.compile(r"[^\w.\-]+")


class ExportError(ValueError):
    """The bundle cannot be made; the message is one line for the operator."""


@dataclass(slots=True, frozen=True)
class ExportReport:
    case_id: str
    out: Path
    items: int
    originals: int
    bytes: int
    key_id: str


def sanitize(filename: str) -> str:
    """A file name safe on any filesystem and in a `sha256sum` line: letters (any script),
    digits, `.`, `-`, `_`; no folders, no leading dot."""
    name = _UNSAFE.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).lstrip("._")
    return name[:120] or "original"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class _Bundle:
    """Files written so far and their SHA-256 / BLAKE3, for the sums files."""

    root: Path
    digests: dict[str, tuple[str, str]] = field(default_factory=dict)

    def write(self, rel: str, data: bytes) -> str:
        """Write one small file; returns its SHA-256."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        self.digests[rel] = (sha, blake3.blake3(data).hexdigest())
        return sha

    def write_json(self, rel: str, document: Any) -> str:
        text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        return self.write(rel, text.encode())

    async def copy(
        self, rel: str, stream: AsyncIterator[bytes], algorithms: list[str]
    ) -> dict[str, str | int]:
        """Stream an original into the bundle; returns its size and digests."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = MultiDigest(["sha256", *algorithms])
        with path.open("xb") as out:
            async for chunk in stream:
                await digest.update_async(chunk)
                await asyncio.to_thread(out.write, chunk)
        found = digest.hexdigests()
        self.digests[rel] = (found["sha256"], found["blake3"])
        return {"size": digest.length, **found}

    def write_sums(self) -> None:
        for name, index in zip(SUMS, (0, 1), strict=True):
            lines = [f"{self.digests[rel][index]}  {rel}\n" for rel in sorted(self.digests)]
            (self.root / name).write_text("".join(lines), encoding="utf-8")


async def _case_records(engine: AsyncEngine, case: Case) -> list[evidence_db.Evidence]:
    """The case's items as its agency sees them: never another agency's file that happens to
    carry the same case number."""
    ids = await cases_db.evidence_ids(engine, case.id, agency_id=case.agency_id)
    names = [f.name for f in fields(evidence_db.Evidence)]
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.select(evidence)
            .where(evidence.c.id.in_(ids))
            .order_by(evidence.c.received_at, evidence.c.id)
        )
        return [evidence_db.Evidence(**{n: getattr(row, n) for n in names}) for row in result]


def _item(record: evidence_db.Evidence, *, path: str | None, receipt: str) -> dict[str, Any]:
    return {
        "evidence_id": record.id,
        "item": record.item,
        "filename": record.filename,
        "size": record.size,
        "blake3": record.blake3,
        "sha256": record.sha256,
        "sm3": record.sm3,
        "received_at": _iso(record.received_at),
        "path": path,
        "receipt": receipt,
    }


async def _audit_excerpt(engine: AsyncEngine, case: Case) -> tuple[bytes, int]:
    """The case's entries as `audit export --case` writes them, then every checkpoint."""
    lines: list[str] = []
    async for row in custody.excerpt(engine, case):
        line = {"type": "entry", **audit.entry_body(row), "hash": row.hash}
        lines.append(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    entries = len(lines)
    for document in await audit.checkpoints(engine):
        lines.append(json.dumps({"type": "checkpoint", **document}, sort_keys=True) + "\n")
    return "".join(lines).encode(), entries


async def _copy_original(
    bundle: _Bundle, store: Store, record: evidence_db.Evidence, rel: str
) -> int:
    expected: dict[str, str | int] = {"size": record.size, "blake3": record.blake3}
    expected |= {a: v for a, v in (("sha256", record.sha256), ("sm3", record.sm3)) if v}
    try:
        stream = await store.read(record.storage_key)
    except NotFound:
        raise ExportError(
            f"evidence {record.id}: the original is missing from the store "
            f"(key {record.storage_key}); run `avidence-server scrub --case {record.case_id}`"
        ) from None
    algorithms = [a for a in expected if a != "size"]
    found = await bundle.copy(rel, stream, algorithms)
    bad = [k for k, v in expected.items() if found[k] != v]
    if bad:
        raise ExportError(
            f"evidence {record.id}: the stored bytes differ from the record ({', '.join(bad)}); "
            f"run `avidence-server scrub --case {record.case_id}`"
        )
    return record.size


def _workdir(out: Path) -> Path:
    """A fresh folder beside `out`, renamed onto it when the bundle is complete."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


async def export_case(
    engine: AsyncEngine,
    store: Store,
    signer: Signer,
    *,
    case_id: str,
    out: Path,
    agency_id: str | None = None,
    manifests_only: bool = False,
    actor: str = "cli",
    witnesses: Sequence[Witness] = (),
) -> ExportReport:
    """Write the bundle of the case `case_id` (its id, or its number within `agency_id`) to
    `out` (absent or empty); see the module docstring."""
    try:
        case = await cases_db.resolve(engine, case_id, agency_id=agency_id)
    except LookupError as exc:
        raise ExportError(str(exc)) from None
    records = await _case_records(engine, case)
    if not records:
        raise ExportError(f"case {case_id!r} has no evidence")
    work = await asyncio.to_thread(_workdir, out)
    try:
        items, originals, size = await _build(
            _Bundle(work),
            engine,
            store,
            signer,
            case,
            records,
            manifests_only,
            actor,
            witnesses,
        )
        os.chmod(work, 0o755)  # mkdtemp made it private; the bundle is meant to be handed on
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportReport(case.number, out, items, originals, size, signer.key_id)


async def _build(
    bundle: _Bundle,
    engine: AsyncEngine,
    store: Store,
    signer: Signer,
    case: Case,
    records: list[evidence_db.Evidence],
    manifests_only: bool,
    actor: str,
    witnesses: Sequence[Witness],
) -> tuple[int, int, int]:
    items, total = [], 0
    for record in records:
        document = await receipts.get(engine, record.id)
        if document is None:
            raise ExportError(f"evidence {record.id} has no receipt")
        receipt = f"receipts/{record.id}.json"
        bundle.write_json(receipt, document)
        # Deleted under retention: the receipt proves what existed, the signed tombstone in the
        # manifest says what became of it; its bytes are not handed on (they may be gone).
        kept = await retention_records.get(engine, record.id)
        gone = kept.state if kept is not None and kept.state in ("deleted", "purged") else None
        path = None
        if not manifests_only and gone is None:
            path = f"originals/{record.id}-{sanitize(record.filename)}"
            total += await _copy_original(bundle, store, record, path)
        item = _item(record, path=path, receipt=receipt)
        if gone is not None:
            item |= {"state": gone, "tombstone": await tombstone(engine, record.id)}
        items.append(item)
    # The keys that chain to the key history, as GET /api/keys publishes them.
    keys = await history.publishable(engine, active=signer.key_id)
    keys_sha = bundle.write_json("keys.json", keys.document)
    await unit.record(
        engine,
        AdminCommand(
            actor=actor,
            object=f"case:{case.id}",
            case_id=case.number,
            command="export",
            items=len(items),
            manifests_only=manifests_only,
        ),
    )
    # So the excerpt ends under a signed, witnessed head.
    await audit.checkpoint(engine, signer, witnesses=witnesses)
    excerpt, entries = await _audit_excerpt(engine, case)
    audit_sha = bundle.write("audit.jsonl", excerpt)
    has_derivatives = (bundle.root / "derivatives").is_dir()
    readme_text = readme(case.number, len(items), signer.key_id, has_derivatives)
    readme_sha = bundle.write("README.txt", readme_text.encode())
    body = {
        "type": MANIFEST_TYPE,
        "case": case.number,
        "case_id": case.id,
        "agency": case.agency_id,
        "created_at": _iso(datetime.now(UTC)),
        "originals_included": not manifests_only,
        "items": items,
        "audit": {"path": "audit.jsonl", "sha256": audit_sha, "entries": entries},
        "keys": {"path": "keys.json", "sha256": keys_sha},
        "readme": {"path": "README.txt", "sha256": readme_sha},
    }
    bundle.write_json("manifest.json", signer.sign("manifest", body))
    bundle.write_sums()
    originals = sum(1 for item in items if item["path"] is not None)
    return len(items), originals, total


def readme(case_id: str, items: int, key_id: str, has_derivatives: bool = False) -> str:
    """Instructions for a court clerk, English then Chinese."""
    derivatives_en = (
        "derivatives/ holds viewing copies made from the originals; only originals/ is evidence.\n"
        if has_derivatives
        else ""
    )
    derivatives_zh = (
        "derivatives/ 目录中是由原始文件转换的播放副本，只有 originals/ 中的文件是原始证据。\n"
        if has_derivatives
        else ""
    )
    return f"""\
Evidence bundle for case {case_id} ({items} item(s)), signed by server key {key_id}.

HOW TO VERIFY (run in this folder)
1. b3sum -c B3SUMS
   sha256sum -c SHA256SUMS
   Every line must end in "OK". These prove no file changed since the bundle was made.
2. avidence verify-bundle .
   Checks the signature of manifest.json, every receipt in receipts/, the digests of every
   file in originals/, and the audit excerpt audit.jsonl with its signed checkpoints.
3. Better, run step 2 as: avidence verify-bundle . --keys KEYS.json, where KEYS.json is the
   issuing agency's key history (avidence-server key export) obtained independently of this
   bundle; or compare the key id above ({key_id}) with one obtained that way. keys.json inside
   the bundle proves nothing by itself: whoever made a forged bundle could have made it too.
{derivatives_en}
证据包：案件 {case_id}（共 {items} 项），服务器签名密钥标识 {key_id}。

核验方法（在本目录中运行）
1. b3sum -c B3SUMS
   sha256sum -c SHA256SUMS
   每一行结尾都应为 "OK"，证明证据包制作后没有任何文件被改动。
2. avidence verify-bundle .
   核验 manifest.json（证据清单）的签名、receipts/ 中的每份回执、originals/ 中每个原始文件的
   哈希值，以及审计日志摘录 audit.jsonl 及其签名检查点。
3. 更好的做法：以 avidence verify-bundle . --keys KEYS.json 运行第 2 步，其中 KEYS.json 是通过
   独立渠道从出具单位获得的密钥历史文件（avidence-server key export）；或将上述密钥标识
   （{key_id}）与通过独立渠道获得的标识进行比对。证据包内的 keys.json 本身不能证明签名者身份：
   伪造证据包的人也可以伪造其中的 keys.json。
{derivatives_zh}"""
