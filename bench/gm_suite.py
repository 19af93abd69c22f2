"""What the `gm` suite costs beside `international`, measured in one run on the same machine.

    .venv/bin/python bench/gm_suite.py [--mib 256] [--documents 2000]

Signing: a receipt-shaped document signed by `Signer.sign` (canonical JSON, then the provider)
with an SM2 file key and with an Ed25519 file key, and the same documents checked by
`PublicKeys.verify` as `avidence verify` does. Hashing: the digests a server computes while an
upload arrives, `MultiDigest` over 1 MiB chunks, for `international` (BLAKE3 + SHA-256) and for
`gm` (BLAKE3 + SHA-256 + SM3). Prints rates and the ratio gm / international for each; SM4-GCM
sealing is measured by bench/sealed.py.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from avidence.client.canonical import PublicKeys
from avidence.server import config, signing
from avidence.storage.digests import MultiDigest

RECEIPT = {
    "type": "avidence.receipt/v1",
    "evidence_id": "ev_01J0000000000000000000000",
    "case": "GA-2026-0042",
    "item": "3",
    "filename": "审讯室2-20261206-0930.ts",
    "size": 53_687_091_200,
    "blake3": "ab" * 32,
    "sha256": "cd" * 32,
    "sm3": "ef" * 32,
    "uploader": "room 2 recorder",
    "received_at": "2026-12-06T09:30:00Z",
}


def rate(count: int, work: Callable[[], object]) -> float:
    """Operations per second of `work` run `count` times (best of three rounds)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(count):
            work()
        best = min(best, time.perf_counter() - start)
    return count / best


def signatures(documents: int, folder: Path) -> dict[str, tuple[float, float]]:
    """(signs/s, verifies/s) per suite."""
    results = {}
    for suite in ("international", "gm"):
        settings = config.load(env={}, data_dir=folder / suite, suite=suite)
        signer = signing.load_signer(settings)
        keys = PublicKeys.load(signer.public_pem)
        signed = signer.sign("receipt", RECEIPT)
        signs = rate(documents, lambda s=signer: s.sign("receipt", RECEIPT))
        checks = rate(documents, lambda k=keys, d=signed: k.verify(d, body="receipt"))
        results[suite] = (signs, checks)
    return results


def hashing(mib: int) -> dict[str, float]:
    """MB/s of the digests each suite computes while an upload arrives."""
    chunk = os.urandom(1024 * 1024)
    results = {}
    for suite in ("international", "gm"):
        algorithms = config.Settings(suite=suite).digests  # what `serve` computes by default
        best = float("inf")
        for _ in range(3):
            digest = MultiDigest(algorithms)
            start = time.perf_counter()
            for _ in range(mib):
                digest.update(chunk)
            digest.hexdigests()
            best = min(best, time.perf_counter() - start)
        results[suite] = mib * 1.048576 / best
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB hashed per round")
    parser.add_argument("--documents", type=int, default=2000, help="documents per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        signed = signatures(args.documents, Path(folder))
    hashed = hashing(args.mib)
    print(f"{'':28}{'international':>15}{'gm':>12}{'gm / intl':>12}")
    rows = [
        ("receipts signed per s", signed["international"][0], signed["gm"][0]),
        ("receipts verified per s", signed["international"][1], signed["gm"][1]),
        ("upload digests, MB/s", hashed["international"], hashed["gm"]),
    ]
    for name, intl, gm in rows:
        print(f"{name:28}{intl:>15.0f}{gm:>12.0f}{gm / intl:>12.2f}")


if __name__ == "__main__":
    main()
