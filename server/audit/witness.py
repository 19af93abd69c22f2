"""Witnesses: copies of every signed checkpoint kept where the operator cannot quietly edit them.

The catalog's own checkpoints prove nothing against whoever can write to the catalog: a DBA can
delete the newest checkpoint with the entries after it, or restore an older backup. So each
checkpoint is also published to every configured witness, and `audit verify` checks the live
log against what the witnesses saw:

- `file:///PATH`: an append-only JSON Lines file (opened `O_APPEND`, fsynced per line). The
  default is `witness/checkpoints.jsonl` in the data folder; production points it at another
  volume, ideally one the database's operators cannot write (docs/operations.md).
- `s3://BUCKET/PREFIX`: one object per checkpoint under S3 Object Lock COMPLIANCE for
  `witness_lock_days`, written with `If-None-Match: *`: no one, root account included, can
  delete or overwrite it before the lock ends. Uses the store's S3 endpoint and credentials.

A witness that cannot be written is logged, never fatal: the catalog's checkpoint stands, and
the next checkpoint, which covers everything before it, goes to every witness again. A witness
that cannot be read fails `audit verify`: an unreadable witness is not a witness.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..config import ConfigError, Settings

log = logging.getLogger("avidence.audit.witness")


class Witness(Protocol):
    """Somewhere signed checkpoints are kept out of the catalog's reach."""

    name: str

    async def publish(self, document: dict[str, Any]) -> None:
        """Keep one signed checkpoint document; raise OSError (or a client error) on failure."""

    async def read(self) -> list[dict[str, Any]]:
        """Every document kept so far, in any order; raise when the witness cannot be read."""

    async def holds(self, document: dict[str, Any]) -> bool:
        """Whether this checkpoint was kept, without reading every other one; raise when the
        witness cannot be read."""


class FileWitness:
    """An append-only JSON Lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file://{path}"

    async def publish(self, document: dict[str, Any]) -> None:
        line = (json.dumps(document, sort_keys=True, ensure_ascii=False) + "\n").encode()
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def read(self) -> list[dict[str, Any]]:
        def load() -> list[dict[str, Any]]:
            if not self.path.exists():
                return []
            documents = []
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    documents.append(json.loads(line))
                except ValueError:
                    raise ValueError(f"{self.name} line {number} is not JSON") from None
            return documents

        return await asyncio.to_thread(load)

    async def holds(self, document: dict[str, Any]) -> bool:
        wanted = _identity(document)
        return any(_identity(kept) == wanted for kept in await self.read())


class S3Witness:
    """One object per checkpoint under Object Lock COMPLIANCE."""

    def __init__(self, settings: Settings, bucket: str, prefix: str) -> None:
        import boto3  # only when an S3 witness is configured

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.name = f"s3://{bucket}/{self.prefix}"
        self.days = settings.witness_lock_days
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint or None,
            region_name=settings.s3_region or None,
        )

    def _key(self, document: dict[str, Any]) -> str:
        seq, head = _identity(document)
        return f"{self.prefix}/{seq:012d}-{head}.json"

    async def holds(self, document: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(
                self.client.head_object, Bucket=self.bucket, Key=self._key(document)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def publish(self, document: dict[str, Any]) -> None:
        data = json.dumps(document, sort_keys=True).encode()
        until = datetime.now(UTC) + timedelta(days=self.days)
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(document),
            Body=data,
            ContentType="application/json",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until,
            IfNoneMatch="*",
        )

    async def read(self) -> list[dict[str, Any]]:
        def load() -> list[dict[str, Any]]:
            documents = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + "/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    body = self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"]
                    documents.append(json.loads(body.read()))
            return documents

        return await asyncio.to_thread(load)


def _identity(document: dict[str, Any]) -> tuple[int, str]:
    """Which head a signed checkpoint document signs: (seq, head hash)."""
    body = document.get("checkpoint", {})
    return int(body["seq"]), str(body["head_hash"])


def default_location(settings: Settings) -> str:
    return f"file://{settings.data_dir.resolve() / 'witness' / 'checkpoints.jsonl'}"


def configured(settings: Settings) -> list[Witness]:
    """The witnesses of `audit_witnesses` (the data folder's file when none is set; `none`
    turns witnessing off)."""
    locations: Sequence[str] = settings.audit_witnesses or (default_location(settings),)
    witnesses: list[Witness] = []
    for location in locations:
        if location == "none":
            continue
        parts = urlsplit(location)
        if parts.scheme == "file" and parts.path:
            witnesses.append(FileWitness(Path(parts.path)))
        elif parts.scheme == "s3" and parts.netloc:
            witnesses.append(S3Witness(settings, parts.netloc, parts.path or "witness"))
        else:
            raise ConfigError(
                f"audit_witnesses: {location!r} is not file:///PATH, s3://BUCKET/PREFIX or none"
            )
    return witnesses


async def publish(witnesses: Sequence[Witness], document: dict[str, Any]) -> int:
    """Hand a signed checkpoint to every witness; the number that kept it."""
    kept = 0
    for witness in witnesses:
        try:
            await witness.publish(document)
            kept += 1
        except Exception as exc:  # a witness down must not stop custody; the next one retries
            log.error("audit.witness_failed witness=%s error=%s", witness.name, exc)
    return kept
