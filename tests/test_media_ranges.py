"""HTTP Range (RFC 9110 section 14) on ticket media, against every store, plus the parser alone."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path

import blake3
import pytest

from avidence.server.evidence import records as evidence_db
from avidence.server.media import ByteRange, content_type, disposition, parse_ranges
from avidence.storage.base import Store

from support.servers import Api, make_api
from support.tickets import issue, media_url, start_view, upload

SIZE = 3 * 1024 * 1024 + 123  # more than one store chunk, not a multiple of one


@pytest.fixture()
async def api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """The app over each store, each view allowed 100 times the file: these tests fetch one
    file many times in one view to check Range answers (the allowance: test_view_allowance)."""
    async for value in make_api(tmp_path, store, view_bytes_multiple=100):
        yield value


@dataclass
class Served:
    url: str
    data: bytes
    etag: str
    last_modified: str


async def serve(api: Api, data: bytes) -> Served:
    evidence_id = await upload(api, data, filename="interview.mp4")
    ticket = await issue(api, [evidence_id])
    token = ticket["url"].rsplit("/", 1)[1]
    grant = await start_view(api, token, evidence_id)
    record = await evidence_db.get(api.catalog.engine, evidence_id)
    assert record is not None
    return Served(
        url=media_url(token, evidence_id, grant),
        data=data,
        etag=f'"{blake3.blake3(data).hexdigest()}"',
        last_modified=format_datetime(record.received_at, usegmt=True),
    )


@pytest.fixture()
async def served(api: Api) -> Served:
    return await serve(api, os.urandom(SIZE))


async def test_whole_object_200_with_validators(api: Api, served: Served) -> None:
    response = await api.client.get(served.url)
    assert response.status == 200
    assert await response.read() == served.data
    headers = response.headers
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] == served.etag
    assert headers["Last-Modified"] == served.last_modified
    assert headers["Content-Type"] == "video/mp4"
    assert headers["Content-Length"] == str(SIZE)
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert (
        headers["Content-Disposition"]
        == "inline; filename=\"interview.mp4\"; filename*=UTF-8''interview.mp4"
    )
    assert "Content-Range" not in headers


async def test_range_206_cases(api: Api, served: Served) -> None:
    last = SIZE - 1
    cases = {
        "first byte": ("bytes=0-0", 0, 1),
        "last byte": (f"bytes={last}-{last}", last, SIZE),
        "middle": ("bytes=1048570-2097160", 1048570, 2097161),
        "suffix": ("bytes=-500", SIZE - 500, SIZE),
        "open-ended": ("bytes=100-", 100, SIZE),
        "last-pos beyond the end is clamped": (f"bytes=10-{SIZE + 1000}", 10, SIZE),
        "suffix longer than the object": (f"bytes=-{SIZE * 2}", 0, SIZE),
        "unit in capitals": ("BYTES=5-9", 5, 10),
    }
    for name, (header, start, end) in cases.items():
        response = await api.client.get(served.url, headers={"Range": header})
        assert response.status == 206, name
        assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{SIZE}", name
        assert response.headers["Content-Length"] == str(end - start), name
        assert response.headers["ETag"] == served.etag, name
        assert await response.read() == served.data[start:end], name


async def test_range_416_beyond_end_streams_nothing(api: Api, served: Served) -> None:
    for header in (f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"):
        response = await api.client.get(served.url, headers={"Range": header})
        assert response.status == 416, header
        assert response.headers["Content-Range"] == f"bytes */{SIZE}", header
        body = await response.read()
        assert served.data[:64] not in body and len(body) < 200, header


async def test_ignored_ranges_get_the_whole_200(api: Api, served: Served) -> None:
    for header in ("bytes=0-1,5-6", "bytes=9-2", "bytes=abc", "items=0-5", "bytes="):
        response = await api.client.get(served.url, headers={"Range": header})
        assert response.status == 200, header
        assert response.headers["Content-Length"] == str(SIZE), header
        assert len(await response.read()) == SIZE, header


async def test_if_range_matching_etag_or_date_gives_206_else_200(api: Api, served: Served) -> None:
    ok = [served.etag, served.last_modified]
    stale = ['"0000"', "W/" + served.etag, "Mon, 01 Jan 2001 00:00:00 GMT", "garbage"]
    stale.append("Mon, 1 Jan 99999999999 00:00:00 GMT")  # OverflowError in the date parser: 500
    for value in ok + stale:
        response = await api.client.get(
            served.url, headers={"Range": "bytes=10-19", "If-Range": value}
        )
        expected = 206 if value in ok else 200
        assert response.status == expected, value
        body = await response.read()
        assert body == (served.data[10:20] if expected == 206 else served.data), value


async def test_head_has_headers_and_no_body_and_ignores_range(api: Api, served: Served) -> None:
    for headers in ({}, {"Range": "bytes=0-9"}):
        response = await api.client.head(served.url, headers=headers)
        # RFC 9110 14.2: range handling is defined for GET only.
        assert response.status == 200
        assert response.headers["Content-Length"] == str(SIZE)
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["ETag"] == served.etag
        assert await response.read() == b""


async def test_zero_byte_object(api: Api) -> None:
    served = await serve(api, b"")
    whole = await api.client.get(served.url)
    assert whole.status == 200 and await whole.read() == b""
    assert whole.headers["Content-Length"] == "0"
    unsatisfiable = await api.client.get(served.url, headers={"Range": "bytes=0-"})
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["Content-Range"] == "bytes */0"
    suffix = await api.client.get(served.url, headers={"Range": "bytes=-5"})
    assert suffix.status == 200 and await suffix.read() == b""


async def test_seek_pattern_of_a_player(api: Api, served: Served) -> None:
    """Open-ended range requests at many offsets, read partly and dropped, as players do."""
    for offset in range(0, SIZE, SIZE // 7):
        async with api.client.get(served.url, headers={"Range": f"bytes={offset}-"}) as response:
            assert response.status == 206
            assert await response.content.read(1000) == served.data[offset : offset + 1000]


def test_parse_ranges_table() -> None:
    size = 1000
    assert parse_ranges("bytes=0-499", size) == [ByteRange(0, 500)]
    assert parse_ranges("bytes=500-", size) == [ByteRange(500, 1000)]
    assert parse_ranges("bytes=-1", size) == [ByteRange(999, 1000)]
    assert parse_ranges("bytes= 0-0 , -1", size) == [ByteRange(0, 1), ByteRange(999, 1000)]
    assert parse_ranges("bytes=0-0,,5-5", size) == [ByteRange(0, 1), ByteRange(5, 6)]
    assert parse_ranges("bytes=1000-", size) == []
    assert parse_ranges("bytes=-0", size) == []
    assert parse_ranges("bytes=5-1", size) is None
    assert parse_ranges("bytes=-", size) is None
    assert parse_ranges("bytes=1-2-3", size) is None
    assert parse_ranges("pages=1-2", size) is None
    assert parse_ranges("bytes=" + "9" * 40 + "-", size) is None
    assert parse_ranges("bytes=-5", 0) == [ByteRange(0, 0)]


def test_ranges_in_digits_other_than_ascii_are_ignored() -> None:
    # RFC 9110 DIGIT is 0-9: Arabic-Indic or superscript digits make the header invalid.
    assert parse_ranges("bytes=\u0661-\u0662", 1000) is None
    assert parse_ranges("bytes=\u00b2-", 1000) is None
    assert parse_ranges("bytes=-\uff15", 1000) is None


def test_content_type_serves_only_passive_media() -> None:
    assert content_type("a.mp4") == "video/mp4"
    assert content_type("A.MP4") == "video/mp4"
    assert content_type("a.ts") == "video/mp2t"
    assert content_type("a.m4a") == "audio/mp4"
    assert content_type("a.bin", "video/webm") == "video/webm"
    assert content_type("a.html", "text/html") == "application/octet-stream"
    assert content_type("a.svg", "image/svg+xml") == "application/octet-stream"
    assert content_type("a.mp4", "video/mp4; codecs=x") == "video/mp4"
    assert content_type("noextension") == "application/octet-stream"


def test_disposition_has_ascii_fallback_and_utf8_name() -> None:
    value = disposition("attachment", '审讯 "1".mp4')
    assert value.startswith('attachment; filename="')
    assert "filename*=UTF-8''%E5%AE%A1%E8%AE%AF%20%221%22.mp4" in value
    assert '"' not in value.split('filename="')[1].split('";')[0]
