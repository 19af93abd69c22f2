"""Short signed values the viewer hands to the browser: the access cookie and view grants.

Both are HMAC-SHA256 under a secret derived from the server's signing key, so every replica
sharing that key (as they must, for receipts) accepts what another one issued, and nothing
needs storing. Rotating the signing key logs viewers out, which is harmless. The secret comes
from the provider's `derive` of a fixed label: for Ed25519 the key's signature of it (RFC 8032
signatures are deterministic, so every replica derives the same one even when the key sits in
an HSM that never lets it out); for SM2, whose signatures are randomised, an HMAC under the
private key.

- The access cookie says "this browser entered the ticket's access code" until it expires.
- A view grant says "view session V of evidence E on ticket T was counted at time S"; media
  requests carry it, so bytes flow only inside a counted, audited view.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from ..digits import decimal
from ..signing import Signer

COOKIE_TTL = 2 * 3600  # renewed while the viewer is in use; see `needs_renewal`
GRANT_TTL = 12 * 3600  # the lifetime of grants of views counted before views had windows


# Not canonical JSON (which starts with "{"), so no signed document can ever carry this value.
SEAL_LABEL = b"avidence viewer seals v1"


def derive_secret(signer: Signer) -> bytes:
    """A MAC key of its own, so no MAC is ever a signature-key operation: derived once at
    start-up from a label no document uses, and never published."""
    stem = signer.provider.derive(SEAL_LABEL)
    return hmac.new(stem, SEAL_LABEL, hashlib.sha256).digest()


def _mac(secret: bytes, *parts: str) -> str:
    digest = hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:20]).decode().rstrip("=")


def cookie_name(ticket_id: str) -> str:
    return f"avd_{ticket_id}"


def make_cookie(secret: bytes, ticket_id: str, *, now: float | None = None) -> str:
    expires = int((now or time.time()) + COOKIE_TTL)
    return f"{expires}.{_mac(secret, 'cookie', ticket_id, str(expires))}"


def cookie_expiry(secret: bytes, ticket_id: str, value: str, *, now: float | None = None) -> int:
    """The cookie's expiry time when it is genuine and current, else 0."""
    expires, _, mac = value.partition(".")
    expiry = decimal(expires)
    if expiry is None or expiry <= (now or time.time()):
        return 0
    if not hmac.compare_digest(mac, _mac(secret, "cookie", ticket_id, expires)):
        return 0
    return expiry


def needs_renewal(expires: int, *, now: float | None = None) -> bool:
    """Renew a cookie past half its life, so a long recording does not lose access mid-way."""
    return expires - (now or time.time()) < COOKIE_TTL / 2


def make_grant(
    secret: bytes, ticket_id: str, evidence_id: str, view_id: str, *, now: float | None = None
) -> str:
    issued = str(int(now or time.time()))
    return f"{view_id}.{issued}.{_mac(secret, 'view', ticket_id, evidence_id, view_id, issued)}"


def check_grant(
    secret: bytes,
    ticket_id: str,
    evidence_id: str,
    value: str,
    *,
    ttl: int = GRANT_TTL,
    now: float | None = None,
) -> str | None:
    """The view id of a genuine grant for this ticket and evidence issued within `ttl`
    seconds, else None. (What the view still allows is the view row's: `allowance.py`.)"""
    parts = value.split(".")
    issued_at = decimal(parts[1]) if len(parts) == 3 else None
    if issued_at is None:
        return None
    view_id, issued, mac = parts
    if not view_id.startswith("vw_") or len(view_id) > 32:
        return None
    if issued_at + max(ttl, GRANT_TTL) <= (now or time.time()):
        return None
    expected = _mac(secret, "view", ticket_id, evidence_id, view_id, issued)
    return view_id if hmac.compare_digest(mac, expected) else None
