"""Uploads become analysed, playable evidence through the embedded worker; broken ones fail cleanly.

Also the helpers the other job tests share (kept here, beside the tests that use them most):
`upload_file` sends a file through the tus endpoint, `settled` waits until no job of an
evidence item is queued or running, `local_api` is the app over a local store where
`avidence-server` commands with the same `--data-dir` find it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import blake3
import pytest
import sqlalchemy as sa

from avidence.server.catalog.schema import audit_log
from avidence.server.jobs import playable_derivative
from avidence.storage.base import Store
from avidence.storage.local import LocalStore

from support.media import GAP_AT, GAP_SECONDS
from support.servers import Api, make_api, metadata
from support.stores import collect

SETTLE_TIMEOUT = 60.0


async def upload_file(api: Api, path: Path, *, case: str = "C-1") -> str:
    """Upload `path` in one creation-with-upload request; return the evidence id."""
    data = await asyncio.to_thread(path.read_bytes)
    headers = {
        **api.auth(),
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(case=case, filename=path.name),
        "Content-Type": "application/offset+octet-stream",
    }
    response = await api.client.post("/files/", data=io.BytesIO(data), headers=headers)
    assert response.status == 201, await response.text()
    return str(response.headers["Avidence-Evidence-Id"])


async def evidence_json(api: Api, evidence_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())
    assert response.status == 200, await response.text()
    document: dict[str, Any] = await response.json()
    return document


async def settled(api: Api, evidence_id: str, *, within: float = SETTLE_TIMEOUT) -> dict[str, Any]:
    """The evidence record once its jobs are all done or failed (and at least one exists)."""
    deadline = time.monotonic() + within
    while True:
        document = await evidence_json(api, evidence_id)
        states = [j["state"] for j in document["jobs"]]
        if states and all(s in ("done", "failed") for s in states):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs did not settle: {json.dumps(document['jobs'])}")
        await asyncio.sleep(0.1)


async def local_api(tmp_path: Path, **settings: Any) -> AsyncIterator[Api]:
    """The app over a local store at the data dir's `store/`, as `avidence-server` sees it;
    with its embedded worker unless `embedded_worker=False` is given."""
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    settings.setdefault("embedded_worker", True)
    try:
        async for api in make_api(tmp_path, store, **settings):
            yield api
    finally:
        await store.close()


@pytest.fixture()
async def api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """The app over each store (local, S3), its embedded worker on whatever the default."""
    async for value in make_api(tmp_path, store, embedded_worker=True):
        yield value


@pytest.fixture()
async def lapi(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in local_api(tmp_path):
        yield api


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    document: dict[str, Any] = json.loads(out.stdout)
    return document


async def download(store: Store, key: str, dest: Path) -> Path:
    data = await collect(await store.read(key))
    await asyncio.to_thread(dest.write_bytes, data)
    return dest


async def audit_actions(api: Api, evidence_id: str) -> list[str]:
    async with api.catalog.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.action)
            .where(audit_log.c.object == f"evidence:{evidence_id}")
            .order_by(audit_log.c.seq)
        )
        return [str(a) for a in rows.scalars()]


def by_profile(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(d["storage_key"]).name: d for d in document["derivatives"]}


async def test_recorder_ts_gets_probe_continuity_and_playable_mp4_with_provenance(
    api: Api, small_ts_clip: Path, tmp_path: Path
) -> None:
    evidence_id = await upload_file(api, small_ts_clip)
    document = await settled(api, evidence_id)
    jobs = {(j["kind"], j["profile"]): j for j in document["jobs"]}
    assert set(jobs) == {("analyse", None), ("derive", "mp4-h264"), ("derive", "poster")}
    assert all(j["state"] == "done" and j["attempts"] == 1 for j in jobs.values())
    assert jobs[("derive", "mp4-h264")]["progress"]["percent"] == 100.0

    media = document["media"]
    assert media["container"] == "mpegts"
    assert [(s["kind"], s["codec"]) for s in media["streams"]] == [
        ("video", "mpeg2video"),
        ("audio", "mp2"),
    ]
    video = media["streams"][0]
    assert (video["width"], video["height"], video["frame_rate"]) == (320, 240, "25/1")
    assert media["duration"] == pytest.approx(3.0, abs=0.2)
    assert media["start_time"] is not None and video["start_time"] is not None
    assert document["continuity"]["ok"] is True
    assert document["continuity"]["gaps"] == [] and document["continuity"]["packets"] == 75

    outputs = by_profile(document)
    assert set(outputs) == {"mp4-h264.mp4", "poster.jpg"}
    mp4 = outputs["mp4-h264.mp4"]
    assert (mp4["role"], mp4["content_type"], mp4["angle"]) == ("playable", "video/mp4", 0)
    assert mp4["source_blake3"] == document["blake3"]
    assert mp4["source_sha256"] == document["sha256"]
    assert mp4["ffmpeg_version"].startswith("5.1")
    assert "libx264" in mp4["command"] and "+faststart" in mp4["command"]
    assert mp4["command_line"].startswith("ffmpeg ")
    assert mp4["storage_key"] == f"derivatives/{evidence_id}/mp4-h264.mp4"

    copy = await download(api.store, mp4["storage_key"], tmp_path / "copy.mp4")
    data = await asyncio.to_thread(copy.read_bytes)
    assert (len(data), blake3.blake3(data).hexdigest()) == (mp4["size"], mp4["blake3"])
    assert hashlib.sha256(data).hexdigest() == mp4["sha256"]
    assert data.index(b"moov") < data.index(b"mdat"), "faststart: index before the media"
    streams = [(s["codec_type"], s["codec_name"]) for s in ffprobe(copy)["streams"]]
    assert streams == [("video", "h264"), ("audio", "aac")]

    original = await collect(await api.store.read(document["storage_key"]))
    assert blake3.blake3(original).hexdigest() == document["blake3"], "original untouched"
    assert await playable_derivative(api.catalog.engine, evidence_id) == (
        mp4["storage_key"],
        "video/mp4",
    )
    actions = await audit_actions(api, evidence_id)
    assert actions.count("media.analysed") == 1 and actions.count("derivative.created") == 2


async def test_h264_mp4_is_remuxed_with_bit_identical_video(
    lapi: Api, phone_mp4: Path, tmp_path: Path
) -> None:
    document = await settled(lapi, await upload_file(lapi, phone_mp4))
    mp4 = by_profile(document)["mp4-h264.mp4"]
    assert "-c:v" in mp4["command"] and mp4["command"][mp4["command"].index("-c:v") + 1] == "copy"
    assert "libx264" not in mp4["command"] and mp4["details"]["copied_video"] is True
    copy = await download(lapi.store, mp4["storage_key"], tmp_path / "copy.mp4")
    assert _video_md5(copy) == _video_md5(phone_mp4)
    data = await asyncio.to_thread(copy.read_bytes)
    assert data.index(b"moov") < data.index(b"mdat")


def _video_md5(path: Path) -> str:
    """MD5 of every video packet, as stored (no decoding)."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "md5", "-"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out.stdout.decode().strip()


