"""`avidence-server transfer inbox|review|ack|reject`: the receiving agency's side at a shell.

They go through the same flow as the API (`flow.acknowledge_checked`, `flow.reject`, the same
`checks.check`), so the same audit entries are written and the same pinned keys decide. Exit
codes: 0 done; 1 the server's check found problems (`review`) or refused the acknowledgement
(`ack`, recorded as `transfer.blocked`); 2 an operator mistake (unknown agency or transfer, a
transfer already decided, no reason), one line on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import PublicKeys

from .. import signing
from ..agencies import records as agencies_db
from ..agencies.records import Agency
from ..catalog.db import Catalog
from ..commands import Context, actor_label, actor_option, opened_catalog, run, shared_options
from ..config import Settings
from ..keys import history
from . import checks, flow
from . import records as transfers_db
from .checks import Report
from .records import Transfer

agency_option = click.option(
    "--agency", "agency", default=None, help="The receiving agency (name or id; default: default)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON document.")
EXIT_CODES = """\b
Exit codes:
  0  done
  1  the server's check found problems (review) or refused the acknowledgement (ack)
  2  operator mistake: unknown agency or transfer, already decided, no reason"""
SCRUB_STATES = {
    "ok": "the stored original matched them at its last scrub",
    "failed": "the stored original FAILED its last scrub",
    "unchecked": "the stored original has not been re-read by a scrub yet",
}


async def agency_named(engine: AsyncEngine, name: str | None) -> Agency:
    """The agency a command acts for: `--agency` (name or id), else the default one."""
    found = await agencies_db.resolve(engine, name or agencies_db.DEFAULT_AGENCY)
    if found is None:
        raise ValueError(f"--agency: no agency {name!r}")
    return found


async def _signer_and_pins(
    catalog: Catalog, settings: Settings
) -> tuple[signing.Signer, PublicKeys | None]:
    """The signing key and the `trusted_keys` history, as the server loads them."""
    signer = signing.load_signer(settings)
    await signing.register(catalog.engine, signer)
    if not settings.trusted_keys:
        return signer, None
    return signer, await history.pinned_for(catalog.engine, settings, signer)


def _flow_errors(exc: Exception) -> ValueError:
    """A flow refusal as the one-line operator error `run` prints (exit code 2)."""
    return ValueError(str(exc).strip("'\""))


def _names(transfer: Transfer) -> tuple[str, str, str]:
    """Case number, sender and receiver names as the manifest states them."""
    body = transfer.manifest.get("manifest", {})
    case = body.get("case", {}).get("number") or transfer.case_id
    sender = body.get("from", {}).get("name") or transfer.from_agency
    receiver = body.get("to", {}).get("name") or transfer.to_agency
    return str(case), str(sender), str(receiver)


@click.command("inbox", epilog=EXIT_CODES)
@shared_options
@agency_option
@click.option("--all", "everything", is_flag=True, help="Decided transfers too, not only pending.")
@json_option
def inbox(ctx: Context, agency: str | None, everything: bool, as_json: bool) -> None:
    """Transfers the agency receives, pending first: one per line with id, state, case
    number, sender, items, created and note."""
    settings = ctx.settings()

    async def go() -> tuple[Agency, list[Transfer]]:
        async with opened_catalog(settings) as catalog:
            found = await agency_named(catalog.engine, agency)
            state = None if everything else "pending"
            listed = await transfers_db.listing(
                catalog.engine, agency_id=found.id, inbox=True, state=state
            )
            return found, listed

    receiver, listed = run(go())
    if as_json:
        click.echo(json.dumps({"transfers": [t.to_json() for t in listed]}, ensure_ascii=False))
        return
    if not listed:
        what = "transfers" if everything else "pending transfers"
        click.echo(f"no {what} for {receiver.name}")
        return
    for t in sorted(listed, key=lambda t: t.state != "pending"):
        case, sender, _ = _names(t)
        click.echo(
            f"{t.id}\t{t.state}\t{case}\t{sender}\t{len(t.evidence_ids)} items\t"
            f"{t.created_at:%Y-%m-%dT%H:%M:%SZ}\t{t.note or ''}"
        )


def _manifest_lines(transfer: Transfer, report: Report) -> Iterator[str]:
    body = report.body
    case, sender, receiver = _names(transfer)
    title = body.get("case", {}).get("title")
    yield f"transfer {transfer.id} ({transfer.state})"
    yield f"  case:      {case}" + (f" {title!r}" if title else "") + f" ({transfer.case_id})"
    yield f"  from:      {sender}, sent by {body.get('created_by')} at {body.get('created_at')}"
    yield f"  to:        {receiver}"
    if body.get("note"):
        yield f"  note:      {body['note']}"
    limits = body.get("limits") or {}
    if limits:
        yield "  limits:    " + ", ".join(f"{k}={v}" for k, v in sorted(limits.items()))
    if transfer.decided_at is not None:
        reason = f": {transfer.reason}" if transfer.reason else ""
        yield (
            f"  decided:   {transfer.state} by {transfer.decided_by} at "
            f"{transfer.decided_at:%Y-%m-%dT%H:%M:%SZ}{reason}"
        )
    items = body.get("items", [])
    yield f"  items ({len(items)}):"
    for entry in items:
        receipt = entry.get("receipt") or {}
        yield (
            f"    {entry.get('evidence_id')}  item {entry.get('item') or '-'}  "
            f"{entry.get('filename') or '-'}  {entry.get('kind')}  {entry.get('size')} bytes"
        )
        for name in ("blake3", "sha256", "sm3"):
            if entry.get(name):
                yield f"      {name:<7}{entry[name]}"
        if receipt:
            yield f"      receipt signed by key {receipt.get('key_id')}"


def _check_lines(report: Report) -> Iterator[str]:
    """What the server's check covered, one line per check."""
    if report.signature_ok:
        yield f"  manifest signature: verified (key {report.key_id})"
    else:
        yield f"  manifest signature: NOT verified (key {report.key_id})"
    if report.sender_log is not None:
        yield f"  sender's log head:  checkpoint {report.sender_log} verified"
    elif report.signature_ok and report.body.get("sender_log") is None:
        yield "  sender's log head:  none attached (the sender had no checkpoint yet)"
    for item in report.items:
        also = "; the receiver's own digests equal them" if item.checked_by == "receiver" else ""
        scrub = SCRUB_STATES.get(item.integrity, SCRUB_STATES["unchecked"])
        yield (
            f"  {item.evidence_id}: the catalog's {', '.join(item.digests)} equal the "
            f"manifest's; {scrub}{also}"
        )
    for problem in report.problems:
        yield f"  PROBLEM {problem}"


