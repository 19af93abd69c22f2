"""Media jobs read originals in place: the local store's file through a link in the working
folder, S3 through a presigned URL with ranged requests; never a working copy of the original.
The recorded command still names the input `source` (the original its `source_blake3` names),
never a URL with a signature in it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_jobs_api import by_profile, settled, upload_file

from avidence.server.jobs import source as job_source
from avidence.storage.base import Store
from avidence.transcode.plan import SOURCE

from support.servers import Api, make_api

EXPECTED = {"local": "in place", "s3": "ranged HTTP"}


@pytest.fixture()
async def api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """The app over each store (local, S3) with its embedded worker."""
    async for value in make_api(tmp_path, store, embedded_worker=True):
        yield value


async def test_analysis_and_transcode_read_the_original_where_it_is(
    api: Api, small_ts_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="avidence.jobs")
    evidence_id = await upload_file(api, small_ts_clip)
    document = await settled(api, evidence_id)
    assert all(j["state"] == "done" for j in document["jobs"]), document["jobs"]
    hows = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job.source")]
    assert len(hows) == 3  # the analysis and two derive jobs
    assert all(f"how={EXPECTED[api.store.name]}" in h for h in hows), hows

    mp4 = by_profile(document)["mp4-h264.mp4"]
    assert mp4["source_blake3"] == document["blake3"]
    assert SOURCE in mp4["command"]
    assert "http" not in mp4["command_line"] and "Signature" not in mp4["command_line"]
    assert mp4["size"] > 0
    assert document["continuity"]["ok"] is True and document["media"]["container"] == "mpegts"


async def test_a_missing_original_is_not_found_before_any_tool_runs(
    store: Store, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if store.name == "local":
        from avidence.storage.errors import NotFound

        with pytest.raises(NotFound):
            await job_source.locate(store, "evidence/none/none", work, size=1)
        assert not (work / SOURCE).exists()
    else:  # a presigned URL names the key; the tools answer a 404 with a MediaError later
        found = await job_source.locate(store, "evidence/none/none", work, size=1)
        assert found.how == "ranged HTTP" and found.url is not None
