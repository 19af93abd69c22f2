"""`avidence-server hold|purge|retention|usage|quota`: the storage admin's commands.

They act on the catalog and store the settings name, exactly as `serve` would. Every change is
audited with the actor `cli (<login name>)` unless `--actor` names the person. `purge` needs
`--dry-run` or `--apply`: there is no default that deletes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from avidence.storage.base import Store

from ..catalog.db import Catalog
from ..commands import (
    Context,
    actor_label,
    actor_option,
    fail,
    opened_with_store,
    run,
    shared_options,
)
from . import changes, holds, purge, quotas, records, usage
from .classes import Policy, load_policy

T = TypeVar("T")


def _act(
    ctx: Context, work: Callable[[Catalog, Store, Policy], Awaitable[T]], *, with_store: bool = True
) -> T:
    """Run `work` with the catalog, store and policy; admin mistakes end in one line."""
    settings = ctx.settings()

    async def go() -> T:
        policy = load_policy(settings)
        async with opened_with_store(settings, open_store=with_store) as (catalog, store):
            return await work(catalog, store, policy)

    return run(go())


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# -- holds ------------------------------------------------------------------------------------


@click.group()
def hold() -> None:
    """Place, lift and list legal holds."""


@hold.command("add")
@shared_options
@click.option("--case", "case_id", default=None, help="Hold every item of this case.")
@click.option("--evidence", "evidence_id", default=None, help="Hold one evidence record.")
@click.option("--reason", required=True, help="Why (court order, investigation number).")
@actor_option
def hold_add(
    ctx: Context, case_id: str | None, evidence_id: str | None, reason: str, actor: str | None
) -> None:
    """Hold a case or one record: nothing it covers can be purged or unlocked."""
    if (case_id is None) == (evidence_id is None):
        fail("hold add: give exactly one of --case CASE or --evidence ID")
    scope, target = ("case", case_id) if case_id is not None else ("evidence", evidence_id)
    assert target is not None
    found = _act(
        ctx,
        lambda c, s, _: holds.add(
            c.engine, s, scope=scope, target=target, reason=reason, actor=actor_label(actor)
        ),
    )
    click.echo(f"hold {found.id} placed on {scope} {target}")


@hold.command("remove")
@shared_options
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends.")
@actor_option
def hold_remove(ctx: Context, hold_id: str, reason: str, actor: str | None) -> None:
    """Lift a hold; storage holds go where no other hold applies."""
    found = _act(
        ctx,
        lambda c, s, _: holds.remove(c.engine, s, hold_id, reason=reason, actor=actor_label(actor)),
    )
    click.echo(f"hold {found.id} on {found.scope} {found.target} lifted")


@hold.command("list")
@shared_options
@click.option("--all", "everything", is_flag=True, help="Lifted holds too.")
def hold_list(ctx: Context, everything: bool) -> None:
    """One hold per line: id, scope, target, since, by, reason (and when lifted)."""
    found = _act(
        ctx, lambda c, s, _: holds.listing(c.engine, include_released=everything), with_store=False
    )
    for h in found:
        lifted = f"\tlifted {records.iso(h.released_at)}" if h.released_at else ""
        click.echo(
            f"{h.id}\t{h.scope}\t{h.target}\t{records.iso(h.created_at)}\t{h.actor}\t{h.reason}"
            + lifted
        )


# -- purge ------------------------------------------------------------------------------------


@click.group("purge", invoke_without_command=True)
@shared_options
@click.option("--dry-run", is_flag=True, help="List what is due; change nothing.")
@click.option("--apply", "apply_", is_flag=True, help="Delete what is due (soft, then hard).")
@click.option("--reason", default=None, help="Why (kept on tombstones); required with --apply.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@actor_option
@click.pass_context
def purge_command(
    click_ctx: click.Context,
    ctx: Context,
    dry_run: bool,
    apply_: bool,
    reason: str | None,
    as_json: bool,
    actor: str | None,
) -> None:
    """Delete evidence whose retention ended: expired, not held, past the grace period."""
    if click_ctx.invoked_subcommand is not None:
        return
    if dry_run == apply_:
        fail("purge: choose --dry-run or --apply")
    if dry_run:
        planned = _act(ctx, lambda c, s, p: purge.plan(c.engine, p), with_store=False)
        if as_json:
            _echo_json(planned.to_json())
            return
        for step, items in planned.to_json().items():
            for item in items:
                click.echo(
                    f"{step}\t{item['evidence_id']}\tcase={item['case_id']}\t"
                    f"class={item['class']}\tsize={item['size']}"
                )
        click.echo(
            f"purge (dry run): {len(planned.delete)} to delete, {len(planned.purge)} to purge, "
            f"{len(planned.held)} held, {len(planned.waiting)} waiting, "
            f"{len(planned.blocked)} blocked"
        )
        return
    if not reason:
        fail("purge --apply: --reason is required")
    outcomes = _act(
        ctx, lambda c, s, p: purge.apply(c.engine, s, p, actor=actor_label(actor), reason=reason)
    )
    if as_json:
        _echo_json([o.to_json() for o in outcomes])
        return
    for outcome in outcomes:
        click.echo(f"{outcome.result}\t{outcome.evidence_id}\t{outcome.message}".rstrip())
    counts = {r: sum(o.result == r for o in outcomes) for r in ("deleted", "purged", "locked")}
    click.echo(
        f"purge: {counts['deleted']} deleted, {counts['purged']} purged, "
        f"{counts['locked']} refused by the store"
    )


@purge_command.command("restore")
@shared_options
@click.argument("evidence_id")
@click.option("--reason", required=True)
@actor_option
def purge_restore(ctx: Context, evidence_id: str, reason: str, actor: str | None) -> None:
    """Bring back a deleted record during its recovery period."""
    restored = _act(
        ctx,
        lambda c, s, p: purge.restore(
            c.engine, p, evidence_id, actor=actor_label(actor), reason=reason
        ),
        with_store=False,
    )
    until = changes.describe_until(restored.retain_until)
    click.echo(f"restored {evidence_id}: class {restored.class_name}, kept until {until}")


# -- retention classes ------------------------------------------------------------------------


@click.group()
def retention() -> None:
    """Retention classes and each record's class."""


