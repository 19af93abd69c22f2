"""Clients nobody here wrote: tuspy, sync and async, with checksums and resume after a kill."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tusclient import client as tus
from tusclient.storage.filestorage import FileStorage

from support.files import get_json, random_file, tus_head

MiB = 1024 * 1024


def _evidence_of(server: Any, token: str, upload_url: str) -> dict[str, Any]:
    upload = get_json(f"{server.url}/api/uploads/{upload_url.rsplit('/', 1)[1]}", token)
    assert upload["state"] == "done", upload
    return get_json(f"{server.url}/api/evidence/{upload['evidence_id']}", token)  # type: ignore[no-any-return]


def test_tuspy_sync_upload_with_checksums(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    token = server.token()
    path = tmp_path / "clip.ts"
    digest = random_file(path, 12 * MiB + 5)
    client = tus.TusClient(server.url + "/files/", headers={"Authorization": f"Bearer {token}"})
    with path.open("rb") as stream:  # tuspy leaves files it opened itself unclosed
        uploader = client.uploader(
            file_stream=stream,
            chunk_size=4 * MiB,
            upload_checksum=True,
            metadata={"case": "案-2026-01", "filename": "clip.ts", "blake3": digest},
        )
        uploader.upload()
    record = _evidence_of(server, token, uploader.url)
    assert record["blake3"] == digest
    assert record["case_id"] == "案-2026-01"
    assert record["size"] == 12 * MiB + 5


async def test_tuspy_async_upload(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    token = server.token()
    path = tmp_path / "cam.mp4"
    digest = random_file(path, 3 * MiB)
    client = tus.TusClient(server.url + "/files/", headers={"Authorization": f"Bearer {token}"})
    with path.open("rb") as stream:
        uploader = client.async_uploader(
            file_stream=stream, chunk_size=MiB, metadata={"case": "C-2"}
        )
        await uploader.upload()
    assert _evidence_of(server, token, uploader.url)["blake3"] == digest


CHILD = """
import sys, time
from tusclient import client as tus
from tusclient.storage.filestorage import FileStorage
url, token, path, storage = sys.argv[1:5]
c = tus.TusClient(url, headers={"Authorization": "Bearer " + token})
u = c.uploader(path, chunk_size=1024 * 1024, store_url=True,
               url_storage=FileStorage(storage), metadata={"case": "C-3"})
while u.offset < u.get_file_size():
    u.upload_chunk()
    time.sleep(0.1)
"""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tuspy_resumes_after_the_client_is_killed(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    token = server.token()
    path = tmp_path / "long.ts"
    digest = random_file(path, 20 * MiB)
    storage = tmp_path / "tus-urls.json"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, server.url + "/files/", token, str(path), str(storage)]
    )
    try:
        deadline = time.monotonic() + 60
        offset = 0
        while offset < 3 * MiB:
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.1)
            text = storage.read_text() if storage.exists() else ""
            if "http" in text:
                url = text.split('"url": "', 1)[1].split('"', 1)[0]
                offset = int(tus_head(url, token)["Upload-Offset"])
    finally:
        child.kill()
        child.wait()
    assert 3 * MiB <= offset < 20 * MiB
    client = tus.TusClient(server.url + "/files/", headers={"Authorization": f"Bearer {token}"})
    # With store_url tuspy must open the file itself (it closes given streams while
    # fingerprinting) and never closes it: that leak is tuspy's, hence the filter on this test.
    resumed = client.uploader(
        str(path),
        chunk_size=4 * MiB,
        store_url=True,
        url_storage=FileStorage(str(storage)),
        metadata={"case": "C-3"},
    )
    assert resumed.offset >= offset  # continued, not restarted
    resumed.upload()
    assert resumed.url == url
    assert _evidence_of(server, token, url)["blake3"] == digest