async def test_mjpeg_avi_with_pcm_becomes_h264_aac(
    lapi: Api, avi_clip: Path, tmp_path: Path
) -> None:
    document = await settled(lapi, await upload_file(lapi, avi_clip))
    assert [(s["kind"], s["codec"]) for s in document["media"]["streams"]] == [
        ("video", "mjpeg"),
        ("audio", "pcm_s16le"),
    ]
    mp4 = by_profile(document)["mp4-h264.mp4"]
    copy = await download(lapi.store, mp4["storage_key"], tmp_path / "avi.mp4")
    probe = ffprobe(copy)
    assert [s["codec_name"] for s in probe["streams"]] == ["h264", "aac"]
    assert probe["streams"][0]["pix_fmt"] == "yuv420p"
    assert float(probe["format"]["duration"]) == pytest.approx(3.0, abs=0.2)


async def test_two_video_streams_give_one_playable_file_per_angle(
    lapi: Api, two_angle_clip: Path, tmp_path: Path
) -> None:
    evidence_id = await upload_file(lapi, two_angle_clip)
    document = await settled(lapi, evidence_id)
    outputs = by_profile(document)
    assert set(outputs) == {"mp4-h264.mp4", "mp4-h264-1.mp4", "poster.jpg", "poster-1.jpg"}
    for angle, name in enumerate(["mp4-h264.mp4", "mp4-h264-1.mp4"]):
        assert outputs[name]["angle"] == angle
        copy = await download(lapi.store, outputs[name]["storage_key"], tmp_path / name)
        assert [s["codec_type"] for s in ffprobe(copy)["streams"]] == ["video", "audio"]
    second = await playable_derivative(lapi.catalog.engine, evidence_id, angle=1)
    assert second == (outputs["mp4-h264-1.mp4"]["storage_key"], "video/mp4")


