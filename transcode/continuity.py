"""Continuity of a recording: was it recorded in full, with no cuts?

Interrogation recordings must be continuous. A cut, a pause or a splice shows in the video
packets' timestamps: consecutive decode timestamps (DTS, monotonic in file order even with
B-frames) differ by one frame interval in a continuous recording. This module reads them with
`ffprobe -show_entries packet=...` as a stream of lines (a ten-hour file is a million lines; it
is never held whole) and reports, with positions in seconds from the first frame, packet index
and byte offset:

* gaps: time jumping forward by more than `max_gap` seconds (and at least two frame intervals),
  i.e. missing footage;
* dropped frames: shorter forward jumps of two or more intervals (an encoder that fell behind);
* discontinuities: time jumping backwards (a splice, a clock reset).

`ok` is false when there is any gap or discontinuity. The frame interval is measured from the
first packets (median), and taken from the declared frame rate when the two agree.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import MediaError
from .probe import MediaInfo
from .tools import classify, spawn, stop, tail

MAX_LISTED = 200  # events listed per kind; the counts stay exact beyond it
WARMUP = 300  # packets used to measure the frame interval


@dataclass(slots=True, frozen=True)
class Jump:
    """One place where the timeline does not advance by one frame."""

    at: float  # seconds from the first frame, where the jump happens
    time: float  # the timestamp in the file after the jump
    packet: int  # index of the packet after the jump, in the stream
    pos: int | None  # byte offset of that packet in the file
    length: float  # seconds of footage missing (negative: how far time jumped back)
    frames: int  # frames missing (0 for a backward jump)


@dataclass(slots=True)
class Continuity:
    """The report attached to the evidence record."""

    ok: bool
    stream: int
    frame_interval: float
    declared_fps: float | None
    packets: int = 0
    first: float | None = None
    last: float | None = None
    missing_frames: int = 0
    gaps: list[Jump] = field(default_factory=list)
    dropped: list[Jump] = field(default_factory=list)
    discontinuities: list[Jump] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    max_gap: float = 0.5
    warnings: list[str] = field(default_factory=list)

    @property
    def span(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first + self.frame_interval

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["span"] = round(self.span, 6)
        return data


class Analyser:
    """Fed (packet index, timestamp, byte offset) in file order; `result()` at the end."""

    def __init__(self, *, stream: int, declared_fps: float | None, max_gap: float = 0.5) -> None:
        self.stream = stream
        self.declared_fps = declared_fps
        self.max_gap = max_gap
        self._warm: list[tuple[int, float, int | None]] | None = []
        self._interval = 0.0
        self._prev: float | None = None
        self._first: float | None = None
        self._count = 0
        self._untimed = 0
        self._duplicates = 0
        self._missing = 0
        self._totals = {"gaps": 0, "dropped": 0, "discontinuities": 0}
        self._events: dict[str, list[Jump]] = {k: [] for k in self._totals}

    def feed(self, packet: int, time: float | None, pos: int | None) -> None:
        if time is None:
            self._untimed += 1
            return
        if self._warm is not None:
            self._warm.append((packet, time, pos))
            if len(self._warm) >= WARMUP:
                self._settle()
            return
        self._step(packet, time, pos)

    def _settle(self) -> None:
        """Fix the frame interval from the buffered packets, then replay them."""
        warm, self._warm = self._warm or [], None
        deltas = [b[1] - a[1] for a, b in itertools.pairwise(warm) if b[1] > a[1]]
        measured = statistics.median(deltas) if len(deltas) >= 5 else None
        declared = 1.0 / self.declared_fps if self.declared_fps else None
        if declared and (measured is None or abs(measured - declared) <= 0.1 * declared):
            self._interval = declared
        else:
            self._interval = measured or declared or 0.04
        for entry in warm:
            self._step(*entry)

    def _step(self, packet: int, time: float, pos: int | None) -> None:
        self._count += 1
        if self._first is None:
            self._first = time
        prev, self._prev = self._prev, time
        if prev is None:
            return
        delta = time - prev
        interval = self._interval
        if delta < 0:
            jump = Jump(self._at(prev), time, packet, pos, round(delta, 6), 0)
            self._record("discontinuities", jump)
            return
        if delta == 0:
            self._duplicates += 1
            return
        if delta <= 1.5 * interval:
            return
        frames = max(1, round(delta / interval) - 1)
        self._missing += frames
        kind = "gaps" if delta > max(self.max_gap, 2 * interval) else "dropped"
        missing = round(delta - interval, 6)
        self._record(kind, Jump(self._at(prev), time, packet, pos, missing, frames))

    def _at(self, prev: float) -> float:
        # The jump happens right after the frame at `prev`, one interval later.
        return round(prev - (self._first or 0.0) + self._interval, 6)

    def _record(self, kind: str, jump: Jump) -> None:
        self._totals[kind] += 1
        if len(self._events[kind]) < MAX_LISTED:
            self._events[kind].append(jump)

    def result(self, warnings: list[str] | None = None) -> Continuity:
        if self._warm is not None:
            self._settle()
        counts = {**self._totals, "duplicates": self._duplicates, "untimed": self._untimed}
        return Continuity(
            ok=not (self._totals["gaps"] or self._totals["discontinuities"]),
            stream=self.stream,
            frame_interval=round(self._interval, 9),
            declared_fps=self.declared_fps,
            packets=self._count,
            first=self._first,
            last=self._prev,
            missing_frames=self._missing,
            gaps=self._events["gaps"],
            dropped=self._events["dropped"],
            discontinuities=self._events["discontinuities"],
            counts=counts,
            max_gap=self.max_gap,
            warnings=list(warnings or []),
        )


def parse_line(line: str) -> tuple[float | None, int | None] | None:
    """(timestamp, byte offset) from one `-of compact=p=0` packet line; None for blank lines."""
    fields = dict(part.partition("=")[::2] for part in line.strip().split("|") if "=" in part)
    if not fields:
        return None
    time = _float(fields.get("dts_time")) if "dts_time" in fields else None
    if time is None:
        time = _float(fields.get("pts_time"))
    pos = fields.get("pos", "")
    return time, int(pos) if pos.isdigit() else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


async def check(
    path: Path | str, info: MediaInfo, *, ffprobe: str = "ffprobe", max_gap: float = 0.5
) -> Continuity | None:
    """Analyse the first moving-picture stream of a local file or an http(s) URL; None when
    it has none."""
    if not info.videos:
        return None
    video = info.videos[0]
    argv = [ffprobe, "-v", "error", "-select_streams", str(video.index)]
    name, cwd = (path.name, str(path.parent)) if isinstance(path, Path) else (path, None)
    argv += ["-show_entries", "packet=pts_time,dts_time,pos", "-of", "compact=p=0", name]
    analyser = Analyser(stream=video.index, declared_fps=video.fps, max_gap=max_gap)
    process = await spawn(argv, cwd=cwd)
    stderr: deque[str] = deque(maxlen=20)
    errors_task = asyncio.create_task(tail(process.stderr, stderr))
    packet = 0
    try:
        assert process.stdout is not None
        while raw := await process.stdout.readline():
            parsed = parse_line(raw.decode("ascii", "replace"))
            if parsed is None:
                continue
            analyser.feed(packet, *parsed)
            packet += 1
        await errors_task
        returncode = await process.wait()
    finally:
        errors_task.cancel()
        await stop(process)
    if returncode != 0:
        raise classify(returncode, stderr, tool="ffprobe", what="reading packet timestamps")
    if packet == 0:
        raise MediaError("ffprobe found no video packets to check for continuity")
    return analyser.result(warnings=list(stderr)[:5])
