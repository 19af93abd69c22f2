"""`avidence-server serve`: migrate the catalog, open the store, listen, and say how to use it."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from avidence import __version__

from . import address, logs
from .app import create_app
from .catalog.db import Catalog
from .commands import Context, run, shared_options
from .config import Settings, redact
from .demo import run as run_demo
from .drain import DRAIN
from .listen import Runner, ssl_context

CHECKPOINT_SECONDS = 10.0


@click.command()
@shared_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="TCP port (default 8080).")
@click.option("--storage", type=click.Choice(["local", "s3"]), default=None)
@click.option("--s3-endpoint", default=None, help="S3 endpoint URL (MinIO, SeaweedFS, Ceph).")
@click.option("--s3-bucket", default=None, help="Bucket; created when missing and allowed.")
@click.option("--max-size", type=int, default=None, help="Largest upload in bytes.")
@click.option("--tls-cert", default=None, help="PEM certificate chain: serve HTTPS directly.")
@click.option("--tls-key", default=None, help="PEM private key of --tls-cert.")
@click.option(
    "--shutdown-grace",
    type=int,
    default=None,
    help="Seconds requests in flight get to end after SIGTERM (default 30).",
)
@click.option("--demo", is_flag=True, help="Also upload a demo recording and print a ticket link.")
@click.option("--banner-file", type=click.Path(path_type=Path), default=None, hidden=True)
def serve(ctx: Context, demo: bool, banner_file: Path | None, **flags: Any) -> None:
    """Run the HTTP server until interrupted."""
    settings = ctx.settings(**flags)
    logs.setup(level=settings.log_level, fmt=settings.log_format)
    run(_serve(settings, banner_file, demo=demo, config_file=ctx.config_file))


async def _serve(
    settings: Settings,
    banner_file: Path | None,
    *,
    demo: bool = False,
    config_file: Path | None = None,
) -> None:
    catalog = Catalog(settings.database_url)
    try:
        await catalog.migrate()
        context = ssl_context(settings)
        app = create_app(settings, catalog=catalog)
        # After the grace period, bodies still being read are ended (checkpointed); this is
        # how long their handlers then get to record that before they are cancelled.
        runner = Runner(app, settings, shutdown_timeout=CHECKPOINT_SECONDS)
        await runner.setup()  # opens the store: a bad bucket or credentials stop us here
        try:
            site = web.TCPSite(
                runner, settings.host, settings.port, reuse_address=True, ssl_context=context
            )
            try:
                await site.start()
            except OSError as exc:
                raise ValueError(
                    f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
                ) from None
            address.remember(settings)
            text = banner(settings, config_file)
            click.echo(text)
            if demo:
                await run_demo(settings, catalog.engine)
            if banner_file is not None:
                await asyncio.to_thread(banner_file.write_text, text + "\n", encoding="utf-8")
            await _wait_for_signal()
            await app[DRAIN].stop(grace=settings.shutdown_grace)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECKPOINT_SECONDS):
                    await app[DRAIN].wait_idle()
        finally:
            await runner.cleanup()
    finally:
        await catalog.close()


def banner(settings: Settings, config_file: Path | None = None) -> str:
    url = settings.base_url
    admin = _catalog_options(settings, config_file)
    where = settings.s3_bucket if settings.storage == "s3" else str(settings.store_root)
    return "\n".join(
        [
            f"avidence {__version__} serving on {url}",
            f"  tus upload endpoint: {url}{settings.tus_path}",
            f"  upload in a browser: {url}/upload",
            f"  API description:     {url}/api/openapi.json",
            f"  health:              {url}/healthz",
            f"  storage:             {settings.storage} ({where})",
            f"  admin commands:      {admin} (this server's catalog)",
            f"  create a token:      avidence-server token create {admin} "
            "--role uploader --name NAME",
            *_commands_hint(),
        ]
    )


def _catalog_options(settings: Settings, config_file: Path | None) -> str:
    """The options that point an admin command, run from any folder, at this catalog (and
    at the settings file, which holds the retention classes and the rest)."""
    options = []
    if config_file is not None:
        options.append(f"--config {shlex.quote(str(config_file.resolve()))}")
    if settings.database:
        options.append(f"--database {shlex.quote(redact(settings.database))}")
    else:
        options.append(f"--data-dir {shlex.quote(str(settings.data_dir.resolve()))}")
    return " ".join(options)


def _commands_hint() -> list[str]:
    """Where `avidence` and `avidence-server` are when they are not on the PATH (a virtualenv
    that is not activated, as after `make run`)."""
    if shutil.which("avidence-server") is not None:
        return []
    folder = Path(sys.executable).parent
    if (folder / "activate").exists():
        how = f"run `. {shlex.quote(str(folder / 'activate'))}` first"
    else:
        how = f"they are in {folder}"
    return [f"  commands:            {how} (avidence and avidence-server are not on the PATH)"]


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def register(group: click.Group) -> None:
    """Attach this module's commands to `avidence-server` (see `cli.py`)."""
    group.add_command(serve)
