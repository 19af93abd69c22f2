"""`avidence-server scrub` and `avidence-server export`: custody commands for storage admins.

Both act on the catalog and store the settings name, exactly as `serve` would, so a scrub run by
cron checks the bytes the server hands out and an export bundles the records the server signed.
"""

from __future__ import annotations

import functools
import sys
from datetime import timedelta
from pathlib import Path

import click

from .. import signing
from ..audit import witness
from ..commands import (
    Context,
    agency_option,
    case_of,
    fail,
    opened_catalog,
    opened_with_store,
    run,
    shared_options,
)
from . import integrity, sealedbundle
from .export import ExportError, ExportReport, export_case
from .scrub import Check, ScrubReport, scrub


def _describe(check: Check) -> str:
    what, where = "original", ""
    if check.derivative_id is not None:
        what, where = "derivative", f" derivative={check.derivative_id}"
    head = f"{check.evidence_id} case={check.case_id}{where}"
    if check.outcome == "missing":
        return f"MISSING {head}: the stored {what} is gone"
    parts = [f"{k} expected {check.expected[k]} found {check.found[k]}" for k in check.mismatched]
    return f"FAILED {head}: " + "; ".join(parts)


# A century: an age past what a date can go back from today (inf, 1e12 days) was OverflowError
# and a traceback.
MAX_AGE_DAYS = 36_500


@click.command("scrub")
@shared_options
@click.option("--all", "everything", is_flag=True, help="Every original, whatever its last check.")
@click.option("--case", "case_id", default=None, help="Only this case's originals.")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0, max=MAX_AGE_DAYS),
    default=None,
    metavar="DAYS",
    help="Only originals not checked for DAYS days (never-checked ones included).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Check at most N.")
def scrub_command(
    ctx: Context,
    everything: bool,
    case_id: str | None,
    older_than: float | None,
    limit: int | None,
) -> None:
    """Re-read stored originals and their derivatives and compare their digests with the
    records.

    Exit code 1 when any object is missing or changed; each one is named on stderr, recorded as
    `integrity.failed` in the audit log, and withheld from viewers until `integrity resolve`."""
    if not (everything or case_id or older_than is not None):
        fail("scrub: choose --all, --case CASE or --older-than DAYS")
    if everything and (case_id or older_than is not None):
        fail("scrub: --all cannot be combined with --case or --older-than")
    if older_than is not None and not older_than <= MAX_AGE_DAYS:  # NaN passes FloatRange
        fail(f"scrub: --older-than takes a number of days from 0 to {MAX_AGE_DAYS}")
    settings = ctx.settings()

    async def go() -> ScrubReport:
        async with opened_with_store(settings) as (catalog, store):
            return await scrub(
                catalog.engine,
                store,
                case_id=case_id,
                older_than=timedelta(days=older_than) if older_than is not None else None,
                limit=limit,
                actor="cli",
            )

    report = run(go())
    for check in report.problems:
        click.echo(_describe(check), err=True)
    click.echo(
        f"scrub: checked {report.checked}, ok {report.ok}, "
        f"failed {report.failed}, missing {report.missing}"
    )
    if report.problems:
        sys.exit(1)


@click.command("export")
@shared_options
@click.option("--case", "case_id", required=True, help="The case to bundle (id or number).")
@agency_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Bundle folder to create (absent or empty); with --encrypt-to, the encrypted file "
    "to create (e.g. case-17.tar.age).",
)
@click.option("--manifests-only", is_flag=True, help="Leave the originals out.")
@click.option(
    "--encrypt-to",
    "encrypt_to",
    multiple=True,
    help="Encrypt the bundle (a tar, age format) to this age (age1...) or SSH public key; "
    "repeat for several recipients. Opened with `age -d -i KEY FILE | tar x`.",
)
@click.option(
    "--encrypt-to-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="An age recipients file: one public key per line.",
)
def export_command(
    ctx: Context,
    case_id: str,
    agency: str | None,
    out: Path,
    manifests_only: bool,
    encrypt_to: tuple[str, ...],
    encrypt_to_file: Path | None,
) -> None:
    """Write a case's evidence bundle: originals, signed manifest, receipts, audit excerpt,
    keys, SHA256SUMS/B3SUMS and a README for whoever receives it; with --encrypt-to, as one
    file only the recipients can open."""
    settings = ctx.settings()
    keys = list(encrypt_to)
    try:  # a bad key stops before any work
        keys += sealedbundle.recipients_file(encrypt_to_file) if encrypt_to_file else []
        recipients = sealedbundle.parse(keys)
    except ExportError as exc:
        fail(f"export: {exc}")
    if recipients and out.exists():
        fail(f"export: {out} exists")

    async def go() -> tuple[ExportReport, int]:
        async with opened_with_store(settings, open_store=not manifests_only) as (catalog, store):
            signer = signing.load_signer(settings)
            await signing.register(catalog.engine, signer)
            case = await case_of(catalog.engine, case_id, agency=agency)
            export = functools.partial(
                export_case,
                catalog.engine,
                store,
                signer,
                case_id=case.id,
                manifests_only=manifests_only,
                witnesses=witness.configured(settings),
            )
            if not recipients:
                return await export(out=out), 0
            return await sealedbundle.export_sealed(
                catalog.engine, export, out=out, recipients=recipients, keys=keys, case=case
            )

    report, sealed = run(go())
    where = f"{out} (encrypted to {len(recipients)} recipients, {sealed} bytes)" if sealed else out
    click.echo(
        f"exported case {report.case_id}: {report.items} items, {report.originals} originals "
        f"({report.bytes} bytes) to {where}; manifest signed by key {report.key_id}"
    )


@click.group("integrity")
def integrity_group() -> None:
    """Findings of the integrity scrub: list them, resolve them."""


@integrity_group.command("list")
@shared_options
def integrity_list(ctx: Context) -> None:
    """Every unresolved finding: evidence, target, role, when it was found."""
    settings = ctx.settings()

    async def go() -> list[integrity.Finding]:
        async with opened_catalog(settings) as catalog:
            return await integrity.findings(catalog.engine)

    found = run(go())
    for finding in found:
        when = finding.checked_at.isoformat() if finding.checked_at else "-"
        click.echo(
            "\t".join((finding.evidence_id, finding.case_id, finding.target, finding.role, when))
        )
    click.echo(f"{len(found)} unresolved finding(s)", err=True)


@integrity_group.command("resolve")
@shared_options
@click.argument("evidence_id")
@click.option(
    "--target",
    default="original",
    show_default=True,
    help='"original" (after putting the right bytes back) or "derivative:<id>" (re-derive).',
)
@click.option("--reason", required=True, help="Why, for the audit log.")
def integrity_resolve(ctx: Context, evidence_id: str, target: str, reason: str) -> None:
    """Resolve a finding: read a restored original again (cleared only when it matches its
    record), or drop a damaged derivative and queue its job again."""
    settings = ctx.settings()

    async def go() -> integrity.Resolution:
        async with opened_with_store(settings) as (catalog, store):
            return await integrity.resolve(
                catalog.engine,
                store,
                evidence_id=evidence_id,
                target=target,
                reason=reason,
                actor="cli",
            )

    done = run(go())
    if done.how == "restored":
        click.echo(f"{evidence_id}: the original matches its record again; served again")
    else:
        click.echo(f"{evidence_id}: {target} will be made again by job {done.job_id}")


def register(group: click.Group) -> None:
    """Attach this module's commands to `avidence-server` (see `cli.py`)."""
    group.add_command(scrub_command)
    group.add_command(export_command)
    group.add_command(integrity_group)
