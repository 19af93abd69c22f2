"""What the tus handlers share within one app: settings, catalog, store, locks, running digests,
and the completion hook that hands a verified upload to the custody core."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store
from avidence.storage.digests import MultiDigest

from ..catalog.uploads import Upload
from ..config import Settings
from ..limits import RateLimiter
from ..metrics import Metrics
from .locks import UploadLocks


@dataclass(slots=True, frozen=True)
class Completed:
    """What the completion hook did: the evidence id, and whether this call made it (False when
    another process or an earlier try accepted the upload first, so it is counted once)."""

    evidence_id: str
    created: bool


class CompletionHook(Protocol):
    """Called once an upload's bytes are stored and match every declared digest (as tusd stops
    at FinishUpload and calls back). Makes the evidence, marks the upload `done` in the same
    transaction, and says what it made; safe to call again for the same upload."""

    async def __call__(self, upload: Upload, digests: dict[str, str]) -> Completed: ...


@dataclass(slots=True)
class TusContext:
    settings: Settings
    engine: AsyncEngine
    store: Store
    metrics: Metrics
    locks: UploadLocks
    complete: CompletionHook
    # Upload creations per uploader token (see admission.py).
    creations: RateLimiter = field(default_factory=RateLimiter)
    # Running digests of uploads this process is receiving; lost on restart, then rebuilt by
    # reading the finished object back.
    digests: dict[str, MultiDigest] = field(default_factory=dict)
    # Finishing work (verification, concatenation) that outlives the request that began it.
    tasks: dict[str, asyncio.Task[object]] = field(default_factory=dict)

    @property
    def spool_dir(self) -> Path:
        path = self.settings.data_dir / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path
