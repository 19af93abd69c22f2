"""The copy judges watch is checked: a flipped byte in a stored derivative is found by the scrub,
withheld from the viewer, media, downloads and new tickets until an admin re-derives it; a
flagged original likewise until it is restored; and the viewer names the copy it plays."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import blake3
import pytest
from test_custody_api import flipped, record, tamper, upload_evidence
from test_jobs_api import settled, upload_file

from avidence.server.evidence.scrub import scrub
from avidence.storage.base import Store

from support.servers import Api, make_api
from support.stores import collect
from support.tickets import audit_entries, issue, media_url, start_view, token_of

RESOLVE = "/api/admin/evidence/{}/integrity/resolve"


@pytest.fixture()
async def api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """The app over the store, with its embedded worker (it makes the derivatives)."""
    async for value in make_api(tmp_path, store, embedded_worker=True):
        yield value


def admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.admin}"}


def playable(document: dict[str, Any]) -> dict[str, Any]:
    [copy] = [d for d in document["derivatives"] if d["role"] == "playable"]
    return copy


async def error_code(response: Any) -> str:
    body = await response.json()
    return str(body["error"]["code"])


@pytest.mark.parametrize("store", ["local", "s3"], indirect=True)
async def test_a_flipped_byte_in_the_playable_copy_is_withheld_until_rederived(
    api: Api, small_ts_clip: Path, request: pytest.FixtureRequest
) -> None:
    evidence_id = await upload_file(api, small_ts_clip)
    copy = playable(await settled(api, evidence_id))
    stored = await collect(await api.store.read(copy["storage_key"]))
    assert blake3.blake3(stored).hexdigest() == copy["blake3"]  # recorded when it was made
    assert copy["integrity"] == "unchecked"
    token = token_of(await issue(api, [evidence_id], download=True))
    grant = await start_view(api, token, evidence_id)  # a view started before the damage
    url = media_url(token, evidence_id, grant)
    assert (await api.client.get(url, headers={"Range": "bytes=0-99"})).status == 206

    await tamper(api, request, copy["storage_key"], flipped(stored))
    report = await scrub(api.catalog.engine, api.store)
    [problem] = report.problems
    assert (problem.evidence_id, problem.target) == (evidence_id, f"derivative:{copy['id']}")
    assert problem.mismatched == ["blake3", "sha256"]
    failed = [e for e in await audit_entries(api, "integrity.failed")]
    assert [e.details["target"] for e in failed] == [f"derivative:{copy['id']}"]
    assert failed[0].object == f"evidence:{evidence_id}"
    document = await settled(api, evidence_id)
    assert playable(document)["integrity"] == "failed"
    assert document["integrity"] == "ok"  # the original is fine

    # Withheld: ranged media, new views, new tickets; the page says why.
    ranged = await api.client.get(url, headers={"Range": "bytes=0-99"})
    assert ranged.status == 409 and await error_code(ranged) == "integrity_withheld"
    assert (await ranged.json())["error"]["details"]["target"] == f"derivative:{copy['id']}"
    view = await api.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert view.status == 409 and await error_code(view) == "integrity_withheld"
    refused = await api.client.post(
        "/api/tickets",
        json={"evidence": [evidence_id], "recipient": "Wang (judge)"},
        headers=admin(api),
    )
    assert refused.status == 409 and await error_code(refused) == "integrity_withheld"
    page = await (await api.client.get(f"/t/{token}?lang=en")).text()
    assert "Withheld: integrity check failed." in page and 'class="start"' not in page
    download = await api.client.get(f"/t/{token}/download/{evidence_id}")
    assert download.status == 200  # the original is intact and this link may download it
    listed = await (await api.client.get("/api/admin/integrity", headers=admin(api))).json()
    assert [f["target"] for f in listed["findings"]] == [f"derivative:{copy['id']}"]

    # Resolved by re-deriving: fresh objects, fresh records, servable again.
    wrong = await api.client.post(
        RESOLVE.format(evidence_id), json={"target": "original", "reason": "x"}, headers=admin(api)
    )
    assert wrong.status == 409 and await error_code(wrong) == "integrity_unresolved"
    resolved = await api.client.post(
        RESOLVE.format(evidence_id),
        json={"target": f"derivative:{copy['id']}", "reason": "disk replaced; make it again"},
        headers=admin(api),
    )
    assert resolved.status == 200, await resolved.text()
    answer = await resolved.json()
    assert (answer["how"], answer["findings"]) == ("rederived", [])
    [entry] = await audit_entries(api, "integrity.resolved")
    assert entry.details == {
        "target": f"derivative:{copy['id']}",
        "how": "rederived",
        "reason": "disk replaced; make it again",
    }
    document = await settled(api, evidence_id)
    again = playable(document)
    assert again["id"] != copy["id"] and again["integrity"] == "unchecked"
    fresh = await collect(await api.store.read(again["storage_key"]))
    assert blake3.blake3(fresh).hexdigest() == again["blake3"]
    assert (await scrub(api.catalog.engine, api.store)).problems == []
    new_grant = await start_view(api, token, evidence_id)
    served = await api.client.get(
        media_url(token, evidence_id, new_grant), headers={"Range": "bytes=0-"}
    )
    assert served.status == 206 and await served.read() == fresh
    assert (await issue(api, [evidence_id]))["ticket"]["evidence"] == [evidence_id]


@pytest.mark.parametrize("store", ["local", "s3"], indirect=True)
async def test_a_flagged_original_is_withheld_until_restored_and_rechecked(
    api: Api, request: pytest.FixtureRequest
) -> None:
    data = os.urandom(300_000)
    evidence_id = await upload_evidence(api, data, filename="room3.mp4")
    token = token_of(await issue(api, [evidence_id], download=True))
    key = (await record(api, evidence_id))["storage_key"]
    await tamper(api, request, key, flipped(data))
    assert (await scrub(api.catalog.engine, api.store)).failed == 1

    download = await api.client.get(f"/t/{token}/download/{evidence_id}")
    assert download.status == 409 and await error_code(download) == "integrity_withheld"
    view = await api.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert view.status == 409
    page = await (await api.client.get(f"/t/{token}?lang=zh")).text()
    assert "已暂停提供" in page and "/download/" not in page

    # Still damaged: refused, nothing cleared. Restored, a scrub alone clears nothing either.
    early = await api.client.post(
        RESOLVE.format(evidence_id), json={"target": "original", "reason": "x"}, headers=admin(api)
    )
    assert early.status == 409 and await error_code(early) == "integrity_unresolved"
    await tamper(api, request, key, data)
    assert (await scrub(api.catalog.engine, api.store)).problems == []
    assert (await record(api, evidence_id))["integrity"] == "failed"
    blank = await api.client.post(
        RESOLVE.format(evidence_id), json={"target": "original", "reason": " "}, headers=admin(api)
    )
    assert blank.status == 400 and await error_code(blank) == "reason_required"
    done = await api.client.post(
        RESOLVE.format(evidence_id),
        json={"target": "original", "reason": "restored from the nightly backup"},
        headers=admin(api),
    )
    assert done.status == 200 and (await done.json())["how"] == "restored"
    assert (await record(api, evidence_id))["integrity"] == "ok"
    restored = await api.client.get(f"/t/{token}/download/{evidence_id}")
    assert restored.status == 200 and await restored.read() == data
    [entry] = await audit_entries(api, "integrity.resolved")
    assert (entry.details["target"], entry.details["how"]) == ("original", "restored")


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_viewer_names_the_transcoded_copy_with_its_provenance(
    api: Api, small_ts_clip: Path
) -> None:
    evidence_id = await upload_file(api, small_ts_clip)
    document = await settled(api, evidence_id)
    copy = playable(document)
    token = token_of(await issue(api, [evidence_id]))
    page = await (await api.client.get(f"/t/{token}?lang=en")).text()
    assert "Transcoded copy played here" in page and "a transcoded copy" in page
    for fact in (copy["blake3"], copy["sha256"], document["blake3"], copy["ffmpeg_version"]):
        assert fact in page
    assert copy["source_blake3"] == document["blake3"]
    assert "differs from the original" not in page
    grant = await start_view(api, token, evidence_id)
    media = await api.client.get(media_url(token, evidence_id, grant))
    assert media.headers["Content-Type"] == "video/mp4"
    assert media.headers["ETag"] == f'"{copy["blake3"]}"'
    assert 'filename="small (transcoded).mp4"' in media.headers["Content-Disposition"]
    zh = await (await api.client.get(f"/t/{token}?lang=zh")).text()
    assert "此处播放的转码副本" in zh
