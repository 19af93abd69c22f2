"""`avidence-server audit ...`: custody commands for admins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from avidence.client.canonical import PublicKeys

from .. import signing
from ..cases import custody
from ..catalog.db import Catalog
from ..commands import (
    Context,
    agency_option,
    case_of,
    fail,
    opened_catalog,
    run,
    shared_options,
)
from ..config import ConfigError
from ..keys import history
from . import extends, progress, tsa, unit, witness
from . import log as audit
from .events import AdminCommand


async def _keys(catalog: Catalog) -> PublicKeys:
    return PublicKeys.load(json.dumps({"keys": await signing.published(catalog.engine)}))


@click.group("audit")
def audit_group() -> None:
    """Verify, checkpoint and export the tamper-evident audit log."""


@audit_group.command("verify")
@shared_options
@click.option(
    "--keys",
    "pinned",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The pinned key history (`key export`), kept out of band: checkpoints must be signed "
    "by keys that chain to it. Without it the catalog's own keys are trusted.",
)
@click.option(
    "--since-checkpoint",
    "incremental",
    is_flag=True,
    help="Walk only the entries after the newest checkpoint an earlier run verified (recorded "
    "in the state file); the whole log when none is recorded.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where runs record the newest checkpoint they verified (default: "
    "audit-verified.json in the data dir).",
)
def audit_verify(
    ctx: Context, pinned: Path | None, incremental: bool, state_path: Path | None
) -> None:
    """Walk the hash chain and every signed checkpoint, check the log extends every checkpoint
    the witnesses hold and that every fact has its entry; name what does not fit."""
    settings = ctx.settings()
    witnesses = witness.configured(settings)
    state_path = state_path or progress.default_path(settings)
    try:
        recorded = progress.load(state_path) if incremental else None
    except ConfigError as exc:
        fail(str(exc))
    if incremental and recorded is None:
        click.echo(f"NOTE no verified checkpoint recorded in {state_path}: walking the whole log")
    since = recorded[0] if recorded is not None else None
    if pinned is None:
        click.echo(
            "NOTE trusting the public keys stored in the catalog itself; pass --keys FILE "
            "(from `avidence-server key export`, kept out of band) so that whoever can write "
            "to the catalog cannot also supply the keys",
            err=True,
        )

    try:
        roots = history.load_pinned(pinned) if pinned is not None else None
    except ConfigError as exc:
        fail(str(exc))

    try:
        stamps = tsa.verifier(settings)
    except ConfigError as exc:
        fail(str(exc))

    async def go() -> tuple[audit.Verdict, int, list[extends.Finding], tsa.Report]:
        async with opened_catalog(settings) as catalog:
            if roots is not None:
                keys = await history.trusted(catalog.engine, roots)
            else:
                keys = await _keys(catalog)
            verdict = await audit.verify(catalog.engine, keys, since=since)
            try:
                checked, findings = await extends.against_witnesses(
                    catalog.engine, keys, witnesses, since=since.seq if since else 0
                )
            except (OSError, ValueError) as exc:
                raise ValueError(f"a witness cannot be read: {exc}") from None
            findings += await extends.facts_without_entries(catalog.engine)
            report = await tsa.check_all(catalog.engine, stamps, since=since.seq if since else 0)
            findings += [extends.Finding("timestamp", problem) for problem in report.problems]
            return verdict, checked, findings, report

    verdict, checked, findings, report = run(go())
    if not verdict.ok:
        click.echo(f"audit log BROKEN at entry {verdict.bad_seq}: {verdict.problem}", err=True)
    for finding in findings:
        click.echo(f"audit log BROKEN ({finding.kind}): {finding.message}", err=True)
    if not verdict.ok or findings:
        sys.exit(1)
    if verdict.newest is not None:
        progress.save(state_path, verdict.newest)
    names = ", ".join(w.name for w in witnesses) or "no witness configured"
    walked = f"{verdict.entries} entries"
    if recorded is not None:
        walked += f" after checkpoint {verdict.since} (verified {recorded[1]})"
    click.echo(
        f"audit log OK: {walked}, {verdict.checkpoints} signed checkpoints, "
        f"{checked} witnessed checkpoints extended ({names})"
    )
    _report_timestamps(report, stamps)


def _report_timestamps(report: tsa.Report, stamps: tsa.TimeStamper | None) -> None:
    if report.stamped:
        newest = report.newest.isoformat() if report.newest else "?"
        name = stamps.pinned.name if stamps else "?"
        click.echo(
            f"time-stamped by {name}: {report.stamped} checkpoints verified, newest at {newest}"
        )
    if report.awaiting and stamps is not None:
        click.echo(
            f"NOTE {len(report.awaiting)} checkpoints await a time-stamp (newest "
            f"{report.awaiting[-1]}): the TSA was not configured or not reachable when they "
            "were signed; the next checkpoint pass asks for them"
        )
    if report.unchecked:
        click.echo(
            f"NOTE {report.unchecked} time-stamps kept but not checked: set tsa_certificates "
            "to the TSA's pinned certificates"
        )


@audit_group.command("checkpoint")
@shared_options
def audit_checkpoint(ctx: Context) -> None:
    """Sign the current head of the log now (and, with a TSA, time-stamp it and every
    checkpoint still waiting for a time-stamp)."""
    settings = ctx.settings()

    async def go() -> dict[str, Any] | None:
        async with opened_catalog(settings) as catalog:
            signer = signing.load_signer(settings)
            await signing.register(catalog.engine, signer)
            return await audit.checkpoint(
                catalog.engine,
                signer,
                witnesses=witness.configured(settings),
                stamper=tsa.configured(settings),
            )

    document = run(go())
    click.echo("head already signed" if document is None else json.dumps(document["checkpoint"]))


@audit_group.command("export")
@shared_options
@click.option("--case", "case_id", default=None, help="Only this case's entries (id or number).")
@agency_option
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-")
def audit_export(ctx: Context, case_id: str | None, agency: str | None, out: Any) -> None:
    """JSON Lines: every entry with its hashes, then the signed checkpoints and public keys."""
    settings = ctx.settings()

    async def go() -> int:
        async with opened_catalog(settings) as catalog:
            count = 0
            case = None
            if case_id is not None:
                case = await case_of(catalog.engine, case_id, agency=agency)
            async for row in custody.excerpt(catalog.engine, case):
                line = {"type": "entry", **audit.entry_body(row), "hash": row.hash}
                out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                count += 1
            for document in await audit.checkpoints(catalog.engine):
                out.write(json.dumps({"type": "checkpoint", **document}, sort_keys=True) + "\n")
            keys = await signing.published(catalog.engine)
            out.write(json.dumps({"type": "keys", "keys": keys}, sort_keys=True) + "\n")
            await unit.record(
                catalog.engine,
                AdminCommand(
                    actor="cli",
                    object=f"case:{case.id}" if case is not None else "audit:export",
                    case_id=case.number if case is not None else None,
                    command="audit export",
                    entries=count,
                ),
            )
            return count

    count = run(go())
    click.echo(f"exported {count} entries", err=True)


def register(group: click.Group) -> None:
    group.add_command(audit_group)
