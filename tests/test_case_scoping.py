"""A case number belongs to an agency. Agency B's uploader files a recording under a number agency
A uses: A's export, A's `--case` ticket and A's audit excerpt must not carry it, a bare number
shared by two agencies is refused where no agency is given, and a case id works wherever a
person types a case."""

from __future__ import annotations

import json
from pathlib import Path

from test_custody_api import invoke

from avidence.server.cli import main

from support.agencies import TwoAgencies
from support.tickets import upload

NUMBER = "GA-7"


async def _shared_number(agencies: TwoAgencies) -> tuple[str, str, str]:
    """Police and court each file one item under NUMBER; (police case id, police item,
    court item)."""
    api, police, court = agencies.api, agencies.police, agencies.court
    ours = await upload(api, b"police recording", case=NUMBER, token=police.tokens["uploader"])
    theirs = await upload(api, b"court's own file", case=NUMBER, token=court.tokens["uploader"])
    found = await api.client.get(f"/api/cases?number={NUMBER}", headers=police.auth())
    cases = (await found.json())["cases"]
    assert len(cases) == 1
    return str(cases[0]["id"]), ours, theirs


def _cli(agencies: TwoAgencies, *args: str) -> list[str]:
    return [*args, "--data-dir", str(agencies.api.settings.data_dir)]


async def test_export_bundles_only_the_agencys_own_case(
    agencies: TwoAgencies, tmp_path: Path
) -> None:
    case_id, ours, theirs = await _shared_number(agencies)
    ambiguous = await invoke(main, _cli(agencies, "export", "--case", NUMBER, "--out", "x"))
    assert ambiguous.exit_code == 2 and "several agencies" in ambiguous.output
    for typed in (["--case", NUMBER, "--agency", agencies.police.name], ["--case", case_id]):
        out = tmp_path / typed[-1].replace(" ", "_")
        args = ["export", *typed, "--out", str(out), "--manifests-only"]
        result = await invoke(main, _cli(agencies, *args))
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "manifest.json").read_text())["manifest"]
        assert [i["evidence_id"] for i in manifest["items"]] == [ours]
        assert manifest["case_id"] == case_id
        excerpt = (out / "audit.jsonl").read_text()
        assert ours in excerpt and theirs not in excerpt


async def test_case_tickets_and_audit_excerpts_leave_the_other_agency_out(
    agencies: TwoAgencies, tmp_path: Path
) -> None:
    api, police = agencies.api, agencies.police
    case_id, ours, theirs = await _shared_number(agencies)
    for typed in (NUMBER, case_id):  # a number or the case id, as a person types it
        issued = await api.client.post(
            "/api/tickets",
            json={"case": typed, "recipient": "Li Ming (judge)"},
            headers=police.auth(),
        )
        assert issued.status == 201, await issued.text()
        assert (await issued.json())["ticket"]["evidence"] == [ours]
    made = await invoke(
        main,
        _cli(
            agencies,
            "ticket", "create", "--case", NUMBER, "--agency", police.name,
            "--recipient", "Li Ming (judge)",
        ),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "1 evidence item(s)" in made.output
    out = tmp_path / "audit.jsonl"
    exported = await invoke(
        main, _cli(agencies, "audit", "export", "--case", case_id, "--out", str(out))
    )
    assert exported.exit_code == 0, exported.output
    text = out.read_text()
    assert ours in text and theirs not in text
