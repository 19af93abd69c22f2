"""Proving the server holds the same bytes as the local file, before anyone deletes the source.

Strongest first: a signed receipt whose digests and size equal the local ones (checked against
the server's published Ed25519 keys, or keys the operator pinned); else the evidence record's
digests; against a plain tus server without either, the upload is reported unverified and
watch mode keeps the source.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canonical import PublicKeys, SuiteUnavailable, VerificationError
from .errors import InputError, IntegrityError, UploadFailed
from .tus import TusClient, upload_id


@dataclass(slots=True, frozen=True)
class Proof:
    kind: str  # "receipt", "record", "server-digests" or "none"
    verified: bool
    message: str
    receipt: dict[str, Any] | None = None


def compare(*, what: str, local: dict[str, Any], remote: dict[str, Any]) -> None:
    """Raise IntegrityError unless every local value the remote also states is equal.

    BLAKE3 and size must be present remotely: a proof that states neither proves nothing."""
    for key in ("blake3", "size"):
        if remote.get(key) is None:
            raise IntegrityError(f"{what} states no {key}; the server's copy is not proven")
    for key, value in local.items():
        theirs = remote.get(key)
        if theirs is None:
            continue
        if str(theirs).lower() != str(value).lower():
            raise IntegrityError(
                f"{what} has {key} {theirs}, the local file has {value}: "
                "the server holds different bytes; the source is kept"
            )


async def await_outcome(
    tus: TusClient, url: str, *, state: str | None, evidence_id: str | None, patience: float
) -> str:
    """The evidence id of a finished final upload, polling `GET /api/uploads/{id}` while the
    server is still verifying (it answers within ~25 s and continues in the background)."""
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        if state == "done" and evidence_id:
            return evidence_id
        if state == "quarantined":
            raise IntegrityError(
                "the server quarantined the upload: its bytes differ from the declared digests; "
                "the source is kept"
            )
        if state not in (None, "verifying", "complete", "receiving", "done"):
            raise UploadFailed(f"the upload ended in state {state!r}")
        if time.monotonic() > deadline:
            raise UploadFailed(
                f"the server was still verifying after {patience:.0f} s; rerun later"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 5.0)
        status, document = await tus.get_json(f"/api/uploads/{upload_id(url)}")
        if status != 200 or not isinstance(document, dict):
            raise UploadFailed(f"cannot read the upload's state (GET /api/uploads: {status})")
        state, evidence_id = document.get("state"), document.get("evidence_id")
        if state == "quarantined":
            raise IntegrityError(
                "the server quarantined the upload "
                f"({document.get('error') or 'digest mismatch'}); the source is kept"
            )


async def prove(
    tus: TusClient,
    *,
    evidence_id: str,
    size: int,
    digests: dict[str, str],
    receipt_path: Path,
    trusted_keys: str | None = None,
) -> Proof:
    """Compare the evidence record and, when the server signs receipts, the receipt."""
    local: dict[str, Any] = {**digests, "size": size}
    status, record = await tus.get_json(f"/api/evidence/{evidence_id}")
    if status != 200 or not isinstance(record, dict):
        raise UploadFailed(f"cannot read evidence {evidence_id} (GET /api/evidence: {status})")
    compare(what=f"evidence record {evidence_id}", local=local, remote=record)

    status, receipt = await tus.get_json(f"/api/evidence/{evidence_id}/receipt")
    if status == 404:
        return Proof(
            "record",
            True,
            "the evidence record's BLAKE3, SHA-256 and size equal the local file's "
            "(this server issues no signed receipts)",
        )
    if status != 200 or not isinstance(receipt, dict):
        raise UploadFailed(f"cannot read the receipt of {evidence_id} (status {status})")
    keys_text = trusted_keys
    if keys_text is None:
        key_status, keys_text = await tus.get_text("/api/keys")
        if key_status != 200:
            raise UploadFailed(
                f"cannot read the server's public keys (GET /api/keys: {key_status})"
            )
    try:
        body = PublicKeys.load(keys_text).verify(receipt, body="receipt")
    except SuiteUnavailable as exc:  # not a bad receipt: this install cannot check it yet
        raise InputError(f"cannot check the receipt of {evidence_id}: {exc}") from None
    except (VerificationError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"the receipt of {evidence_id} does not verify: {exc}") from None
    if body.get("evidence_id") not in (None, evidence_id):
        raise IntegrityError(f"the receipt names {body.get('evidence_id')}, not {evidence_id}")
    compare(what=f"the signed receipt of {evidence_id}", local=local, remote=body)
    await asyncio.to_thread(_save, receipt_path, receipt)
    return Proof(
        "receipt",
        True,
        f"signed receipt (key {receipt.get('key_id')}) states the local BLAKE3, SHA-256 and size",
        receipt,
    )


def _save(path: Path, receipt: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(receipt, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


async def prove_single(tus: TusClient, *, url: str, size: int, digests: dict[str, str]) -> Proof:
    """A plain (non-concatenated) upload: the server never saw declared digests, so compare the
    ones it computed, where it publishes them; otherwise the upload stays unverified."""
    status, document = await tus.get_json(f"/api/uploads/{upload_id(url)}")
    if status != 200 or not isinstance(document, dict) or not document.get("digests"):
        return Proof(
            "none",
            False,
            "uploaded, but this tus server publishes no digests or signed receipt to check "
            "the copy against: not verified",
        )
    compare(
        what="the server's digests",
        local={**digests, "size": size},
        remote={**document["digests"], "size": document.get("length")},
    )
    return Proof("server-digests", True, "the server's computed digests equal the local file's")
