"""Structured logs: event-style messages (`upload.created id=... size=...`) on named loggers,
as text for a terminal or as one JSON object per line for a log collector."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


def _escapes() -> dict[int, str]:
    """Control characters (C0 but tab, DEL, C1) and the Unicode line and paragraph separators,
    each to a visible escape."""
    codes = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
    return {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in codes if c != 0x09}


_ESCAPES = _escapes()


class TextFormatter(logging.Formatter):
    """One entry, one line: messages quote what clients sent (a path segment, a header), and a
    line feed or carriage return there would forge or hide entries, so the message's control
    characters are written as escapes. A traceback after the message keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(*, level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
