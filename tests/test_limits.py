"""Limits on hostile requests, against the server as `serve` runs it (its own runner, a real
socket): header count and size, slowloris heads and dripping bodies, oversized JSON, path tricks
in URLs, filenames and case ids, look-alike case ids."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from yarl import URL

from avidence.server import config, tokens
from avidence.server.app import create_app
from avidence.server.catalog.db import Catalog
from avidence.server.identifiers import identifier_problem
from avidence.server.listen import Runner
from avidence.storage.local import LocalStore

from support.servers import Api, free_port, make_api, metadata
from support.tickets import upload


@dataclass
class Served:
    port: int
    uploader: str
    admin: str


@pytest.fixture()
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    store = LocalStore(tmp_path / "store")
    await store.open()
    settings = config.load(
        env={},
        data_dir=tmp_path / "data",
        read_timeout=1,
        max_headers=20,
        max_header_size=2048,
        embedded_worker=False,
        scrub_interval=0,
    )
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    _, uploader = await tokens.create(catalog.engine, role="uploader", name="room 1")
    _, admin = await tokens.create(catalog.engine, role="admin", name="admin")
    runner = Runner(create_app(settings, catalog=catalog, store=store), settings)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Served(port, uploader, admin)
    finally:
        await runner.cleanup()
        await catalog.close()
        await store.close()


async def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw`, read the whole answer (the server closes after an error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


async def test_too_many_headers_431_json(served: Served) -> None:
    extra = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(30))
    raw = f"GET /healthz HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    status, headers, body = await _exchange(served.port, raw)
    assert status == 431
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "headers_too_large"


async def test_header_line_too_long_431_json(served: Served) -> None:
    raw = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 3000}\r\n\r\n".encode()
    status, _, body = await _exchange(served.port, raw)
    assert status == 431
    assert json.loads(body)["error"]["status"] == 431


async def test_garbage_instead_of_http_400_json(served: Served) -> None:
    status, _, body = await _exchange(served.port, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    assert status == 400
    assert json.loads(body)["error"]["code"] == "bad_request"


async def test_malformed_head_quotes_no_header_back_nor_into_the_log(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    # A NUL in the Authorization value: aiohttp's reason quotes the offending header line.
    raw = (
        f"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.admin}\x00\r\n\r\n"
    ).encode()
    status, _, body = await _exchange(served.port, raw)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith("malformed HTTP request: ")
    assert "\n" not in error["message"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "route=unparsed" in logged
    for text in (error["message"], logged):
        assert served.admin not in text and "Authorization" not in text
    # a reason with an apostrophe is kept whole
    raw = b"POST /api/cases HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    status, _, body = await _exchange(served.port, raw + b"Transfer-Encoding: chunked\r\n\r\n")
    assert status == 400
    assert json.loads(body)["error"]["message"] == (
        "malformed HTTP request: Transfer-Encoding can't be present with Content-Length"
    )
    # a target that is no path nor URL: aiohttp's reason is the target itself (a link token)
    head = f"GET http:///t/{'S' * 43} HTTP/1.1\r\nHost: x\r\n\r\n"
    status, _, body = await _exchange(served.port, head.encode())
    assert status == 400 and "SSSS" not in body.decode()
    assert not any("SSSS" in r.getMessage() for r in caplog.records)
    # and so is the name of the header it is about
    status, _, body = await _exchange(served.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert status == 400
    assert "Missing 'Host' header" in json.loads(body)["error"]["message"]


async def _cut_off(port: int, path: str, head: str, start: bytes) -> None:
    """Send a head promising 100 bytes of body, `start` of them, then hang up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 100\r\n\r\n".encode() + start
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()  # gone before the body's end


