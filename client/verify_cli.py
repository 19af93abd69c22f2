"""`avidence verify` and `avidence verify-bundle`: offline checks for whoever receives evidence.

One line per outcome, so a clerk can read it and a script can parse it: `OK ...` and exit 0,
or `FAILED <what>: <reason>` lines and exit 5, the integrity failure of `errors.ExitCode` that
`avidence --help` documents for every command, or `NOT CHECKED <what>: <reason>` and exit 2
when this install lacks a suite's binding (nothing is known to be wrong then, nothing proven
either). Neither command talks to a server.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from . import verify as offline
from .canonical import SuiteUnavailable, VerificationError
from .errors import ExitCode

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
VERIFY_EXIT_CODES = """\b
Exit codes:
  0  verified (the OK line says what was checked)
  2  usage error (a missing option or file), or NOT CHECKED: a signature
     suite this install cannot check (SM2: pip install 'avidence[gm]')
  5  integrity failure: FAILED lines say what does not check out"""
PINNED_HELP = (
    "The pinned key history (`avidence-server key export`), obtained out of band: only keys "
    "that chain to it are trusted."
)


def not_checked(what: str, exc: SuiteUnavailable) -> NoReturn:
    """Nothing is known to be wrong, but nothing was proven either: not an integrity failure."""
    click.echo(f"NOT CHECKED {what}: {exc}", err=True)
    sys.exit(int(ExitCode.USAGE))


@click.command("verify", epilog=VERIFY_EXIT_CODES)
@click.argument("file", type=_FILE)
@click.option("--receipt", "receipt_path", type=_FILE, required=True, help="The receipt JSON.")
@click.option(
    "--key",
    "key_path",
    type=_FILE,
    default=None,
    help="The server public key: a PEM file or the /api/keys JSON document. With --keys, "
    "only its keys certified through the pinned history count.",
)
@click.option("--keys", "pinned_path", type=_FILE, default=None, help=PINNED_HELP)
def verify(file: Path, receipt_path: Path, key_path: Path | None, pinned_path: Path | None) -> None:
    """Check FILE against its signed receipt: signature, size, BLAKE3, SHA-256 (and SM3)."""
    if key_path is None and pinned_path is None:
        raise click.UsageError("give the pinned key history (--keys FILE) or a key (--key FILE)")
    try:
        if pinned_path is not None:
            keys = offline.load_pinned_keys(pinned_path, *([key_path] if key_path else []))
        else:
            assert key_path is not None
            keys = offline.load_keys(key_path)
        verdict = offline.verify_file(file, offline.load_json(receipt_path), keys)
    except SuiteUnavailable as exc:
        not_checked(file.name, exc)
    except VerificationError as exc:
        click.echo(f"FAILED {file.name}: {exc}", err=True)
        sys.exit(int(ExitCode.INTEGRITY))
    digests = " ".join(f"{a}={v}" for a, v in verdict.digests.items())
    click.echo(f"OK {file.name} size={verdict.size} {digests} key={verdict.key_id}")


@click.command("verify-bundle", epilog=VERIFY_EXIT_CODES)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_path",
    type=_FILE,
    default=None,
    help="The server public key (PEM or /api/keys document); default: the bundle's keys.json.",
)
@click.option("--keys", "pinned_path", type=_FILE, default=None, help=PINNED_HELP)
def verify_bundle(bundle: Path, key_path: Path | None, pinned_path: Path | None) -> None:
    """Check an evidence bundle made by `avidence-server export`: manifest signature, every
    receipt, every original's digests, SHA256SUMS/B3SUMS and the audit excerpt."""
    from_bundle = key_path is None and pinned_path is None
    try:
        if pinned_path is not None:
            # Keys rotated in after the pinned file count only through their certificates.
            cached = [key_path] if key_path else [bundle / "keys.json"]
            keys = offline.load_pinned_keys(pinned_path, *cached)
        else:
            keys = offline.load_keys(key_path or bundle / "keys.json")
    except SuiteUnavailable as exc:
        not_checked("keys", exc)
    except VerificationError as exc:
        click.echo(f"FAILED keys: {exc}", err=True)
        sys.exit(int(ExitCode.INTEGRITY))
    report = offline.verify_bundle(bundle, keys)
    for problem in report.problems:
        click.echo(f"FAILED {problem}", err=True)
    if report.problems:
        sys.exit(int(ExitCode.INTEGRITY))
    kids = ", ".join(sorted(report.key_ids))
    originals = f"{report.originals} originals" if report.originals else "no originals included"
    click.echo(
        f"OK bundle {bundle}: case {report.case}, {report.items} items, {originals}, "
        f"{report.entries} audit entries ({report.anchored} under a signed checkpoint), "
        f"{report.checkpoints} checkpoints; signed by key {kids}"
    )
    if from_bundle:
        click.echo(
            f"NOTE the public key came from the bundle itself (keys.json): a court should "
            f"compare key id {kids} with one obtained independently of this bundle, or run "
            f"again with --keys FILE, the agency's key history obtained that way"
        )
