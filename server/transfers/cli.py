"""`avidence-server agency create|list` and `avidence-server transfer create|list` (the
receiver's `inbox|review|ack|reject` live in `inbox_cli`)."""

from __future__ import annotations

import json

import click

from .. import signing
from ..agencies import records as agencies_db
from ..agencies.records import Agency
from ..cases import records as cases_db
from ..commands import Context, opened_catalog, run, shared_options
from . import flow, inbox_cli
from . import records as transfers_db
from .records import Transfer


@click.group()
def agency() -> None:
    """Create and list agencies (police, procuratorate, court, ...)."""


@agency.command("create")
@shared_options
@click.option("--name", required=True, help="The agency's name, unique on this server.")
def agency_create(ctx: Context, name: str) -> None:
    """Create an agency; give its staff tokens with `token create --agency NAME`."""
    settings = ctx.settings()

    async def go() -> Agency:
        async with opened_catalog(settings, migrate=True) as catalog:
            return await agencies_db.create(catalog.engine, name=name, actor="cli")

    created = run(go())
    click.echo(f"created agency {created.id} {created.name!r}")


@agency.command("list")
@shared_options
def agency_list(ctx: Context) -> None:
    """One agency per line: id, name, created."""
    settings = ctx.settings()

    async def go() -> list[Agency]:
        async with opened_catalog(settings) as catalog:
            return await agencies_db.listing(catalog.engine)

    for found in run(go()):
        click.echo(f"{found.id}\t{found.name}\t{found.created_at:%Y-%m-%dT%H:%M:%SZ}")


@click.group()
def transfer() -> None:
    """Transfer a case's evidence to another agency."""


@transfer.command("create")
@shared_options
@click.option("--case", "case", required=True, help="Case id, or case number of --from.")
@click.option("--to", "to", required=True, help="Receiving agency (name or id).")
@click.option("--from", "sender", default=None, help="Sending agency (default: default).")
@click.option("--items", default=None, help="Comma-separated evidence ids (default: all held).")
@click.option("--note", default=None, help="A note for the receiving agency.")
@click.option("--limits", default=None, help='JSON, e.g. {"download": true}.')
def transfer_create(
    ctx: Context,
    case: str,
    to: str,
    sender: str | None,
    items: str | None,
    note: str | None,
    limits: str | None,
) -> None:
    """Sign a transfer manifest and put it in the receiving agency's inbox."""
    settings = ctx.settings()
    try:
        parsed_limits = json.loads(limits) if limits is not None else None
    except ValueError:
        raise click.BadParameter("not JSON", param_hint="--limits") from None

    async def go() -> Transfer:
        async with opened_catalog(settings) as catalog:
            try:
                signer = signing.load_signer(settings)
                await signing.register(catalog.engine, signer)
                found = await agencies_db.resolve(
                    catalog.engine, sender or agencies_db.DEFAULT_AGENCY
                )
                if found is None:
                    raise ValueError(f"--from: no agency {sender!r}")
                case_id = case
                if await cases_db.get(catalog.engine, case, agency_id=found.id) is None:
                    numbered = await cases_db.listing(
                        catalog.engine, agency_id=found.id, number=case
                    )
                    if not numbered:
                        raise ValueError(f"--case: {found.name} holds no case {case!r}")
                    case_id = numbered[0].id
                return await flow.create(
                    catalog.engine,
                    signer,
                    case_id=case_id,
                    to=to,
                    actor=flow.Actor(label="cli", agency_id=found.id),
                    items=[i.strip() for i in items.split(",") if i.strip()] if items else None,
                    note=note,
                    limits=parsed_limits,
                )
            except (flow.TransferError, flow.TransferConflict, LookupError) as exc:
                raise ValueError(str(exc).strip("'\"")) from None

    created = run(go())
    click.echo(
        f"transfer {created.id}: case {created.case_id} -> {created.to_agency}, "
        f"{len(created.evidence_ids)} items, manifest signed by key {created.manifest['key_id']}"
    )


@transfer.command("list")
@shared_options
@click.option("--agency", "name", default=None, help="Whose transfers (default: default).")
@click.option("--inbox", is_flag=True, help="Only those the agency receives.")
def transfer_list(ctx: Context, name: str | None, inbox: bool) -> None:
    """One transfer per line: id, state, case, from, to, items, created."""
    settings = ctx.settings()

    async def go() -> list[Transfer]:
        async with opened_catalog(settings) as catalog:
            found = await inbox_cli.agency_named(catalog.engine, name)
            return await transfers_db.listing(catalog.engine, agency_id=found.id, inbox=inbox)

    for t in run(go()):
        click.echo(
            f"{t.id}\t{t.state}\t{t.case_id}\t{t.from_agency}\t{t.to_agency}\t"
            f"{len(t.evidence_ids)}\t{t.created_at:%Y-%m-%dT%H:%M:%SZ}"
        )


def register(group: click.Group) -> None:
    """Attach this module's commands to `avidence-server` (see `cli.py`)."""
    for command in inbox_cli.COMMANDS:
        transfer.add_command(command)
    group.add_command(agency)
    group.add_command(transfer)
