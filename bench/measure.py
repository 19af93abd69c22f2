"""What the upload benchmark measures besides time: process memory and CPU from /proc, sizes,
and the random test files.

Linux only. Peak RSS comes from `VmHWM`, reset before each run by writing 5 to
`/proc/PID/clear_refs` (root or same user), and cross-checked by a 20 ms `VmRSS` poll in case the
reset is refused.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "KIB": 1024,
    "M": 1000**2,
    "MB": 1000**2,
    "MIB": MiB,
    "G": 1000**3,
    "GB": 1000**3,
    "GIB": GiB,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_WRITE_BLOCK = MiB


def parse_size(text: str) -> int:
    """`1GiB`, `256MiB`, `500MB`, `1048576` -> bytes."""
    match = _SIZE.match(text)
    if match is None or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 256MiB, 1GiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_count_size(text: str) -> tuple[int, int]:
    """`16x256MiB` -> (16, 268435456)."""
    count, _, size = text.lower().partition("x")
    if not count.isdigit() or not size:
        raise ValueError(f"not COUNTxSIZE: {text!r} (use e.g. 16x256MiB)")
    return int(count), parse_size(size)


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size / MiB:.1f} MiB"


def mb_per_s(size: int, seconds: float) -> float:
    """Decimal megabytes per second, as network and disk speeds are usually quoted."""
    return size / seconds / 1e6


# -- /proc ------------------------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def hwm_bytes(pid: int) -> int:
    return _status_kib(pid, "VmHWM") * 1024


def reset_hwm(pid: int) -> bool:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


class PeakSampler:
    """Peak RSS of one process over a run: VmHWM after a reset, and a VmRSS poll beside it."""

    def __init__(self, pid: int, *, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.start_rss = 0
        self.polled_peak = 0
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakSampler:
        self._hwm_reset = reset_hwm(self.pid)
        self.start_rss = self.polled_peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._poll, name=f"rss-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.polled_peak = max(self.polled_peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return  # the process is gone

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._hwm_reset:
            try:
                self.polled_peak = max(self.polled_peak, hwm_bytes(self.pid))
            except (OSError, RuntimeError):
                pass

    @property
    def peak(self) -> int:
        return self.polled_peak


def busy_cores_total() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat; idle and iowait excluded)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _CLK_TCK


def wait_quiet(*, limit: float = 0.3, max_wait: float = 90.0) -> float:
    """Wait (at most `max_wait` s) until the whole machine uses under `limit` cores over one
    second, so other work on a shared box disturbs a run less; returns the last reading."""
    deadline = time.monotonic() + max_wait
    while True:  # bounded by the deadline
        before, t0 = busy_cores_total(), time.perf_counter()
        time.sleep(1.0)
        load = (busy_cores_total() - before) / (time.perf_counter() - t0)
        if load < limit or time.monotonic() > deadline:
            return load


@dataclass(slots=True)
class CpuMeter:
    """CPU seconds each named process used between `start` and `stop` (None pid: skipped)."""

    pids: dict[str, int | None]
    wall: float = 0.0
    used: dict[str, float] | None = None
    _begin: dict[str, float] | None = None
    _t0: float = 0.0

    _machine0: float = 0.0
    machine: float = 0.0  # CPU seconds of the whole machine over the run

    def start(self) -> None:
        self._begin = {n: self._cpu(p) for n, p in self.pids.items()}
        self._machine0 = busy_cores_total()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        self.machine = busy_cores_total() - self._machine0
        assert self._begin is not None
        self.used = {n: self._cpu(p) - self._begin[n] for n, p in self.pids.items()}

    def others(self) -> float:
        """Average cores used by everything not measured by name (other work on the box)."""
        if self.used is None or self.wall <= 0:
            return 0.0
        return max(0.0, self.machine - sum(self.used.values())) / self.wall

    @staticmethod
    def _cpu(pid: int | None) -> float:
        if pid is None:
            return 0.0
        if pid == os.getpid():
            return time.process_time()
        try:
            return cpu_seconds(pid)
        except OSError:
            return 0.0

    def share(self, name: str) -> float | None:
        """Average cores used by `name` over the run (1.0 = one core busy all along)."""
        if self.used is None or self.pids.get(name) is None or self.wall <= 0:
            return None
        return self.used[name] / self.wall


# -- test files -------------------------------------------------------------------------------


class DataFiles:
    """Random, fully written (not sparse) files of given sizes, made once and reused."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, size: int) -> Path:
        path = self.folder / f"random-{size}.bin"
        if path.exists() and path.stat().st_size == size:
            return path
        started = time.perf_counter()
        partial = path.with_suffix(".tmp")
        with partial.open("wb") as out:
            left = size
            while left > 0:  # bounded: `size` shrinks by a block each turn
                block = os.urandom(min(_WRITE_BLOCK, left))
                out.write(block)
                left -= len(block)
        partial.rename(path)
        print(f"  made {human(size)} of random data in {time.perf_counter() - started:.1f}s")
        return path

    def at_least(self, size: int) -> Path:
        """An existing file of `size` bytes or more (its first `size` bytes are used)."""
        for path in sorted(self.folder.glob("random-*.bin")):
            if path.stat().st_size >= size:
                return path
        return self.get(size)
