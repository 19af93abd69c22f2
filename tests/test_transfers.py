"""Cross-agency transfers: agency B sees nothing of agency A's until it acknowledges a signed
manifest; tampering or digest mismatches block acknowledgement; rejection changes no custody."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from avidence.client.canonical import PublicKeys
from avidence.server.audit import log as audit
from avidence.server.catalog.schema import evidence
from avidence.server.catalog.schema_exchange import transfers
from avidence.server.state import SIGNER
from avidence.server.transfers.manifest import fingerprint

from support.agencies import Agency, TwoAgencies, make_agency, two_agencies
from support.tickets import audit_entries, upload


async def _case_of(agencies: TwoAgencies, number: str) -> str:
    response = await agencies.api.client.get(
        f"/api/cases?number={number}", headers=agencies.police.auth()
    )
    found = (await response.json())["cases"]
    assert len(found) == 1
    return str(found[0]["id"])


async def _send(agencies: TwoAgencies, case_id: str, **body: Any) -> dict[str, Any]:
    response = await agencies.api.client.post(
        f"/api/cases/{case_id}/transfers",
        json={"to": agencies.court.name, **body},
        headers=agencies.police.auth(),
    )
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def _evidence(agencies: TwoAgencies, count: int = 2) -> tuple[str, list[str]]:
    token = agencies.police.tokens["uploader"]
    ids = [
        await upload(agencies.api, f"clip {i}".encode(), case="GA-7", item=str(i), token=token)
        for i in range(count)
    ]
    return await _case_of(agencies, "GA-7"), ids


async def _status(agencies: TwoAgencies, who: Agency, path: str, role: str = "handler") -> int:
    response = await agencies.api.client.get(path, headers=who.auth(role))
    return response.status


async def test_court_sees_nothing_of_police_evidence_until_it_acknowledges(
    agencies: TwoAgencies,
) -> None:
    api, court = agencies.api, agencies.court
    case_id, ids = await _evidence(agencies)
    hidden = [
        f"/api/evidence/{ids[0]}",
        f"/api/evidence/{ids[0]}/receipt",
        f"/api/cases/{case_id}",
        f"/api/cases/{case_id}/custody",
    ]
    for path in hidden:
        assert await _status(agencies, court, path) == 404, path
        assert await _status(agencies, court, path, "admin") == 404, path
    refused = await api.client.post(
        "/api/tickets", json={"evidence": ids, "recipient": "x (y)"}, headers=court.auth()
    )
    assert refused.status == 404

    sent = await _send(agencies, case_id, note="移送审查起诉")
    assert sent["state"] == "pending" and sent["evidence"] == ids
    inbox = await api.client.get("/api/transfers?inbox=1", headers=court.auth())
    assert [t["id"] for t in (await inbox.json())["transfers"]] == [sent["id"]]
    police_inbox = await api.client.get("/api/transfers?inbox=1", headers=agencies.police.auth())
    assert (await police_inbox.json())["transfers"] == []
    for path in hidden:  # a pending transfer gives nothing yet
        assert await _status(agencies, court, path) == 404, path

    review = await api.client.post(f"/api/transfers/{sent['id']}/review", headers=court.auth())
    assert review.status == 201
    page = await api.client.get("/t/" + (await review.json())["url"].rsplit("/", 1)[1])
    assert page.status == 200

    keys = PublicKeys.load(await (await api.client.get("/api/keys")).text())
    body = keys.verify(sent["manifest"], body="manifest")
    checked = {item["evidence_id"]: {"sha256": item["sha256"]} for item in body["items"]}
    acked = await api.client.post(
        f"/api/transfers/{sent['id']}/ack", json={"checked": checked}, headers=court.auth()
    )
    assert acked.status == 200, await acked.text()
    result = await acked.json()
    assert result["state"] == "acknowledged"
    ack = keys.verify(result["acknowledgement"], body="acknowledgement")
    assert [i["evidence_id"] for i in ack["items"]] == ids
    assert {i["checked_by"] for i in ack["items"]} == {"receiver"}
    assert ack["acknowledged_by"].endswith("(City court handler)")

    for path in hidden:
        assert await _status(agencies, court, path) == 200, path
    case = await (await api.client.get(f"/api/cases/{case_id}", headers=court.auth())).json()
    assert case["agencies"] == ["City police", "City court"]
    custody = await api.client.get(f"/api/cases/{case_id}/custody", headers=court.auth())
    steps = [entry["step"] for entry in (await custody.json())["timeline"]]
    assert steps == ["uploaded", "hashed"] * 2 + ["transferred", "acknowledged"]
    # the court's uploader still sees only its own uploads
    assert await _status(agencies, court, f"/api/evidence/{ids[0]}", "uploader") == 404


async def test_received_items_are_ticketed_only_within_the_senders_limits(
    agencies: TwoAgencies,
) -> None:
    api, court = agencies.api, agencies.court
    case_id, ids = await _evidence(agencies, 1)
    sent = await _send(agencies, case_id, limits={"download": False, "max_ticket_days": 10})
    assert (await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=court.auth())).ok

    async def ticket(**fields: Any) -> int:
        body = {"evidence": ids, "recipient": "Chen (defence lawyer)", **fields}
        response = await api.client.post("/api/tickets", json=body, headers=court.auth())
        return response.status

    assert await ticket(expires="7d") == 201
    assert await ticket(expires="7d", download=True) == 403
    assert await ticket(expires="30d") == 403
    listed = await api.client.get("/api/tickets", headers=court.auth())
    assert len((await listed.json())["tickets"]) == 1  # the police's tickets are not listed


async def test_tampered_manifest_blocks_acknowledgement(agencies: TwoAgencies) -> None:
    api, court = agencies.api, agencies.court
    case_id, _ = await _evidence(agencies, 1)
    sent = await _send(agencies, case_id)
    forged = json.loads(json.dumps(sent["manifest"]))
    forged["manifest"]["items"][0]["blake3"] = "0" * 64
    async with api.catalog.engine.begin() as conn:
        await conn.execute(
            transfers.update().where(transfers.c.id == sent["id"]).values(manifest=forged)
        )
    response = await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=court.auth())
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["code"] == "transfer_blocked"
    assert "signature" in error["details"]["problems"][0]
    assert len(await audit_entries(api, "transfer.blocked")) == 1
    assert await _status(agencies, court, f"/api/cases/{case_id}") == 404


async def test_digest_mismatch_blocks_acknowledgement(agencies: TwoAgencies) -> None:
    api, court = agencies.api, agencies.court
    case_id, ids = await _evidence(agencies, 2)
    sent = await _send(agencies, case_id)
    wrong = {ids[1]: {"sha256": "f" * 64}}
    response = await api.client.post(
        f"/api/transfers/{sent['id']}/ack", json={"checked": wrong}, headers=court.auth()
    )
    assert response.status == 409
    problems = (await response.json())["error"]["details"]["problems"]
    assert problems == [f"{ids[1]}: sha256 differ from the manifest"]
    # the stored original failing a scrub blocks it too
    async with api.catalog.engine.begin() as conn:
        await conn.execute(
            evidence.update().where(evidence.c.id == ids[0]).values(integrity="failed")
        )
    response = await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=court.auth())
    assert response.status == 409
    assert "integrity" in (await response.json())["error"]["message"]
    assert await _status(agencies, court, f"/api/evidence/{ids[0]}") == 404


async def test_rejected_transfer_leaves_custody_unchanged(agencies: TwoAgencies) -> None:
    api, court = agencies.api, agencies.court
    case_id, ids = await _evidence(agencies, 1)
    sent = await _send(agencies, case_id)
    no_reason = await api.client.post(f"/api/transfers/{sent['id']}/reject", headers=court.auth())
    assert no_reason.status == 400
    rejected = await api.client.post(
        f"/api/transfers/{sent['id']}/reject",
        json={"reason": "证据不足 退回补充侦查"},
        headers=court.auth(),
    )
    assert rejected.status == 200
    assert (await rejected.json())["state"] == "rejected"
    late = await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=court.auth())
    assert late.status == 409
    assert await _status(agencies, court, f"/api/evidence/{ids[0]}") == 404
    case = await (
        await api.client.get(f"/api/cases/{case_id}", headers=agencies.police.auth())
    ).json()
    assert case["agencies"] == ["City police"]
    custody = await api.client.get(f"/api/cases/{case_id}/custody", headers=agencies.police.auth())
    timeline = (await custody.json())["timeline"]
    assert [e["step"] for e in timeline][-2:] == ["transferred", "rejected"]
    assert timeline[-1]["reason"] == "证据不足 退回补充侦查"


async def test_return_transfer_goes_back_to_the_owner(agencies: TwoAgencies) -> None:
    api, court, police = agencies.api, agencies.court, agencies.police
    case_id, ids = await _evidence(agencies, 1)
    sent = await _send(agencies, case_id)
    assert (await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=court.auth())).ok
    back = await api.client.post(
        f"/api/cases/{case_id}/transfers",
        json={"to": police.id, "note": "退回补充侦查"},
        headers=court.auth(),
    )
    assert back.status == 201, await back.text()
    returned = await back.json()
    assert returned["from"] == court.id and returned["evidence"] == ids
    acked = await api.client.post(f"/api/transfers/{returned['id']}/ack", headers=police.auth())
    assert acked.status == 200
    assert await _status(agencies, police, f"/api/evidence/{ids[0]}") == 200


@pytest.mark.parametrize(
    ("role", "body", "status", "fragment"),
    [
        ("handler", {"to": "City police"}, 400, "another agency"),
        ("handler", {"to": "Nobody"}, 400, "no agency"),
        ("handler", {}, 400, "to:"),
        ("handler", {"to": "City court", "items": ["ev_nope"]}, 400, "ev_nope"),
        ("handler", {"to": "City court", "items": "ev_x"}, 400, "items"),
        ("handler", {"to": "City court", "limits": {"download": "yes"}}, 400, "limits.download"),
        ("handler", {"to": "City court", "limits": {"forever": True}}, 400, "forever"),
        ("handler", {"to": "City court", "note": 5}, 400, "note"),
        ("uploader", {"to": "City court"}, 403, "uploader"),
        ("auditor", {"to": "City court"}, 403, "auditor"),
    ],
)
async def test_bad_transfer_requests_are_refused(
    agencies: TwoAgencies, role: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    case_id, _ = await _evidence(agencies, 1)
    response = await agencies.api.client.post(
        f"/api/cases/{case_id}/transfers", json=body, headers=agencies.police.auth(role)
    )
    assert response.status == status
    assert fragment in (await response.json())["error"]["message"]


async def test_hostile_transfer_calls_answer_404_or_400(agencies: TwoAgencies) -> None:
    api, court = agencies.api, agencies.court
    case_id, _ = await _evidence(agencies, 1)
    other_case = await api.client.post(
        f"/api/cases/{case_id}/transfers", json={"to": "City police"}, headers=court.auth()
    )
    assert other_case.status == 404
    not_json = await api.client.post(
        f"/api/cases/{case_id}/transfers", data=b"{nope", headers=agencies.police.auth()
    )
    assert not_json.status == 400
    sent = await _send(agencies, case_id)
    # the sender cannot acknowledge its own transfer; strangers do not see it
    own = await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=agencies.police.auth())
    assert own.status == 404
    for path in ("/api/transfers/trf_unknown", "/api/transfers?inbox=2", "/api/transfers?state=x"):
        assert (await api.client.get(path, headers=court.auth())).status in (400, 404)
    bad = await api.client.post(
        f"/api/transfers/{sent['id']}/ack", json={"checked": ["x"]}, headers=court.auth()
    )
    assert bad.status == 400


@pytest.fixture()
async def agencies_pg(tmp_path: Path, postgres_url: str) -> AsyncIterator[TwoAgencies]:
    async for value in two_agencies(tmp_path, database=postgres_url):
        yield value


async def test_transfer_flow_on_postgresql(agencies_pg: TwoAgencies) -> None:
    agencies = agencies_pg
    case_id, ids = await _evidence(agencies, 1)
    sent = await _send(agencies, case_id)
    ack = await agencies.api.client.post(
        f"/api/transfers/{sent['id']}/ack", headers=agencies.court.auth()
    )
    assert ack.status == 200
    assert await _status(agencies, agencies.court, f"/api/evidence/{ids[0]}") == 200
    cases = await agencies.api.client.get("/api/cases", headers=agencies.court.auth())
    assert [c["id"] for c in (await cases.json())["cases"]] == [case_id]


async def test_the_receivers_viewer_shows_the_items_chain_of_custody(
    agencies: TwoAgencies,
) -> None:
    api, police, court = agencies.api, agencies.police, agencies.court
    case_id, ids = await _evidence(agencies, 2)
    sent = await _send(agencies, case_id, items=[ids[0]])
    assert (await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=court.auth())).ok
    body = {"evidence": [ids[0]], "recipient": "Judge Liu (court)", "expires": "7d"}
    issued = await api.client.post("/api/tickets", json=body, headers=court.auth())
    assert issued.status == 201, await issued.text()
    token = (await issued.json())["url"].rsplit("/", 1)[1]
    page = await (await api.client.get(f"/t/{token}?lang=en")).text()
    custody = page[page.index('<details class="custody">') :]
    custody = custody[: custody.index("</details>")]
    steps = [
        "Received by the server",
        "Digests computed and receipt signed",
        f"Handed on from {police.name} to {court.name}",
        f"Receipt acknowledged by {court.name}",
    ]
    positions = [custody.index(step) for step in steps]
    assert positions == sorted(positions), custody
    assert "viewed" not in custody.lower()
    zh = await (await api.client.get(f"/t/{token}?lang=zh")).text()
    assert f"由{police.name}移送至{court.name}" in zh and "保管链" in zh


async def test_the_acknowledgement_countersigns_the_senders_log_head(
    agencies: TwoAgencies,
) -> None:
    """The manifest carries the sender's newest signed checkpoint; the receiver's signed
    acknowledgement names it, so each agency keeps proof of how far the other's log had come."""
    api, court = agencies.api, agencies.court
    case_id, _ = await _evidence(agencies, 1)
    signer = api.client.server.app[SIGNER]
    head = await audit.checkpoint(api.catalog.engine, signer)
    assert head is not None
    sent = await _send(agencies, case_id)
    assert sent["manifest"]["manifest"]["sender_log"] == head
    ack = await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=court.auth())
    assert ack.status == 200, await ack.text()
    document = (await ack.json())["acknowledgement"]
    keys = PublicKeys.load(json.dumps(await (await api.client.get("/api/keys")).json()))
    signed = keys.verify(document, body="acknowledgement")
    assert signed["sender_log"]["checkpoint"] == head["checkpoint"]
    assert signed["sender_log"]["document_sha256"] == fingerprint(head)


