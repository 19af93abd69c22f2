"""`avidence receipt` and `avidence keys`: what `avidence verify` needs, put where it is asked for.

A verified upload keeps its signed receipt in the client's state folder, under a name made of
the upload's identity; `receipt ID` finds it by evidence id (or asks the server for it with a
token) and prints it or writes it where the user says. `keys` fetches the server's key list and
pins it as a key history, or brings an already pinned history up to date with keys certified
by the pinned ones, so `verify --keys` works without copying files by hand.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import click

from . import trust
from .canonical import VerificationError
from .config import Settings, endpoints
from .errors import ClientError, InputError, IntegrityError, ServerError, UploadFailed
from .state import StateStore, default_state_dir
from .tus import RetryPolicy, TusClient

ATTEMPTS = 3  # a look-up, not an upload: a few tries, then say what failed


def _write(path: Path, document: Any) -> None:
    """Replace `path` with the JSON document (written beside it, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _saved_receipt(store: StateStore, evidence_id: str) -> dict[str, Any] | None:
    """The receipt a verified upload of this evidence saved in the state folder."""
    for state in store.all():
        if state.evidence_id != evidence_id or not state.receipt_file:
            continue
        try:
            document = json.loads(Path(state.receipt_file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict):
            return document
    return None


async def _get(server: str, token: str | None, path: str) -> tuple[int, Any]:
    """GET an API document of `server` (status, parsed JSON or None)."""
    endpoint, api_base = endpoints(server)
    async with aiohttp.ClientSession() as session:
        client = TusClient(
            session,
            endpoint=endpoint,
            api_base=api_base,
            token=token,
            retry=RetryPolicy(attempts=ATTEMPTS),
        )
        return await client.get_json(path)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ClientError as exc:
        click.echo(f"avidence: error: {exc.message}", err=True)
        raise SystemExit(int(exc.exit_code)) from None


def _settings(config_path: Path | None) -> Settings:
    try:
        settings = Settings.load(config_path)
    except ClientError as exc:
        click.echo(f"avidence: error: {exc.message}", err=True)
        raise SystemExit(int(exc.exit_code)) from None
    return settings


server_option = click.option("--server", help="Server URL (or env AVIDENCE_SERVER).")
config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (default: user config dir / config.toml).",
)


@click.command("receipt")
@click.argument("evidence_id")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the receipt to this file (default: print it).",
)
@server_option
@click.option("--token", help="Bearer token (or env AVIDENCE_TOKEN), to ask the server.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Resume state folder (or env AVIDENCE_STATE_DIR).",
)
@config_option
def receipt(
    evidence_id: str,
    out: Path | None,
    server: str | None,
    token: str | None,
    state_dir: Path | None,
    config_path: Path | None,
) -> None:
    """The signed receipt of EVIDENCE_ID: the one this client saved when it verified the
    upload, else the server's (with a server and a token). Check it offline with `avidence
    verify FILE --receipt OUT --keys PINNED`."""
    settings = _settings(config_path)
    get = settings.get
    store = StateStore(Path(get("state_dir", state_dir, default_state_dir())))
    document = _saved_receipt(store, evidence_id)
    source = f"saved in {store.root}"
    if document is None:
        url, secret = get("server", server), get("token", token)
        if not url or not secret:
            click.echo(
                f"avidence: error: no receipt of {evidence_id} in {store.root}; give --server "
                "and --token (or AVIDENCE_SERVER and AVIDENCE_TOKEN) to ask the server",
                err=True,
            )
            raise SystemExit(int(InputError.exit_code))
        status, document = _run(_get(str(url), str(secret), f"/api/evidence/{evidence_id}/receipt"))
        if status != 200 or not isinstance(document, dict):
            click.echo(
                f"avidence: error: the server has no receipt of {evidence_id} for this token "
                f"(status {status})",
                err=True,
            )
            raise SystemExit(int(UploadFailed.exit_code))
        source = f"from {url}"
    if out is None:
        click.echo(json.dumps(document, indent=1, ensure_ascii=False))
        return
    _write(out, document)
    click.echo(
        f"receipt of {evidence_id} (signed by key {document.get('key_id')}, {source}) "
        f"written to {out}"
    )


def _pin(fetched: list[Any], out: Path) -> tuple[dict[str, Any], list[str], list[str]]:
    """The history to write to `out`, the ids it adds and the fetched ids left out."""
    entries = [e for e in fetched if isinstance(e, dict)]
    if not out.exists():
        document, left = trust.history(entries)
        return document, [str(e["id"]) for e in document["keys"]], left
    text = out.read_text(encoding="utf-8")
    pinned = trust.load_pinned(text, where=f"keys {out}")
    extended = trust.extend(pinned, entries)
    history = json.loads(text)
    new = [e for e in entries if e.get("id") in extended.keys and e.get("id") not in pinned.keys]
    history["keys"] = list(history["keys"]) + new
    left = [str(e.get("id")) for e in entries if e.get("id") not in extended.keys]
    return history, [str(e["id"]) for e in new], left


@click.command("keys")
@server_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The pinned key history: made on first use, else extended by certified keys only.",
)
@config_option
def keys(server: str | None, out: Path, config_path: Path | None) -> None:
    """Fetch the server's public keys (GET /api/keys) and pin them in OUT for `avidence verify
    --keys OUT`. The first time, compare the root key id printed with the one the server's
    agency gives out of band (`avidence-server key export`); later runs add only keys that
    chain to the pinned ones, so a key slipped into the server's list is refused."""
    url = _settings(config_path).get("server", server)
    if not url:
        raise click.UsageError("give --server URL (or AVIDENCE_SERVER)")
    status, document = _run(_get(str(url), None, "/api/keys"))
    listed = document.get("keys") if isinstance(document, dict) else None
    if status != 200 or not isinstance(listed, list):
        click.echo(f"avidence: error: {url} lists no keys (GET /api/keys: {status})", err=True)
        raise SystemExit(int(ServerError.exit_code))
    first = not out.exists()
    try:
        history, added, left = _pin(listed, out)
    except (VerificationError, OSError, ValueError) as exc:
        click.echo(f"avidence: error: {exc}", err=True)
        raise SystemExit(int(IntegrityError.exit_code)) from None
    _write(out, history)
    root = history["keys"][0]["id"]
    if first:
        click.echo(
            f"pinned {len(added)} key(s) of {url} in {out}: root key {root}. First use: "
            f"compare key id {root} with the one the server's agency gives you out of band"
        )
    else:
        click.echo(f"{out}: {len(added)} new key(s) certified by the pinned ones; root {root}")
    if left:
        click.echo(f"left out (not certified by the pinned keys): {', '.join(left)}", err=True)
