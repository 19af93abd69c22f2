"""The `avidence` command: upload, watch, status, receipt, keys, version (and verify, when
installed).

Every command maps failures to the exit codes in `errors.ExitCode` in one place (`_run`), so a
script or a systemd unit can tell a wrong token from a flaky link from a server that holds
different bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click

from avidence import __version__

from . import custody_cli, files
from .config import Settings, endpoints, parse_size
from .errors import EXIT_CODES_HELP, ClientError, ExitCode, InputError
from .progress import QuietReporter, Reporter, human_bytes, reporter_for
from .state import StateStore, default_state_dir
from .tus import RetryPolicy, TusClient
from .upload import DEFAULT_CHUNK, Outcome, Uploader, UploadOptions
from .watch import Watcher, WatchOptions

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: ExitCode) -> None:
    click.echo(f"avidence: error: {message}", err=True)
    sys.exit(int(code))


def _run(main: Coroutine[Any, Any, ExitCode]) -> None:
    """Run a command's coroutine; turn every known failure into a message and an exit code."""
    try:
        code = asyncio.run(main)
    except ClientError as exc:
        _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to resume", ExitCode.INTERRUPTED)
    else:
        sys.exit(int(code))


def common_options(fn: F) -> F:
    """Server, token, state and output options shared by `upload` and `watch`."""
    options = [
        click.option(
            "--server",
            help="Server URL (or env AVIDENCE_SERVER), e.g. http://host:8080; "
            "a URL with a path is used as the tus endpoint itself.",
        ),
        click.option("--token", help="Bearer token (or env AVIDENCE_TOKEN)."),
        click.option("--item", help="Item label within the case."),
        click.option(
            "--parallel",
            type=click.IntRange(1, 64),
            help="Parallel partial uploads per file (default 4).",
        ),
        click.option(
            "--chunk-size",
            help="Bytes in flight per file, e.g. 64MiB (default): each PATCH request carries "
            "this much, shared by the parallel parts (at least 8MiB each).",
        ),
        click.option(
            "--retries",
            type=click.IntRange(1, 10_000),
            help="Failures in a row before giving up (default 20, about 10 minutes of outage).",
        ),
        click.option(
            "--wait",
            is_flag=True,
            help="Keep retrying a server that is not up yet (connection refused, unknown "
            "host; as long as --retries allows) instead of failing at once.",
        ),
        click.option(
            "--trusted-keys",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Server public keys (PEM or GET /api/keys JSON) to verify receipts "
            "with, instead of fetching them from the server.",
        ),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Resume state folder (or env AVIDENCE_STATE_DIR).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="TOML config file (default: user config dir / config.toml).",
        ),
        click.option("--json", "json_lines", is_flag=True, help="JSON lines events on stdout."),
        click.option("--quiet", "-q", is_flag=True, help="Only errors and results."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


class Context:
    """Resolved settings and the long-lived objects one command needs."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.settings = Settings.load(kwargs.get("config_path"))
        get = self.settings.get
        server = get("server", kwargs.get("server"))
        if not server:
            raise InputError("no server: give --server URL, AVIDENCE_SERVER, or `server` in config")
        self.endpoint, self.api_base = endpoints(str(server))
        self.token = get("token", kwargs.get("token"))
        if not self.token:
            raise InputError("no token: give --token, AVIDENCE_TOKEN, or `token` in config")
        self.item = str(get("item", kwargs.get("item"), ""))
        self.parallel = int(get("parallel", kwargs.get("parallel"), 4))
        self.chunk_size = parse_size(get("chunk_size", kwargs.get("chunk_size"), DEFAULT_CHUNK))
        self.retry = RetryPolicy(attempts=int(get("retries", kwargs.get("retries"), 20)))
        self.wait = bool(kwargs.get("wait"))
        keys_path = get("trusted_keys", kwargs.get("trusted_keys"))
        try:
            self.trusted_keys = Path(keys_path).read_text() if keys_path else None
        except OSError as exc:
            raise InputError(f"trusted keys {keys_path}: {exc.strerror}") from None
        self.store = StateStore(
            Path(get("state_dir", kwargs.get("state_dir"), default_state_dir()))
        )
        self.reporter = reporter_for(json_lines=kwargs["json_lines"], quiet=kwargs["quiet"])
        self.json_lines = bool(kwargs["json_lines"])

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True),
            auto_decompress=False,
        )

    def client(self, session: aiohttp.ClientSession) -> TusClient:
        def on_retry(what: str, exc: BaseException, delay: float) -> None:
            self.reporter.event("retry", None, message=f"{what}: {exc}; retrying in {delay:.1f} s")

        return TusClient(
            session,
            endpoint=self.endpoint,
            api_base=self.api_base,
            token=self.token,
            retry=self.retry,
            on_retry=on_retry,
            wait=self.wait,
        )


def _context(kwargs: dict[str, Any]) -> Context:
    try:
        return Context(kwargs)
    except ClientError as exc:
        _fail(exc.message, exc.exit_code)
        raise  # unreachable: _fail exits


async def _with_ticker(reporter: Reporter, work: Coroutine[Any, Any, ExitCode]) -> ExitCode:
    ticker = asyncio.create_task(reporter.run())
    try:
        return await work
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        reporter.close()


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging on stderr.")
def main(verbose: bool) -> None:
    """Upload audio-video evidence to an avidence (or any tus) server, resumably, and prove
    the server holds the same bytes before a source is ever deleted."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@main.command(epilog=EXIT_CODES_HELP)
@click.argument(
    "paths", metavar="FILE...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option("--case", help="Case the evidence belongs to (or `case` in config).")
@common_options
def upload(paths: tuple[Path, ...], case: str | None, **kwargs: Any) -> None:
    """Upload FILE... and print each evidence id once the server proved it holds the bytes.

    Interrupted uploads (Ctrl-C, crash, reboot, dropped link) resume when the same command is
    run again: state lives in the state folder, one per file, server, case and item (the same
    file sent to another case is another upload, with its own evidence and receipt)."""
    ctx = _context(kwargs)
    case = ctx.settings.get("case", case)
    if not case:
        _fail("give --case (or `case` in the config file)", ExitCode.USAGE)
    try:
        for path in paths:  # every file must be there before a long upload starts
            files.identify(path)
    except ClientError as exc:
        _fail(exc.message, exc.exit_code)
    options = UploadOptions(
        case=str(case),
        item=ctx.item,
        parallel=ctx.parallel,
        chunk_size=ctx.chunk_size,
        trusted_keys=ctx.trusted_keys,
    )

    ctx.reporter.plan(files=len(paths), size=sum(p.stat().st_size for p in paths))

    async def work() -> ExitCode:
        async with ctx.session() as session:
            uploader = Uploader(ctx.client(session), ctx.store, ctx.reporter)
            for path in paths:
                _print_outcome(ctx, await uploader.upload(path, options))
            return ExitCode.OK

    _run(_with_ticker(ctx.reporter, work()))


def _print_outcome(ctx: Context, outcome: Outcome) -> None:
    if ctx.json_lines:
        ctx.reporter.event(
            "result",
            outcome.path,
            evidence_id=outcome.evidence_id,
            verified=outcome.verified,
            proof=outcome.proof,
            size=outcome.size,
            digests=outcome.digests,
            receipt=outcome.receipt_file,
            seconds=round(outcome.seconds, 3),
            already=outcome.already,
            sent_now=outcome.sent_now,
        )
        return
    # The speed of what this run sent: bytes already on the server from before are no speed.
    sent_now = outcome.size if outcome.sent_now is None else outcome.sent_now
    rate = sent_now / outcome.seconds if outcome.seconds > 0 else 0
    verdict = "verified" if outcome.verified else "NOT verified"
    if outcome.already:
        sent = "uploaded by an earlier run"
    elif sent_now == 0 and outcome.size:
        sent = f"all {human_bytes(outcome.size)} were already on the server"
    elif sent_now < outcome.size:
        sent = (
            f"{human_bytes(sent_now)} of {human_bytes(outcome.size)} sent now in "
            f"{outcome.seconds:.1f} s ({human_bytes(rate)}/s)"
        )
    else:
        sent = f"{human_bytes(outcome.size)} in {outcome.seconds:.1f} s ({human_bytes(rate)}/s)"
    detail = f"  {verdict} by {outcome.proof or 'nothing'}; {sent}" + (
        f"; receipt {outcome.receipt_file}" if outcome.receipt_file else ""
    )
    ctx.reporter.result(
        f"{outcome.evidence_id or '-'}\t{outcome.path}",
        None if isinstance(ctx.reporter, QuietReporter) else detail,
    )


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--case", help="Case for every file in DIRECTORY.")
@click.option(
    "--case-from-dirname",
    is_flag=True,
    help="Case = name of the folder holding each file (DIRECTORY/<case>/file); files "
    "directly in DIRECTORY take --case, or are left alone with a warning.",
)
@click.option("--settle", type=float, help="Seconds a file must stay unchanged (default 30).")
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between scans."
)
@click.option(
    "--delete-after-verify",
    is_flag=True,
    help="Delete sources the server proved it holds (default: move to .uploaded/).",
)
@click.option("--once", is_flag=True, help="Process what is settled now, then exit.")
@common_options
def watch(
    directory: Path,
    case: str | None,
    case_from_dirname: bool,
    settle: float | None,
    interval: float,
    delete_after_verify: bool,
    once: bool,
    **kwargs: Any,
) -> None:
    """Upload recordings from DIRECTORY as they are finished; move each verified source to
    DIRECTORY/.uploaded/. A file that fails verification is kept and listed by `status`."""
    ctx = _context(kwargs)
    case = ctx.settings.get("case", case)
    if not case and not case_from_dirname:
        _fail("give --case, --case-from-dirname, or both", ExitCode.USAGE)
    options = WatchOptions(
        directory=directory,
        case=case,
        case_from_dirname=case_from_dirname,
        item=ctx.item,
        settle=float(ctx.settings.get("settle", settle, 30.0)),
        interval=interval,
        delete_after_verify=delete_after_verify,
        once=once,
        parallel=ctx.parallel,
        chunk_size=ctx.chunk_size,
        trusted_keys=ctx.trusted_keys,
    )

    async def work() -> ExitCode:
        async with ctx.session() as session:
            uploader = Uploader(ctx.client(session), ctx.store, ctx.reporter)
            return await Watcher(options, uploader, ctx.store, ctx.reporter).run()

    _run(_with_ticker(ctx.reporter, work()))


@main.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Resume state folder (or env AVIDENCE_STATE_DIR).",
)
@click.option("--json", "json_lines", is_flag=True, help="One JSON document per upload.")
def status(state_dir: Path | None, json_lines: bool) -> None:
    """Pending, active, finished and failed uploads from the local state."""
    store = StateStore(state_dir or default_state_dir())
    states = sorted(store.all(), key=lambda s: s.updated_at)
    if json_lines:
        for s in states:
            click.echo(json.dumps({"state_file": str(store.path(s.key)), **s.to_json()}))
        return
    if not states:
        click.echo(f"no uploads recorded in {store.root}")
        return
    for s in states:
        done = s.confirmed / s.size if s.size else 1.0
        label = {"finished": "finished" if s.verified else "unverified"}.get(s.phase, s.phase)
        click.echo(
            f"{label:<11} {done:6.1%} {human_bytes(s.size):>10}  {s.evidence_id or '-':<27} "
            f"{s.case:<16} {s.path}"
        )
        if s.error:
            click.echo(f"{'':11} {s.error}")
    failed = sum(1 for s in states if s.phase == "failed")
    if failed:
        sys.exit(int(ExitCode.INTEGRITY))


@main.command()
def version() -> None:
    """Print the client version."""
    click.echo(f"avidence {__version__}")


def _add_verify_commands() -> None:
    try:
        from . import verify_cli  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        return
    for name in ("verify", "verify_bundle"):
        command = getattr(verify_cli, name, None)
        if isinstance(command, click.Command):
            main.add_command(command)


_add_verify_commands()
main.add_command(custody_cli.receipt)
main.add_command(custody_cli.keys)
