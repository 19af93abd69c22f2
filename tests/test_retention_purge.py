"""Purges on the catalog (SQLite and PostgreSQL) over the local store: a dry run changes
nothing, expiry soft-deletes with a tombstone, restore undoes it, the recovery period ends in a
hard delete of the original and its derivatives; class changes go upward only unless an admin
overrides, never while held; the admin API is role-checked and the CLI acts the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_custody_api import invoke

from avidence.server import tokens
from avidence.server.cli import main
from avidence.server.evidence.scrub import scrub
from avidence.server.jobs import outputs, queue
from avidence.server.jobs import records as job_records
from avidence.server.retention import changes, holds, purge, records
from avidence.storage import errors as store_errors
from avidence.storage.local import LocalStore

from support.agencies import TwoAgencies
from support.retention import (
    audit_count,
    clock,
    policy_file,
    policy_of,
    retention_api,
    snapshot,
    upload,
)
from support.servers import Api


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None: the SQLite file in the data dir; else a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
async def rapi(database: str | None, tmp_path: Path) -> AsyncIterator[Api]:
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in retention_api(tmp_path, store, database=database):
            yield api
    finally:
        await store.close()


def admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.admin}"}


async def auditor(api: Api) -> dict[str, str]:
    _, secret = await tokens.create(api.catalog.engine, role="auditor", name="inspector")
    return {"Authorization": f"Bearer {secret}"}


async def add_derivative(api: Api, evidence_id: str) -> str:
    """A derivative stored and recorded as a finished derive job leaves it."""
    path = api.settings.data_dir / "poster.jpg"
    path.write_bytes(b"\xff\xd8 poster \xff\xd9")
    key = f"derivatives/{evidence_id}/poster.jpg"

    async def staged(_: object) -> None:
        return None

    size, digests = await outputs.put(api.store, path, key, staged=staged)
    record = await api.client.get(f"/api/evidence/{evidence_id}", headers=admin(api))
    source = await record.json()
    async with api.catalog.engine.begin() as conn:
        job_id = await queue.enqueue(conn, evidence_id, kind="derive", profile="poster")
        await job_records.insert_derivative(
            conn,
            job_records.Derivative(
                id=job_records.new_derivative_id(),
                evidence_id=evidence_id,
                job_id=str(job_id),
                profile="poster",
                role="poster",
                angle=0,
                storage_key=key,
                content_type="image/jpeg",
                size=size,
                blake3=digests["blake3"],
                sha256=digests["sha256"],
                source_blake3=source["blake3"],
                source_sha256=source["sha256"],
                command=["ffmpeg"],
                ffmpeg_version="test",
                details={},
                created_at=clock().now,
            ),
        )
    return key


async def test_dry_run_changes_nothing(rapi: Api, tmp_path: Path) -> None:
    api, now = rapi, clock()
    evidence_id = await upload(api, b"due soon")
    await upload(api, b"held", case="R-2")
    await holds.add(
        api.catalog.engine, api.store, scope="case", target="R-2", reason="x", actor="a"
    )
    inspector = await auditor(api)  # creating a token is audited: before the snapshot
    before = await snapshot(api)
    now.advance(days=5)
    planned = await purge.plan(api.catalog.engine, policy_of(api), clock=now)
    assert [c.evidence_id for c in planned.delete] == [evidence_id]
    assert len(planned.held) == 1
    response = await api.client.get("/api/admin/purge", headers=inspector)
    assert response.status == 200  # the real clock: nothing due yet
    assert (await response.json())["delete"] == []
    result = await invoke(main, ["purge", "--dry-run", *cli_args(api, tmp_path)])
    assert result.exit_code == 0, result.output
    assert "0 to delete" in result.output
    assert await snapshot(api) == before
    key = (await records.objects_of(api.catalog.engine, evidence_id))[0].key
    assert (await api.store.stat(key)).size == len(b"due soon")


def cli_args(api: Api, tmp_path: Path, policy: Path | None = None) -> list[str]:
    args = ["--config", str(policy or tmp_path / "avidence.toml")]
    args += ["--data-dir", str(api.settings.data_dir)]
    if api.settings.database:
        args += ["--database", api.settings.database]
    return args


async def test_expiry_soft_deletes_restore_undoes_recovery_end_purges(rapi: Api) -> None:
    api, engine, policy, now = rapi, rapi.catalog.engine, policy_of(rapi), clock()
    evidence_id = await upload(api, b"original bytes", case="P-1", item="7")
    copy = await add_derivative(api, evidence_id)
    original = (await records.objects_of(engine, evidence_id))[0].key

    now.advance(days=1, hours=23)  # past retain-until (1 day), not past the grace day
    assert await purge.apply(engine, api.store, policy, actor="a", reason="r", clock=now) == []
    now.advance(hours=2)
    done = await purge.apply(engine, api.store, policy, actor="admin", reason="policy", clock=now)
    assert [(o.evidence_id, o.result) for o in done] == [(evidence_id, "deleted")]
    stone = await purge.tombstone(engine, evidence_id)
    assert stone is not None and stone["class"] == "brief" and stone["reason"] == "policy"
    assert {o["key"] for o in stone["objects"]} == {original, copy}
    assert stone["sha256"] and stone["blake3"] and stone["deleted_by"] == "admin"

    restored = await purge.restore(
        engine, policy, evidence_id, actor="admin", reason="oops", clock=now
    )
    assert restored.state == "active" and restored.retain_until == now.now + policy.recovery
    assert await audit_count(api, "evidence.restored") == 1
    with pytest.raises(changes.RetentionError, match="not deleted"):
        await purge.restore(engine, policy, evidence_id, actor="admin", reason="again", clock=now)

    now.advance(days=3, hours=1)  # the restored record's new end, plus grace
    done = await purge.apply(engine, api.store, policy, actor="admin", reason="policy", clock=now)
    assert [o.result for o in done] == ["deleted"]
    now.advance(days=1)
    assert await purge.apply(engine, api.store, policy, actor="a", reason="r", clock=now) == []
    now.advance(days=1, minutes=1)  # recovery (2 days) over
    done = await purge.apply(engine, api.store, policy, actor="admin", reason="policy", clock=now)
    assert [(o.evidence_id, o.result, o.message) for o in done] == [
        (evidence_id, "purged", "2 objects deleted")
    ]
    for key in (original, copy):
        with pytest.raises(store_errors.NotFound):
            await api.store.stat(key)
    stone = await purge.tombstone(engine, evidence_id)
    assert stone is not None and stone["purged_at"] is not None
    assert await audit_count(api, "evidence.deleted") == 2
    assert await audit_count(api, "evidence.purged") == 1

    gone = await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())
    assert gone.status == 410
    body = (await gone.json())["error"]
    assert body["details"]["tombstone"]["blake3"] == stone["blake3"]
    receipt = await api.client.get(f"/api/evidence/{evidence_id}/receipt", headers=api.auth())
    assert receipt.status == 200  # the receipt still proves what existed
    report = await scrub(engine, api.store, actor="test")
    assert report.missing == 0  # purged bytes are not "missing"


async def test_class_changes_go_upward_unless_overridden_never_while_held(rapi: Api) -> None:
    api, engine, policy = rapi, rapi.catalog.engine, policy_of(rapi)
    evidence_id = await upload(api, b"x", case="K-1")
    change = changes.change_class
    up = await change(
        engine, api.store, policy, evidence_id, new_class="long", actor="a", reason="r"
    )
    assert up.class_name == "long" and up.lock_mode == "GOVERNANCE"
    with pytest.raises(changes.RetentionError, match="override"):
        await change(
            engine, api.store, policy, evidence_id, new_class="brief", actor="a", reason="r"
        )
    with pytest.raises(changes.RetentionError, match="already"):
        await change(
            engine, api.store, policy, evidence_id, new_class="long", actor="a", reason="r"
        )
    with pytest.raises(ValueError, match="unknown retention class 'nope'"):
        await change(
            engine, api.store, policy, evidence_id, new_class="nope", actor="a", reason="r"
        )
    hold = await holds.add(
        engine, api.store, scope="evidence", target=evidence_id, reason="h", actor="a"
    )
    with pytest.raises(changes.RetentionError, match="legal hold"):
        await change(
            engine,
            api.store,
            policy,
            evidence_id,
            new_class="brief",
            actor="a",
            reason="r",
            override=True,
        )
    await holds.remove(engine, api.store, hold.id, reason="done", actor="a")
    down = await change(
        engine,
        api.store,
        policy,
        evidence_id,
        new_class="brief",
        actor="a",
        reason="r",
        override=True,
    )
    assert down.class_name == "brief"
    forever = await change(
        engine, api.store, policy, evidence_id, new_class="forever", actor="a", reason="r"
    )
    assert forever.retain_until is None
    assert await audit_count(api, "retention.changed") == 3


async def test_admin_api_is_role_checked_and_answers_json(rapi: Api) -> None:
    api = rapi
    evidence_id = await upload(api, b"api", case="A-1")
    reader = await auditor(api)
    url = f"/api/admin/evidence/{evidence_id}/retention"
    assert (await api.client.get(url, headers=reader)).status == 200
    for method, path, body in [
        ("PUT", url, {"class": "long", "reason": "r"}),
        ("POST", "/api/admin/holds", {"scope": "case", "target": "A-1", "reason": "r"}),
        ("POST", "/api/admin/purge", {"reason": "r"}),
        ("PUT", "/api/admin/quotas/site", {"max_bytes": 1}),
    ]:
        for headers in (reader, api.auth()):
            response = await api.client.request(method, path, json=body, headers=headers)
            assert response.status == 403, (method, path)
            assert (await response.json())["error"]["code"] == "forbidden"
    assert (await api.client.get("/api/admin/usage")).status == 401

    changed = await api.client.put(
        url, json={"class": "long", "reason": "court"}, headers=admin(api)
    )
    assert changed.status == 200
    assert (await changed.json())["retention"]["class"] == "long"
    down = await api.client.put(url, json={"class": "brief", "reason": "x"}, headers=admin(api))
    assert down.status == 409 and "override" in (await down.json())["error"]["message"]
    bad: list[tuple[str, Any]] = [
        (url, {"class": "long"}),
        (url, {"class": "nope", "reason": "r"}),
        (url, {"class": "long", "reason": "r", "override": "yes"}),
        (url, ["not", "an", "object"]),
    ]
    for path, body in bad:
        response = await api.client.put(path, json=body, headers=admin(api))
        assert response.status in (400, 409), body
        assert "error" in await response.json()
    missing = await api.client.put(
        "/api/admin/evidence/ev_missing/retention",
        json={"class": "long", "reason": "r"},
        headers=admin(api),
    )
    assert missing.status == 404

    placed = await api.client.post(
        "/api/admin/holds",
        json={"scope": "case", "target": "A-1", "reason": "order"},
        headers=admin(api),
    )
    assert placed.status == 201
    hold_id = (await placed.json())["hold"]["id"]
    listed = await (await api.client.get("/api/admin/holds", headers=reader)).json()
    assert [h["id"] for h in listed["holds"]] == [hold_id]
    shown = await (await api.client.get(url, headers=reader)).json()
    assert [h["id"] for h in shown["holds"]] == [hold_id] and shown["tombstone"] is None
    for body in (
        {"scope": "room", "target": "A-1", "reason": "r"},
        {"scope": "case", "target": "A-1", "reason": " "},
        {"scope": "evidence", "target": "ev_none", "reason": "r"},
    ):
        response = await api.client.post("/api/admin/holds", json=body, headers=admin(api))
        assert response.status in (400, 404), body
    released = await api.client.post(
        f"/api/admin/holds/{hold_id}/release", json={"reason": "closed"}, headers=admin(api)
    )
    assert released.status == 200 and (await released.json())["hold"]["active"] is False
    again = await api.client.post(
        f"/api/admin/holds/{hold_id}/release", json={"reason": "closed"}, headers=admin(api)
    )
    assert again.status == 404
    applied = await api.client.post("/api/admin/purge", json={"reason": "r"}, headers=admin(api))
    assert applied.status == 200 and (await applied.json())["outcomes"] == []
    restore = await api.client.post(
        f"/api/admin/evidence/{evidence_id}/restore", json={"reason": "r"}, headers=admin(api)
    )
    assert restore.status == 409


async def test_cli_holds_and_purges_with_a_zero_day_class(rapi: Api, tmp_path: Path) -> None:
    api = rapi
    (tmp_path / "zero").mkdir()
    zero = policy_file(
        tmp_path / "zero",
        'retention_default_class = "zero"\npurge_recovery_days = 0\n'
        "[retention.classes.zero]\ndays = 0\n",
    )
    evidence_id = await upload(api, b"zero", case="Z-1")
    args = cli_args(api, tmp_path, zero)

    placed = await invoke(main, ["hold", "add", *args, "--case", "Z-1", "--reason", "order 1"])
    assert placed.exit_code == 0, placed.output
    hold_id = placed.output.split()[1]
    listed = await invoke(main, ["hold", "list", *args])
    assert hold_id in listed.output and "order 1" in listed.output
    held = await invoke(main, ["purge", "--apply", "--reason", "expired", *args])
    assert held.exit_code == 0 and "0 deleted" in held.output

    for argv, message in [
        (["purge", *args], "choose --dry-run or --apply"),
        (["purge", "--apply", *args], "--reason is required"),
        (["hold", "add", *args, "--reason", "r"], "exactly one of --case"),
        (["hold", "remove", *args, "hold_nope", "--reason", "r"], "no active hold"),
        (["retention", "set", *args, evidence_id, "nope", "--reason", "r"], "unknown retention"),
    ]:
        result = await invoke(main, argv)
        assert result.exit_code == 2, argv
        assert message in result.output, result.output

    lifted = await invoke(main, ["hold", "remove", *args, hold_id, "--reason", "closed"])
    assert lifted.exit_code == 0, lifted.output
    # The record got its class ("brief") from the server's policy; moving it to the shorter
    # "zero" is a downward change, so it takes an override.
    moved = [*args, evidence_id, "zero", "--reason", "test data"]
    refused = await invoke(main, ["retention", "set", *moved])
    assert refused.exit_code == 2 and "override" in refused.output
    moved_ok = await invoke(main, ["retention", "set", *moved, "--override"])
    assert moved_ok.exit_code == 0, moved_ok.output
    deleted = await invoke(main, ["purge", "--apply", "--reason", "expired", *args])
    assert "1 deleted" in deleted.output, deleted.output
    restored = await invoke(main, ["purge", "restore", *args, evidence_id, "--reason", "check"])
    assert restored.exit_code == 0 and f"restored {evidence_id}" in restored.output
    deleted = await invoke(main, ["purge", "--apply", "--reason", "expired", *args])
    assert "1 deleted" in deleted.output, deleted.output
    purged = await invoke(main, ["purge", "--apply", "--reason", "expired", *args])
    assert "1 purged" in purged.output, purged.output
    shown = await invoke(main, ["retention", "show", *args, evidence_id])
    assert '"state": "purged"' in shown.output
    classes = await invoke(main, ["retention", "classes", *args])
    assert "zero\t0 days\tlock=none (default)" in classes.output


async def test_storage_administration_is_refused_to_other_agencies_admins(
    agencies: TwoAgencies,
) -> None:
    api, court = agencies.api, agencies.court
    for method, path, body in [
        ("GET", "/api/admin/usage", None),
        ("GET", "/api/admin/holds", None),
        ("GET", "/api/admin/purge", None),
        ("POST", "/api/admin/purge", {"reason": "r"}),
        ("POST", "/api/admin/holds", {"scope": "case", "target": "C-1", "reason": "r"}),
        ("PUT", "/api/admin/quotas/site", {"max_bytes": 1}),
    ]:
        for role in ("admin", "auditor"):
            response = await api.client.request(method, path, json=body, headers=court.auth(role))
            assert response.status == 403, (method, path, role)
            assert (await response.json())["error"]["code"] == "forbidden"
    # The site's own admin is not affected.
    response = await api.client.get("/api/admin/usage", headers=api.auth(api.admin))
    assert response.status == 200


async def test_a_deleted_item_leaves_its_tickets_at_once_and_returns_on_restore(
    rapi: Api,
) -> None:
    from support.tickets import issue, media_url, start_view, token_of

    api, engine, policy, now = rapi, rapi.catalog.engine, policy_of(rapi), clock()
    evidence_id = await upload(api, b"recording bytes", case="P-9", filename="r.mp4")
    kept_id = await upload(api, b"other", case="P-9", filename="k.mp4", item="2")
    token = token_of(await issue(api, [evidence_id, kept_id], download=True))
    grant = await start_view(api, token, evidence_id)
    assert (await api.client.get(media_url(token, evidence_id, grant))).status == 200

    async with engine.begin() as conn:  # only the first item is due
        await records.update(conn, kept_id, retain_until=None)
    now.advance(days=3)
    done = await purge.apply(engine, api.store, policy, actor="admin", reason="r", clock=now)
    assert [(o.evidence_id, o.result) for o in done] == [(evidence_id, "deleted")]

    # A request already granted stops working; the page lists only what is left.
    media = await api.client.get(media_url(token, evidence_id, grant))
    assert media.status == 410 and len(await media.read()) < 1000
    assert (await api.client.get(f"/t/{token}/download/{evidence_id}")).status == 410
    page = await (await api.client.get(f"/t/{token}")).text()
    assert evidence_id not in page and kept_id in page

    await purge.restore(engine, policy, evidence_id, actor="admin", reason="oops", clock=now)
    assert (await api.client.get(media_url(token, evidence_id, grant))).status == 200


async def test_case_export_hands_on_tombstones_not_bytes_of_deleted_items(
    rapi: Api, tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from avidence.client.verify_cli import verify_bundle
    from avidence.server.evidence.export import export_case
    from avidence.server.state import SIGNER

    api, engine, policy, now = rapi, rapi.catalog.engine, policy_of(rapi), clock()
    deleted_id = await upload(api, b"deleted bytes", case="X-1", filename="gone.ts")
    kept_id = await upload(api, b"kept bytes", case="X-1", filename="kept.ts", item="2")
    async with engine.begin() as conn:
        await records.update(conn, kept_id, retain_until=None)
    now.advance(days=3)
    await purge.apply(engine, api.store, policy, actor="admin", reason="expired", clock=now)
    signer = api.client.app[SIGNER]
    out = tmp_path / "bundle"
    report = await export_case(engine, api.store, signer, case_id="X-1", out=out)
    assert (report.items, report.originals) == (2, 1)
    manifest = json.loads((out / "manifest.json").read_text())
    items = {i["evidence_id"]: i for i in manifest["manifest"]["items"]}
    assert items[deleted_id]["path"] is None and items[deleted_id]["state"] == "deleted"
    assert items[deleted_id]["tombstone"]["reason"] == "expired"
    assert items[kept_id]["path"] and "state" not in items[kept_id]
    assert not any("gone.ts" in p.name for p in (out / "originals").iterdir())
    verified = CliRunner().invoke(verify_bundle, [str(out)])
    assert verified.exit_code == 0, verified.output