async def test_cut_in_the_recording_is_reported_and_kept_in_the_copy(
    lapi: Api, gap_clip: Path, tmp_path: Path
) -> None:
    document = await settled(lapi, await upload_file(lapi, gap_clip))
    report = document["continuity"]
    assert report["ok"] is False
    [gap] = report["gaps"]
    assert gap["at"] == pytest.approx(GAP_AT, abs=0.1)
    assert gap["length"] == pytest.approx(GAP_SECONDS, abs=0.1)
    assert gap["packet"] == pytest.approx(GAP_AT * 30, abs=2)
    assert gap["pos"] > 0
    assert report["discontinuities"] == [] and report["counts"]["gaps"] == 1
    copy = await download(
        lapi.store, by_profile(document)["mp4-h264.mp4"]["storage_key"], tmp_path / "cut.mp4"
    )
    video = ffprobe(copy)["streams"][0]
    assert int(video["nb_frames"]) == pytest.approx(180, abs=2), "no frames invented in the gap"


async def test_viewer_shows_probed_duration_format_and_where_the_cut_is(
    lapi: Api, gap_clip: Path
) -> None:
    from support.tickets import issue, token_of

    evidence_id = await upload_file(lapi, gap_clip)
    document = await settled(lapi, evidence_id)
    token = token_of(await issue(lapi, [evidence_id]))
    page = await (await lapi.client.get(f"/t/{token}?lang=en")).text()
    seconds = round(document["media"]["duration"])
    assert f'data-known="1">0:{seconds:02d}</span>' in page
    assert "MPEG-TS · MPEG-2 320×240 30 fps" in page and "Not continuous" in page
    assert "mpeg2video" not in page  # ffprobe's names stay out of the people's page
    assert f"1 gap(s): at 0:{round(GAP_AT):02d} ({GAP_SECONDS:.1f} s)" in page
    zh = await (await lapi.client.get(f"/t/{token}?lang=zh")).text()
    assert "不连续" in zh and "1 处中断" in zh and "MPEG-2 320×240 30 帧/秒" in zh
    # the poster the worker made is shown before playing, served under the ticket
    poster = f"/t/{token}/poster/{evidence_id}"
    assert f'poster="{poster}"' in page
    response = await lapi.client.get(poster)
    assert response.status == 200 and response.content_type == "image/jpeg"
    assert (await response.read())[:3] == b"\xff\xd8\xff"
    unknown = await lapi.client.get(f"/t/{token}/poster/no-such-evidence")
    assert unknown.status == 404


async def test_viewer_says_continuous_for_an_uncut_recording(
    lapi: Api, small_ts_clip: Path
) -> None:
    from support.tickets import issue, token_of

    evidence_id = await upload_file(lapi, small_ts_clip)
    await settled(lapi, evidence_id)
    token = token_of(await issue(lapi, [evidence_id]))
    page = await (await lapi.client.get(f"/t/{token}?lang=en")).text()
    assert "Continuous: no gaps" in page and "MPEG-TS" in page


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("text_file", "Invalid data found when processing input"),
        ("truncated_clip", "moov atom not found"),
    ],
)
async def test_non_media_and_truncated_uploads_fail_with_a_reason_original_kept(
    lapi: Api, request: pytest.FixtureRequest, fixture: str, reason: str
) -> None:
    path: Path = request.getfixturevalue(fixture)
    evidence_id = await upload_file(lapi, path)
    document = await settled(lapi, evidence_id)
    [job] = document["jobs"]
    assert (job["kind"], job["state"], job["attempts"]) == ("analyse", "failed", 1)
    assert job["error"].startswith("not a readable media file: ") and reason in job["error"]
    assert document["media"] is None and document["derivatives"] == []
    original = await collect(await lapi.store.read(document["storage_key"]))
    assert original == await asyncio.to_thread(path.read_bytes)
    assert await playable_derivative(lapi.catalog.engine, evidence_id) is None
    assert "job.failed" in await audit_actions(lapi, evidence_id)


async def test_ticket_viewer_plays_the_mp4_made_from_a_ts_original(
    lapi: Api, small_ts_clip: Path
) -> None:
    from support.tickets import issue, media_url, start_view, token_of

    evidence_id = await upload_file(lapi, small_ts_clip)
    await settled(lapi, evidence_id)
    token = token_of(await issue(lapi, [evidence_id], download=True))
    grant = await start_view(lapi, token, evidence_id)
    response = await lapi.client.get(media_url(token, evidence_id, grant))
    assert response.status == 200
    assert response.headers["Content-Type"] == "video/mp4"
    body = await response.read()
    assert body[4:8] == b"ftyp"  # an MP4 a browser plays, not the MPEG-2 TS
    original = await lapi.client.get(f"/t/{token}/download/{evidence_id}")
    assert (await original.read()) == await asyncio.to_thread(small_ts_clip.read_bytes)
