"""What every `avidence-server` command shares: options, settings, the catalog, one error exit.

Command modules import these from here and attach their commands to the group `cli.py` hands
them (`register(group)`), so none imports the entry point back and each imports on its own.
Operator mistakes end in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store
from avidence.storage.errors import StoreError

from . import config
from .agencies import records as agencies_db
from .audit import log as audit_log
from .cases import records as cases_db
from .cases.records import Case
from .catalog.db import Catalog, CatalogUnavailable
from .keys.base import KeyUnavailable
from .stores import configured_store

T = TypeVar("T")
CONFIG_ENV = "AVIDENCE_SERVER_CONFIG"  # the settings file, when --config is not given


class Context:
    """Options shared by every subcommand, resolved into Settings on first use."""

    def __init__(self, config_file: Path | None, flags: dict[str, Any]) -> None:
        self.config_file = config_file
        self.flags = flags
        if config_file is None and os.environ.get(CONFIG_ENV):
            self.config_file = Path(os.environ[CONFIG_ENV])

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


def _sqlite_file(settings: config.Settings) -> Path | None:
    """The SQLite catalog file the settings name (None for PostgreSQL or in-memory)."""
    url = settings.database_url
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1]
    return Path(path) if path and path != ":memory:" else None


def _no_catalog(settings: config.Settings, path: Path) -> str:
    """Where an admin command looked for the catalog, and how to point it at the right one."""
    if settings.database:
        given = f"database {config.redact(settings.database)!r}"
    elif os.environ.get(config.ENV_PREFIX + "DATA_DIR"):
        given = f"data_dir {str(settings.data_dir)!r} from {config.ENV_PREFIX}DATA_DIR"
    elif settings.data_dir == config.DEFAULT_DATA_DIR:
        given = f"data_dir {str(settings.data_dir)!r}, the default, in the current folder"
    else:
        given = f"data_dir {str(settings.data_dir)!r}"
    return (
        f"no catalog at {path.absolute()} ({given}); admin commands never create one. Point "
        "this command at the catalog the server uses: --data-dir DIR, --database URL or "
        f"--config FILE (or {config.ENV_PREFIX}DATA_DIR, {config.ENV_PREFIX}DATABASE, "
        f"{CONFIG_ENV}); `avidence-server migrate` starts a new, empty catalog instead"
    )


@contextlib.asynccontextmanager
async def opened_catalog(
    settings: config.Settings, *, migrate: bool = False, create: bool = False
) -> AsyncIterator[Catalog]:
    """The catalog an admin command works on, closed however the command ends: upgraded
    first by commands that may be the first to run a new version (`migrate`), else checked
    to be current. Only `create` (the `migrate` command; `serve` opens its own) makes a new
    SQLite catalog: anywhere else a missing file means the command looks in the wrong place,
    and a second, empty catalog beside the real one would only hide that."""
    path = _sqlite_file(settings)
    if path is not None and not create and not path.exists():
        raise config.ConfigError(_no_catalog(settings, path))
    catalog = Catalog(settings.database_url)
    try:
        if migrate:
            await catalog.migrate()
            # Commands that may run first on a new deployment chain with the suite's hash from
            # its first entry (SM3 under gm), as `serve` does.
            await audit_log.follow_suite(catalog.engine, settings.suite, actor="cli")
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
    async with opened_catalog(settings) as catalog:
        store = await configured_store(settings, catalog.engine)
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
        help=f"TOML settings file (or env {CONFIG_ENV}; see docs/configuration.md).",
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


def actor_label(given: str | None) -> str:
    """Who acts, as the audit log names a person at the command line: `--actor`, else
    `cli (<login name>)`."""
    if given:
        return given
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):
        return "cli"


actor_option = click.option("--actor", default=None, help="Who acts, for the audit log.")

AGENCY_HELP = "The agency (name or id) whose case number --case names (when several use it)."
agency_option = click.option("--agency", "agency", default=None, help=AGENCY_HELP)


async def case_of(engine: AsyncEngine, typed: str, *, agency: str | None) -> Case:
    """The case an admin typed (its id, or its number within `agency`); ValueError saying what
    is wrong, for `run` to print."""
    agency_id = None
    if agency is not None:
        found = await agencies_db.resolve(engine, agency)
        if found is None:
            raise ValueError(f"no agency {agency!r}")
        agency_id = found.id
    try:
        return await cases_db.resolve(engine, typed, agency_id=agency_id)
    except LookupError as exc:
        raise ValueError(str(exc)) from None
