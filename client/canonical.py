"""Canonical JSON and its signatures: the one encoding receipts, manifests and audit checkpoints
are signed in, shared by the server that signs and the client that verifies offline. Signatures
are Ed25519 or SM2-with-SM3, as each document names (`signatures`).

Canonical means: keys sorted, no insignificant whitespace, UTF-8, no floats (their text form is
not portable), so any implementation re-encoding the same document gets the same bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .signatures import (
    ALGORITHMS,
    ED25519,
    MissingBinding,
    PublicKey,
    UnusableKey,
    key_id,
    load_public,
)

ALGORITHM = ED25519  # the international suite's, and every document's before SM2 existed

__all__ = [
    "ALGORITHM",
    "PublicKeys",
    "SuiteUnavailable",
    "VerificationError",
    "canonical_json",
    "key_id",
]


class VerificationError(Exception):
    """A signature, digest or document that does not check out; the message says which."""


class SuiteUnavailable(VerificationError):
    """A key of a suite this install cannot check (SM2 without the `gm` extra): nothing is
    known to be wrong with the document, and the message says what to install."""


def _plain(value: Any) -> bool:
    """True when `value` holds no float and only string keys: one pass without recursion or
    ABC checks, since every audit entry is hashed through here (`audit verify` walks millions)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is float or not (kind is str or kind is int or kind is bool or item is None):
            return False
    return True


def _check(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise ValueError(f"canonical JSON refuses floats ({path})")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"canonical JSON keys must be strings ({path})")
            _check(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON document."""
    if not _plain(value):
        _check(value, "$")  # names the offending path, or passes other JSON-able mappings
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True, frozen=True)
class PublicKeys:
    """The server public keys a verifier trusts, by key id. `pinned` says they come from a
    pinned key history (`trust.load_pinned`), not from a list that travelled with the
    documents, which changes how an unknown key is reported."""

    keys: Mapping[str, PublicKey]
    pinned: bool = False

    def unknown(self, kid: object) -> str:
        """Why a document signed by `kid` is refused: the words verifiers print."""
        if self.pinned:
            return f"signed by key {kid}, which does not chain to the pinned keys"
        return f"signed by unknown key {kid!r}"

    @classmethod
    def load(cls, text: str) -> PublicKeys:
        """From a PEM public key or the JSON document `GET /api/keys` serves."""
        text = text.strip()
        if text.startswith("{"):
            document = json.loads(text)
            pems = [k["public_key_pem"] for k in document.get("keys", [])]
        else:
            pems = [text]
        keys: dict[str, PublicKey] = {}
        for pem in pems:
            try:
                loaded = load_public(pem)
            except MissingBinding as exc:
                raise SuiteUnavailable(str(exc)) from None
            except UnusableKey as exc:
                raise VerificationError(str(exc)) from None
            keys[key_id(loaded)] = loaded
        if not keys:
            raise VerificationError("no public key found")
        return cls(keys)

    def verify(self, signed: Mapping[str, Any], *, body: str) -> dict[str, Any]:
        """Check `signed[body]` against `signed["signature"]` by `signed["key_id"]` and return
        the body. Raises VerificationError with the reason."""
        algorithm = signed.get("algorithm")
        if algorithm not in ALGORITHMS:
            raise VerificationError(f"unsupported signature algorithm {algorithm!r}")
        kid = signed.get("key_id")
        public = self.keys.get(str(kid))
        if public is None:
            raise VerificationError(self.unknown(kid))
        if public.algorithm != algorithm:
            # A document naming another algorithm than its key's is refused, not re-tried.
            raise VerificationError(f"key {kid} is {public.algorithm}, the document {algorithm}")
        payload = signed.get(body)
        if not isinstance(payload, dict):
            raise VerificationError(f"no {body!r} object in the document")
        try:
            signature = base64.b64decode(str(signed.get("signature", "")), validate=True)
            good = public.verify(signature, canonical_json(payload))
        except ValueError:
            good = False
        if not good:
            raise VerificationError("the signature does not match the document")
        return payload
