"""Running a planned command and following its progress.

ffmpeg writes `-progress pipe:1` blocks of `key=value` lines ending in `progress=continue` (or
`end`); `out_time_us` against the input's duration gives the percentage, `speed` the multiple of
real time. The parser is a plain object fed line by line, so it is tested without ffmpeg.
Cancelling `execute` kills ffmpeg and reaps it: a job given up leaves no encoder running.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .plan import SOURCE, Command
from .tools import classify, spawn, stop, tail

log = logging.getLogger("avidence.transcode")


@dataclass(slots=True, frozen=True)
class Progress:
    """Where a run is: seconds of output written, percent of the input, speed vs real time."""

    out_time: float
    percent: float | None
    speed: float | None
    done: bool = False


class ProgressParser:
    """Turns `-progress` lines into a Progress at the end of each block."""

    def __init__(self, duration: float | None) -> None:
        self.duration = duration if duration and duration > 0 else None
        self._block: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._block[key] = value.strip()
        if key != "progress":
            return None
        block, self._block = self._block, {}
        out_time = _seconds(block)
        speed = _speed(block.get("speed", ""))
        done = value.strip() == "end"
        percent = None
        if self.duration is not None:
            percent = 100.0 if done else min(100.0, max(0.0, 100.0 * out_time / self.duration))
        return Progress(out_time, percent, speed, done)


def _seconds(block: dict[str, str]) -> float:
    raw = block.get("out_time_us") or block.get("out_time_ms")  # both are microseconds
    try:
        return max(0.0, int(raw or "0") / 1_000_000)
    except ValueError:
        return 0.0


def _speed(text: str) -> float | None:
    try:
        return float(text.rstrip("x"))
    except ValueError:
        return None


ProgressCallback = Callable[[Progress], Awaitable[None]]


async def execute(
    command: Command,
    *,
    cwd: Path,
    ffmpeg: str = "ffmpeg",
    on_progress: ProgressCallback | None = None,
    source_url: str | None = None,
) -> None:
    """Run `command` in `cwd` (where `source` lies, or read from `source_url` when given: the
    command as recorded keeps the name `source`); MediaError or ToolError when it fails."""
    argv = [ffmpeg, *command.argv[1:]]
    if source_url is not None:
        argv = [
            source_url if arg == SOURCE and argv[n - 1] == "-i" else arg
            for n, arg in enumerate(argv)
        ]
    process = await spawn(argv, cwd=str(cwd))
    stderr: deque[str] = deque(maxlen=40)
    errors = asyncio.create_task(tail(process.stderr, stderr))
    parser = ProgressParser(command.duration)
    try:
        assert process.stdout is not None
        while raw := await process.stdout.readline():
            progress = parser.feed(raw.decode("utf-8", "replace"))
            if progress is not None and on_progress is not None:
                await on_progress(progress)
        await errors
        returncode = await process.wait()
    finally:
        errors.cancel()
        await stop(process)
    what = f"making {', '.join(o.name for o in command.outputs)}"
    if returncode != 0:
        raise classify(returncode, stderr, tool="ffmpeg", what=what)
    for output in command.outputs:
        path = cwd / output.name
        if not path.exists() or path.stat().st_size == 0:
            detail = "; ".join(stderr) or "no frame could be decoded"
            raise classify(1, [detail], tool="ffmpeg", what=what)
    if stderr:
        log.debug("transcode.warnings outputs=%s stderr=%s", what, " | ".join(stderr))
