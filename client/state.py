"""Local resume state: one small JSON file per recording, written atomically.

What must survive a crash or a reboot is only what the server cannot tell us: which upload URLs
belong to which byte ranges of which file. Offsets are re-read from the server with HEAD on
resume (the server's durable offset is the truth); the ones kept here only feed `avidence
status`. Files are replaced with write-temp, fsync, rename, fsync-dir, so a power cut leaves
the old state or the new, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .files import FileIdentity
from .portable import sync_folder

VERSION = 1
# Phases of one file's upload, in order; "failed" is an integrity failure kept for a person.
PHASES = ("pending", "uploading", "finalizing", "verifying", "finished", "failed")


def default_state_dir() -> Path:
    env = os.environ.get("AVIDENCE_STATE_DIR")
    return Path(env) if env else Path(platformdirs.user_state_dir("avidence"))


def upload_key(identity: FileIdentity, *, endpoint: str, case: str, item: str) -> str:
    """The name of one upload's state: the file, and where and as what it goes.

    The same recording uploaded to another case (or item, or server) is another upload with
    its own evidence record and receipt, never the earlier one's outcome."""
    text = f"{identity.key}\0{endpoint}\0{case}\0{item}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(slots=True)
class Part:
    """One byte range of the file and the upload that carries it."""

    index: int
    start: int
    length: int
    url: str | None = None
    offset: int = 0  # last offset the server confirmed (informational)


@dataclass(slots=True)
class UploadState:
    key: str
    path: str
    size: int
    mtime_ns: int
    ends: str
    endpoint: str
    case: str
    item: str = ""
    mode: str = "concat"  # "concat" (partials + final) or "single"
    parts: list[Part] = field(default_factory=list)
    final_url: str | None = None
    phase: str = "pending"
    digests: dict[str, str] = field(default_factory=dict)
    evidence_id: str | None = None
    verified: bool = False
    proof: str = ""  # how the server's copy was shown to be this file
    error: str = ""
    receipt_file: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def new(cls, identity: FileIdentity, *, endpoint: str, case: str, item: str) -> UploadState:
        return cls(
            key=upload_key(identity, endpoint=endpoint, case=case, item=item),
            path=identity.path,
            size=identity.size,
            mtime_ns=identity.mtime_ns,
            ends=identity.ends,
            endpoint=endpoint,
            case=case,
            item=item,
        )

    @property
    def confirmed(self) -> int:
        if self.phase in ("finalizing", "verifying", "finished"):
            return self.size
        return sum(p.offset for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadState:
        if data.get("version") != VERSION:
            raise ValueError(f"state version {data.get('version')!r} is not {VERSION}")
        fields = {k: v for k, v in data.items() if k != "version"}
        fields["parts"] = [Part(**p) for p in fields.get("parts", [])]
        return cls(**fields)


class StateStore:
    """The folder of state files: `<key>.json` (key: `upload_key`), with receipts saved
    beside as `<key>.receipt.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def receipt_path(self, key: str) -> Path:
        return self.root / f"{key}.receipt.json"

    def find(
        self, identity: FileIdentity, *, endpoint: str, case: str, item: str
    ) -> UploadState | None:
        """This upload's state. A state written before states were keyed by destination (named
        by the file's identity alone) is taken over only when it went to the same place."""
        key = upload_key(identity, endpoint=endpoint, case=case, item=item)
        state = self.load(key)
        if state is not None:
            return state
        legacy = self.load(identity.key)
        if legacy is None or (legacy.endpoint, legacy.case, legacy.item) != (endpoint, case, item):
            return None
        legacy.key = key
        self.save(legacy)
        if self.receipt_path(identity.key).exists() and legacy.receipt_file:
            os.replace(self.receipt_path(identity.key), self.receipt_path(key))
            legacy.receipt_file = str(self.receipt_path(key))
            self.save(legacy)
        self.delete(identity.key)
        return legacy

    def load(self, key: str) -> UploadState | None:
        try:
            return UploadState.from_json(json.loads(self.path(key).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError):
            return None  # unreadable or from another version: start afresh, keep nothing stale

    def save(self, state: UploadState) -> None:
        state.updated_at = time.time()
        self.write_json(self.path(state.key), state.to_json())

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def all(self) -> Iterator[UploadState]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            if path.name.endswith(".receipt.json"):
                continue
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                yield UploadState.from_json(json.loads(path.read_text()))

    def write_json(self, path: Path, document: Any) -> None:
        """Atomically replace `path` with `document`."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = json.dumps(document, indent=1, ensure_ascii=False).encode()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        sync_folder(self.root)
