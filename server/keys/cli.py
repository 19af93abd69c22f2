"""`avidence-server key ...`: create, rotate and export the server's signing keys.

Rotation certifies the new key with the old one; export writes the certified history that
verifiers pin (`--keys FILE`), so trust never rests on the keys the catalog lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.client.canonical import key_id

from .. import signing
from ..audit import log as audit
from ..audit import unit, witness
from ..audit.events import KeyCertified, KeyRotated
from ..commands import Context, fail, opened_catalog, run, shared_options
from ..config import Settings
from . import base, encrypt_cli, files, history
from .base import KeyUnavailable


@click.group("key")
def key_group() -> None:
    """Manage the server's signing keys."""


@key_group.command("create")
@shared_options
def key_create(ctx: Context) -> None:
    """Generate an Ed25519 key pair inside the configured PKCS#11 token (`key_provider =
    "pkcs11"`); the private half is sensitive and never leaves the token."""
    settings = ctx.settings()
    if settings.key_provider != "pkcs11":
        fail("key create: only for key_provider = pkcs11 (file keys are made on first start)")
    from . import pkcs11

    try:
        existing = pkcs11.open_key(settings)
    except pkcs11.KeyMissing:
        existing = None
    except KeyUnavailable as exc:
        fail(f"signing key unavailable: {exc}")
    if existing is not None:
        fail(f"key create: token {settings.pkcs11_token!r} already holds key {existing.key_id}")
    try:
        public = pkcs11.generate(settings, label=settings.pkcs11_key)
    except KeyUnavailable as exc:
        fail(f"signing key unavailable: {exc}")
    click.echo(base.public_pem(public), nl=False)
    click.echo(f"created key {key_id(public)} in token {settings.pkcs11_token!r}", err=True)


@key_group.command("rotate")
@shared_options
@click.option(
    "--new-label",
    default=None,
    help="With key_provider = pkcs11: label of the new key in the token (made when absent); "
    "then set pkcs11_key to it.",
)
@click.option(
    "--new-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With a key given by signing_key or AVIDENCE_SIGNING_KEY_PEM: the new private key "
    "(PEM) to certify; then replace the secret with it.",
)
def key_rotate(ctx: Context, new_label: str | None, new_key: Path | None) -> None:
    """Make a new signing key active, certified by the old one; old receipts stay valid."""
    settings = ctx.settings()
    if settings.key_provider == "pkcs11" and not new_label:
        fail("key rotate: give --new-label LABEL for the new key in the PKCS#11 token")
    if settings.key_provider == "file" and files.managed_elsewhere(settings) and not new_key:
        fail("key rotate: the key is managed outside the data dir; give --new-key NEW.pem")

    def successor() -> signing.Signer:
        if new_key is not None:
            return signing.Signer(files.load_file(new_key))
        if settings.key_provider != "pkcs11":
            return signing.rotate(settings)
        from . import pkcs11

        assert new_label is not None
        try:
            return signing.Signer(pkcs11.open_key(settings, label=new_label))
        except pkcs11.KeyMissing:
            pkcs11.generate(settings, label=new_label)
            return signing.Signer(pkcs11.open_key(settings, label=new_label))

    async def go() -> tuple[signing.Signer, signing.Signer]:
        async with opened_catalog(settings) as catalog:
            old = signing.load_signer(settings, any_suite=True)  # rotating is how suites change
            await signing.register(catalog.engine, old)
            # Keys rotated before certificates existed join the history first.
            await _certify_held(catalog.engine, settings, old, ())
            # Seal the log under the old key, witnessed.
            await audit.checkpoint(catalog.engine, old, witnesses=witness.configured(settings))
            new = successor()
            if new.key_id == old.key_id:
                raise ValueError(f"key rotate: {new_label!r} is the active key already")
            if new.algorithm != settings.signature_algorithm:
                raise ValueError(
                    f"key rotate: the new key is {new.algorithm}, but suite = {settings.suite} "
                    f"signs with {settings.signature_algorithm}"
                )
            certificate = history.certify(old, new)
            await signing.register(catalog.engine, new, certificate=certificate)
            # Into gm (or out of it): the chain's hash follows the suite, by an audited switch.
            await audit.follow_suite(catalog.engine, settings.suite, actor="cli")
            await unit.record(
                catalog.engine,
                KeyRotated(
                    actor="cli",
                    object=f"key:{new.key_id}",
                    previous=old.key_id,
                    certificate=certificate,
                ),
            )
            return old, new

    old, new = run(go())
    click.echo(f"active signing key is now {new.key_id}, certified by {old.key_id}")
    if new_key is not None:
        click.echo("replace the signing key secret with the new key, then restart servers")
    elif settings.key_provider == "pkcs11":
        click.echo(f"set pkcs11_key = {new_label!r}, then restart servers to use it")
    else:
        click.echo("restart servers to use it")
    click.echo("export the key history again (key export) and hand it to verifiers", err=True)


async def _certify_held(
    engine: AsyncEngine, settings: Settings, active: signing.Signer, extra: Sequence[Path]
) -> list[tuple[signing.Signer, signing.Signer, dict[str, Any]]]:
    """Certify the keys this server holds that carry no certificate, each by the held key
    before it, with a `key.certified` entry committed together with each certificate."""
    held = {s.key_id: s for s in map(signing.Signer, files.held(settings))}
    held |= {s.key_id: s for s in (signing.Signer(files.load_file(p)) for p in extra)}
    held[active.key_id] = active
    made = await history.uncertified_successors(engine, list(held.values()))
    for previous, key, certificate in made:
        async with unit.unit_of_work(engine) as work:
            if await history.attach(work.conn, key.key_id, certificate):
                work.record(
                    KeyCertified(
                        actor="cli",
                        object=f"key:{key.key_id}",
                        previous=previous.key_id,
                        certificate=certificate,
                    )
                )
    return made


