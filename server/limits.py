"""Request rate limits in this process's memory: a token bucket per key (a ticket, a client
address, an uploader token), and a guard that summarises guessing per client for the audit log.

A link that leaks should not become a way to pull a recording a thousand times a second, nor to
hammer the catalog. A player needs a handful of requests per seek; the defaults leave room for
fast scrubbing. Buckets are per process: behind N replicas the effective limit is N times higher,
which is still a limit; the access-code lock, which matters more, is in the catalog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """`allow(key)` spends one token from `key`'s bucket; refills at `rate` per second."""

    def __init__(self, *, rate: float = 40.0, burst: int = 240, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str, *, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after(self, key: str) -> int:
        """Whole seconds until `key` has a token again (at least 1)."""
        bucket = self._buckets.get(key)
        if bucket is None or self.rate <= 0:
            return 1
        return max(1, int((1.0 - bucket.tokens) / self.rate) + 1)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they carry no information."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


@dataclass(slots=True)
class _Probe:
    refused: int = 0
    audited_at: float = float("-inf")


class ProbeGuard:
    """Slows down a client guessing link tokens, and says when to put that on the audit log.

    Link tokens carry 256 random bits, so guessing cannot succeed; what matters is to notice
    somebody trying (a leaked half of a link, a scanner) without letting them flood the log or
    the catalog. Unknown tokens from one client are limited to `rate` per second after a burst a
    person mistyping links never reaches; refusals are reported at most once per `every`
    seconds per client, with how many there were."""

    def __init__(
        self, *, rate: float = 1.0, burst: int = 100, every: float = 60.0, max_keys: int = 10_000
    ) -> None:
        self.limiter = RateLimiter(rate=rate, burst=burst, max_keys=max_keys)
        self.every = every
        self.max_keys = max_keys
        self._probes: dict[str, _Probe] = {}

    def allow(self, client: str, *, now: float | None = None) -> bool:
        return self.limiter.allow(client, now=now)

    def refused(self, client: str, *, now: float | None = None) -> int:
        """Count a refusal; return the refusals to audit now (0: not yet, already reported)."""
        now = time.monotonic() if now is None else now
        if len(self._probes) >= self.max_keys and client not in self._probes:
            self._probes.clear()
        probe = self._probes.setdefault(client, _Probe())
        probe.refused += 1
        if now - probe.audited_at < self.every:
            return 0
        count, probe.refused, probe.audited_at = probe.refused, 0, now
        return count
