"""`avidence-server ticket create | list | revoke | views` against a real catalog."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from avidence.server import address, config
from avidence.server.catalog.db import Catalog
from avidence.server.cli import main
from avidence.server.config import normalize_database_url
from avidence.server.tickets import records
from avidence.storage.local import LocalStore

from support.servers import make_api
from support.tickets import audit_entries, upload


def make_evidence(tmp_path: Path, *payloads: bytes, case: str = "C-42") -> list[str]:
    """Upload through a throwaway in-process server whose catalog is DATA_DIR/catalog.db."""

    async def go() -> list[str]:
        server = make_api(tmp_path, LocalStore(tmp_path / "data" / "store"))
        api = await anext(server)
        try:
            return [await upload(api, data, case=case) for data in payloads]
        finally:
            await server.aclose()

    return asyncio.run(go())


def cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["ticket", *args, "--data-dir", str(tmp_path / "data")])
    return result.exit_code, result.output


def test_create_prints_the_link_last_and_the_code_once(tmp_path: Path) -> None:
    first, second = make_evidence(tmp_path, b"one", b"two")
    code, out = cli(
        tmp_path,
        "create",
        "--evidence",
        first,
        "--evidence",
        second,
        "--recipient",
        "Zhang San (defence lawyer)",
        "--expires",
        "12h",
        "--max-views",
        "3",
        "--access-code",
        "--note",
        "discovery",
    )
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("http://127.0.0.1:8080/t/")
    token = lines[-1].rsplit("/", 1)[1]
    assert records.TOKEN_PATTERN.match(token)
    assert "2 evidence item(s), view only, at most 3 views" in lines[0]
    pin = lines[1].rsplit(" ", 1)[1]
    assert "access code" in lines[1] and len(pin) == 6 and pin.isdigit()
    code, listing = cli(tmp_path, "list")
    assert code == 0
    fields = listing.strip().split("\t")
    assert fields[0].startswith("tkt_") and fields[1] == "active" and fields[3] == "0/3"
    assert fields[5] == "code" and fields[-1] == "Zhang San (defence lawyer)"
    assert token not in listing and pin not in listing


def test_case_ticket_with_download_and_public_url(tmp_path: Path) -> None:
    make_evidence(tmp_path, b"a", b"b", b"c", case="C-77")
    result = CliRunner().invoke(
        main,
        [
            "ticket",
            "create",
            "--case",
            "C-77",
            "--recipient",
            "Court (judge)",
            "--download",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env={"AVIDENCE_PUBLIC_URL": "https://evidence.example/"},
    )
    assert result.exit_code == 0, result.output
    assert "3 evidence item(s), view and download" in result.output
    assert result.output.strip().splitlines()[-1].startswith("https://evidence.example/t/")


def test_revoke_and_audit(tmp_path: Path) -> None:
    (evidence_id,) = make_evidence(tmp_path, b"x")
    code, _ = cli(tmp_path, "create", "--evidence", evidence_id, "--recipient", "A (judge)")
    assert code == 0
    _, listing = cli(tmp_path, "list")
    ticket_id = listing.split("\t", 1)[0]
    code, out = cli(tmp_path, "revoke", ticket_id)
    assert code == 0 and f"revoked {ticket_id}" in out
    code, out = cli(tmp_path, "revoke", ticket_id)
    assert code == 2 and "no active ticket" in out
    _, listing = cli(tmp_path, "list")
    assert listing.split("\t")[1] == "revoked"
    code, out = cli(tmp_path, "views", ticket_id)
    assert code == 0 and out == ""

    async def actions() -> list[str]:
        catalog = Catalog(normalize_database_url(f"sqlite:///{tmp_path / 'data' / 'catalog.db'}"))
        try:
            found = []
            for action in ("ticket.issued", "ticket.revoked"):
                found += [row.actor for row in await audit_entries(catalog.engine, action)]
            return found
        finally:
            await catalog.close()

    assert asyncio.run(actions()) == ["cli", "cli"]


def test_operator_mistakes_are_one_line_exit_2(tmp_path: Path) -> None:
    (evidence_id,) = make_evidence(tmp_path, b"x")
    cases = [
        ["create", "--recipient", "A (judge)"],
        ["create", "--evidence", evidence_id, "--case", "C-42", "--recipient", "A (judge)"],
        ["create", "--evidence", evidence_id, "--recipient", "A (judge)", "--expires", "soon"],
        # past what a date holds: OverflowError and a traceback
        ["create", "--evidence", evidence_id, "--recipient", "A", "--expires", "999999999w"],
        ["create", "--evidence", "ev_missing", "--recipient", "A (judge)"],
        ["create", "--case", "C-none", "--recipient", "A (judge)"],
        ["create", "--evidence", evidence_id, "--recipient", "  "],
        ["revoke", "tkt_missing"],
        ["views", "tkt_missing"],
    ]
    for args in cases:
        code, out = cli(tmp_path, *args)
        assert code == 2, (args, out)
        assert "Traceback" not in out and "error" in out.lower(), args


def test_printed_link_uses_public_url_or_where_the_server_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server on 18777 once printed http://127.0.0.1:8080/t/...: the command now takes
    public_url from the same settings as the server, else the address `serve` recorded, and
    says on stderr when public_url is missing (stdout still ends with the link alone)."""
    [evidence] = make_evidence(tmp_path, b"one")
    create = ("create", "--evidence", evidence, "--recipient", "Li Ming (judge)")

    def run() -> tuple[str, str]:
        result = CliRunner().invoke(main, ["ticket", *create, "--data-dir", str(tmp_path / "data")])
        assert result.exit_code == 0, result.output
        return result.stdout.strip().splitlines()[-1], result.stderr

    link, err = run()
    assert link.startswith("http://127.0.0.1:8080/t/")
    assert "public_url is not configured and no server has listened" in err

    address.remember(config.load(env={}, data_dir=tmp_path / "data", port=18777))
    link, err = run()
    assert link.startswith("http://127.0.0.1:18777/t/")
    assert "public_url is not configured: this link uses the address the server listens on" in err

    monkeypatch.setenv("AVIDENCE_PUBLIC_URL", "https://evidence.example/")
    link, err = run()
    assert link.startswith("https://evidence.example/t/") and err == ""
