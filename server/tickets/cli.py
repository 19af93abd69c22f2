"""`avidence-server ticket create | list | revoke | views`: tickets from the command line.

`create` prints the link alone on its last line (and the access code, once, above it), so a
script can take the link with `tail -n 1`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import address
from ..cases import records as cases_db
from ..commands import Context, agency_option, case_of, fail, opened_catalog, run, shared_options
from ..config import Settings
from . import records
from .issue import issue_ticket, parse_expiry, revoke_ticket
from .records import Ticket

T = TypeVar("T")


async def _with_catalog(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async with opened_catalog(settings) as catalog:
        return await work(catalog.engine)


@click.group("ticket")
def ticket_group() -> None:
    """Issue, list and revoke viewer links (access tickets)."""


@ticket_group.command("create")
@shared_options
@click.option("--evidence", "evidence_ids", multiple=True, help="Evidence id (repeatable).")
@click.option("--case", "case_id", default=None, help="Every item of this case (id or number).")
@agency_option
@click.option("--recipient", required=True, help='Who receives it: "NAME (ROLE)".')
@click.option("--expires", default="7d", show_default=True, help="Lifetime: 30m, 12h, 7d, 2w.")
@click.option("--download", is_flag=True, help="Also allow downloading the originals.")
@click.option("--max-views", type=click.IntRange(min=1), default=None, help="View limit.")
@click.option("--note", default=None, help="Why the ticket was issued (kept in the audit log).")
@click.option("--access-code", is_flag=True, help="Protect the link with a 6-digit code.")
def ticket_create(
    ctx: Context,
    evidence_ids: tuple[str, ...],
    case_id: str | None,
    agency: str | None,
    recipient: str,
    expires: str,
    download: bool,
    max_views: int | None,
    note: str | None,
    access_code: bool,
) -> None:
    """Issue a ticket and print its link (and access code) once."""
    if bool(evidence_ids) == bool(case_id):
        fail("give --evidence ID (one or more) or --case CASE, not both")
    settings = ctx.settings()
    lifetime = parse_expiry(expires) if _valid_duration(expires) else None
    if lifetime is None:
        fail(f"--expires: {expires!r} is not a duration like 7d, 12h or 30m")

    async def go(engine: AsyncEngine) -> tuple[Ticket, str, str | None]:
        ids, number = list(evidence_ids), None
        if case_id is not None:
            case = await case_of(engine, case_id, agency=agency)
            ids = await cases_db.evidence_ids(engine, case.id, agency_id=case.agency_id)
            number = case.number
            if not ids:
                raise ValueError(f"case {case_id!r} has no evidence")
        return await issue_ticket(
            engine,
            evidence_ids=ids,
            recipient=recipient,
            expires=lifetime,
            download=download,
            max_views=max_views,
            note=note,
            access_code=access_code,
            issuer="cli",
            case_id=number,
        )

    ticket, token, pin = run(_with_catalog(settings, go))
    rights = "view and download" if ticket.can_download else "view only"
    limit = f", at most {ticket.max_views} views" if ticket.max_views else ""
    click.echo(
        f"issued ticket {ticket.id} for {ticket.recipient!r}: {len(ticket.evidence_ids)} "
        f"evidence item(s), {rights}{limit}, expires {records.iso(ticket.expires_at)}"
    )
    if pin is not None:
        click.echo(f"access code (give it to the recipient separately; shown only now): {pin}")
    base = address.for_links(settings)
    if base.note is not None:
        click.echo(f"note: {base.note}", err=True)
    click.echo(f"{base.url}/t/{token}")


def _valid_duration(text: str) -> bool:
    try:
        parse_expiry(text)
    except ValueError:
        return False
    return True


@ticket_group.command("list")
@shared_options
def ticket_list(ctx: Context) -> None:
    """One ticket per line: id, state, expires, views, rights, evidence count, recipient."""
    settings = ctx.settings()
    for ticket in run(_with_catalog(settings, records.listing)):
        views = f"{ticket.views_used}/{ticket.max_views or '-'}"
        rights = "view+download" if ticket.can_download else "view"
        code = "code" if ticket.has_access_code else "-"
        click.echo(
            "\t".join(
                [
                    ticket.id,
                    ticket.state(),
                    records.iso(ticket.expires_at) or "",
                    views,
                    rights,
                    code,
                    str(len(ticket.evidence_ids)),
                    ticket.recipient,
                ]
            )
        )


@ticket_group.command("revoke")
@shared_options
@click.argument("ticket_id")
def ticket_revoke(ctx: Context, ticket_id: str) -> None:
    """Revoke a ticket: its link stops working on the next request."""
    settings = ctx.settings()

    async def go(engine: AsyncEngine) -> bool:
        return await revoke_ticket(engine, ticket_id, actor="cli")

    if not run(_with_catalog(settings, go)):
        fail(f"no active ticket {ticket_id}")
    click.echo(f"revoked {ticket_id}")


@ticket_group.command("views")
@shared_options
@click.argument("ticket_id")
def ticket_views(ctx: Context, ticket_id: str) -> None:
    """One view session per line: view id, evidence, started, bytes, client, user agent."""
    settings = ctx.settings()

    async def go(engine: AsyncEngine) -> list[dict[str, Any]] | None:
        if await records.get(engine, ticket_id) is None:
            return None
        return await records.views(engine, ticket_id)

    found = run(_with_catalog(settings, go))
    if found is None:
        fail(f"no ticket {ticket_id}")
    for view in found:
        click.echo(
            "\t".join(
                str(view[k] if view[k] is not None else "-")
                for k in ("id", "evidence", "started_at", "bytes_served", "client", "user_agent")
            )
        )


def register(group: click.Group) -> None:
    """Attach this module's commands to `avidence-server` (see `cli.py`)."""
    group.add_command(ticket_group)
