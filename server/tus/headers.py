"""Parsing and validating tus request headers; every failure is a 400 naming the header.

The spec text quoted at each rule is tus 1.0.0 (tus/tus-resumable-upload-protocol).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from multidict import CIMultiDictProxy

from ..errors import BadRequest, ConcatInvalid
from ..identifiers import identifier_problem

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5", "blake3")
MAX_INT = 2**63 - 1

MAX_METADATA_HEADER = 8 * 1024
MAX_METADATA_PAIRS = 32
MAX_METADATA_VALUE = 2048
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
DIGEST_KEYS = ("blake3", "sha256", "sm3")
# Fields whose value names evidence: short, single-line, printable.
_SHORT_FIELDS = {"case": 128, "item": 128, "filename": 255, "filetype": 128}


def non_negative_int(value: str | None, header: str) -> int | None:
    """A decimal header value in [0, 2**63); None when the header is absent."""
    if value is None:
        return None
    value = value.strip()
    # "The value MUST be a non-negative integer." Signs, spaces and hex are refused.
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_INT:
        raise BadRequest(f"{header} must be a non-negative integer below 2^63")
    return int(value)


def parse_metadata(raw: str | None) -> dict[str, str]:
    """Decode Upload-Metadata: comma-separated `key base64value` pairs, keys unique.

    Values must be UTF-8 text without control characters, so nothing in the catalog, logs or
    the viewer can carry hidden line breaks or terminal escapes."""
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_HEADER:
        raise BadRequest(f"Upload-Metadata longer than {MAX_METADATA_HEADER} bytes")
    pairs = raw.split(",")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise BadRequest(f"Upload-Metadata has more than {MAX_METADATA_PAIRS} pairs")
    result: dict[str, str] = {}
    for pair in pairs:
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise BadRequest("Upload-Metadata pairs must be `key base64value`")
        key = parts[0]
        # "The key MUST NOT contain spaces and commas and MUST NOT be empty."
        if not _METADATA_KEY.match(key):
            raise BadRequest(f"Upload-Metadata key {key[:64]!r} is not [A-Za-z0-9_.-]{{1,64}}")
        if key in result:
            raise BadRequest(f"Upload-Metadata key {key!r} given twice")
        encoded = parts[1] if len(parts) == 2 else ""
        try:
            value_bytes = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata value of {key!r} is not base64") from None
        if len(value_bytes) > MAX_METADATA_VALUE:
            raise BadRequest(f"Upload-Metadata value of {key!r} is over {MAX_METADATA_VALUE} bytes")
        try:
            value = value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"Upload-Metadata value of {key!r} is not UTF-8") from None
        if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in value):
            raise BadRequest(f"Upload-Metadata value of {key!r} has control characters")
        result[key] = unicodedata.normalize("NFC", value)
    return result


def validate_evidence_fields(metadata: dict[str, str], *, require_case: bool) -> None:
    """Check the fields that name evidence and any declared whole-file digests."""
    if require_case and not metadata.get("case", "").strip():
        raise BadRequest("Upload-Metadata must carry `case`, the case the evidence belongs to")
    for field, limit in _SHORT_FIELDS.items():
        value = metadata.get(field)
        if value is not None and (len(value) > limit or value != value.strip()):
            raise BadRequest(f"metadata {field!r} must be at most {limit} characters, trimmed")
    for field in ("case", "item"):
        value = metadata.get(field)
        problem = identifier_problem(value) if value is not None else None
        if problem is not None:
            raise BadRequest(f"metadata {field!r} {problem}")
    filename = metadata.get("filename", "")
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        raise BadRequest("metadata 'filename' must be a bare file name, not a path")
    for key in DIGEST_KEYS:
        value = metadata.get(key)
        if value is not None and not _HEX64.match(value):
            raise BadRequest(f"metadata {key!r} must be 64 hexadecimal characters")


@dataclass(slots=True, frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


def parse_checksum(raw: str | None) -> Checksum | None:
    """Upload-Checksum: `algorithm base64digest`."""
    if raw is None:
        return None
    parts = raw.strip().split(" ")
    if len(parts) != 2:
        raise BadRequest("Upload-Checksum must be `algorithm base64digest`")
    algorithm = parts[0].lower()
    # "The Server MUST support at least the sha1 algorithm"; unknown ones are a 400.
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest(f"Upload-Checksum algorithm {parts[0]!r} is not supported")
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum digest is not base64") from None
    return Checksum(algorithm=algorithm, digest=digest)


@dataclass(slots=True, frozen=True)
class Concat:
    kind: str  # "partial" or "final"
    ids: tuple[str, ...] = ()


def parse_concat(raw: str | None, *, tus_path: str) -> Concat | None:
    """Upload-Concat: `partial` or `final;URL URL ...` (absolute or path-only URLs)."""
    if raw is None:
        return None
    raw = raw.strip()
    if raw == "partial":
        return Concat(kind="partial")
    if not raw.startswith("final;"):
        raise ConcatInvalid("Upload-Concat must be `partial` or `final;URL ...`")
    ids = []
    for url in raw[len("final;") :].split():
        path = urlsplit(url).path
        if not path.startswith(tus_path) or "/" in path[len(tus_path) :]:
            raise ConcatInvalid(f"Upload-Concat URL {url[:200]!r} is not an upload of this server")
        ids.append(path[len(tus_path) :])
    if not ids:
        raise ConcatInvalid("Upload-Concat final lists no partial uploads")
    return Concat(kind="final", ids=tuple(ids))


def encode_metadata(metadata: dict[str, str]) -> str:
    """The Upload-Metadata header value for HEAD answers."""
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


def header(headers: CIMultiDictProxy[str], name: str) -> str | None:
    """One header value; a repeated tus header is ambiguous and refused."""
    values = headers.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"{name} given more than once")
    return values[0] if values else None