@click.command("review", epilog=EXIT_CODES)
@shared_options
@click.argument("transfer_id")
@agency_option
@json_option
def review(ctx: Context, transfer_id: str, agency: str | None, as_json: bool) -> None:
    """Print a transfer's signed manifest and what the server's digest check finds now; exit
    1 when the check finds problems (an acknowledgement would be refused)."""
    settings = ctx.settings()

    async def go() -> tuple[Transfer, Report]:
        async with opened_catalog(settings) as catalog:
            found = await agency_named(catalog.engine, agency)
            transfer = await transfers_db.get(catalog.engine, transfer_id, agency_id=found.id)
            if transfer is None:
                raise ValueError(f"no transfer {transfer_id} sent or received by {found.name}")
            _, pinned = await _signer_and_pins(catalog, settings)
            return transfer, await checks.check(catalog.engine, transfer, pinned=pinned)

    transfer, report = run(go())
    if as_json:
        document = {"transfer": transfer.to_json(), "check": report.to_json()}
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for line in _manifest_lines(transfer, report):
            click.echo(line)
        verdict = "OK" if report.ok else "PROBLEMS (an acknowledgement would be refused)"
        click.echo(f"check: {verdict}")
        for line in _check_lines(report):
            click.echo(line)
    if not report.ok:
        sys.exit(1)


def _checked(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        raise click.BadParameter("not JSON", param_hint="--checked") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("an object of evidence id -> digests", param_hint="--checked")
    return parsed


@click.command("ack", epilog=EXIT_CODES)
@shared_options
@click.argument("transfer_id")
@agency_option
@click.option(
    "--checked",
    default=None,
    help='Digests the receiver computed itself, as JSON: {"EVIDENCE_ID": {"sha256": "..."}}.',
)
@actor_option
def ack(
    ctx: Context, transfer_id: str, agency: str | None, checked: str | None, actor: str | None
) -> None:
    """Run the server's digest check and, when it passes, sign the acknowledgement: the agency
    then holds the items and the case. Says what was checked; exit 1 when refused."""
    settings = ctx.settings()
    declared = _checked(checked)

    async def go() -> tuple[Transfer, Report]:
        async with opened_catalog(settings) as catalog:
            found = await agency_named(catalog.engine, agency)
            signer, pinned = await _signer_and_pins(catalog, settings)
            try:
                return await flow.acknowledge_checked(
                    catalog.engine,
                    signer,
                    transfer_id=transfer_id,
                    actor=flow.Actor(label=actor_label(actor), agency_id=found.id),
                    checked=declared,
                    pinned=pinned,
                )
            except flow.TransferBlocked:
                raise
            except (flow.TransferError, flow.TransferConflict, LookupError) as exc:
                raise _flow_errors(exc) from None

    try:
        transfer, report = run(go())
    except flow.TransferBlocked as exc:
        click.echo(
            f"avidence-server: acknowledgement of {transfer_id} refused "
            "(recorded in the audit log as transfer.blocked):",
            err=True,
        )
        for line in _check_lines(exc.report) if exc.report else ():
            click.echo(line, err=True)
        sys.exit(1)
    case, sender, receiver = _names(transfer)
    click.echo(
        f"acknowledged {transfer.id}: case {case} from {sender}; {receiver} now holds "
        f"{len(transfer.evidence_ids)} items"
    )
    click.echo("checked before signing:")
    for line in _check_lines(report):
        click.echo(line)
    signed = transfer.acknowledgement or {}
    click.echo(f"acknowledgement signed by key {signed.get('key_id')}")


@click.command("reject", epilog=EXIT_CODES)
@shared_options
@click.argument("transfer_id")
@agency_option
@click.option("--reason", required=True, help="Why the transfer is refused (the sender sees it).")
@actor_option
def reject(
    ctx: Context, transfer_id: str, agency: str | None, reason: str, actor: str | None
) -> None:
    """Refuse a pending transfer with a reason; nobody's holdings change."""
    settings = ctx.settings()

    async def go() -> Transfer:
        async with opened_catalog(settings) as catalog:
            found = await agency_named(catalog.engine, agency)
            try:
                return await flow.reject(
                    catalog.engine,
                    transfer_id=transfer_id,
                    actor=flow.Actor(label=actor_label(actor), agency_id=found.id),
                    reason=reason,
                )
            except (flow.TransferError, flow.TransferConflict, LookupError) as exc:
                raise _flow_errors(exc) from None

    rejected = run(go())
    case, sender, _ = _names(rejected)
    click.echo(f"rejected {rejected.id}: case {case} from {sender}: {rejected.reason}")


COMMANDS = (inbox, review, ack, reject)
