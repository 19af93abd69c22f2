"""Where the last `audit verify` got to, so a daily check reads only what is new.

A successful run records the newest checkpoint it verified (seq, head hash, when) in a small
JSON file beside the data (`audit-verified.json`, or `--state FILE`). `audit verify
--since-checkpoint` starts there: it checks that the live entry at that seq still carries that
hash, then walks only the entries after it. The file lives outside the catalog: moving it
forward cannot hide anything the catalog's writer did, since a rewrite changes that hash; an
edit that was not re-hashed is left for a full run, which a weekly schedule should make.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ..config import ConfigError, Settings
from .log import Anchor


def default_path(settings: Settings) -> Path:
    return settings.data_dir / "audit-verified.json"


def load(path: Path) -> tuple[Anchor, str] | None:
    """The recorded checkpoint and when it was verified; None when nothing is recorded yet."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return Anchor(int(document["seq"]), str(document["head_hash"])), str(document["at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"audit state {path}: unreadable ({exc})") from None


def save(path: Path, anchor: Anchor) -> None:
    """Record `anchor`, replacing the file in one rename so a crash leaves the old one."""
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".tmp")
    fresh.write_text(
        json.dumps({"seq": anchor.seq, "head_hash": anchor.head_hash, "at": at}) + "\n",
        encoding="utf-8",
    )
    os.replace(fresh, path)
