"""`avidence-server`: run the server and administer the catalog it uses.

Every subcommand takes the same `--config/--data-dir/--database` options, so admin commands act
on exactly the catalog `serve` uses. Operator mistakes end in one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from avidence import __version__
from avidence.storage.base import Store
from avidence.storage.errors import StoreError

from . import config, tokens
from .agencies import records as agencies_db
from .audit import log as audit
from .audit.events import Event
from .catalog.db import Catalog, CatalogUnavailable
from .keys.base import KeyUnavailable
from .stores import build_store

T = TypeVar("T")


class Context:
    """Options shared by every subcommand, resolved into Settings on first use."""

    def __init__(self, config_file: Path | None, flags: dict[str, Any]) -> None:
        self.config_file = config_file
        self.flags = flags

    def settings(self, **more: Any) -> config.Settings:
        try:
            return config.load(config_file=self.config_file, **self.flags, **more)
        except config.ConfigError as exc:
            fail(str(exc))


def fail(message: str) -> NoReturn:
    click.echo(f"avidence-server: error: {message}", err=True)
    sys.exit(2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run an admin coroutine, turning operator-facing errors into one line."""
    try:
        return asyncio.run(coro)
    except (config.ConfigError, CatalogUnavailable, StoreError, ValueError) as exc:
        fail(str(exc))
    except KeyUnavailable as exc:
        fail(f"signing key unavailable: {exc}")


@contextlib.asynccontextmanager
async def opened_catalog(
    settings: config.Settings, *, migrate: bool = False
) -> AsyncIterator[Catalog]:
    """The catalog an admin command works on, closed however the command ends: migrated first
    by commands that may be the first to touch a data folder, else checked to be current."""
    catalog = Catalog(settings.database_url)
    try:
        if migrate:
            await catalog.migrate()
        else:
            await catalog.ensure_current()
        yield catalog
    finally:
        await catalog.close()


@contextlib.asynccontextmanager
async def opened_with_store(
    settings: config.Settings, *, open_store: bool = True
) -> AsyncIterator[tuple[Catalog, Store]]:
    """The catalog and the evidence store (opened unless the command only reads the catalog)."""
    store = build_store(settings)
    async with opened_catalog(settings) as catalog:
        try:
            if open_store:
                await store.open()
            yield catalog, store
        finally:
            await store.close()


def _keeps_click_params(func: Callable[..., Any]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """functools.wraps, typed loosely: it carries the options click stored on `func`."""

    def apply(wrapper: Callable[..., T]) -> Callable[..., T]:
        functools.update_wrapper(wrapper, func)
        return wrapper

    return apply


def shared_options(func: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        default=None,
        help="TOML settings file (see docs/configuration.md).",
    )
    @click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Folder for the SQLite catalog, keys and the local store.",
    )
    @click.option(
        "--database",
        default=None,
        help="Catalog URL: sqlite:///PATH (default: DATA_DIR/catalog.db) or "
        "postgresql://USER@HOST/DB.",
    )
    @click.pass_context
    @_keeps_click_params(func)
    def wrapper(
        ctx: click.Context,
        config_file: Path | None,
        data_dir: Path | None,
        database: str | None,
        **kwargs: Any,
    ) -> Any:
        parent = ctx.find_object(Context)
        flags = dict(parent.flags) if parent else {}
        if data_dir is not None:
            flags["data_dir"] = data_dir
        if database is not None:
            flags["database"] = database
        ctx.obj = Context(config_file or (parent.config_file if parent else None), flags)
        return ctx.invoke(func, ctx.obj, **kwargs)

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="avidence-server")
def main() -> None:
    """avidence server: resumable evidence uploads, custody and viewing."""


async def _migrate(settings: config.Settings) -> str | None:
    async with opened_catalog(settings, migrate=True) as catalog:
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
            principal, secret = await tokens.create(
                catalog.engine, role=role, name=name, agency_id=agency_id
            )
            await audit.append(
                catalog.engine,
                Event(
                    action="token.created",
                    actor="cli",
                    object=f"token:{principal.token_id}",
                    details={"role": role, "name": name, "agency": principal.agency_id},
                ),
            )
            return principal, secret

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
            revoked = await tokens.revoke(catalog.engine, token_id)
            if revoked:
                await audit.append(
                    catalog.engine,
                    Event(action="token.revoked", actor="cli", object=f"token:{token_id}"),
                )
            return revoked

    if not run(go()):
        fail(f"no active token {token_id}")
    click.echo(f"revoked {token_id}")


from .serve import serve  # noqa: E402  (registers the command on `main`)

main.add_command(serve)
from . import custody_cli as _custody_cli  # noqa: E402,F401  (registers `scrub` and `export`)
from .audit import cli as _audit_cli  # noqa: E402,F401  (registers `audit`)
from .jobs import cli as _jobs_cli  # noqa: E402,F401  (registers `worker` and `jobs`)
from .keys import cli as _keys_cli  # noqa: E402,F401  (registers `key`)
from .retention import cli as _retention_cli  # noqa: E402,F401  (`hold`, `purge`, `usage`, ...)
from .tickets import cli as _tickets_cli  # noqa: E402,F401  (registers `ticket`)
from .transfers import cli as _transfers_cli  # noqa: E402,F401  (`agency`, `transfer`)
