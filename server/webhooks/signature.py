"""`Avidence-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.

The timestamp is inside the signed text, so a receiver that refuses old timestamps (five
minutes is usual) cannot be fed a recorded delivery again. `verify` is what a receiver runs;
docs/api.md shows the same in a few lines.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Avidence-Signature"
TOLERANCE = 300


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256)
    return f"t={moment},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = TOLERANCE) -> bool:
    """True when the header signs `body` with `secret` and is at most `tolerance` s old."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        moment = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(time.time() - moment) > tolerance:
        return False
    expected = sign(secret, body, timestamp=moment).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
