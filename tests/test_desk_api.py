"""The JSON the desk reads, checked without a browser: who a token is, the printable transfer
and case lists (receipt ids, who sent and acknowledged, a check code that follows the record),
the scrub's findings, the audit log's state with its witnesses, usage by agency; and the desk
page itself: its words complete in both languages, no inline code, the token page's headers.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from avidence.client.canonical import canonical_json
from avidence.server.audit import log as audit
from avidence.server.audit import witness
from avidence.server.catalog.schema_exchange import DEFAULT_AGENCY
from avidence.server.desk import page
from avidence.server.evidence.scrub import scrub
from avidence.server.state import SIGNER
from avidence.storage.local import LocalStore

from support.agencies import TwoAgencies
from support.servers import Api
from support.tickets import upload

DESK = resources.files("avidence.server.desk")


async def get(api: Api, path: str, token: str, status: int = 200) -> Any:
    response = await api.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status == status, await response.text()
    return await response.json()


async def post(api: Api, path: str, token: str, body: dict[str, Any]) -> Any:
    response = await api.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def sent_case(agencies: TwoAgencies) -> tuple[str, list[str], str]:
    """Two police items of case GA-9 sent to the court: (case id, evidence ids, transfer id)."""
    api, police = agencies.api, agencies.police
    ids = [
        await upload(api, f"clip {i}".encode() * 50, case="GA-9", item=str(i),
                     filename=f"clip-{i}.ts", token=police.tokens["uploader"])
        for i in (1, 2)
    ]  # fmt: skip
    case_id = (await get(api, "/api/cases?number=GA-9", police.tokens["handler"]))["cases"][0]["id"]
    sent = await post(api, f"/api/cases/{case_id}/transfers", police.tokens["handler"],
                      {"to": agencies.court.id, "items": ids})  # fmt: skip
    return case_id, ids, str(sent["id"])


async def test_me_names_the_token_its_role_and_agency(agencies: TwoAgencies) -> None:
    api = agencies.api
    court = await get(api, "/api/me", agencies.court.tokens["handler"])
    assert court["name"] == "City court handler" and court["role"] == "handler"
    assert court["agency"] == {"id": agencies.court.id, "name": "City court"}
    assert court["site"] is False
    site_admin = await get(api, "/api/me", api.admin)
    assert site_admin["agency"]["id"] == DEFAULT_AGENCY and site_admin["site"] is True
    assert (await get(api, "/api/me", agencies.court.tokens["admin"]))["site"] is False
    await get(api, "/api/me", "avd_unknown", status=401)


async def test_transfer_list_names_receipts_senders_and_a_code_that_follows_the_record(
    agencies: TwoAgencies,
) -> None:
    api, court = agencies.api, agencies.court.tokens["handler"]
    _, ids, transfer = await sent_case(agencies)
    before = await get(api, f"/api/transfers/{transfer}/list", court)
    assert before["kind"] == "transfer" and before["transfer"]["state"] == "pending"
    assert before["from"]["name"] == "City police" and before["to"]["name"] == "City court"
    assert [i["evidence_id"] for i in before["items"]] == ids
    for item in before["items"]:
        record = await get(
            api, f"/api/evidence/{item['evidence_id']}", agencies.police.tokens["admin"]
        )
        receipt = await get(
            api, f"/api/evidence/{item['evidence_id']}/receipt", agencies.police.tokens["admin"]
        )
        # The receipt id is computable offline from the receipt file alone.
        expected = "rcp_" + hashlib.sha256(canonical_json(receipt)).hexdigest()[:16]
        assert item["receipt_id"] == expected
        assert (item["size"], item["blake3"], item["sha256"]) == (
            record["size"],
            record["blake3"],
            record["sha256"],
        )
        assert item["sent_by"].endswith("(City police handler)")
        assert item["acknowledged_by"] is None
        assert item["uploaded_by"] == "City police uploader"
    assert before["total_bytes"] == sum(i["size"] for i in before["items"])
    verify = before["verify"]
    assert re.fullmatch(r"[0-9a-f]{20}", verify["code"])
    assert verify["url"].endswith(f"/desk#verify/transfer/{transfer}/{verify['code']}")
    assert verify["qr"].startswith("data:image/svg+xml")
    assert "verify-bundle" in verify["command"]
    # The same record gives the same code, to anyone allowed to read it.
    again = await get(api, f"/api/transfers/{transfer}/list", agencies.police.tokens["auditor"])
    assert again["verify"]["code"] == verify["code"]

    acked = await post(api, f"/api/transfers/{transfer}/ack", court, {})
    after = await get(api, f"/api/transfers/{transfer}/list", court)
    assert after["transfer"]["acknowledged_by"].endswith("(City court handler)")
    assert {i["acknowledged_by"] for i in after["items"]} == {acked["decided_by"]}
    assert (
        after["manifest_sha256"] == acked["acknowledgement"]["acknowledgement"]["manifest_sha256"]
    )
    assert after["verify"]["code"] != verify["code"]  # a pending paper no longer matches


async def test_case_list_shows_each_items_hand_over_to_the_holder(agencies: TwoAgencies) -> None:
    api, court = agencies.api, agencies.court.tokens["handler"]
    case_id, ids, transfer = await sent_case(agencies)
    await get(api, f"/api/cases/{case_id}/list", court, status=404)  # not held yet
    await post(api, f"/api/transfers/{transfer}/ack", court, {})
    listed = await get(api, f"/api/cases/{case_id}/list", court)
    assert listed["kind"] == "case" and listed["case"]["number"] == "GA-9"
    assert listed["owner"]["name"] == "City police"
    assert sorted(i["evidence_id"] for i in listed["items"]) == sorted(ids)
    for item in listed["items"]:
        assert item["receipt_id"].startswith("rcp_")
        assert [t["transfer"] for t in item["transfers"]] == [transfer]
        assert item["acknowledged_by"].endswith("(City court handler)")
    assert listed["verify"]["url"].endswith(
        f"/desk#verify/case/{case_id}/{listed['verify']['code']}"
    )


async def test_integrity_lists_the_originals_a_scrub_found_changed(
    agencies: TwoAgencies, tmp_path: Path
) -> None:
    api = agencies.api
    good = await upload(api, b"intact bytes" * 10, case="S-1")
    bad = await upload(api, b"to be altered" * 10, case="S-1")
    assert (await get(api, "/api/admin/integrity", api.admin))["counts"]["unchecked"] == 2
    assert isinstance(api.store, LocalStore)
    key = (await get(api, f"/api/evidence/{bad}", api.admin))["storage_key"]
    path = api.store.root / "objects" / key
    path.chmod(0o644)  # originals are published read-only; a fault test alters one anyway
    path.write_bytes(b"altered bytes" * 10)
    await scrub(api.catalog.engine, api.store)
    found = await get(api, "/api/admin/integrity", api.admin)
    assert found["counts"] == {"ok": 1, "failed": 1, "unchecked": 0}
    assert [f["evidence_id"] for f in found["failures"]] == [bad]
    assert found["last_checked_at"] is not None and good != bad
    await get(api, "/api/admin/integrity", agencies.police.tokens["admin"], status=403)


async def test_audit_state_names_the_checkpoint_and_what_each_witness_holds(
    agencies: TwoAgencies,
) -> None:
    api = agencies.api
    state = await get(api, "/api/admin/audit", api.admin)
    assert state["checkpoint"] is None and state["unsealed"] == state["entries"] > 0
    assert [w["holds_latest"] for w in state["witnesses"]] == [None]
    signer = api.client.server.app[SIGNER]
    document = await audit.checkpoint(
        api.catalog.engine, signer, witnesses=witness.configured(api.settings)
    )
    assert document is not None
    state = await get(api, "/api/admin/audit", api.admin)
    assert state["checkpoint"]["seq"] == document["checkpoint"]["seq"] == state["entries"]
    assert state["checkpoint"]["key_id"] == signer.key_id and state["unsealed"] == 0
    assert state["witnesses"][0]["holds_latest"] is True
    kept = api.settings.data_dir / "witness" / "checkpoints.jsonl"
    kept.write_text("")  # the witness lost it
    assert (await get(api, "/api/admin/audit", api.admin))["witnesses"][0]["holds_latest"] is False
    kept.write_text("not json\n")
    unreadable = (await get(api, "/api/admin/audit", api.admin))["witnesses"][0]
    assert unreadable["holds_latest"] is None and unreadable["error"] == "ValueError"


async def test_usage_counts_bytes_by_owning_agency(agencies: TwoAgencies) -> None:
    api = agencies.api
    await upload(api, b"x" * 100, case="U-1")
    await upload(api, b"y" * 30, case="U-2", token=agencies.police.tokens["uploader"])
    usage = await get(api, "/api/admin/usage", api.admin)
    by_agency = {row["name"]: row["bytes"] for row in usage["by_agency"]}
    assert by_agency == {"default": 100, "City police": 30}  # the site's own agency, police


def script_keys() -> set[str]:
    keys: set[str] = set()
    for name in ("desk.js", "dom.js", "inbox.js", "cases.js", "links.js", "paper.js", "admin.js"):
        keys |= set(re.findall(r'\bt\("([a-z0-9_]+)"', DESK.joinpath(name).read_text()))
    return keys


def test_every_word_the_scripts_use_exists_in_both_languages() -> None:
    words = page.MESSAGES
    assert set(words["zh"]) == set(words["en"])
    missing = sorted(k for k in script_keys() if not k.endswith("_") and k not in words["en"])
    assert not missing, missing
    # Keys built from a prefix and a value the API defines.
    for prefix, values in {
        "step_": ("uploaded", "hashed", "verified", "integrity_failed", "transferred",
                  "acknowledged", "rejected", "viewed", "downloaded", "exported"),
        "state_": ("pending", "acknowledged", "rejected", "active", "expired", "revoked",
                   "exhausted"),
        "role_": ("uploader", "handler", "admin", "auditor"),
        "plan_": ("delete", "purge", "held", "waiting", "blocked"),
    }.items():  # fmt: skip
        assert all(prefix + v in words["en"] for v in values), prefix


async def test_desk_page_has_no_inline_code_and_the_token_page_headers(
    agencies: TwoAgencies,
) -> None:
    api = agencies.api
    response = await api.client.get("/desk?lang=en")
    assert response.status == 200
    html = await response.text()
    headers = response.headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY"
    scripts = re.findall(r"<script([^>]*)>", html)
    assert all('src="/desk/' in s or 'type="application/json"' in s for s in scripts), scripts
    assert not re.search(r"\s(style|on[a-z]+)=", html)
    words = json.loads(re.search(r'id="words">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert words["title"] == "Case desk"
    asset = await api.client.get("/desk/desk.js")
    assert asset.status == 200 and asset.headers["Content-Type"].startswith("text/javascript")
    assert "Content-Security-Policy" in asset.headers
    assert (await api.client.get("/desk/nothing.js")).status == 404
    zh = await (await api.client.get("/desk?lang=zh")).text()
    assert "办案工作台" in zh
