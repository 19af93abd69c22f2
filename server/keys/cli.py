"""`avidence-server key ...`: create, rotate and export the server's signing keys."""

from __future__ import annotations

import click

from avidence.client.canonical import key_id

from .. import signing
from ..audit import log as audit
from ..audit.events import Event
from ..cli import Context, fail, main, opened_catalog, run, shared_options
from . import base
from .base import KeyUnavailable


@main.group("key")
def key_group() -> None:
    """Manage the server's signing keys."""


@key_group.command("create")
@shared_options
def key_create(ctx: Context) -> None:
    """Generate the Ed25519 key pair inside the configured PKCS#11 token (`key_provider =
    "pkcs11"`); the private half is sensitive and never leaves the token."""
    settings = ctx.settings()
    if settings.key_provider != "pkcs11":
        fail("key create: only for key_provider = pkcs11 (file keys are made on first start)")
    from . import pkcs11

    try:
        existing = pkcs11.open_key(settings)
    except KeyUnavailable:
        existing = None
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
def key_rotate(ctx: Context) -> None:
    """Make a new signing key active; receipts signed by old keys stay valid."""
    settings = ctx.settings()

    async def go() -> signing.Signer:
        async with opened_catalog(settings) as catalog:
            old = signing.load_signer(settings)
            await signing.register(catalog.engine, old)
            await audit.checkpoint(catalog.engine, old)  # seal the log under the old key
            new = signing.rotate(settings)
            await signing.register(catalog.engine, new)
            await audit.append(
                catalog.engine,
                Event(
                    action="key.rotated",
                    actor="cli",
                    object=f"key:{new.key_id}",
                    details={"previous": old.key_id},
                ),
            )
            return new

    signer = run(go())
    click.echo(f"active signing key is now {signer.key_id}; restart servers to use it")
