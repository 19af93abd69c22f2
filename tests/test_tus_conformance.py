"""Request/response cases that tusd's handler tests and tus-node-server's tests check, which the
rest of the conformance suite (test_tus_protocol.py, test_tus_cut.py, test_tus_upkeep.py) did
not: each is named after the reference case it mirrors and judged by the tus 1.0.0 text.
docs/conformance.md maps every reference case to its test, and lists where we differ on purpose.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator

import blake3
import pytest

from support.servers import Api, metadata

OCTET = "application/offset+octet-stream"


async def _create(api: Api, length: int | None, **extra: str) -> str:
    headers = {**api.auth(), "Upload-Metadata": metadata(case="CF-1"), **extra}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201, await response.text()
    return "/files/" + response.headers["Location"].rsplit("/", 1)[1]


async def _patch(api: Api, url: str, data: bytes, offset: int, **extra: str) -> object:
    headers = {**api.auth(), "Upload-Offset": str(offset), "Content-Type": OCTET, **extra}
    return await api.client.patch(url, data=io.BytesIO(data), headers=headers)


async def test_patch_empty_body_at_the_end_of_a_finished_upload_is_204(api: Api) -> None:
    """tusd UploadChunkToFinished: a client that lost the last answer asks again."""
    url = await _create(api, 5)
    assert (await _patch(api, url, b"12345", 0)).status == 204  # type: ignore[attr-defined]
    again = await _patch(api, url, b"", 5)
    assert again.status == 204  # type: ignore[attr-defined]
    assert again.headers["Upload-Offset"] == "5"  # type: ignore[attr-defined]


@pytest.mark.parametrize("offset", ["-5", "1e3", "", "0x10"])
async def test_patch_400_for_an_offset_that_is_no_non_negative_integer(
    api: Api, offset: str
) -> None:
    """tusd InvalidOffsetFail: "The Upload-Offset ... MUST be a non-negative integer"."""
    url = await _create(api, 20)
    headers = {**api.auth(), "Upload-Offset": offset, "Content-Type": OCTET}
    response = await api.client.patch(url, data=b"hellothisismorethan15bytes", headers=headers)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_patch_without_content_length_beyond_the_length_413(api: Api) -> None:
    """tusd OverflowWithoutLength: a body of unannounced length that overflows the upload is
    413; what fitted may be kept (tusd keeps it), and the upload still finishes right."""
    data = os.urandom(20)
    url = await _create(api, 20)
    assert (await _patch(api, url, data[:5], 0)).status == 204  # type: ignore[attr-defined]
    headers = {**api.auth(), "Upload-Offset": "5", "Content-Type": OCTET}
    response = await api.client.patch(url, data=_chunked(data[5:] + b"beyond"), headers=headers)
    assert response.status == 413
    offset = int((await api.client.head(url, headers=api.auth())).headers["Upload-Offset"])
    assert offset in (5, 20)
    done = await _patch(api, url, data[offset:], offset)
    assert done.status == 204  # type: ignore[attr-defined]
    evidence_id = done.headers["Avidence-Evidence-Id"]  # type: ignore[attr-defined]
    record = await (await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())).json()
    assert record["blake3"] == blake3.blake3(data).hexdigest()


async def test_deferred_length_declared_after_the_last_byte(api: Api) -> None:
    """tusd DeclareLengthAfterFinalChunk, DeferLengthHeader, NoDeferLengthHeader."""
    url = await _create(api, None)
    assert (await _patch(api, url, b"x" * 20, 0)).status == 204  # type: ignore[attr-defined]
    status = await api.client.head(url, headers=api.auth())
    assert status.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in status.headers
    done = await _patch(api, url, b"", 20, **{"Upload-Length": "20"})
    assert done.status == 204  # type: ignore[attr-defined]
    assert done.headers["Avidence-Upload-State"] == "done"  # type: ignore[attr-defined]
    status = await api.client.head(url, headers=api.auth())
    assert status.headers["Upload-Length"] == "20"
    assert "Upload-Defer-Length" not in status.headers


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
async def test_unknown_upload_is_404(api: Api, method: str) -> None:
    """tusd UploadNotFoundFail (HEAD, PATCH), tus-node-server DELETE of a missing upload."""
    headers = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
    response = await api.client.request(method, "/files/" + "0" * 32, headers=headers)
    assert response.status == 404


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
async def test_missing_tus_resumable_is_412_with_tus_version(api: Api, method: str) -> None:
    """tusd InvalidVersion, tus-node-server's Tus-Resumable checks, for every verb but OPTIONS."""
    url = await _create(api, 5)
    headers = {"Authorization": api.auth()["Authorization"], "Upload-Offset": "0"}
    response = await api.client.request(method, url, headers={**headers, "Content-Type": OCTET})
    assert response.status == 412
    assert response.headers["Tus-Version"] == "1.0.0"


async def test_post_400_without_upload_length_or_defer_length(api: Api) -> None:
    """tusd NeitherUploadLengthNorUploadDeferLengthFail."""
    headers = {**api.auth(), "Upload-Metadata": metadata(case="CF-1")}
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 400


async def test_creation_with_upload_of_another_content_type_ignores_the_body(api: Api) -> None:
    """tusd WithUpload/IncorrectContentType: 201, no Upload-Offset, nothing stored."""
    headers = {
        **api.auth(),
        "Upload-Length": "300",
        "Upload-Metadata": metadata(case="CF-1"),
        "Content-Type": "application/false",
    }
    response = await api.client.post("/files/", headers=headers, data=b"hello")
    assert response.status == 201
    assert "Upload-Offset" not in response.headers
    url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    status = await api.client.head(url, headers=api.auth())
    assert status.headers["Upload-Offset"] == "0"


async def _partials(api: Api, *sizes: int) -> list[str]:
    urls = []
    for size in sizes:
        url = await _create(api, size, **{"Upload-Concat": "partial"})
        assert (await _patch(api, url, os.urandom(size), 0)).status == 204  # type: ignore[attr-defined]
        urls.append(url)
    return urls


async def test_final_upload_with_a_body_is_403(api: Api) -> None:
    """tusd WithUpload/UploadToFinalUpload: a final upload takes no bytes of its own."""
    urls = await _partials(api, 3, 4)
    headers = {
        **api.auth(),
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": metadata(case="CF-1"),
        "Content-Type": OCTET,
    }
    response = await api.client.post("/files/", headers=headers, data=b"hello")
    assert response.status == 403


async def test_final_upload_beyond_max_size_is_413(api: Api) -> None:
    """tusd Final/CreateExceedingMaxSizeFail: Tus-Max-Size bounds the final upload too."""
    half = api.settings.max_size // 2 + 1
    first = await _create(api, half, **{"Upload-Concat": "partial"})
    second = await _create(api, half, **{"Upload-Concat": "partial"})
    for url in (first, second):
        chunk = b"\0" * half
        assert (await _patch(api, url, chunk, 0)).status == 204  # type: ignore[attr-defined]
    headers = {
        **api.auth(),
        "Upload-Concat": f"final;{first} {second}",
        "Upload-Metadata": metadata(case="CF-1"),
    }
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"
