"""Progress a person (or a machine) can read: bars on a terminal, periodic lines in a log,
JSON lines with `--json`.

The uploader only updates numbers (`FileProgress`) and reports discrete events; a ticker task
renders at a fixed rate, so a 100 GB upload costs the same few redraws per second as a small one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds > 360000:
        return "--:--"
    s = int(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


@dataclass(slots=True)
class FileProgress:
    name: str
    size: int
    sent: int = 0  # bytes the server confirmed plus bytes streaming now
    phase: str = "starting"
    hashed: Callable[[], int] | None = None
    rate: float = 0.0  # bytes/s, smoothed, of what this run sends
    before: int = 0  # bytes found on the server from an earlier run
    _last: tuple[float, int] = field(default_factory=lambda: (time.monotonic(), 0))

    def already_there(self, n: int) -> None:
        """`n` more bytes turned out to be on the server from before (a resume): shown as
        done, never counted as speed, which is of what this run sends."""
        if n <= 0:
            return
        t0, s0 = self._last
        self._last = (t0, s0 + n)
        self.sent += n
        self.before += n

    def sample(self) -> None:
        now = time.monotonic()
        t0, s0 = self._last
        if now - t0 < 0.2:
            return
        instant = max(0, self.sent - s0) / (now - t0)
        self.rate = instant if self.rate == 0 else 0.7 * self.rate + 0.3 * instant
        self._last = (now, self.sent)

    @property
    def eta(self) -> float | None:
        return (self.size - self.sent) / self.rate if self.rate > 0 else None

    def fraction(self) -> float:
        return self.sent / self.size if self.size else 1.0


class Reporter:
    """Base reporter: keeps the numbers; subclasses decide how they look."""

    interval = 1.0

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.files: dict[str, FileProgress] = {}
        self.overall: FileProgress | None = None
        self._finished = 0

    def plan(self, *, files: int, size: int) -> None:
        """Announce a batch of several files, for an overall bar."""
        self.overall = FileProgress("all files", size) if files > 1 else None

    def track(self, name: str, size: int) -> FileProgress:
        self.files[name] = FileProgress(name, size)
        return self.files[name]

    def done(self, name: str) -> None:
        progress = self.files.pop(name, None)
        if progress is not None:
            self._finished += progress.size

    def _update_overall(self) -> FileProgress | None:
        if self.overall is not None:
            self.overall.sent = self._finished + sum(p.sent for p in self.files.values())
            self.overall.rate = sum(p.rate for p in self.files.values())
        return self.overall

    def event(self, kind: str, file: str | None = None, **fields: Any) -> None:
        """A discrete happening: started, resumed, retry, verified, finished, failed, info."""
        message = fields.get("message") or ""
        prefix = f"{file}: " if file else ""
        self.line(f"{prefix}{kind}{': ' + message if message else ''}")

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def result(self, out: str, detail: str | None = None) -> None:
        """A file's result: `out` on stdout (for scripts), `detail` beside the progress."""
        print(out, flush=True)
        if detail is not None:
            self.line(detail)

    def render(self) -> None:
        """Called every `interval` seconds while uploads run."""

    def close(self) -> None:
        self.render()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for progress in self.files.values():
                progress.sample()
            self.render()


class QuietReporter(Reporter):
    def event(self, kind: str, file: str | None = None, **fields: Any) -> None:
        if kind in ("failed", "warning"):
            super().event(kind, file, **fields)


def _describe(p: FileProgress) -> str:
    text = (
        f"{p.fraction():6.1%} {human_bytes(p.sent)}/{human_bytes(p.size)} "
        f"{human_bytes(p.rate)}/s ETA {human_duration(p.eta)}"
    )
    if p.hashed is not None and p.size:
        hashed = p.hashed()
        if hashed < p.size:
            text += f" (hashed {hashed / p.size:.0%})"
    if p.phase not in ("uploading", "starting"):
        text += f" [{p.phase}]"
    return text


class PlainReporter(Reporter):
    """For logs and pipes: one line per active file every `interval` seconds."""

    interval = 10.0

    def render(self) -> None:
        for p in self.files.values():
            self.line(f"{p.name}: {_describe(p)}")
        total = self._update_overall()
        if total is not None and self.files:
            self.line(f"all files: {_describe(total)}")

    def close(self) -> None:
        pass


class TtyReporter(Reporter):
    """Bars per file and overall, redrawn in place on stderr."""

    interval = 0.5

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._drawn = 0

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def line(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream)
        self._draw()

    def render(self) -> None:
        self._clear()
        self._draw()

    def result(self, out: str, detail: str | None = None) -> None:
        self._clear()
        self.stream.flush()
        print(out, flush=True)
        if detail is not None:
            print(detail, file=self.stream)
        self._draw()

    def _draw(self) -> None:
        rows = []
        for p in self.files.values():
            rows.append(f"{_bar(p.fraction())} {p.name[-30:]:<30} {_describe(p)}")
        total = self._update_overall()
        if total is not None:
            rows.append(f"{_bar(total.fraction())} {'all files':<30} {_describe(total)}")
        for row in rows:
            self.stream.write(row + "\n")
        self.stream.flush()
        self._drawn = len(rows)

    def close(self) -> None:
        self._clear()
        self.stream.flush()


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class JsonReporter(Reporter):
    """JSON lines on stdout for machines: every event, and `progress` once a second."""

    interval = 1.0

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stdout)

    def event(self, kind: str, file: str | None = None, **fields: Any) -> None:
        self.emit({"event": kind, **({"file": file} if file else {}), **fields})

    def emit(self, document: dict[str, Any]) -> None:
        document = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **document}
        print(json.dumps(document, ensure_ascii=False, default=str), file=self.stream, flush=True)

    def render(self) -> None:
        for p in self.files.values():
            self.emit(
                {
                    "event": "progress",
                    "file": p.name,
                    "bytes": p.sent,
                    "size": p.size,
                    "rate": round(p.rate),
                    "eta": round(p.eta) if p.eta is not None else None,
                    "hashed": p.hashed() if p.hashed else None,
                    "phase": p.phase,
                }
            )

    def close(self) -> None:
        pass


def reporter_for(*, json_lines: bool, quiet: bool, stream: TextIO | None = None) -> Reporter:
    if json_lines:
        return JsonReporter()
    if quiet:
        return QuietReporter(stream)
    out = stream or sys.stderr
    return TtyReporter(out) if out.isatty() else PlainReporter(out)
