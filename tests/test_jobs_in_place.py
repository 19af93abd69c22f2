"""Media jobs read originals in place: the local store's file through a link in the working
folder, S3 through a presigned URL with ranged requests, a sealed store through a private
endpoint on 127.0.0.1; never a working copy of the original. The recorded command still names
the input `source` (the original its `source_blake3` names), never a URL with a signature in
it."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from test_jobs_api import by_profile, settled, upload_file

from avidence.server.jobs import source as job_source
from avidence.storage.base import Store
from avidence.transcode.plan import SOURCE

from support.servers import Api, make_api
from support.stores import Sealed, chunks_of

EXPECTED = {"local": "in place", "s3": "ranged HTTP"}


@pytest.fixture()
async def api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """The app over each store (local, S3) with its embedded worker."""
    async for value in make_api(tmp_path, store, embedded_worker=True):
        yield value


@pytest.fixture()
async def sealed_api(tmp_path: Path, sealed: Sealed) -> AsyncIterator[Api]:
    """The app over a sealed store (local folder and S3 inside) with its embedded worker."""
    async for value in make_api(tmp_path, sealed.store, embedded_worker=True):
        yield value


async def _jobs_read(api: Api, clip: Path, caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    """Upload `clip`, let the analysis and derive jobs run; the evidence and how each read."""
    caplog.set_level(logging.INFO, logger="avidence.jobs")
    evidence_id = await upload_file(api, clip)
    document = await settled(api, evidence_id)
    assert all(j["state"] == "done" for j in document["jobs"]), document["jobs"]
    hows = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job.source")]
    assert len(hows) == 3, hows  # the analysis and two derive jobs
    return {"document": document, "hows": hows}


async def test_analysis_and_transcode_read_the_original_where_it_is(
    api: Api, small_ts_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ran = await _jobs_read(api, small_ts_clip, caplog)
    document, hows = ran["document"], ran["hows"]
    assert isinstance(document, dict) and isinstance(hows, list)
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
            async with job_source.located(store, "evidence/none/none", work, size=1):
                pass
        assert not (work / SOURCE).exists()
    else:  # a presigned URL names the key; the tools answer a 404 with a MediaError later
        async with job_source.located(store, "evidence/none/none", work, size=1) as found:
            assert found.how == "ranged HTTP" and found.url is not None


async def test_a_sealed_original_is_read_over_loopback_and_never_written_out(
    sealed_api: Api, small_ts_clip: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Ciphertext offers no file and no presigned URL: the tools read the decrypted original
    from a private endpoint, and the worker's folders never hold a copy of it."""
    ran = await _jobs_read(sealed_api, small_ts_clip, caplog)
    document, hows = ran["document"], ran["hows"]
    assert isinstance(document, dict) and isinstance(hows, list)
    assert all("how=loopback HTTP" in h for h in hows), hows
    mp4 = by_profile(document)["mp4-h264.mp4"]
    assert mp4["size"] > 0 and SOURCE in mp4["command"]
    assert "127.0.0.1" not in mp4["command_line"]
    assert document["continuity"]["ok"] is True and document["media"]["container"] == "mpegts"
    assert _files_holding(tmp_path, small_ts_clip) == []


def _files_holding(folder: Path, original: Path) -> list[Path]:
    """Files under `folder` (the data folder, its store and the worker's working folders)
    that hold a run of the original's packets in the clear."""
    run = original.read_bytes()[188 * 10 : 188 * 10 + 4096]
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path != original and run in path.read_bytes():
                found.append(path)
    return found


async def test_the_loopback_endpoint_answers_ranges_and_only_its_secret_path(
    sealed: Sealed,
) -> None:
    data = os.urandom(300_000)
    target = await sealed.store.create("evidence/loop/one")
    await sealed.store.append(target, offset=0, chunks=chunks_of(data, 70_000))
    await sealed.store.finish(target, size=len(data))
    async with (
        job_source.located(sealed.store, "evidence/loop/one", Path("."), size=len(data)) as found,
        aiohttp.ClientSession() as http,
    ):
        assert found.how == "loopback HTTP" and found.url is not None
        url = found.url
        assert url.startswith("http://127.0.0.1:") and len(url.split("/")[3]) >= 32
        async with http.get(url) as whole:
            assert whole.status == 200 and await whole.read() == data
        for start, end in [(0, 0), (65_535, 65_537), (131_071, 200_000), (299_999, 299_999)]:
            headers = {"Range": f"bytes={start}-{end}"}
            async with http.get(url, headers=headers) as part:
                assert part.status == 206
                assert part.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
                assert await part.read() == data[start : end + 1]
        async with http.get(url, headers={"Range": "bytes=-10"}) as tail:
            assert await tail.read() == data[-10:]
        async with http.get(url, headers={"Range": "bytes=400000-"}) as beyond:
            assert beyond.status == 416
        guessed = url.rsplit("/", 2)[0] + "/x/source"
        async with http.get(guessed) as wrong:
            assert wrong.status == 404
        await sealed.inner.delete("evidence/loop/one")  # the bytes gone while the job runs
        async with http.get(url, headers={"Range": "bytes=0-99"}) as gone:
            assert gone.status == 503 and "cannot be read" in await gone.text()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url)


async def test_a_missing_sealed_original_is_not_found_before_any_endpoint_opens(
    sealed: Sealed, tmp_path: Path
) -> None:
    from avidence.storage.errors import NotFound

    with pytest.raises(NotFound):
        async with job_source.located(sealed.store, "evidence/none/none", tmp_path, size=1):
            pass
