"""Quotas refuse a tus creation with 507 (or 413 for one upload over a per-upload limit) naming
the quota; usage reports bytes and counts by case, class, uploader and store, daily growth and
abandoned uploads; retention settings that cannot work stop the server with one line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_custody_api import invoke

from avidence.server import config
from avidence.server.app import create_app
from avidence.server.catalog import uploads as uploads_db
from avidence.server.cli import main
from avidence.server.retention import classes, quotas, usage
from avidence.storage.base import Store

from support.retention import audit_count, clock, policy_file, retention_api, upload
from support.servers import Api, metadata


@pytest.fixture()
async def qapi(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """Over each store (local and SeaweedFS), with a 100-byte default per uploader."""
    async for api in retention_api(tmp_path, store, quota_uploader_bytes=100):
        yield api


async def create(
    api: Api, length: int, *, token: str | None = None
) -> tuple[int, dict[str, object]]:
    headers = {
        **api.auth(token),
        "Upload-Length": str(length),
        "Upload-Metadata": metadata(case="Q"),
    }
    response = await api.client.post("/files/", headers=headers)
    body = await response.json() if response.status >= 400 else {}
    return response.status, body


async def test_uploader_quota_refuses_creation_with_507_naming_the_quota(qapi: Api) -> None:
    api = qapi
    await upload(api, b"x" * 60, case="Q")
    status, _ = await create(api, 30)  # 60 stored + 30 open = 90
    assert status == 201
    status, body = await create(api, 20)  # 90 + 20 > 100
    assert status == 507
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "quota_exceeded"
    quota = error["details"]["quota"]
    assert quota["scope"].startswith("token:tok_") and quota["max_bytes"] == 100
    assert quota["used"] == 90 and quota["requested"] == 20
    assert "quota token:" in error["message"]
    status, _ = await create(api, 20, token=api.other_uploader)  # another token has its own
    assert status == 201


async def test_a_deferred_length_upload_is_counted_as_its_bytes_arrive(qapi: Api) -> None:
    """Upload-Defer-Length is no way around the quota: 60 stored, a deferred upload may bring at
    most 40 more, whether its bytes come first or its length is declared later."""
    api = qapi
    await upload(api, b"x" * 60, case="Q")
    headers = {**api.auth(), "Upload-Defer-Length": "1", "Upload-Metadata": metadata(case="Q")}
    created = await api.client.post("/files/", headers=headers)
    assert created.status == 201, await created.text()
    url = "/files/" + created.headers["Location"].rsplit("/", 1)[1]
    octet = {**api.auth(), "Content-Type": "application/offset+octet-stream"}
    first = await api.client.patch(url, data=b"y" * 30, headers={**octet, "Upload-Offset": "0"})
    assert first.status == 204, await first.text()
    over = await api.client.patch(url, data=b"y" * 20, headers={**octet, "Upload-Offset": "30"})
    assert over.status == 507 and (await over.json())["error"]["code"] == "quota_exceeded"
    declared = await api.client.patch(
        url, data=b"", headers={**octet, "Upload-Offset": "30", "Upload-Length": "1048576"}
    )
    assert declared.status == 507
    head = await api.client.head(url, headers=api.auth())
    assert head.headers["Upload-Offset"] == "30"  # nothing beyond the quota was stored
    fits = await api.client.patch(
        url, data=b"y" * 10, headers={**octet, "Upload-Offset": "30", "Upload-Length": "40"}
    )
    assert fits.status == 204, await fits.text()


async def test_per_upload_limit_is_413_and_site_quota_507(qapi: Api) -> None:
    api, engine = qapi, qapi.catalog.engine
    principal = await api.client.get(
        "/api/admin/quotas", headers={"Authorization": f"Bearer {api.admin}"}
    )
    assert principal.status == 200
    token_id = await _token_id(api, api.uploader)
    limit = await quotas.set_limit(
        engine, f"token:{token_id}", max_bytes=None, max_upload=10, actor="a"
    )
    assert limit.source == "catalog"
    status, body = await create(api, 11)
    assert status == 413 and body["error"]["code"] == "quota_upload_too_large"  # type: ignore[index]
    assert (await create(api, 10))[0] == 201
    await quotas.set_limit(engine, "site", max_bytes=15, max_upload=None, actor="a")
    status, body = await create(api, 6, token=api.other_uploader)
    assert status == 507 and body["error"]["details"]["quota"]["scope"] == "site"  # type: ignore[index]
    with pytest.raises(quotas.QuotaError, match="scope"):
        await quotas.set_limit(engine, "token:tok_nobody", max_bytes=1, max_upload=None, actor="a")
    with pytest.raises(quotas.QuotaError, match="zero or positive"):
        await quotas.set_limit(engine, "site", max_bytes=-1, max_upload=None, actor="a")
    assert await audit_count(api, "quota.set") == 2
    bad = await api.client.put(
        "/api/admin/quotas/site",
        json={"max_bytes": "lots"},
        headers={"Authorization": f"Bearer {api.admin}"},
    )
    assert bad.status == 400
    # A misspelt field would have read as "no limit" and cleared the quota: refused instead.
    misspelt = await api.client.put(
        "/api/admin/quotas/site",
        json={"max_byte": 5},
        headers={"Authorization": f"Bearer {api.admin}"},
    )
    assert misspelt.status == 400
    assert (await misspelt.json())["error"]["details"] == {"unknown": ["max_byte"]}
    async with engine.connect() as conn:
        kept = await quotas.limit_of(conn, api.settings, "site")
    assert kept.max_bytes == 15  # the quota stays as it was
    # past a 64-bit column: refused with 400 before the catalog sees it (it answered 500)
    for body in ({"max_bytes": 2**63}, {"max_upload": 10**30}):
        huge = await api.client.put(
            "/api/admin/quotas/site", json=body, headers={"Authorization": f"Bearer {api.admin}"}
        )
        assert huge.status == 400, body
        assert "at most" in (await huge.json())["error"]["message"]
    assert await audit_count(api, "quota.set") == 2


async def _token_id(api: Api, secret: str) -> str:
    from avidence.server import tokens

    principal = await tokens.authenticate(api.catalog.engine, secret)
    assert principal is not None
    return principal.token_id


async def test_usage_reports_by_case_class_uploader_store_growth_and_abandoned(
    qapi: Api, tmp_path: Path
) -> None:
    api, engine = qapi, qapi.catalog.engine
    await upload(api, b"a" * 10, case="U-1")
    await upload(api, b"b" * 20, case="U-2", kind="interrogation")
    await upload(api, b"c" * 5, case="U-1", token=api.other_uploader)
    status, _ = await create(api, 7)
    assert status == 201
    stale = await uploads_db.in_state(engine, "receiving")
    await uploads_db.update(engine, stale[0].id, expires_at=clock().now - timedelta(hours=1))
    report = await usage.report(engine, days=7)
    assert report["originals"] == {"count": 3, "bytes": 35}
    cases = {r["key"]: (r["count"], r["bytes"]) for r in report["by_case"]}
    assert cases == {"U-1": (2, 15), "U-2": (1, 20)}
    assert {r["key"]: r["bytes"] for r in report["by_class"]} == {"brief": 15, "long": 20}
    assert {r["name"]: r["bytes"] for r in report["by_uploader"]} == {"room 1": 30, "room 2": 5}
    assert [r["key"] for r in report["by_store"]] == [api.store.name]
    assert [(g["count"], g["bytes"]) for g in report["growth"]] == [(3, 35)]
    assert report["uploads"]["pending_cleanup"]["count"] == 1
    for days in ("0", "\u00b2", "9" * 5000):  # "²".isdigit() is True, int("²") raises
        response = await api.client.get(
            "/api/admin/usage",
            params={"days": days},
            headers={"Authorization": f"Bearer {api.admin}"},
        )
        assert response.status == 400, days
    response = await api.client.get(
        "/api/admin/usage?days=7", headers={"Authorization": f"Bearer {api.admin}"}
    )
    assert (await response.json())["originals"]["bytes"] == 35
    args = ["--config", str(tmp_path / "avidence.toml"), "--data-dir", str(api.settings.data_dir)]
    printed = await invoke(main, ["usage", *args])
    assert printed.exit_code == 0, printed.output
    assert "case\tU-2\t1\t20 bytes" in printed.output
    assert "uploads pending_cleanup\t1" in printed.output
    listed = await invoke(main, ["quota", "list", *args])
    assert "site\tmax_bytes=None" in listed.output
    huge = await invoke(main, ["quota", "set", "--site", "--max-bytes", str(2**63), *args])
    assert huge.exit_code == 2 and "--max-bytes" in huge.output  # a usage error, no traceback


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('retention_default_class = "gone"\n', "retention_default_class: unknown class 'gone'"),
        ('[retention.classes.a]\nlock = "none"\n', "days is required"),
        ("[retention.classes.a]\ndays = -1\n", "days must be"),
        ('[retention.classes.a]\ndays = 1\nlock = "worm"\n', "lock must be"),
        ("[retention.classes.A]\ndays = 1\n", "names are lower-case"),
        ("[retention.classes.a]\ndays = 1\nyears = 2\n", "unknown key 'years'"),
        ('[[retention.rules]]\nclass = "x"\nmatch = { kind = "a" }\n', "unknown class 'x'"),
        ('[[retention.rules]]\nclass = "indefinite"\nmatch = {}\n', "non-empty table"),
        ('[[retention.rules]]\nclass = "indefinite"\nmatch = { kind = 3 }\n', "match.kind"),
        ("[retention]\nkeep = 1\n", "unknown key 'keep'"),
        ("retention_grace_days = -1\n", "retention_grace_days: must be zero or positive"),
    ],
)
def test_bad_retention_settings_stop_the_server_with_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(config.ConfigError) as info:
        settings = config.load(config_file=policy_file(tmp_path, text), env={})
        create_app(settings)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_rules_pick_the_longest_matching_class(tmp_path: Path) -> None:
    text = (
        'retention_default_class = "short"\n'
        "[retention.classes.short]\ndays = 30\n"
        '[retention.classes.mid]\ndays = 365\nlock = "governance"\n'
        '[retention.classes.long]\ndays = "forever"\nlock = "compliance"\n'
        '[[retention.rules]]\nclass = "mid"\nmatch = { case = ["C-1", "C-2"] }\n'
        '[[retention.rules]]\nclass = "long"\nmatch = { kind = "interrogation" }\n'
    )
    policy = classes.load_policy(config.load(config_file=policy_file(tmp_path, text), env={}))
    assert policy.classify({"case": "C-9"}).name == "short"
    assert policy.classify({"case": "C-2"}).name == "mid"
    assert policy.classify({"case": "C-1", "kind": "interrogation"}).name == "long"
    now = clock().now
    mode, until = policy.lock_for(policy.classes["long"], start=now, now=now) or ("", now)
    assert mode == "COMPLIANCE" and until == now + timedelta(days=365)
    assert policy.lock_for(policy.classes["short"], start=now, now=now) is None
