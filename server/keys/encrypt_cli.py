"""`avidence-server encrypt-existing`: seal the objects a store kept in the clear before
encryption was turned on (see `convert` and `storage.sealconvert`)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

import click
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.sealconvert import Converted, Converter, Outcome, inspect
from avidence.storage.sealed import SealedStore

from ..catalog.schema import data_keys
from ..commands import Context, actor_label, actor_option, fail, opened_catalog, run, shared_options
from ..config import ConfigError, Settings
from ..stores import build_store, configured_store
from . import convert
from .datakeys import CatalogKeyRing

_SAYS = {
    Outcome.SEALED: "sealed",
    Outcome.ALREADY: "already sealed",
    Outcome.LOCKED: "LOCKED, left plain",
    Outcome.MISMATCH: "DIGEST MISMATCH, left plain",
    Outcome.MISSING: "MISSING from the store",
    Outcome.KEYLESS: "sealed, data key destroyed",
}


def _printer(dry_run: bool) -> Callable[[convert.Item, Converted], None]:
    """Progress: one numbered line per object."""
    seen = [0]

    def report(item: convert.Item, done: Converted) -> None:
        seen[0] += 1
        says = "to seal" if dry_run and done.outcome is Outcome.SEALED else _SAYS[done.outcome]
        detail = f" ({done.detail})" if done.detail else ""
        click.echo(f"[{seen[0]}] {item.key} {item.role} {item.size} bytes: {says}{detail}")

    return report


async def _sealing_allowed(settings: Settings, engine: AsyncEngine) -> None:
    """Refuse while a server on this configuration would still read the store as plain: it
    would serve sealed bytes as they are."""
    if settings.encryption == "on":
        return
    if settings.encryption == "auto":
        async with engine.connect() as conn:
            keys = (await conn.execute(select(func.count()).select_from(data_keys))).scalar_one()
        if keys:
            return
    raise ConfigError(
        f"encryption = {settings.encryption!r}: servers on this configuration read the store "
        'as plain. Set encryption = "on", restart every server and worker, then run '
        "encrypt-existing (servers may keep running while it works)"
    )


async def _go(settings: Settings, *, dry_run: bool, actor: str) -> convert.Summary:
    report = _printer(dry_run)
    async with opened_catalog(settings) as catalog:
        engine = catalog.engine
        await _sealing_allowed(settings, engine)
        if dry_run:  # no KEK is made and nothing is written
            inner = build_store(settings)
            ring = CatalogKeyRing(engine)
            await inner.open()
            try:

                async def look(item: convert.Item) -> Converted:
                    why, _ = await inspect(inner, ring, item.key)
                    return Converted(item.key, why or Outcome.SEALED, item.size)

                return await convert.run(engine, look, actor=actor, dry_run=True, report=report)
            finally:
                await inner.close()
        on = dataclasses.replace(settings, encryption="on")
        store = await configured_store(on, engine)
        assert isinstance(store, SealedStore)
        await store.open()
        try:
            converter = Converter(store)

            async def seal(item: convert.Item) -> Converted:
                return await converter.convert(item.key, expect=item.digests, size=item.size)

            return await convert.run(engine, seal, actor=actor, report=report)
        finally:
            await store.close()


@click.command("encrypt-existing")
@shared_options
@click.option("--dry-run", is_flag=True, help="List what would be sealed; change nothing.")
@actor_option
def encrypt_existing(ctx: Context, dry_run: bool, actor: str | None) -> None:
    """Seal every original and derivative still stored in the clear. Each sealed copy is
    written beside the plain object, decrypted and checked against the catalog's digests, then
    swapped in; resumable after an interruption. Objects under retention or a legal hold
    cannot be replaced and are reported. Exits 1 when anything was left plain."""
    settings = ctx.settings()
    try:
        summary = run(_go(settings, dry_run=dry_run, actor=actor_label(actor)))
    except TypeError as exc:  # a backend that cannot replace objects
        fail(f"encrypt-existing: {exc}")
    counts = ", ".join(f"{n} {what}" for what, n in sorted(summary.counts.items())) or "nothing"
    click.echo(f"{'dry run: ' if dry_run else ''}{counts}")
    if summary.failed:
        click.echo(f"{len(summary.left_plain)} objects left plain:", err=True)
        for key in summary.left_plain:
            click.echo(f"  {key}", err=True)
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(encrypt_existing)