@retention.command("classes")
@shared_options
def retention_classes(ctx: Context) -> None:
    """The configured classes and rules."""
    try:
        policy = load_policy(ctx.settings())
    except ValueError as exc:
        fail(str(exc))
    for cls in policy.classes.values():
        mark = " (default)" if cls.name == policy.default else ""
        days = "forever" if cls.days is None else f"{cls.days} days"
        click.echo(f"{cls.name}\t{days}\tlock={cls.lock.lower() or 'none'}{mark}")
    for rule in policy.rules:
        match = ",".join(f"{k}={'|'.join(v)}" for k, v in rule.match.items())
        click.echo(f"rule\t{match}\t-> {rule.name}")


@retention.command("show")
@shared_options
@click.argument("evidence_id")
def retention_show(ctx: Context, evidence_id: str) -> None:
    """A record's class, retain-until, lock and state, as JSON."""

    async def work(c: Catalog, s: Store, p: Policy) -> dict[str, Any] | None:
        await records.backfill(c.engine, p, now=records.utcnow())
        found = await records.get(c.engine, evidence_id)
        return found.to_json() if found else None

    found = _act(ctx, work, with_store=False)
    if found is None:
        fail(f"no evidence {evidence_id}")
    _echo_json(found)


@retention.command("set")
@shared_options
@click.argument("evidence_id")
@click.argument("class_name")
@click.option("--reason", required=True)
@click.option("--override", is_flag=True, help="Allow a shorter or weaker class (admins only).")
@actor_option
def retention_set(
    ctx: Context, evidence_id: str, class_name: str, reason: str, override: bool, actor: str | None
) -> None:
    """Move a record to another class (upward unless --override); audited."""
    changed = _act(
        ctx,
        lambda c, s, p: changes.change_class(
            c.engine,
            s,
            p,
            evidence_id,
            new_class=class_name,
            actor=actor_label(actor),
            reason=reason,
            override=override,
        ),
    )
    until = changes.describe_until(changed.retain_until)
    click.echo(f"{evidence_id}: class {changed.class_name}, kept until {until}")