@key_group.command("certify")
@shared_options
@click.option(
    "--previous-key",
    "previous",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An earlier private key (PEM) kept outside the data dir; repeat for several.",
)
def key_certify(ctx: Context, previous: tuple[Path, ...]) -> None:
    """Certify keys that predate certificates: each key this server holds (the data dir's key
    files, --previous-key files, the active key) without a certificate is certified by the
    held key before it, so the key history reaches every one of them and GET /api/keys keeps
    publishing them. Run once after upgrading; `key rotate` does it too."""
    settings = ctx.settings()

    async def go() -> tuple[list[tuple[signing.Signer, signing.Signer, dict[str, Any]]], list[str]]:
        async with opened_catalog(settings) as catalog:
            active = signing.load_signer(settings)
            await signing.register(catalog.engine, active)
            made = await _certify_held(catalog.engine, settings, active, previous)
            left = await history.publishable(catalog.engine, active=active.key_id)
            return made, left.left_out

    made, left_out = run(go())
    for old, key, _ in made:
        click.echo(f"certified key {key.key_id} by key {old.key_id}")
    if not made:
        click.echo("every key this server holds is certified already")
    for kid in left_out:
        click.echo(
            f"WARNING key {kid} is in the catalog but does not chain to the history and is not "
            "published: this server does not hold its private key (give it with "
            "--previous-key), or it was added behind the server's back",
            err=True,
        )
    if made:
        click.echo("export the key history again (key export) and hand it to verifiers", err=True)


@key_group.command("export")
@shared_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the history here (default: standard output).",
)
def key_export(ctx: Context, out: Path | None) -> None:
    """Write the key history (the first key, then each successor certified by the key before
    it) as JSON: the file verifiers pin with --keys, handed over out of band."""
    settings = ctx.settings()

    async def go() -> history.Exported:
        async with opened_catalog(settings) as catalog:
            active = signing.load_signer(settings)  # the provider's key, not the catalog's word
            return await history.export(catalog.engine, active=active.key_id)

    exported = run(go())
    text = json.dumps(exported.document, indent=2, sort_keys=True) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
    ids = [str(k["id"]) for k in exported.document["keys"]]
    click.echo(f"exported {len(ids)} keys, root {ids[0]}, newest {ids[-1]}", err=True)
    for kid in exported.left_out:
        click.echo(
            f"WARNING key {kid} is in the catalog but not certified by a key of this history: "
            f"left out (added behind the server's back, or rotated before certificates existed)",
            err=True,
        )


@key_group.command("rotate-kek")
@shared_options
@click.option(
    "--new-label",
    default=None,
    help="With key_provider = pkcs11: label of the new key-encryption key in the token; then "
    "set pkcs11_kek to it.",
)
def key_rotate_kek(ctx: Context, new_label: str | None) -> None:
    """Make a new key-encryption key for new data keys; the old KEK stays until `key rewrap`
    has moved every data key off it."""
    from avidence.storage.errors import KeysUnavailable
    from avidence.storage.sealformat import Suite

    from . import kek

    settings = ctx.settings()
    if settings.key_provider == "pkcs11":
        if not new_label:
            fail("key rotate-kek: give --new-label LABEL for the new KEK in the PKCS#11 token")
        from . import kekhsm

        try:
            made = kekhsm.load(settings, create=True, label=new_label)
        except KeysUnavailable as exc:
            fail(f"key rotate-kek: {exc}")
        click.echo(f"key-encryption key {made.kek_id} is in the token as {new_label!r}")
        click.echo(f"set pkcs11_kek = {new_label!r}, restart servers, then run key rewrap")
        return
    new = kek.write_new(kek.kek_folder(settings), Suite.named(settings.encryption_suite))
    click.echo(f"active key-encryption key is now {new.id}; run key rewrap, then back up")
    click.echo(f"{kek.kek_folder(settings)} before retiring an old KEK file", err=True)


@key_group.command("rewrap")
@shared_options
def key_rewrap(ctx: Context) -> None:
    """Re-wrap every data key under the active key-encryption key; the sealed objects are not
    read or rewritten. Resumable: run it again after an interruption."""
    from avidence.storage.errors import KeysUnavailable

    from . import kek, rewrap

    settings = ctx.settings()

    async def go() -> tuple[int, dict[str, int], str]:
        async with opened_catalog(settings) as catalog:
            keks = kek.configured(settings, create=False)
            moved = await rewrap.rewrap_all(catalog.engine, keks, actor="cli")
            return moved, await rewrap.remaining(catalog.engine), keks.kek_id

    try:
        moved, left, active = run(go())
    except KeysUnavailable as exc:
        fail(f"key rewrap: {exc}")
    click.echo(f"rewrapped {moved} data keys under {active}")
    for kek_id, count in sorted(left.items()):
        click.echo(f"{kek_id}: {count} data keys{' (active)' if kek_id == active else ''}")


def register(group: click.Group) -> None:
    group.add_command(key_group)
    encrypt_cli.register(group)