async def _logged(caplog: pytest.LogCaptureFixture, route: str) -> list[str]:
    for _ in range(50):
        if any(f"route={route} " in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    return [r.getMessage() for r in caplog.records if r.name == "avidence.http"]


async def test_json_body_cut_off_by_the_client_is_no_catalog_outage(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    head = f"Content-Type: application/json\r\nAuthorization: Bearer {served.admin}\r\n"
    await _cut_off(served.port, "/api/cases", head, b'{"number": ')
    lines = await _logged(caplog, "/api/cases")
    assert any("route=/api/cases status=400" in line for line in lines), lines
    assert not any("catalog.unreachable" in line or "status=503" in line for line in lines)


async def test_access_code_form_cut_off_by_the_client_is_no_catalog_outage(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"http://127.0.0.1:{served.port}"
    async with ClientSession() as http:
        created = await http.post(
            f"{base}/files/",
            data=b"coded clip",
            headers={
                "Authorization": f"Bearer {served.uploader}",
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "10",
                "Upload-Metadata": metadata(case="F-1"),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        evidence_id = created.headers["Avidence-Evidence-Id"]
        issued = await http.post(
            f"{base}/api/tickets",
            json={"evidence": [evidence_id], "recipient": "Li (court)", "access_code": True},
            headers={"Authorization": f"Bearer {served.admin}"},
        )
        token = (await issued.json())["url"].rsplit("/", 1)[1]
    head = "Content-Type: application/x-www-form-urlencoded\r\n"
    await _cut_off(served.port, f"/t/{token}/code", head, b"code=12")
    lines = await _logged(caplog, "/t/{token}/code")
    assert any("route=/t/{token}/code status=400" in line for line in lines), lines
    assert not any("catalog.unreachable" in line or "status=503" in line for line in lines)


async def test_normal_request_within_limits_200(served: Served) -> None:
    extra = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(10))
    raw = f"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode()
    status, _, _ = await _exchange(served.port, raw)
    assert status == 200


async def test_slowloris_head_is_cut_after_read_timeout(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    started = time.monotonic()
    closed_after = None
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        for i in range(60):  # one header byte every 0.1 s: never a complete head
            writer.write(b"X-Drip-%d: y\r\n"[:1] if i % 2 else b"X")
            try:
                await writer.drain()
                async with asyncio.timeout(0.1):
                    if await reader.read(1024) == b"":
                        closed_after = time.monotonic() - started
                        break
            except TimeoutError:
                continue
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
    finally:
        writer.close()
    assert closed_after is not None, "the server kept a dripping head open for 6 s"
    assert closed_after < 3.5


async def test_dripping_patch_body_ends_400_keeping_what_arrived(served: Served) -> None:
    auth = f"Authorization: Bearer {served.uploader}\r\nTus-Resumable: 1.0.0\r\n"
    create = (
        f"POST /files/ HTTP/1.1\r\nHost: x\r\n{auth}Upload-Length: 100000\r\n"
        f"Upload-Metadata: {metadata(case='D-1')}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    status, headers, _ = await _exchange(served.port, create.encode())
    assert status == 201
    path = URL(headers["Location"]).path
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    sent = 0
    answer = b""
    try:
        writer.write(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\n{auth}Upload-Offset: 0\r\n"
            "Content-Type: application/offset+octet-stream\r\nContent-Length: 100000\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        for _ in range(100):  # 10 bytes every 0.1 s: no read stalls, the rate is far too low
            writer.write(b"0123456789")
            sent += 10
            await writer.drain()
            try:
                async with asyncio.timeout(0.1):
                    answer = await reader.read(4096)
            except TimeoutError:
                continue
            if answer:
                break
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"stalled" in answer
    head = f"HEAD {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    _, headers, _ = await _exchange(served.port, head.encode())
    assert 0 < int(headers["Upload-Offset"]) <= sent


async def test_oversized_json_body_413_json(served: Served) -> None:
    body = json.dumps({"evidence": ["x"], "recipient": "r", "note": "n" * 2 * 1024 * 1024})
    raw = (
        f"POST /api/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.admin}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body.encode()
    status, _, answer = await _exchange(served.port, raw)
    assert status == 413
    assert json.loads(answer)["error"]["status"] == 413


PATH_TRICKS = [
    "/files/..%2F..%2Fetc%2Fpasswd",
    "/files/%2E%2E%2F%2E%2E%2Fcatalog.db",
    "/files/00000000000000000000000000000000%00",
    "/api/uploads/..%2F..%2Fkeys",
    "/api/evidence/..%2Fkeys",
    "/api/evidence/%2e%2e/receipt",
    "/viewer/..%2F..%2Fserver%2Fconfig.py",
    "/viewer/%2e%2e%2fviewer.js",
    "/t/..%2F..%2Fapi%2Fkeys",
    "/t/x/media/..%2F..%2Fcatalog.db?view=x",
    "/t/x/download/%2e%2e%2f%2e%2e%2fkeys%2fsigning.pem",
]


@pytest.mark.parametrize("path", PATH_TRICKS)
@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_path_tricks_in_urls_4xx_never_a_file(api: Api, path: str) -> None:
    response = await api.client.get(URL(path, encoded=True), headers=api.auth(api.admin))
    body = await response.read()
    assert response.status in (400, 401, 404, 405), (path, response.status)
    assert b"BEGIN PRIVATE KEY" not in body and b"SQLite format" not in body
    assert b"Traceback" not in body


UNSTORABLE_REQUESTS = [
    ("GET", "/api/evidence/ev_%00", None),
    ("GET", "/api/evidence?case=C-1%00", None),
    ("GET", "/api/cases/C-1%00/custody", None),
    ("HEAD", "/files/0123456789abcdef0123456789abcdef%00", None),
    ("POST", "/api/admin/holds", {"scope": "case", "target": "C-1", "reason": "court\x00order"}),
    ("POST", "/api/tickets", {"case": "C-1", "recipient": "Li (court)", "note": "a\x00"}),
    # an unpaired surrogate has no UTF-8 form: neither catalog can store it
    ("POST", "/api/admin/holds", {"scope": "case", "target": "C-1", "reason": "court\ud800"}),
    ("POST", "/api/tickets", {"evidence": ["ev_\udfff"], "recipient": "Li (court)"}),
]


async def test_nul_or_lone_surrogate_400_on_postgresql_not_503(
    tmp_path: Path, postgres_url: str
) -> None:
    # PostgreSQL text cannot hold U+0000: the driver's error was answered as a lost catalog.
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store, database=postgres_url):
            await upload(api, b"held bytes", case="C-1")
            for method, path, body in UNSTORABLE_REQUESTS:
                response = await api.client.request(
                    method, URL(path, encoded=True), json=body, headers=api.auth(api.admin)
                )
                assert response.status == 400, (method, path, response.status)
                if method != "HEAD":
                    assert (await response.json())["error"]["code"] == "bad_request"
            holds = await api.client.get("/api/admin/holds", headers=api.auth(api.admin))
            assert (await holds.json())["holds"] == []
    finally:
        await store.close()


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_lone_surrogate_in_json_400_on_sqlite_not_500(api: Api) -> None:
    await upload(api, b"held bytes", case="C-1")
    admin = api.auth(api.admin)
    for method, path, body in UNSTORABLE_REQUESTS:
        if body is not None:
            response = await api.client.request(method, path, json=body, headers=admin)
            assert response.status == 400, (path, body, response.status)
    # a surrogate pair written as escapes is one real character, and fine
    case = await api.client.post(
        "/api/cases",
        data=b'{"number": "N-1", "title": "\\ud83d\\ude00"}',
        headers={**api.auth(api.admin), "Content-Type": "application/json"},
    )
    assert case.status == 201 and (await case.json())["title"] == "\U0001f600"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"case": "C-1", "filename": "../../etc/passwd"}, "bare file name"),
        ({"case": "C-1", "filename": "..\\..\\boot.ini"}, "bare file name"),
        ({"case": "C-1", "filename": ".."}, "bare file name"),
        ({"case": "../C-1"}, "'/'"),
        ({"case": "C\\1"}, "'/'"),
        ({"case": ".."}, "'..'"),
        ({"case": "\u0421-1"}, "reads as 'C-1'"),  # Cyrillic Es alone: whole-script look-alike
        ({"case": "\u0421ase-1"}, "look-alike alphabets"),  # Cyrillic Es + Latin "ase"
        ({"case": "C-1\u202e"}, "control"),  # right-to-left override
        ({"case": "C\u200b-1"}, "control"),  # zero-width space
        ({"case": "C\u3164-1"}, "control"),  # Hangul filler
        ({"case": "\uff23-1"}, "look-alike of 'C'"),  # fullwidth C
        ({"case": "C-\u0661"}, "digits as 0-9"),  # Arabic-Indic one
        ({"case": "C\u00a01"}, "plain spaces"),
        ({"item": "1\u2067"}, "control"),
    ],
)
@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_hostile_case_ids_and_filenames_400(
    api: Api, fields: dict[str, str], message: str | None
) -> None:
    fields = {"case": "C-1", **fields}
    response = await api.client.post(
        "/files/",
        headers={**api.auth(), "Upload-Length": "1", "Upload-Metadata": metadata(**fields)},
    )
    if message is None:
        assert response.status == 201
        return
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]


@pytest.mark.parametrize(
    "value",
    [
        "C-1",
        "\uff082024\uff09京0105刑初123号",  # fullwidth parentheses, as courts write them
        "2:24-cr-00123",
        "Дело 5-12",
        "Αίτηση 7",
        "case 12 (a)",
        "\uff082026\uff09京0105刑初123号",
        "Москва-3",
    ],
)
def test_real_case_numbers_are_valid(value: str) -> None:
    assert identifier_problem(value) is None


@pytest.mark.parametrize(
    ("value", "reads_as"),
    [
        ("\u0421\u0410\u0405\u0415-7", "CASE-7"),  # all Cyrillic: Es, A, Dze, Ie
        ("\u0395\u0397-12", "EH-12"),  # all Greek: Epsilon, Eta
        ("\u0421\u0410\u0405\u0415-7/\u0430", None),  # path tricks are named first
    ],
)
def test_whole_script_lookalike_case_ids_are_refused(value: str, reads_as: str | None) -> None:
    """`CASE-7` in Cyrillic letters and in Latin ones would be two cases that look the same
    (Unicode TR39 whole-script confusables); case numbers and items pass this check."""
    problem = identifier_problem(value)
    assert problem is not None
    if reads_as is not None:
        assert f"reads as {reads_as!r}" in problem
    assert identifier_problem(reads_as or "CASE-7") is None


@pytest.mark.parametrize("store", ["local"], indirect=True)
@pytest.mark.parametrize("field", ["case", "item"])
async def test_whole_script_lookalike_case_id_400_at_upload(api: Api, field: str) -> None:
    fields = {"case": "C-1", field: "\u0421\u0410\u0405\u0415-7"}
    response = await api.client.post(
        "/files/",
        headers={**api.auth(), "Upload-Length": "1", "Upload-Metadata": metadata(**fields)},
    )
    assert response.status == 400
    assert "reads as 'CASE-7'" in (await response.json())["error"]["message"]
