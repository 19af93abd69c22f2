"""`avidence-server`: run the server and administer the catalog it uses.

Every subcommand takes the same `--config/--data-dir/--database` options, so admin commands act
on exactly the catalog `serve` uses. Operator mistakes end in one line on stderr and exit code 2,
never a traceback.

The group is built here from the command modules, each attaching its own commands through
`register(group)`; they share `commands.py` and never import this module, so each imports alone.
"""

from __future__ import annotations

from typing import Any

import click

from avidence import __version__

from . import config, serve, tokens
from .agencies import records as agencies_db
from .audit import cli as audit_cli
from .catalog.db import Catalog
from .commands import Context, fail, opened_catalog, run, shared_options
from .evidence import cli as evidence_cli
from .jobs import cli as jobs_cli
from .keys import cli as keys_cli
from .retention import cli as retention_cli
from .tickets import cli as tickets_cli
from .transfers import cli as transfers_cli


@click.group()
@click.version_option(__version__, prog_name="avidence-server")
def main() -> None:
    """avidence server: resumable evidence uploads, custody and viewing."""


serve.register(main)  # serve
evidence_cli.register(main)  # scrub, export
audit_cli.register(main)  # audit
keys_cli.register(main)  # key
jobs_cli.register(main)  # worker, jobs
retention_cli.register(main)  # hold, purge, retention, usage, quota
tickets_cli.register(main)  # ticket
transfers_cli.register(main)  # agency, transfer


async def _migrate(settings: config.Settings) -> str | None:
    async with opened_catalog(settings, migrate=True, create=True) as catalog:
        return await catalog.revision()


@main.command()
@shared_options
def migrate(ctx: Context) -> None:
    """Create or upgrade the catalog schema."""
    settings = ctx.settings()
    revision = run(_migrate(settings))
    click.echo(f"catalog at revision {revision}: {config.redact(settings.database_url)}")


@main.group()
def token() -> None:
    """Create, list and revoke bearer tokens."""


@token.command("create")
@shared_options
@click.option("--role", type=click.Choice(tokens.ROLES), required=True)
@click.option("--name", required=True, help="Who or what holds the token (a PC, a person).")
@click.option(
    "--agency", default=None, help="The agency (name or id) it acts for; default: default."
)
def token_create(ctx: Context, role: str, name: str, agency: str | None) -> None:
    """Create a token; it is printed once, alone on the last line."""
    settings = ctx.settings()

    async def go() -> tuple[tokens.Principal, str]:
        async with opened_catalog(settings, migrate=True) as catalog:
            agency_id = await _agency_id(catalog, agency)
            return await tokens.create(
                catalog.engine, role=role, name=name, agency_id=agency_id, actor="cli"
            )

    principal, secret = run(go())
    click.echo(f"created {principal.role} token {principal.token_id} for {principal.name!r}")
    click.echo(secret)


async def _agency_id(catalog: Catalog, agency: str | None) -> str:
    if agency is None:
        return agencies_db.DEFAULT_AGENCY
    found = await agencies_db.resolve(catalog.engine, agency)
    if found is None:
        raise ValueError(f"no agency {agency!r}: create it with `avidence-server agency create`")
    return found.id


@token.command("list")
@shared_options
def token_list(ctx: Context) -> None:
    """One token per line: id, role, name, created, state."""
    settings = ctx.settings()

    async def go() -> list[Any]:
        async with opened_catalog(settings) as catalog:
            return await tokens.listing(catalog.engine)

    for row in run(go()):
        state = "revoked" if row.revoked_at else "active"
        click.echo(
            f"{row.id}\t{row.role}\t{row.name}\t{row.created_at:%Y-%m-%dT%H:%M:%SZ}\t{state}"
        )


@token.command("revoke")
@shared_options
@click.argument("token_id")
def token_revoke(ctx: Context, token_id: str) -> None:
    """Revoke a token at once."""
    settings = ctx.settings()

    async def go() -> bool:
        async with opened_catalog(settings) as catalog:
            return await tokens.revoke(catalog.engine, token_id, actor="cli")

    if not run(go()):
        fail(f"no active token {token_id}")
    click.echo(f"revoked {token_id}")
