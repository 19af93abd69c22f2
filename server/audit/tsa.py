"""An RFC 3161 time-stamping authority as a witness of the audit checkpoints.

With `tsa_url` set, each signed checkpoint is sent to the TSA (SHA-256 of the checkpoint
document's canonical JSON as the message imprint, with a nonce) and the TimeStampResp it answers
is kept beside the checkpoint (`audit_checkpoints.timestamp_token`). The TSA signs that it saw
exactly that document at its own time, so a checkpoint cannot later be forged or back-dated by
whoever holds the server key or the catalog.

`tsa_certificates` pins the TSA: a PEM file with the TSA's own certificate first, then the CA
certificates up to a root. Every token is checked against it when it arrives and again by
`audit verify` (signature chain to the pinned root, the TSA certificate itself, the critical
timeStamping extended key usage, the imprint against the stored document), through the
maintained `rfc3161-client` library.

A TSA that cannot be reached never stops custody: the checkpoint stands without a token, and the
next checkpoint pass (`checkpoint_interval`, or `audit checkpoint`) asks again for every
checkpoint still without one, newest first. `audit verify` names those as awaiting a time-stamp.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import canonical_json

from ..catalog.schema import audit_checkpoints
from ..config import ConfigError, Settings

log = logging.getLogger("avidence.audit.tsa")

QUERY_TYPE = "application/timestamp-query"  # RFC 3161 section 3.4
REPLY_TYPE = "application/timestamp-reply"
PER_PASS = 20  # checkpoints stamped per pass at most: a long outage is caught up over passes


class TsaError(Exception):
    """The TSA could not be reached, refused, or answered a token that does not check out."""


@dataclass(slots=True, frozen=True)
class Pinned:
    """The TSA certificate and the CA certificates it must chain to."""

    tsa: x509.Certificate
    roots: list[x509.Certificate]
    intermediates: list[x509.Certificate]

    @classmethod
    def load(cls, path: Path) -> Pinned:
        try:
            certificates = x509.load_pem_x509_certificates(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"tsa_certificates: cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"tsa_certificates: {path} holds no PEM certificates") from None
        tsa, chain = certificates[0], certificates[1:]
        roots = [c for c in chain if c.subject == c.issuer]
        if not roots and tsa.subject == tsa.issuer:
            roots = [tsa]  # a self-signed TSA certificate is its own root
        if not roots:
            raise ConfigError(
                f"tsa_certificates: {path} has no root (self-signed) certificate after the "
                "TSA's own: add the CA certificates it chains to"
            )
        intermediates = [c for c in chain if c.subject != c.issuer]
        return cls(tsa, roots, intermediates)

    @property
    def name(self) -> str:
        return self.tsa.subject.rfc4514_string()


def message(document: dict[str, Any]) -> bytes:
    """What the token's imprint covers: the checkpoint document's canonical JSON."""
    return canonical_json(document)


@dataclass(slots=True)
class TimeStamper:
    """Asks the TSA for tokens and checks tokens against the pinned certificates."""

    url: str
    pinned: Pinned
    timeout: float

    def check(
        self, token: bytes, document: dict[str, Any], *, nonce: int | None = None
    ) -> datetime:
        """The TSA's time for `document`; TsaError saying why when the token does not prove it."""
        try:
            response = decode_timestamp_response(token)
        except ValueError as exc:
            raise TsaError(f"not a time-stamp response ({exc})") from None
        builder = VerifierBuilder(
            tsa_certificate=self.pinned.tsa,
            roots=list(self.pinned.roots),
            intermediates=list(self.pinned.intermediates),
            nonce=nonce,
        )
        try:
            builder.build().verify_message(response, message(document))
        except VerificationError as exc:
            raise TsaError(_reason(exc)) from None
        return response.tst_info.gen_time

    async def stamp(self, document: dict[str, Any]) -> bytes:
        """A checked token for `document` from the TSA; TsaError when there is none."""
        request = (
            TimestampRequestBuilder()
            .data(message(document))
            .hash_algorithm(HashAlgorithm.SHA256)
            .build()
        )
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(
                    self.url, data=request.as_bytes(), headers={"Content-Type": QUERY_TYPE}
                ) as answer:
                    body = await answer.read()
                    if answer.status != 200:
                        raise TsaError(f"the TSA answered {answer.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TsaError(f"the TSA cannot be reached: {exc or type(exc).__name__}") from None
        self.check(body, document, nonce=request.nonce)
        return body


def _reason(exc: VerificationError) -> str:
    text = str(exc)
    if "Mismatch between messages" in text:
        return "its imprint is not this checkpoint's (the token was made for another document)"
    if "certificate" in text.lower() or "pkcs7" in text.lower():
        return f"it is not signed by the pinned TSA ({text})"
    return text


def configured(settings: Settings) -> TimeStamper | None:
    """The TSA of `tsa_url`, pinned by `tsa_certificates`; None when no TSA is configured."""
    if not settings.tsa_url:
        return None
    return TimeStamper(
        settings.tsa_url, Pinned.load(Path(settings.tsa_certificates)), settings.tsa_timeout
    )


def verifier(settings: Settings) -> TimeStamper | None:
    """What `audit verify` checks tokens with: the pinned certificates, even when `tsa_url`
    is no longer set (a TSA used before still vouches for the checkpoints it stamped)."""
    if not settings.tsa_certificates:
        return None
    return TimeStamper(settings.tsa_url, Pinned.load(Path(settings.tsa_certificates)), 1)


async def stamp_pending(engine: AsyncEngine, stamper: TimeStamper) -> int:
    """Ask the TSA for a token for every checkpoint still without one (newest first, at most
    PER_PASS); the number stamped. Stops at the first failure, logged, never raised: custody
    does not wait for the TSA."""
    async with engine.connect() as conn:
        pending = (
            await conn.execute(
                sa.select(audit_checkpoints.c.seq, audit_checkpoints.c.document)
                .where(audit_checkpoints.c.timestamp_token.is_(None))
                .order_by(audit_checkpoints.c.seq.desc())
                .limit(PER_PASS)
            )
        ).all()
    stamped = 0
    for seq, document in pending:
        try:
            token = await stamper.stamp(dict(document))
        except TsaError as exc:
            log.error("audit.timestamp_failed seq=%s tsa=%s error=%s", seq, stamper.url, exc)
            break
        async with engine.begin() as conn:
            await conn.execute(
                audit_checkpoints.update()
                .where(audit_checkpoints.c.seq == seq)
                .where(audit_checkpoints.c.timestamp_token.is_(None))
                .values(timestamp_token=base64.b64encode(token).decode())
            )
        log.info("audit.timestamped seq=%s tsa=%s", seq, stamper.url)
        stamped += 1
    return stamped


@dataclass(slots=True)
class Report:
    """What `audit verify` found of the time-stamps from checkpoint `since` on."""

    stamped: int = 0
    unchecked: int = 0  # tokens kept, but no TSA pinned to check them with
    awaiting: list[int] = field(default_factory=list)
    newest: datetime | None = None
    problems: list[str] = field(default_factory=list)


async def check_all(
    engine: AsyncEngine, stamper: TimeStamper | None, *, since: int = 0
) -> Report:
    """Check every stored token (from checkpoint `since` on) against the pinned TSA. Without
    pinned certificates the tokens are only counted."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    audit_checkpoints.c.seq,
                    audit_checkpoints.c.document,
                    audit_checkpoints.c.timestamp_token,
                )
                .where(audit_checkpoints.c.seq >= since)
                .order_by(audit_checkpoints.c.seq)
            )
        ).all()
    report = Report()
    for seq, document, token in rows:
        if token is None:
            report.awaiting.append(int(seq))
            continue
        if stamper is None:
            report.unchecked += 1
            continue
        try:
            when = stamper.check(base64.b64decode(token, validate=True), dict(document))
        except (TsaError, ValueError) as exc:
            report.problems.append(f"checkpoint {seq}'s time-stamp does not verify: {exc}")
            continue
        report.stamped += 1
        report.newest = when if report.newest is None else max(report.newest, when)
    return report

