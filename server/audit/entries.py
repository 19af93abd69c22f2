"""What an audit entry's hash commits to, and with which hash.

Entry hash = the chain algorithm's hash (SHA-256, or SM3 under the `gm` suite) of the canonical
JSON (`client.canonical`) of (seq, time, actor, action, object, case_id, details, client,
prev_hash), `time` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, plus `hash_algorithm` when that is not
SHA-256: an SM3 entry names its algorithm inside the bytes it hashes, and a SHA-256 entry is the
bytes every log had before there was a choice (so existing logs verify unchanged). The first
entry's prev_hash is 64 zeros. This is the definition: `walk.py` reaches the same bytes faster
from the stored columns, and falls back to this for any row it cannot.

The algorithm changes only through a `audit.chain_switched` entry, hashed under the old one,
whose details name the new one; every entry after it uses the new one (`following`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from avidence.client.canonical import canonical_json

GENESIS = "0" * 64
SHA256 = "sha256"
SM3 = "sm3"
ALGORITHMS = (SHA256, SM3)
SWITCH = "audit.chain_switched"  # the action of the entry that changes the algorithm
# The chain algorithm of each suite (`config.SUITES`).
SUITE_ALGORITHMS = {"international": SHA256, "gm": SM3}


class UnknownAlgorithm(ValueError):
    """An entry names a chain hash this version does not know."""


def iso(moment: datetime) -> str:
    """An entry's time as it is hashed."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def stored(column: str | None) -> str:
    """The algorithm a stored `hash_algorithm` column names (NULL: SHA-256, as before the choice).

    A stored 'sha256' is refused like any unknown name: the server never writes it, and
    one algorithm has one encoding."""
    if column is None:
        return SHA256
    if column != SM3:
        raise UnknownAlgorithm(f"unknown chain hash algorithm {column!r}")
    return column


def column(algorithm: str) -> str | None:
    """How `algorithm` is stored (and hashed): absent for SHA-256."""
    if algorithm not in ALGORITHMS:
        raise UnknownAlgorithm(f"unknown chain hash algorithm {algorithm!r}")
    return None if algorithm == SHA256 else algorithm


def entry_body(row: Any) -> dict[str, Any]:
    """The hashed content of a row (or of a mapping with the same keys)."""
    get = row.__getitem__ if isinstance(row, dict) else lambda k: getattr(row, k)
    body = {
        "seq": int(get("seq")),
        "time": iso(get("time")),
        "actor": get("actor"),
        "action": get("action"),
        "object": get("object"),
        "case_id": get("case_id"),
        "details": get("details"),
        "client": get("client"),
        "prev_hash": get("prev_hash"),
    }
    named = row.get("hash_algorithm") if isinstance(row, dict) else row.hash_algorithm
    if named is not None:
        body["hash_algorithm"] = named
    return body


def entry_hash(body: Mapping[str, Any]) -> str:
    """The hash of an entry's body, by the algorithm it names (SHA-256 when it names none)."""
    algorithm = stored(body.get("hash_algorithm"))
    return hashlib.new(algorithm, canonical_json(dict(body))).hexdigest()


def following(algorithm: str, action: str, details: Any) -> str:
    """The algorithm of the entry after one hashed with `algorithm`: the same, unless this one
    is a switch, whose details name the old algorithm (`from`) and the new (`to`)."""
    if action != SWITCH:
        return algorithm
    if not isinstance(details, Mapping) or details.get("from") != algorithm:
        raise UnknownAlgorithm(f"the switch does not start from the entry's own {algorithm}")
    to = details.get("to")
    if to not in ALGORITHMS or to == algorithm:
        raise UnknownAlgorithm(f"the switch names no other known algorithm ({to!r})")
    return str(to)