async def test_limits_only_narrow_along_a_chain_of_transfers(agencies: TwoAgencies) -> None:
    """Police send to the procuratorate with no download and tickets of at most one day; the
    procuratorate passes the item on to a court asking for downloads and a year: the court
    gets the police's limits, and its 300-day downloadable link is refused."""
    api = agencies.api
    procuratorate = agencies.court
    court = await make_agency(api, "District court")
    case_id, ids = await _evidence(agencies, 1)
    sent = await _send(agencies, case_id, limits={"download": False, "max_ticket_days": 1})
    ack = await api.client.post(f"/api/transfers/{sent['id']}/ack", headers=procuratorate.auth())
    assert ack.status == 200, await ack.text()
    onward = await api.client.post(
        f"/api/cases/{case_id}/transfers",
        json={"to": court.name, "limits": {"download": True, "max_ticket_days": 366}},
        headers=procuratorate.auth(),
    )
    assert onward.status == 201, await onward.text()
    passed_on = await onward.json()
    assert passed_on["limits"] == {"tickets": True, "download": False, "max_ticket_days": 1}
    taken = await api.client.post(f"/api/transfers/{passed_on['id']}/ack", headers=court.auth())
    assert taken.status == 200, await taken.text()
    body = {"evidence": ids, "recipient": "Chen (defence lawyer)", "download": True}
    wide = await api.client.post(
        "/api/tickets", json={**body, "expires": "300d"}, headers=court.auth()
    )
    assert wide.status == 403, await wide.text()
    del body["download"]
    narrow = await api.client.post(
        "/api/tickets", json={**body, "expires": "1d"}, headers=court.auth()
    )
    assert narrow.status == 201, await narrow.text()
