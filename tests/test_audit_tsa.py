"""Checkpoints time-stamped by an RFC 3161 TSA (a real one: `openssl ts -reply` behind a tiny
HTTP server on 127.0.0.1, tests/support/tsa.py). Each checkpoint gets a token that `audit verify`
checks against the pinned TSA certificate; a TSA that is down stops no custody action and the
checkpoint is stamped on a later pass; a token over another checkpoint, or from another TSA, is
named."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from test_custody_api import invoke

from avidence.server import config, signing
from avidence.server.audit import log as audit
from avidence.server.audit import tsa, unit
from avidence.server.audit.events import AdminCommand
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_checkpoints
from avidence.server.cli import main
from avidence.server.config import ConfigError

from support.tsa import LocalTsa, make_authority


@dataclass
class Site:
    catalog: Catalog
    settings: config.Settings
    signer: signing.Signer
    tsa: LocalTsa
    config_file: Path

    async def act(self, n: int) -> None:
        """A custody action: its entry commits whatever the TSA does."""
        await unit.record(
            self.catalog.engine,
            AdminCommand(actor="cli", object=f"case:T-{n}", case_id=None, command="export"),
        )

    async def seal(self) -> dict[str, object] | None:
        return await audit.checkpoint(
            self.catalog.engine, self.signer, stamper=tsa.configured(self.settings)
        )

    async def tokens(self) -> dict[int, str | None]:
        async with self.catalog.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(audit_checkpoints.c.seq, audit_checkpoints.c.timestamp_token)
            )
            return {int(seq): token for seq, token in rows}

    async def command(self, *args: str) -> Result:
        return await invoke(main, [*args, "--config", str(self.config_file)])


@pytest.fixture()
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    authority = make_authority(tmp_path / "tsa")
    server = LocalTsa(authority)
    await server.start()
    data = tmp_path / "data"
    config_file = tmp_path / "avidence.toml"
    config_file.write_text(
        f'data_dir = "{data}"\ntsa_url = "{server.url}"\n'
        f'tsa_certificates = "{authority.pinned}"\ntsa_timeout = 3\n'
    )
    settings = config.load(config_file=config_file, env={})
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    signer = signing.load_signer(settings)
    await signing.register(catalog.engine, signer)
    try:
        yield Site(catalog, settings, signer, server, config_file)
    finally:
        await server.stop()
        await catalog.close()


async def test_each_checkpoint_gets_a_token_that_audit_verify_checks(site: Site) -> None:
    await site.act(1)
    first = await site.seal()
    await site.act(2)
    await site.seal()
    tokens = await site.tokens()
    assert len(tokens) == 2 and all(tokens.values()), tokens
    assert site.tsa.requests == 2
    # The token is a real RFC 3161 answer over this checkpoint document, by the pinned TSA.
    stamper = tsa.configured(site.settings)
    assert stamper is not None and first is not None
    seq = int(first["checkpoint"]["seq"])  # type: ignore[index]
    when = stamper.check(base64.b64decode(tokens[seq] or ""), first)
    assert when.tzinfo is not None
    result = await site.command("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "time-stamped by CN=Test TSA: 2 checkpoints verified" in result.output


async def test_an_unreachable_tsa_stops_no_custody_and_the_checkpoint_is_stamped_later(
    site: Site,
) -> None:
    await site.tsa.stop()
    await site.act(1)  # custody goes on
    document = await site.seal()  # signed and kept, though the TSA does not answer
    assert document is not None
    assert list((await site.tokens()).values()) == [None]
    result = await site.command("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "NOTE 1 checkpoints await a time-stamp" in result.output
    # The TSA is back: the next pass (here `audit checkpoint` with the head already signed)
    # stamps the checkpoint it missed.
    await site.tsa.start()
    result = await site.command("audit", "checkpoint")
    assert result.exit_code == 0 and "head already signed" in result.output, result.output
    assert all((await site.tokens()).values())
    result = await site.command("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "1 checkpoints verified" in result.output and "await" not in result.output


async def test_a_token_moved_to_another_checkpoint_is_named(site: Site) -> None:
    await site.act(1)
    await site.seal()
    await site.act(2)
    await site.seal()
    tokens = await site.tokens()
    (_, token_one), (two, _) = sorted(tokens.items())
    async with site.catalog.engine.begin() as conn:
        await conn.execute(
            audit_checkpoints.update()
            .where(audit_checkpoints.c.seq == two)
            .values(timestamp_token=token_one)
        )
    result = await site.command("audit", "verify")
    assert result.exit_code == 1
    assert f"BROKEN (timestamp): checkpoint {two}'s time-stamp does not verify" in result.output
    assert "imprint is not this checkpoint's" in result.output


async def test_a_token_from_a_tsa_that_is_not_pinned_is_named(
    site: Site, tmp_path: Path
) -> None:
    other = LocalTsa(make_authority(tmp_path / "other", name="Other TSA"))
    await other.start()
    try:
        await site.act(1)
        document = await site.seal()
        assert document is not None
        impostor = tsa.TimeStamper(
            other.url, tsa.Pinned.load(other.authority.pinned), timeout=3
        )
        forged = await impostor.stamp(document)
    finally:
        await other.stop()
    async with site.catalog.engine.begin() as conn:
        await conn.execute(
            audit_checkpoints.update().values(timestamp_token=base64.b64encode(forged).decode())
        )
    result = await site.command("audit", "verify")
    assert result.exit_code == 1
    assert "not signed by the pinned TSA" in result.output


async def test_a_tsa_answer_that_does_not_check_out_is_not_kept(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The TSA at tsa_url answers with another TSA's key: the token is refused on arrival,
    logged, and the checkpoint waits for a good one."""
    site.tsa.authority = make_authority(tmp_path / "swapped", name="Swapped TSA")
    await site.act(1)
    assert await site.seal() is not None
    assert site.tsa.requests == 1
    assert list((await site.tokens()).values()) == [None]
    assert "audit.timestamp_failed" in caplog.text
    assert "not signed by the pinned TSA" in caplog.text


def test_tsa_settings_need_pinned_certificates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tsa_certificates"):
        config.load(env={}, data_dir=tmp_path, tsa_url="http://127.0.0.1:1/tsa")
    with pytest.raises(ConfigError, match="tsa_url"):
        config.load(env={}, data_dir=tmp_path, tsa_url="ftp://x", tsa_certificates="x.pem")
    (tmp_path / "empty.pem").write_text("")
    settings = config.load(
        env={}, data_dir=tmp_path, tsa_url="http://x/", tsa_certificates=str(tmp_path / "empty.pem")
    )
    with pytest.raises(ConfigError, match="no PEM certificates"):
        tsa.configured(settings)
