"""Integrity scrub: a changed or missing original is found, recorded and audited, per store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_custody_api import flipped, invoke, local_app, record, tamper, upload_evidence

import avidence.server.evidence.cli  # noqa: F401  (registers `scrub` and `export` on `main`)
from avidence.server.catalog.schema import audit_log
from avidence.server.cli import main
from avidence.server.evidence.scrub import run_periodically, scrub
from avidence.server.state import METRICS

from support.servers import Api


@pytest.fixture()
async def local_api(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in local_app(tmp_path):
        yield api


async def audit_entries(api: Api, action: str) -> list[Any]:
    async with api.catalog.engine.connect() as conn:
        result = await conn.execute(
            sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq)
        )
        return list(result)


def failures(api: Api, kind: str) -> float:
    registry = api.client.app[METRICS].registry
    return registry.get_sample_value("avidence_integrity_failures_total", {"kind": kind}) or 0.0


async def test_scrub_of_intact_originals_records_ok_and_integrity_checked(api: Api) -> None:
    first = await upload_evidence(api, os.urandom(100_000))
    second = await upload_evidence(api, os.urandom(7), case="C-2")
    report = await scrub(api.catalog.engine, api.store)
    assert (report.checked, report.ok, report.problems) == (2, 2, [])
    for evidence_id in (first, second):
        document = await record(api, evidence_id)
        assert document["integrity"] == "ok" and document["checked_at"] is not None
    checked = await audit_entries(api, "integrity.checked")
    assert sorted(row.object for row in checked) == sorted(
        [f"evidence:{first}", f"evidence:{second}"]
    )
    assert await audit_entries(api, "integrity.failed") == []


async def test_scrub_finds_one_flipped_byte(api: Api, request: pytest.FixtureRequest) -> None:
    data = os.urandom(200_000)
    evidence_id = await upload_evidence(api, data)
    intact = await upload_evidence(api, os.urandom(1000))
    key = (await record(api, evidence_id))["storage_key"]
    await tamper(api, request, key, flipped(data))
    metrics = api.client.app[METRICS]
    report = await scrub(api.catalog.engine, api.store, metrics=metrics)
    assert (report.checked, report.ok, report.failed, report.missing) == (2, 1, 1, 0)
    assert report.problems[0].evidence_id == evidence_id
    assert report.problems[0].mismatched == ["blake3", "sha256"]
    assert (await record(api, evidence_id))["integrity"] == "failed"
    assert (await record(api, intact))["integrity"] == "ok"
    [entry] = await audit_entries(api, "integrity.failed")
    assert entry.object == f"evidence:{evidence_id}" and entry.case_id == "C-1"
    assert entry.details["reason"] == "failed"
    assert entry.details["expected"]["blake3"] == (await record(api, evidence_id))["blake3"]
    assert entry.details["found"]["blake3"] != entry.details["expected"]["blake3"]
    assert entry.details["found"]["size"] == len(data)
    assert failures(api, "scrub_failed") == 1


async def test_scrub_reports_a_deleted_original_missing(
    api: Api, request: pytest.FixtureRequest
) -> None:
    evidence_id = await upload_evidence(api, os.urandom(5000))
    await tamper(api, request, (await record(api, evidence_id))["storage_key"], None)
    report = await scrub(api.catalog.engine, api.store, metrics=api.client.app[METRICS])
    assert (report.checked, report.failed, report.missing) == (1, 0, 1)
    assert (await record(api, evidence_id))["integrity"] == "failed"
    [entry] = await audit_entries(api, "integrity.failed")
    assert entry.details["reason"] == "missing" and "found" not in entry.details
    assert failures(api, "scrub_missing") == 1


async def test_scrub_detects_a_truncated_original_by_size(
    local_api: Api, request: pytest.FixtureRequest
) -> None:
    data = os.urandom(4096)
    evidence_id = await upload_evidence(local_api, data)
    key = (await record(local_api, evidence_id))["storage_key"]
    await tamper(local_api, request, key, data[:-1])
    report = await scrub(local_api.catalog.engine, local_api.store)
    assert report.problems[0].mismatched == ["size", "blake3", "sha256"]


async def test_scrub_selects_by_case_age_and_limit(local_api: Api) -> None:
    engine, store = local_api.catalog.engine, local_api.store
    a1 = await upload_evidence(local_api, b"a1", case="A")
    await upload_evidence(local_api, b"a2", case="A")
    b1 = await upload_evidence(local_api, b"b1", case="B")
    assert (await scrub(engine, store, case_id="A")).checked == 2
    assert (await record(local_api, b1))["integrity"] == "unchecked"
    # B was never checked, the A ones a moment ago: only B is older than a day.
    assert (await scrub(engine, store, older_than=timedelta(days=1))).checked == 1
    assert (await scrub(engine, store, older_than=timedelta(days=1))).checked == 0
    first_pass = await scrub(engine, store, limit=2)
    assert first_pass.checked == 2
    assert (await scrub(engine, store, limit=2)).checked == 2  # everything, two at a time
    assert (await record(local_api, a1))["integrity"] == "ok"


async def test_scrub_command_exits_1_naming_the_changed_original(
    local_api: Api, request: pytest.FixtureRequest
) -> None:
    data = os.urandom(10_000)
    bad = await upload_evidence(local_api, data, case="C-3")
    await upload_evidence(local_api, b"fine", case="C-3")
    await tamper(
        local_api, request, (await record(local_api, bad))["storage_key"], flipped(data, 0)
    )
    data_dir = str(local_api.settings.data_dir)
    result = await invoke(main, ["scrub", "--all", "--data-dir", data_dir])
    assert result.exit_code == 1, result.output
    assert f"FAILED {bad} case=C-3: blake3 expected" in result.output
    assert "scrub: checked 2, ok 1, failed 1, missing 0" in result.output
    assert (await record(local_api, bad))["integrity"] == "failed"
    again = await invoke(main, ["scrub", "--case", "C-3", "--limit", "1", "--data-dir", data_dir])
    assert again.exit_code == 1 and "checked 1," in again.output


async def test_scrub_command_exits_2_without_a_selection(local_api: Api) -> None:
    data_dir = str(local_api.settings.data_dir)
    result = await invoke(main, ["scrub", "--data-dir", data_dir])
    assert result.exit_code == 2 and "choose --all" in result.output
    both = await invoke(main, ["scrub", "--all", "--case", "C", "--data-dir", data_dir])
    assert both.exit_code == 2
    for days in ("999999999999", "inf", "nan"):  # past what a date holds: a traceback
        odd = await invoke(main, ["scrub", "--older-than", days, "--data-dir", data_dir])
        assert odd.exit_code == 2 and "--older-than" in odd.output, (days, odd.output)


async def test_run_periodically_checks_until_cancelled(local_api: Api) -> None:
    evidence_id = await upload_evidence(local_api, b"periodic")
    task = asyncio.create_task(
        run_periodically(local_api.catalog.engine, local_api.store, interval=3600)
    )
    try:
        for _ in range(200):
            if (await record(local_api, evidence_id))["integrity"] == "ok":
                break
            await asyncio.sleep(0.02)
        assert (await record(local_api, evidence_id))["integrity"] == "ok"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
