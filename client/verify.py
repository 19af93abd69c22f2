"""Offline verification of receipts and evidence bundles: no server, no network.

A court or the next agency must be able to check what it was handed with the public key alone,
so nothing here imports server code: receipts and manifests are checked with
`canonical.PublicKeys`, audit entries by recomputing their hash (`audit_entry_hash`, kept equal
to the server's `entry_hash` by a test), files by streaming them through the same digests the
server computed when it received them.

Functions raise `VerificationError` (one file) or return every problem found (a bundle), each
naming the path concerned, so a clerk sees all that is wrong in one run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from avidence.storage.digests import MultiDigest, new_hasher

from . import trust
from .canonical import PublicKeys, VerificationError, canonical_json

RECEIPT_TYPE = "avidence.receipt/v1"
MANIFEST_TYPE = "avidence.manifest/v1"
SUMS = {"SHA256SUMS": "sha256", "B3SUMS": "blake3"}
DIGESTS = ("blake3", "sha256", "sm3")
BLOCK = 4 * 1024 * 1024


CHAIN_SWITCH = "audit.chain_switched"


def chain_algorithm(body: Mapping[str, Any]) -> str:
    """The hash an audit entry is chained with: SM3 when it says `"hash_algorithm": "sm3"` (the
    `gm` suite), SHA-256 when it names none (every entry before there was a choice)."""
    named = body.get("hash_algorithm")
    if named is None:
        return "sha256"
    if named != "sm3":  # 'sha256' is never written: one algorithm, one encoding
        raise VerificationError(f"unknown chain hash algorithm {named!r}")
    return "sm3"


def audit_entry_hash(body: Mapping[str, Any]) -> str:
    """The chain hash (`chain_algorithm`) of the canonical JSON of an audit entry's body (seq,
    time, actor, action, object, case_id, details, client, prev_hash, and hash_algorithm when
    it names one): the value the server chains its log with."""
    hasher = new_hasher(chain_algorithm(body))
    hasher.update(canonical_json(dict(body)))
    return hasher.hexdigest()


def _next_algorithm(body: Mapping[str, Any], algorithm: str) -> str:
    """The algorithm of the entry after this one: another only after an audited switch."""
    details = body.get("details")
    if body.get("action") != CHAIN_SWITCH or not isinstance(details, Mapping):
        return algorithm
    return str(details.get("to"))


def file_digests(path: Path, algorithms: Iterable[str]) -> tuple[int, dict[str, str]]:
    """Size and hex digests of a file, read once in blocks (memory stays bounded)."""
    digest = MultiDigest(algorithms)
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            digest.update(block)
    return digest.length, digest.hexdigests()


def load_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError(f"{path}: not a readable JSON document ({exc})") from None
    if not isinstance(document, dict):
        raise VerificationError(f"{path}: not a JSON object")
    return document


def load_keys(path: Path) -> PublicKeys:
    """A PEM public key or the `GET /api/keys` JSON document."""
    try:
        return PublicKeys.load(path.read_text(encoding="utf-8"))
    except VerificationError as exc:
        raise type(exc)(f"key {path}: {exc}") from None  # keeps `SuiteUnavailable` apart
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"key {path}: not a PEM public key or keys document") from exc


def load_pinned_keys(pinned: Path, *cached: Path) -> PublicKeys:
    """The keys of a pinned history (`avidence-server key export`, obtained out of band),
    extended by the certified successors listed in `cached` key lists (`/api/keys`, a
    bundle's `keys.json`); keys in those lists that do not chain are left out."""
    try:
        keys = trust.load_pinned(pinned.read_text(encoding="utf-8"), where=f"keys {pinned}")
    except (OSError, UnicodeDecodeError) as exc:
        raise VerificationError(f"keys {pinned}: cannot read it ({exc})") from None
    for path in cached:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a missing cache only means fewer later keys; the bundle check names it
        keys = trust.extend(keys, trust.cached_entries(text))
    return keys


def check_signed(document: Mapping[str, Any], keys: PublicKeys, *, body: str) -> dict[str, Any]:
    """The signed body, or VerificationError saying whether the key is unknown or the
    signature wrong."""
    kid = document.get("key_id")
    if str(kid) not in keys.keys and keys.pinned:
        raise VerificationError(f"unknown key: {keys.unknown(kid)}")
    if str(kid) not in keys.keys:
        raise VerificationError(
            f"unknown key: signed by key {kid!r}, not among the given public keys "
            f"({', '.join(sorted(keys.keys))})"
        )
    try:
        return keys.verify(document, body=body)
    except VerificationError as exc:
        raise VerificationError(f"signature: {exc}") from None


@dataclass(slots=True, frozen=True)
class FileVerdict:
    """A file that matched its receipt: its size, digests and the key that signed."""

    size: int
    digests: dict[str, str]
    key_id: str
    receipt: dict[str, Any]


def _compare(what: str, stated: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """Reasons (size first, then digests) where `stated` differs from `found`."""
    problems = []
    for name in ("size", *DIGESTS):
        value = stated.get(name)
        if value is None or name not in found:
            continue
        mine = found[name]
        if (str(value).lower() if name != "size" else value) != mine:
            problems.append(f"{name} differs: {what} says {value}, the file has {mine}")
    return problems


def verify_file(path: Path, receipt: Mapping[str, Any], keys: PublicKeys) -> FileVerdict:
    """Check the receipt's signature, then that the file's size and digests equal the signed
    ones. Raises VerificationError naming the first reason it fails."""
    body = check_signed(receipt, keys, body="receipt")
    if body.get("type") != RECEIPT_TYPE:
        raise VerificationError(f"not a receipt (type {body.get('type')!r})")
    if not isinstance(body.get("blake3"), str) or not isinstance(body.get("size"), int):
        raise VerificationError("the receipt states no size or BLAKE3 digest")
    size = path.stat().st_size
    if size != body["size"]:
        raise VerificationError(f"size differs: receipt says {body['size']}, the file has {size}")
    algorithms = [a for a in DIGESTS if a in ("blake3", "sha256") or body.get(a)]
    length, digests = file_digests(path, algorithms)
    problems = _compare("receipt", body, {"size": length, **digests})
    if problems:
        raise VerificationError(problems[0])
    return FileVerdict(length, digests, str(receipt["key_id"]), body)


@dataclass(slots=True)
class BundleReport:
    """The outcome of `verify_bundle`; `problems` are "path: reason" lines, empty when sound."""

    case: str | None = None
    items: int = 0
    originals: int = 0
    entries: int = 0
    checkpoints: int = 0
    anchored: int = 0  # excerpt entries whose hash a signed checkpoint states
    key_ids: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def tidy(self) -> None:
        """Each problem once (a missing file is found by several checks), grouped by path."""
        unique = dict.fromkeys(self.problems)
        self.problems = sorted(unique, key=lambda line: line.split(": ", 1)[0])


def _safe(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not rel.startswith("/") and ".." not in parts and "\\" not in rel


def _bundle_files(root: Path, report: BundleReport) -> set[str]:
    """Every regular file under the bundle, as relative POSIX paths, links refused."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            full = Path(folder, name)
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                report.problem(rel, "a symbolic link; a bundle holds plain files only")
            elif name in files:
                found.add(rel)
    return found - set(SUMS)


def _read_sums(root: Path, name: str, report: BundleReport) -> dict[str, str]:
    try:
        text = (root / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        report.problem(name, "missing or unreadable")
        return {}
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        value, sep, rel = line.partition("  ")
        if not sep:
            value, sep, rel = line.partition(" *")
        if not sep or len(value) != 64 or not _safe(rel):
            report.problem(f"{name} line {number}", "not a `<hex>  <path>` line")
            continue
        listed[rel] = value.lower()
    return listed


def _load_manifest(root: Path, keys: PublicKeys, report: BundleReport) -> dict[str, Any] | None:
    try:
        signed = load_json(root / "manifest.json")
        body = check_signed(signed, keys, body="manifest")
    except VerificationError as exc:
        report.problem("manifest.json", str(exc).replace(str(root / "manifest.json") + ": ", ""))
        return None
    if body.get("type") != MANIFEST_TYPE or not isinstance(body.get("items"), list):
        report.problem("manifest.json", f"not an evidence manifest (type {body.get('type')!r})")
        return None
    report.key_ids.add(str(signed["key_id"]))
    report.case = str(body.get("case"))
    return body


def _check_items(
    root: Path,
    manifest: Mapping[str, Any],
    keys: PublicKeys,
    hashed: Mapping[str, dict[str, Any]],
    report: BundleReport,
) -> None:
    """Every receipt verifies and agrees with its manifest item; every original's digests
    agree with both."""
    for item in manifest["items"]:
        report.items += 1
        rel = str(item.get("receipt"))
        receipt: dict[str, Any] | None = None
        if not _safe(rel) or not (root / rel).is_file():
            report.problem(rel, "missing")
        else:
            try:
                signed = load_json(root / rel)
                receipt = check_signed(signed, keys, body="receipt")
                report.key_ids.add(str(signed["key_id"]))
            except VerificationError as exc:
                report.problem(rel, str(exc).replace(str(root / rel) + ": ", ""))
        if receipt is not None:
            if receipt.get("case") != manifest.get("case"):
                report.problem(rel, f"belongs to case {receipt.get('case')!r}")
            for name in ("evidence_id", "filename", "size", *DIGESTS):
                if receipt.get(name) != item.get(name):
                    report.problem(rel, f"{name} differs from the manifest")
        path = item.get("path")
        if not manifest.get("originals_included") or path is None:
            continue
        if not _safe(str(path)) or str(path) not in hashed:
            report.problem(str(path), "missing")
            continue
        report.originals += 1
        for reason in _compare("the manifest", item, hashed[str(path)]):
            report.problem(str(path), reason)
        for reason in _compare("the receipt", receipt or {}, hashed[str(path)]):
            report.problem(str(path), reason)


def _check_audit(
    root: Path, manifest: Mapping[str, Any], keys: PublicKeys, report: BundleReport
) -> None:
    """Each entry's hash equals its content's; consecutive entries chain; checkpoints are
    signed, and a checkpoint over an excerpt entry states that entry's hash."""
    rel = str(manifest.get("audit", {}).get("path", "audit.jsonl"))
    try:
        lines = (root / rel).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        report.problem(rel, "missing or unreadable")
        return
    hashes: dict[int, str] = {}
    algorithms: dict[int, str] = {}
    last: tuple[int, str, str] | None = None  # seq, hash, the next entry's algorithm
    for number, line in enumerate(lines, 1):
        where = f"{rel} line {number}"
        try:
            record = json.loads(line)
            kind = record.pop("type")
        except (json.JSONDecodeError, AttributeError, KeyError):
            report.problem(where, "not an audit record")
            continue
        if kind == "entry":
            stated = record.pop("hash", None)
            seq = int(record.get("seq", 0))
            try:
                algorithm = chain_algorithm(record)
            except VerificationError as exc:
                report.problem(where, f"entry {seq}: {exc}")
                continue
            if audit_entry_hash(record) != stated:
                report.problem(where, f"entry {seq} was altered (its hash does not match)")
            if record.get("case_id") != manifest.get("case"):
                report.problem(where, f"entry {seq} belongs to case {record.get('case_id')!r}")
            if last is not None:
                broken = seq == last[0] + 1 and record.get("prev_hash") != last[1]
                if seq <= last[0] or broken:
                    report.problem(where, f"entry {seq} does not follow entry {last[0]}")
                elif seq == last[0] + 1 and algorithm != last[2]:
                    report.problem(
                        where,
                        f"entry {seq} is hashed with {algorithm}, but the chain uses {last[2]} "
                        "there (the algorithm changes only by an audit.chain_switched entry)",
                    )
            hashes[seq], algorithms[seq] = str(stated), algorithm
            last = (seq, str(stated), _next_algorithm(record, algorithm))
            report.entries += 1
        elif kind == "checkpoint":
            try:
                signed = check_signed(record, keys, body="checkpoint")
            except VerificationError as exc:
                report.problem(where, f"checkpoint: {exc}")
                continue
            report.checkpoints += 1
            seq = int(signed["seq"])
            if seq in hashes:
                if hashes[seq] != signed["head_hash"] or signed.get(
                    "hash_algorithm", "sha256"
                ) != algorithms[seq]:
                    report.problem(where, f"checkpoint {seq} signed a different entry {seq}")
                else:
                    report.anchored += 1


def verify_bundle(root: Path, keys: PublicKeys) -> BundleReport:
    """Check a bundle written by `avidence-server export`; see the module docstring."""
    report = BundleReport()
    on_disk = _bundle_files(root, report)
    sums = {name: _read_sums(root, name, report) for name in SUMS}
    manifest = _load_manifest(root, keys, report)
    sm3 = {str(i.get("path")) for i in (manifest or {}).get("items", []) if i.get("sm3")}
    hashed: dict[str, dict[str, Any]] = {}
    for rel in sorted(on_disk):
        algorithms = ["blake3", "sha256", "sm3"] if rel in sm3 else ["blake3", "sha256"]
        size, digests = file_digests(root / rel, algorithms)
        hashed[rel] = {"size": size, **digests}
    for name, algorithm in SUMS.items():
        for rel, value in sorted(sums[name].items()):
            if rel not in hashed:
                report.problem(rel, "missing")
            elif hashed[rel][algorithm] != value:
                report.problem(rel, f"changed ({algorithm} differs from {name})")
        for rel in sorted(on_disk - set(sums[name])):
            report.problem(rel, f"not listed in {name}")
    if manifest is None:
        report.tidy()
        return report
    signed_paths = {"manifest.json"}
    for part in ("audit", "keys", "readme"):
        stated = manifest.get(part) or {}
        rel = str(stated.get("path"))
        signed_paths.add(rel)
        if rel in hashed and hashed[rel]["sha256"] != stated.get("sha256"):
            report.problem(rel, "differs from the digest the signed manifest states")
        elif rel not in hashed:
            report.problem(rel, "missing")
    for item in manifest["items"]:
        signed_paths |= {str(item.get("receipt")), str(item.get("path"))}
    for rel in sorted(on_disk - signed_paths):
        report.problem(rel, "not part of the signed manifest")
    _check_items(root, manifest, keys, hashed, report)
    _check_audit(root, manifest, keys, report)
    report.tidy()
    return report
