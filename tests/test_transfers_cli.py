"""`avidence-server agency|token --agency|transfer` against the catalog a live app uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from avidence.server.cli import main
from avidence.storage.local import LocalStore

from support.servers import Api, make_api
from support.tickets import upload


@pytest.fixture()
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        async for value in make_api(tmp_path, store):
            yield value
    finally:
        await store.close()


async def cli(api: Api, *args: str) -> Result:
    """Run a command in a thread: it has its own event loop, as from a shell."""
    argv = [*args, "--data-dir", str(api.settings.data_dir)]
    return await asyncio.to_thread(CliRunner().invoke, main, argv)


async def test_agencies_tokens_and_a_transfer_from_the_command_line(api: Api) -> None:
    created = await cli(api, "agency", "create", "--name", "District procuratorate")
    assert created.exit_code == 0, created.output
    again = await cli(api, "agency", "create", "--name", "District procuratorate")
    assert again.exit_code == 2 and "already exists" in again.output
    listed = await cli(api, "agency", "list")
    assert "default" in listed.output and "District procuratorate" in listed.output

    made = await cli(
        api,
        "token",
        "create",
        "--role",
        "handler",
        "--name",
        "Prosecutor Li",
        "--agency",
        "District procuratorate",
    )
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    unknown = await cli(
        api, "token", "create", "--role", "handler", "--name", "x", "--agency", "Nope"
    )
    assert unknown.exit_code == 2 and "no agency 'Nope'" in unknown.output

    evidence_id = await upload(api, b"recording", case="GA-9")
    missing = await cli(
        api, "transfer", "create", "--case", "GA-404", "--to", "District procuratorate"
    )
    assert missing.exit_code == 2 and "holds no case 'GA-404'" in missing.output
    bad_limits = await cli(
        api,
        "transfer",
        "create",
        "--case",
        "GA-9",
        "--to",
        "District procuratorate",
        "--limits",
        "{no",
    )
    assert bad_limits.exit_code == 2
    sent = await cli(
        api,
        "transfer",
        "create",
        "--case",
        "GA-9",
        "--to",
        "District procuratorate",
        "--note",
        "移送审查起诉",
    )
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("transfer trf_") and "1 items" in sent.output

    inbox = await api.client.get(
        "/api/transfers?inbox=1", headers={"Authorization": f"Bearer {secret}"}
    )
    found = (await inbox.json())["transfers"]
    assert [t["evidence"] for t in found] == [[evidence_id]]
    assert found[0]["created_by"] == "cli" and found[0]["note"] == "移送审查起诉"
    lines = await cli(api, "transfer", "list", "--agency", "District procuratorate", "--inbox")
    assert lines.output.count("\tpending\t") == 1
