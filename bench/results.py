"""Results of the upload benchmark: one record per target, and the tables printed at the end.

Other work on a shared machine only ever slows a run down, so the fastest round is the figure
least disturbed by it; the median is shown beside it and the target verdicts use the fastest.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from measure import MiB, mb_per_s


@dataclass
class Result:
    """One target measured `repeat` times."""

    key: str
    target: str
    client: str
    size: int
    seconds: list[float] = field(default_factory=list)
    server_cores: list[float] = field(default_factory=list)
    weed_cores: list[float] = field(default_factory=list)
    client_cores: list[float] = field(default_factory=list)
    other_cores: list[float] = field(default_factory=list)
    rss_growth: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def best(self) -> float | None:
        """MB/s of the fastest round."""
        return mb_per_s(self.size, min(self.seconds)) if self.seconds else None

    @property
    def median(self) -> float | None:
        return mb_per_s(self.size, statistics.median(self.seconds)) if self.seconds else None

    def cpu_per_gb(self, cores: list[float]) -> str:
        """Median CPU seconds per 10^9 bytes from per-round core shares: the cost of the work,
        which other load on the machine disturbs much less than the speed."""
        if not cores or len(cores) != len(self.seconds):
            return "-"
        used = statistics.median(c * t for c, t in zip(cores, self.seconds, strict=True))
        return f"{used / (self.size / 1e9):.1f}"

    @property
    def best_index(self) -> int:
        return self.seconds.index(min(self.seconds)) if self.seconds else -1


def report(results: list[Result], concurrent_failures: int | None) -> list[dict[str, object]]:
    """Print the results table and the project targets; return the targets for --json.

    Other work on a shared machine only ever slows a run down, so the best of the rounds is the
    figure least disturbed by it; the median is shown beside it and the verdicts use the best.
    CPU-s/GB are medians over the rounds; "other load" is the cores used by everything else
    (other processes, kernel writeback) during the best round.
    """
    by_key = {r.key: r for r in results}
    boto = by_key.get("boto3")
    print()
    print(
        "| target | client | MB/s best | MB/s median | x boto3 best | x boto3 median "
        "| CPU-s/GB server | CPU-s/GB SeaweedFS | CPU-s/GB client | other load "
        "| server RSS growth |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r.skipped or r.best is None:
            why = f"skipped: {r.skipped}" if r.skipped else f"failed: {(r.errors or ['?'])[0][:80]}"
            print(f"| {r.target} | {r.client} | {why} | | | | | | | | |")
            continue
        i = r.best_index
        x_best = f"{r.best / boto.best:.2f}" if boto and boto.best else "-"
        x_med = f"{(r.median or 0) / boto.median:.2f}" if boto and boto.median else "-"
        rss = f"{max(r.rss_growth) / MiB:.0f} MiB" if r.rss_growth else "-"
        print(
            f"| {r.target} | {r.client} | {r.best:.0f} | {r.median or 0:.0f} | {x_best} | {x_med} "
            f"| {r.cpu_per_gb(r.server_cores)} | {r.cpu_per_gb(r.weed_cores)} "
            f"| {r.cpu_per_gb(r.client_cores)} | {_at(r.other_cores, i)} | {rss} |"
        )

    checks: list[dict[str, object]] = []

    def ratio(mine: str | None, other: str | None) -> tuple[float | None, float | None, str]:
        a, b = by_key.get(mine or ""), by_key.get(other or "")
        if not (a and b and a.best and b.best and a.median and b.median):
            return None, None, ""
        numbers = f"best {a.best:.0f} vs {b.best:.0f} MB/s, median {a.median:.0f} vs {b.median:.0f}"
        return a.best / b.best, a.median / b.median, numbers

    def check(name: str, wanted: float, pair: tuple[float | None, float | None, str]) -> None:
        best, median, numbers = pair
        verdict = "not measured" if best is None else "met" if best >= wanted else "MISSED"
        checks.append(
            {
                "target": name,
                "wanted": f">= {wanted:.2f}x",
                "best": best,
                "median": median,
                "verdict": verdict,
                "numbers": numbers,
            }
        )

    s3_keys = [k for k in ("av_s3_tuspy", "av_s3_stream", "av_s3_concat") if k in by_key]
    fastest = max(s3_keys, key=lambda k: by_key[k].best or 0.0, default=None)
    if fastest:
        name = f"avidence->S3 ({by_key[fastest].client}) vs boto3 direct"
        check(name, 0.8, ratio(fastest, "boto3"))
    if fastest != "av_s3_tuspy":
        check("avidence->S3 (tuspy) vs boto3 direct", 0.8, ratio("av_s3_tuspy", "boto3"))
    for client, name in (("tuspy", "tuspy"), ("stream", "one PATCH")):
        check(
            f"avidence->S3 vs @tus/server S3, both {name}",
            2.0,
            ratio(f"av_s3_{client}", f"node_s3_{client}"),
        )
        check(
            f"avidence->local vs @tus/server file, both {name}",
            1.2,
            ratio(f"av_local_{client}", f"node_file_{client}"),
        )
    mem = by_key.get("memory")
    growth = max(mem.rss_growth) / MiB if mem and mem.rss_growth else None
    checks.append(
        {
            "target": "server RSS growth, one large upload",
            "wanted": "< 150 MiB",
            "best": growth,
            "median": growth,
            "verdict": "not measured" if growth is None else "met" if growth < 150 else "MISSED",
            "numbers": f"{mem.client}, {mem.best or 0:.0f} MB/s" if mem else "",
        }
    )
    conc = by_key.get("concurrent")
    done = conc is not None and concurrent_failures is not None
    checks.append(
        {
            "target": "concurrent uploads that failed",
            "wanted": "0",
            "best": concurrent_failures,
            "median": concurrent_failures,
            "verdict": "not measured"
            if not done
            else "met"
            if concurrent_failures == 0
            else "MISSED",
            "numbers": f"{conc.client}: {conc.best or 0:.0f} MB/s aggregate, server RSS growth "
            f"{max(conc.rss_growth, default=0) / MiB:.0f} MiB"
            if conc
            else "",
        }
    )
    print()
    print("| project target | wanted | measured (best) | median | verdict | numbers |")
    print("|---|---|---:|---:|---|---|")
    for c in checks:
        print(
            f"| {c['target']} | {c['wanted']} | {_num(c['best'])} | {_num(c['median'])} "
            f"| {c['verdict']} | {c['numbers']} |"
        )
    return checks


def _num(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _at(values: list[float], index: int) -> str:
    return f"{values[index]:.2f}" if 0 <= index < len(values) else "-"
