"""Pinned trust roots: a key history in which each new key is certified by the previous one.

Public keys found next to what they sign (`GET /api/keys`, a bundle's `keys.json`, the server's
catalog) are a cache: whoever can write there can add a key. A verifier instead pins the
history `avidence-server key export` wrote, obtained out of band (handed over on paper, from
the court's own records, from an earlier export): its first key is the root; every later key is
trusted only through a certificate its predecessor signed (`avidence.key-certificate/v1`).

Keys rotated after the pinned file was made are still accepted when a cached list carries
their certificates and these chain to the pinned keys (`extend`); anything else is refused,
and a document signed by such a key is reported as "signed by key X, which does not chain to
the pinned keys".

History document (`avidence.key-history/v1`), also readable by `PublicKeys.load`:

    {"type": "avidence.key-history/v1",
     "keys": [{"id", "algorithm", "public_key_pem", "created_at"},            # the root
              {"id", ..., "certificate": {"certificate": {...}, "algorithm",
                                          "key_id": <previous id>, "signature"}}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .canonical import PublicKeys, SuiteUnavailable, VerificationError, key_id
from .signatures import ED25519, MissingBinding, PublicKey, UnusableKey, load_public

HISTORY_TYPE = "avidence.key-history/v1"
CERTIFICATE_TYPE = "avidence.key-certificate/v1"


def certificate_body(
    *,
    public_key_pem: str,
    new_id: str,
    previous_id: str,
    issued_at: str,
    algorithm: str = ED25519,
) -> dict[str, Any]:
    """What a key signs to vouch for its successor (`algorithm` is the successor's, so a
    history may pass from Ed25519 to SM2 when a deployment changes suite)."""
    return {
        "type": CERTIFICATE_TYPE,
        "algorithm": algorithm,
        "key_id": new_id,
        "public_key_pem": public_key_pem,
        "previous": previous_id,
        "issued_at": issued_at,
    }


def _public(pem: Any, where: str) -> PublicKey:
    try:
        return load_public(str(pem))
    except MissingBinding as exc:
        raise SuiteUnavailable(f"{where}: {exc}") from None
    except UnusableKey as exc:
        raise VerificationError(f"{where}: {exc}") from None


def certified(entry: Mapping[str, Any], trusted: Mapping[str, PublicKey]) -> str | None:
    """The id of `entry`'s key when its certificate is signed by a trusted key and names
    exactly this key; None otherwise (no certificate, a forged one, or one for another key)."""
    certificate = entry.get("certificate")
    if not isinstance(certificate, Mapping):
        return None
    try:
        key = _public(entry.get("public_key_pem"), "key")
        kid = key_id(key)
        body = PublicKeys(trusted).verify(certificate, body="certificate")
        named = key_id(_public(body.get("public_key_pem"), "certificate"))
    except SuiteUnavailable:
        raise  # an SM2 successor this install cannot read: say so, never "does not chain"
    except VerificationError:
        return None
    if (
        body.get("type") != CERTIFICATE_TYPE
        or body.get("algorithm") != key.algorithm
        or body.get("key_id") != kid
        or named != kid
        or body.get("previous") != certificate.get("key_id")
    ):
        return None
    return kid


def _entries(document: Any, where: str) -> list[Mapping[str, Any]]:
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, Mapping) for k in keys):
        raise VerificationError(f"{where}: not a key history (no keys)")
    return keys


def load_pinned(text: str, *, where: str = "pinned keys") -> PublicKeys:
    """The keys of a pinned history: the root, then each successor its predecessor certified.
    Raises VerificationError naming the first key that does not chain."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise VerificationError(f"{where}: not a JSON key history") from None
    entries = _entries(document, where)
    root = _public(entries[0].get("public_key_pem"), f"{where}: key 1")
    trusted = {key_id(root): root}
    for number, entry in enumerate(entries[1:], 2):
        kid = certified(entry, trusted)
        if kid is None:
            raise VerificationError(
                f"{where}: key {number} ({entry.get('id')}) is not certified by the key before it"
            )
        trusted[kid] = _public(entry["public_key_pem"], f"{where}: key {number}")
    return PublicKeys(trusted, pinned=True)


def extend(pinned: PublicKeys, candidates: Iterable[Mapping[str, Any]]) -> PublicKeys:
    """`pinned` plus every candidate key whose certificate chains to it (in any order, so a
    cached list of several later rotations is followed to its end). Others are left out."""
    trusted = dict(pinned.keys)
    pending = [c for c in candidates if isinstance(c, Mapping)]
    grew = True
    while grew and pending:
        grew = False
        for entry in list(pending):
            kid = certified(entry, trusted)
            if kid is not None:
                trusted[kid] = _public(entry["public_key_pem"], "key")
                pending.remove(entry)
                grew = True
    return PublicKeys(trusted, pinned=pinned.pinned)


def cached_entries(text: str) -> list[Mapping[str, Any]]:
    """The key entries of a cached list (`/api/keys`, `keys.json`); [] when it has none."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return []
    keys = document.get("keys") if isinstance(document, Mapping) else None
    return [k for k in keys if isinstance(k, Mapping)] if isinstance(keys, list) else []


def history(
    entries: Sequence[Mapping[str, Any]], *, reaching: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A pinnable history (`HISTORY_TYPE`) from a cached key list, oldest first, and the ids it
    leaves out: the oldest uncertified key from which `reaching` (default: the newest listed
    key) is reached through certificates, then every key certified along the way. A key slipped
    into the list, even with an older date, cannot become the root, since no certificate leads
    from it to the real key. VerificationError when no listed key reaches `reaching`."""
    if not entries:
        raise VerificationError("no keys listed")
    target = reaching or str(entries[-1].get("id"))
    for root in entries:
        chain: list[Mapping[str, Any]] = [{k: v for k, v in root.items() if k != "certificate"}]
        try:
            keys = extend(load_pinned(json.dumps({"keys": chain})), entries)
        except VerificationError:
            continue  # not a usable key (no PEM, not Ed25519 or SM2): it cannot be a root
        if target in keys.keys:
            chain += [e for e in entries if e.get("id") in keys.keys and e.get("id") != root["id"]]
            left = [str(e.get("id")) for e in entries if e.get("id") not in keys.keys]
            return {"type": HISTORY_TYPE, "keys": chain}, left
    raise VerificationError(f"no listed key reaches key {target} through certificates")
