"""`avidence-server audit ...`: custody commands for admins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from avidence.client.canonical import PublicKeys

from .. import signing
from ..catalog.db import Catalog
from ..cli import Context, fail, main, opened_catalog, run, shared_options
from ..config import ConfigError
from ..keys import history
from . import log as audit
from .events import Event


async def _keys(catalog: Catalog) -> PublicKeys:
    return PublicKeys.load(json.dumps({"keys": await signing.published(catalog.engine)}))


@main.group("audit")
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
def audit_verify(ctx: Context, pinned: Path | None) -> None:
    """Walk the hash chain and every signed checkpoint; name the first bad entry."""
    settings = ctx.settings()
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

    async def go() -> audit.Verdict:
        async with opened_catalog(settings) as catalog:
            if roots is not None:
                keys = await history.trusted(catalog.engine, roots)
            else:
                keys = await _keys(catalog)
            return await audit.verify(catalog.engine, keys)

    verdict = run(go())
    if not verdict.ok:
        click.echo(f"audit log BROKEN at entry {verdict.bad_seq}: {verdict.problem}", err=True)
        sys.exit(1)
    click.echo(f"audit log OK: {verdict.entries} entries, {verdict.checkpoints} signed checkpoints")


@audit_group.command("checkpoint")
@shared_options
def audit_checkpoint(ctx: Context) -> None:
    """Sign the current head of the log now."""
    settings = ctx.settings()

    async def go() -> dict[str, Any] | None:
        async with opened_catalog(settings) as catalog:
            signer = signing.load_signer(settings)
            await signing.register(catalog.engine, signer)
            return await audit.checkpoint(catalog.engine, signer)

    document = run(go())
    click.echo("head already signed" if document is None else json.dumps(document["checkpoint"]))


@audit_group.command("export")
@shared_options
@click.option("--case", "case_id", default=None, help="Only this case's entries.")
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-")
def audit_export(ctx: Context, case_id: str | None, out: Any) -> None:
    """JSON Lines: every entry with its hashes, then the signed checkpoints and public keys."""
    settings = ctx.settings()

    async def go() -> int:
        async with opened_catalog(settings) as catalog:
            count = 0
            async for row in audit.rows(catalog.engine, case_id=case_id):
                line = {"type": "entry", **audit.entry_body(row), "hash": row.hash}
                out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                count += 1
            for document in await audit.checkpoints(catalog.engine):
                out.write(json.dumps({"type": "checkpoint", **document}, sort_keys=True) + "\n")
            keys = await signing.published(catalog.engine)
            out.write(json.dumps({"type": "keys", "keys": keys}, sort_keys=True) + "\n")
            await audit.append(
                catalog.engine,
                Event(
                    action="admin.command",
                    actor="cli",
                    object="audit:export",
                    case_id=case_id,
                    details={"entries": count},
                ),
            )
            return count

    count = run(go())
    click.echo(f"exported {count} entries", err=True)