# -- usage and quotas -------------------------------------------------------------------------


@click.command("usage")
@shared_options
@click.option("--days", type=click.IntRange(1, 366), default=30, help="Days of growth shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def usage_command(ctx: Context, days: int, as_json: bool) -> None:
    """Bytes and counts by case, class, uploader and store; growth per day; open uploads."""

    async def work(c: Catalog, s: Store, p: Policy) -> dict[str, Any]:
        await records.backfill(c.engine, p, now=records.utcnow())
        return await usage.report(c.engine, days=days)

    report = _act(ctx, work, with_store=False)
    if as_json:
        _echo_json(report)
        return
    o, d = report["originals"], report["derivatives"]
    click.echo(f"originals\t{o['count']}\t{o['bytes']} bytes")
    click.echo(f"derivatives\t{d['count']}\t{d['bytes']} bytes")
    for section in ("by_case", "by_class", "by_uploader", "by_store"):
        for row in report[section]:
            name = f"{row['key']} ({row['name']})" if row.get("name") else row["key"]
            click.echo(f"{section[3:]}\t{name}\t{row['count']}\t{row['bytes']} bytes")
    for row in report["growth"]:
        click.echo(f"day\t{row['day']}\t{row['count']}\t{row['bytes']} bytes")
    for name, row in report["uploads"].items():
        click.echo(f"uploads {name}\t{row['count']}\t{row['bytes_received']} bytes received")


@click.group()
def quota() -> None:
    """Storage quotas per uploader token and for the site."""


@quota.command("set")
@shared_options
@click.option("--site", is_flag=True, help="The quota of the whole server.")
@click.option("--token", "token_id", default=None, help="The quota of one uploader token.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=0, max=quotas.LARGEST),
    default=None,
    help="Bytes in total.",
)
@click.option(
    "--max-upload",
    type=click.IntRange(min=0, max=quotas.LARGEST),
    default=None,
    help="Bytes per upload.",
)
@actor_option
def quota_set(
    ctx: Context,
    site: bool,
    token_id: str | None,
    max_bytes: int | None,
    max_upload: int | None,
    actor: str | None,
) -> None:
    """Set a quota (neither --max-bytes nor --max-upload: remove it)."""
    if site == (token_id is not None):
        fail("quota set: give exactly one of --site or --token ID")
    scope = "site" if site else f"token:{token_id}"
    limit = _act(
        ctx,
        lambda c, s, _: quotas.set_limit(
            c.engine, scope, max_bytes=max_bytes, max_upload=max_upload, actor=actor_label(actor)
        ),
        with_store=False,
    )
    click.echo(f"quota {scope}: max_bytes={limit.max_bytes} max_upload={limit.max_upload}")


@quota.command("list")
@shared_options
def quota_list(ctx: Context) -> None:
    """Every quota with its use."""
    settings = ctx.settings()
    listed = _act(ctx, lambda c, s, _: quotas.listing(c.engine, settings), with_store=False)
    for row in listed:
        click.echo(
            f"{row['scope']}\tmax_bytes={row['max_bytes']}\tmax_upload={row['max_upload']}\t"
            f"used={row['used']}\t({row['source']})"
        )


def register(group: click.Group) -> None:
    """Attach this module's commands to `avidence-server` (see `cli.py`)."""
    group.add_command(hold)
    group.add_command(purge_command)
    group.add_command(retention)
    group.add_command(usage_command)
    group.add_command(quota)
