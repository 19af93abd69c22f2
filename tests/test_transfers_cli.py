"""`avidence-server agency|token --agency|transfer` against the catalog a live app uses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from avidence.server.catalog.schema import evidence
from avidence.server.cli import main
from avidence.storage.local import LocalStore

from support.agencies import TwoAgencies
from support.servers import Api, make_api
from support.tickets import audit_entries, upload


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


# -- the receiving agency at a shell: inbox, review, ack, reject ------------------------------


async def _sent(agencies: TwoAgencies, count: int = 2) -> tuple[str, list[str]]:
    """Police evidence in case GA-7 sent to the court through the API; the transfer and ids."""
    api, police = agencies.api, agencies.police
    token = police.tokens["uploader"]
    ids = [
        await upload(api, f"clip {i}".encode(), case="GA-7", item=str(i), token=token)
        for i in range(count)
    ]
    cases = await api.client.get("/api/cases?number=GA-7", headers=police.auth())
    case_id = (await cases.json())["cases"][0]["id"]
    response = await api.client.post(
        f"/api/cases/{case_id}/transfers",
        json={"to": agencies.court.name, "note": "移送审查起诉"},
        headers=police.auth(),
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["id"]), ids


def _item_line(evidence_id: str) -> str:
    return f"  {evidence_id}: the catalog's blake3, sha256 equal the manifest's; the stored"


async def test_court_reviews_and_acknowledges_a_transfer_at_the_command_line(
    agencies: TwoAgencies,
) -> None:
    api, court = agencies.api, agencies.court
    transfer_id, ids = await _sent(agencies)
    as_court = ("--agency", court.name)

    empty = await cli(api, "transfer", "inbox", "--agency", agencies.police.name)
    assert empty.exit_code == 0 and empty.output.strip() == "no pending transfers for City police"
    listed = await cli(api, "transfer", "inbox", *as_court)
    assert listed.exit_code == 0, listed.output
    fields = listed.output.strip().split("\t")
    assert fields[:5] == [transfer_id, "pending", "GA-7", "City police", "2 items"]
    assert fields[-1] == "移送审查起诉"

    reviewed = await cli(api, "transfer", "review", transfer_id, *as_court)
    assert reviewed.exit_code == 0, reviewed.output
    out = reviewed.output
    record = await api.client.get(f"/api/evidence/{ids[0]}", headers=agencies.police.auth())
    digests = await record.json()
    assert f"blake3 {digests['blake3']}" in " ".join(out.split())
    assert "check: OK" in out and "manifest signature: verified (key " in out
    assert _item_line(ids[1]) + " original has not been re-read by a scrub yet" in out
    as_json = await cli(api, "transfer", "review", transfer_id, *as_court, "--json")
    document = json.loads(as_json.output)
    assert document["check"]["ok"] is True and document["transfer"]["evidence"] == ids
    # Reviewing writes nothing: no acknowledgement, no audit entry of the transfer's.
    assert await audit_entries(api, "transfer.acknowledged") == []

    checked = json.dumps({ids[0]: {"sha256": digests["sha256"]}})
    acked = await cli(
        api, "transfer", "ack", transfer_id, *as_court, "--checked", checked, "--actor", "Clerk Wu"
    )
    assert acked.exit_code == 0, acked.output
    lines = acked.output.splitlines()
    assert lines[0] == (
        f"acknowledged {transfer_id}: case GA-7 from City police; City court now holds 2 items"
    )
    assert lines[1] == "checked before signing:"
    assert lines[2].startswith("  manifest signature: verified (key ")
    assert _item_line(ids[0]) in acked.output
    assert "the receiver's own digests equal them" in lines[4] + lines[5]
    assert lines[-1].startswith("acknowledgement signed by key ")
    # Through the same flow as the API: the same audit entry, the same custody change.
    entries = await audit_entries(api, "transfer.acknowledged")
    assert [(e.actor, e.object) for e in entries] == [("Clerk Wu", f"transfer:{transfer_id}")]
    shown = await api.client.get(f"/api/evidence/{ids[0]}", headers=court.auth())
    assert shown.status == 200
    again = await cli(api, "transfer", "ack", transfer_id, *as_court)
    assert again.exit_code == 2
    assert "the transfer is already acknowledged" in again.output
    decided = await cli(api, "transfer", "inbox", *as_court)
    assert decided.output.strip() == "no pending transfers for City court"
    everything = await cli(api, "transfer", "inbox", *as_court, "--all")
    assert f"{transfer_id}\tacknowledged\t" in everything.output


async def test_ack_refused_by_the_digest_check_exits_1_and_is_audited(
    agencies: TwoAgencies,
) -> None:
    api, court = agencies.api, agencies.court
    transfer_id, ids = await _sent(agencies)
    async with api.catalog.engine.begin() as conn:
        await conn.execute(
            evidence.update().where(evidence.c.id == ids[1]).values(integrity="failed")
        )
    reviewed = await cli(api, "transfer", "review", transfer_id, "--agency", court.name)
    assert reviewed.exit_code == 1
    assert f"PROBLEM {ids[1]}: the stored original failed its integrity check" in reviewed.output
    refused = await cli(api, "transfer", "ack", transfer_id, "--agency", court.name)
    assert refused.exit_code == 1
    assert f"acknowledgement of {transfer_id} refused" in refused.output
    assert f"PROBLEM {ids[1]}: the stored original failed its integrity check" in refused.output
    assert len(await audit_entries(api, "transfer.blocked")) == 1
    assert (await api.client.get(f"/api/evidence/{ids[0]}", headers=court.auth())).status == 404


async def test_reject_needs_a_reason_and_only_the_receiver_decides(agencies: TwoAgencies) -> None:
    api, court, police = agencies.api, agencies.court, agencies.police
    transfer_id, _ = await _sent(agencies, 1)
    no_reason = await cli(api, "transfer", "reject", transfer_id, "--agency", court.name)
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    blank = await cli(
        api, "transfer", "reject", transfer_id, "--agency", court.name, "--reason", " "
    )
    assert blank.exit_code == 2 and "reason: say why" in blank.output
    by_sender = await cli(
        api, "transfer", "reject", transfer_id, "--agency", police.name, "--reason", "x"
    )
    assert by_sender.exit_code == 2
    assert f"no such transfer {transfer_id} in your inbox" in by_sender.output
    unknown = await cli(api, "transfer", "review", "trf_nope", "--agency", court.name)
    assert unknown.exit_code == 2
    assert "no transfer trf_nope sent or received by City court" in unknown.output
    nobody = await cli(api, "transfer", "inbox", "--agency", "Nope")
    assert nobody.exit_code == 2 and "no agency 'Nope'" in nobody.output

    rejected = await cli(
        api, "transfer", "reject", transfer_id, "--agency", court.name, "--reason", "缺少笔录"
    )
    assert rejected.exit_code == 0, rejected.output
    assert (
        rejected.output.strip() == f"rejected {transfer_id}: case GA-7 from City police: 缺少笔录"
    )
    entries = await audit_entries(api, "transfer.rejected")
    assert len(entries) == 1 and entries[0].actor.startswith("cli")
    shown = await cli(api, "transfer", "review", transfer_id, "--agency", police.name)
    assert "decided:   rejected by cli" in shown.output and "缺少笔录" in shown.output
