"""Black-box tus 1.0.0 conformance: requests in, expected answers out, for every store."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from typing import Any

import blake3
import pytest

from support.servers import Api, metadata

OCTET = "application/offset+octet-stream"


async def create(
    api: Api,
    length: int | None = None,
    *,
    token: str | None = None,
    meta: str | None = None,
    **extra: str,
) -> str:
    headers = api.auth(token)
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    headers["Upload-Metadata"] = meta if meta is not None else metadata(case="C-1", filename="a.ts")
    headers.update(extra)
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201, await response.text()
    location = response.headers["Location"]
    assert location.startswith("http://127.0.0.1:")
    return "/files/" + location.rsplit("/", 1)[1]


async def patch(
    api: Api, url: str, data: bytes, offset: int, *, token: str | None = None, **extra: str
) -> Any:
    headers = {**api.auth(token), "Upload-Offset": str(offset), "Content-Type": OCTET, **extra}
    return await api.client.patch(url, data=io.BytesIO(data), headers=headers)


async def head(api: Api, url: str, token: str | None = None) -> Any:
    return await api.client.head(url, headers=api.auth(token))


async def test_options_advertises_every_extension_without_auth(api: Api) -> None:
    response = await api.client.options("/files/")
    assert response.status == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Max-Size"] == str(64 * 1024 * 1024)
    extensions = set(response.headers["Tus-Extension"].split(","))
    assert extensions >= {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
        "concatenation",
    }
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) >= {"sha1", "sha256", "md5"}


async def test_upload_in_chunks_becomes_evidence_with_digests(api: Api) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    b3 = blake3.blake3(data).hexdigest()
    url = await create(
        api, len(data), meta=metadata(case="C-1", item="7", filename="a.ts", blake3=b3)
    )
    offset = 0
    for size in (1, 1024 * 1024, 2 * 1024 * 1024):
        response = await patch(api, url, data[offset : offset + size], offset)
        assert response.status == 204, await response.text()
        offset += size
        assert response.headers["Upload-Offset"] == str(offset)
        assert "Upload-Expires" in response.headers
    response = await patch(api, url, data[offset:], offset)
    assert response.status == 204
    evidence_id = response.headers["Avidence-Evidence-Id"]
    record = await (await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())).json()
    assert record["blake3"] == b3
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert (record["case_id"], record["item"], record["size"]) == ("C-1", "7", len(data))
    stream = await api.store.read(record["storage_key"])
    assert b"".join([c async for c in stream]) == data


async def test_head_reports_offset_length_metadata_and_no_store(api: Api) -> None:
    url = await create(api, 10)
    assert (await patch(api, url, b"12345", 0)).status == 204
    response = await head(api, url)
    assert response.status == 200
    assert response.headers["Upload-Offset"] == "5"
    assert response.headers["Upload-Length"] == "10"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in response.headers
    assert response.headers["Upload-Metadata"] == metadata(case="C-1", filename="a.ts")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Tus-Resumable": "0.2.2"}, 412),
        ({"Tus-Resumable": ""}, 412),
        ({"Upload-Length": "-1"}, 400),
        ({"Upload-Length": "1e3"}, 400),
        ({"Upload-Length": "99999999999999999999999"}, 400),
        ({"Upload-Length": str(64 * 1024 * 1024 + 1)}, 413),
        ({"Upload-Length": "5", "Upload-Defer-Length": "1"}, 400),
        ({"Upload-Length": None, "Upload-Defer-Length": "2"}, 400),
        ({"Upload-Metadata": "case"}, 400),
        ({"Upload-Metadata": "filename YS50cw=="}, 400),
        ({"Upload-Metadata": "case not-base64!"}, 400),
        ({"Upload-Metadata": "case QzE=,case QzE="}, 400),
        ({"Upload-Metadata": "ca se QzE="}, 400),
        ({"Upload-Metadata": metadata(case="C1", filename="x\x1b[31m")}, 400),
        ({"Upload-Metadata": metadata(case="C1", filename="../../etc/passwd")}, 400),
        ({"Upload-Metadata": metadata(case="C1", blake3="zz")}, 400),
        ({"Upload-Metadata": "case " + base64.b64encode(b"\xff\xfe").decode()}, 400),
        ({"Upload-Metadata": metadata(case="C1", note="x" * 3000)}, 400),
        ({"Upload-Metadata": ",".join(f"k{i} " for i in range(40)) + metadata(case="C")}, 400),
        ({"Upload-Concat": "bogus"}, 400),
        ({"Upload-Concat": "final;http://evil.example/files/abc"}, 400),
    ],
)
async def test_post_rejects_bad_headers(
    api: Api, headers: dict[str, str | None], status: int
) -> None:
    sent = {**api.auth(), "Upload-Length": "10", "Upload-Metadata": metadata(case="C1")}
    for name, value in headers.items():
        if value is None:
            sent.pop(name, None)
        else:
            sent[name] = value
    response = await api.client.post("/files/", headers=sent)
    assert response.status == status, await response.text()
    if status == 412:
        assert response.headers["Tus-Version"] == "1.0.0"
    body = await response.json()
    assert body["error"]["status"] == status


async def test_requests_without_token_get_401_and_wrong_role_403(api: Api) -> None:
    response = await api.client.post(
        "/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1"}
    )
    assert response.status == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]
    bad = await api.client.post("/files/", headers={**api.auth("avd_forged"), "Upload-Length": "1"})
    assert bad.status == 401


async def test_patch_409_when_offset_mismatch_and_nothing_changes(api: Api) -> None:
    url = await create(api, 10)
    assert (await patch(api, url, b"abc", 0)).status == 204
    response = await patch(api, url, b"zzz", 1)
    assert response.status == 409
    assert (await head(api, url)).headers["Upload-Offset"] == "3"


async def test_patch_409_not_413_when_a_wrong_offset_comes_with_a_long_body(api: Api) -> None:
    """tusd checks the offset first: at offset 5 of 10, offset 3 with 8 bytes is a conflict."""
    url = await create(api, 10)
    assert (await patch(api, url, b"01234", 0)).status == 204
    response = await patch(api, url, b"abcdefgh", 3)
    assert response.status == 409, await response.text()
    assert (await head(api, url)).headers["Upload-Offset"] == "5"
    assert (await patch(api, url, b"abcdefgh", 5)).status == 413  # right offset, too long


async def test_post_with_upload_length_0_completes_at_once(api: Api) -> None:
    """ "an upload with Upload-Length: 0 ... is immediately complete after its creation": it is
    evidence (an empty file has digests too) without any PATCH."""
    headers = {
        **api.auth(),
        "Upload-Length": "0",
        "Upload-Metadata": metadata(case="C-0", filename="empty.ts"),
    }
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201, await response.text()
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Avidence-Upload-State"] == "done"
    evidence_id = response.headers["Avidence-Evidence-Id"]
    record = await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())
    body = await record.json()
    assert body["size"] == 0 and body["blake3"] == blake3.blake3(b"").hexdigest()
    url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    assert (await head(api, url)).headers["Upload-Offset"] == "0"


async def test_patch_415_for_wrong_content_type(api: Api) -> None:
    url = await create(api, 10)
    response = await patch(api, url, b"abc", 0, **{"Content-Type": "application/json"})
    assert response.status == 415


async def test_patch_400_without_offset_and_413_beyond_length(api: Api) -> None:
    url = await create(api, 4)
    headers = {**api.auth(), "Content-Type": OCTET}
    assert (await api.client.patch(url, data=b"a", headers=headers)).status == 400
    assert (await patch(api, url, b"abcdef", 0)).status == 413
    assert (await head(api, url)).headers["Upload-Offset"] == "0"


async def test_patch_460_on_checksum_mismatch_discards_the_chunk(api: Api) -> None:
    url = await create(api, 8)
    good = base64.b64encode(hashlib.sha1(b"abcd").digest()).decode()
    assert (await patch(api, url, b"abcd", 0, **{"Upload-Checksum": f"sha1 {good}"})).status == 204
    bad = base64.b64encode(hashlib.sha1(b"nope").digest()).decode()
    response = await patch(api, url, b"efgh", 4, **{"Upload-Checksum": f"sha1 {bad}"})
    assert response.status == 460
    # the message counts the bytes that arrived (it said 0 where the store kept none)
    assert "the 4 bytes received" in (await response.json())["error"]["message"]
    assert (await head(api, url)).headers["Upload-Offset"] == "4"
    for algorithm in ("sha256", "md5", "blake3"):
        assert algorithm  # each algorithm is accepted for a matching chunk below
    digest = base64.b64encode(blake3.blake3(b"efgh").digest()).decode()
    response = await patch(api, url, b"efgh", 4, **{"Upload-Checksum": f"blake3 {digest}"})
    assert response.status == 204
    assert response.headers["Avidence-Upload-State"] == "done"


async def test_patch_400_for_unsupported_checksum_algorithm(api: Api) -> None:
    url = await create(api, 4)
    response = await patch(api, url, b"abcd", 0, **{"Upload-Checksum": "crc32 AAAA"})
    assert response.status == 400


async def test_declared_digest_mismatch_quarantines_and_is_not_evidence(api: Api) -> None:
    url = await create(api, 4, meta=metadata(case="C1", sha256="0" * 64))
    response = await patch(api, url, b"abcd", 0)
    assert response.status == 460
    assert (await response.json())["error"]["code"] == "declared_digest_mismatch"
    upload_id = url.rsplit("/", 1)[1]
    state = await (await api.client.get(f"/api/uploads/{upload_id}", headers=api.auth())).json()
    assert state["state"] == "quarantined"
    assert state["evidence_id"] is None
    assert state["digests"]["sha256"] == hashlib.sha256(b"abcd").hexdigest()


async def test_creation_with_upload_and_zero_length(api: Api) -> None:
    headers = {
        **api.auth(),
        "Upload-Length": "5",
        "Upload-Metadata": metadata(case="C1"),
        "Content-Type": OCTET,
    }
    response = await api.client.post("/files/", data=b"hello", headers=headers)
    assert response.status == 201
    assert response.headers["Upload-Offset"] == "5"
    assert response.headers["Avidence-Upload-State"] == "done"
    empty = await create(api, 0)
    response = await patch(api, empty, b"", 0)
    assert response.status == 204
    assert response.headers["Avidence-Upload-State"] == "done"


async def test_deferred_length_set_by_a_later_patch(api: Api) -> None:
    url = await create(api, None)
    assert (await head(api, url)).headers["Upload-Defer-Length"] == "1"
    assert (await patch(api, url, b"abc", 0)).status == 204
    response = await patch(api, url, b"def", 3, **{"Upload-Length": "6"})
    assert response.status == 204
    assert response.headers["Avidence-Upload-State"] == "done"
    shrunk = await create(api, None)
    assert (await patch(api, shrunk, b"abc", 0)).status == 204
    assert (await patch(api, shrunk, b"", 3, **{"Upload-Length": "2"})).status == 400
    assert (await patch(api, shrunk, b"de", 3, **{"Upload-Length": "4"})).status == 413


async def test_termination_then_404_and_finished_evidence_is_never_deleted(api: Api) -> None:
    url = await create(api, 10)
    assert (await patch(api, url, b"abc", 0)).status == 204
    assert (await api.client.delete(url, headers=api.auth())).status == 204
    assert (await head(api, url)).status == 404
    done = await create(api, 2)
    assert (await patch(api, done, b"ok", 0)).status == 204
    assert (await api.client.delete(done, headers=api.auth())).status == 403


async def test_other_uploaders_uploads_look_missing(api: Api) -> None:
    url = await create(api, 10)
    assert (await head(api, url, token=api.other_uploader)).status == 404
    assert (await patch(api, url, b"x", 0, token=api.other_uploader)).status == 404
    assert (await head(api, url, token=api.admin)).status == 200
    assert (await head(api, "/files/" + "0" * 32)).status == 404
    assert (await head(api, "/files/..%2F..%2Fetc")).status == 404


async def test_method_override_turns_post_into_patch_and_delete(api: Api) -> None:
    url = await create(api, 3)
    headers = {
        **api.auth(),
        "X-HTTP-Method-Override": "PATCH",
        "Upload-Offset": "0",
        "Content-Type": OCTET,
    }
    response = await api.client.post(url, data=b"abc", headers=headers)
    assert response.status == 204
    assert response.headers["Upload-Offset"] == "3"
    other = await create(api, 3)
    headers = {**api.auth(), "X-HTTP-Method-Override": "DELETE"}
    assert (await api.client.post(other, headers=headers)).status == 204


async def test_concatenation_of_partials_into_evidence(api: Api) -> None:
    pieces = [os.urandom(6 * 1024 * 1024), os.urandom(5 * 1024 * 1024 + 3), b"tail"]
    urls = []
    for piece in pieces:
        url = await create(api, len(piece), meta="", **{"Upload-Concat": "partial"})
        response = await patch(api, url, piece, 0)
        assert response.status == 204
        assert response.headers["Avidence-Upload-State"] == "complete"
        urls.append(url)
    assert (await patch(api, urls[0], b"", 6 * 1024 * 1024)).status == 204  # idempotent no-op
    whole = b"".join(pieces)
    headers = {
        **api.auth(),
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": metadata(case="C-9", sha256=hashlib.sha256(whole).hexdigest()),
    }
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201, await response.text()
    final = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    assert response.headers["Avidence-Upload-State"] == "done"
    probe = await head(api, final)
    assert probe.headers["Upload-Offset"] == probe.headers["Upload-Length"] == str(len(whole))
    assert probe.headers["Upload-Concat"].startswith("final;")
    assert (await patch(api, final, b"x", len(whole))).status == 403
    record = await (
        await api.client.get(
            f"/api/evidence/{response.headers['Avidence-Evidence-Id']}", headers=api.auth()
        )
    ).json()
    assert record["blake3"] == blake3.blake3(whole).hexdigest()


async def _partials(api: Api, pieces: list[bytes]) -> list[str]:
    urls = []
    for piece in pieces:
        url = await create(api, len(piece), meta="", **{"Upload-Concat": "partial"})
        assert (await patch(api, url, piece, 0)).status == 204
        urls.append(url)
    return urls


async def _final(api: Api, urls: list[str], whole: bytes) -> Any:
    headers = {
        **api.auth(),
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": metadata(case="C-9", sha256=hashlib.sha256(whole).hexdigest()),
    }
    return await api.client.post("/files/", headers=headers)


async def test_a_final_upload_may_list_the_same_partial_twice(api: Api) -> None:
    """The spec's MAY: the partial's bytes appear twice in the joined upload."""
    twice, tail = os.urandom(5 * 1024 * 1024 + 1), b"tail"
    first, last = await _partials(api, [twice, tail])
    response = await _final(api, [first, first, last], twice + twice + tail)
    assert response.status == 201, await response.text()
    assert response.headers["Avidence-Upload-State"] == "done"


async def test_concurrent_final_uploads_of_the_same_partials_make_one_evidence(api: Api) -> None:
    pieces = [os.urandom(5 * 1024 * 1024 + 1), b"tail"]
    urls = await _partials(api, pieces)
    answers = await asyncio.gather(*(_final(api, urls, b"".join(pieces)) for _ in range(4)))
    statuses = sorted(r.status for r in answers)
    assert statuses == [201, 409, 409, 409], statuses
    refused = [await r.json() for r in answers if r.status == 409]
    assert {e["error"]["code"] for e in refused} == {"partial_taken"}
    made = {r.headers.get("Avidence-Evidence-Id") for r in answers if r.status == 201}
    assert len(made) == 1 and None not in made


async def test_final_upload_refuses_unfinished_or_foreign_partials(api: Api) -> None:
    unfinished = await create(api, 10, meta="", **{"Upload-Concat": "partial"})
    headers = {
        **api.auth(),
        "Upload-Concat": f"final;{unfinished}",
        "Upload-Metadata": metadata(case="C"),
    }
    refused = await api.client.post("/files/", headers=headers)
    assert refused.status == 400
    assert (await refused.json())["error"]["code"] == "partial_unusable"
    foreign = await create(
        api, 1, token=api.other_uploader, meta="", **{"Upload-Concat": "partial"}
    )
    assert (await patch(api, foreign, b"x", 0, token=api.other_uploader)).status == 204
    headers["Upload-Concat"] = f"final;{foreign}"
    refused = await api.client.post("/files/", headers=headers)
    assert refused.status == 400
    assert (await refused.json())["error"]["code"] == "partial_unusable"


async def test_cors_preflight_and_exposed_headers(api: Api) -> None:
    response = await api.client.options(
        "/files/",
        headers={"Origin": "https://court.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status == 204
    assert "Access-Control-Allow-Origin" not in response.headers  # origin not configured


async def test_unknown_method_405_and_errors_are_json(api: Api) -> None:
    response = await api.client.put("/files/", headers=api.auth())
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    # A method tus does not define is a 405 naming what is, before any tus header is looked
    # at (it was a 412 for the missing Tus-Resumable).
    traced = await api.client.request("TRACE", "/files/")
    assert traced.status == 405 and traced.headers["Allow"] == "OPTIONS, POST"
    url = await create(api, 10)
    put = await api.client.put(url, headers=api.auth(), data=b"x")
    assert put.status == 405 and put.headers["Allow"] == "OPTIONS, HEAD, GET, PATCH, DELETE"
    assert (await head(api, url)).headers["Upload-Offset"] == "0"  # nothing changed


async def test_large_chunk_with_bad_checksum_is_discarded_whole(api: Api) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    url = await create(api, len(data) * 2)
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert (await patch(api, url, data, 0, **{"Upload-Checksum": f"sha256 {good}"})).status == 204
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    response = await patch(api, url, data, len(data), **{"Upload-Checksum": f"sha256 {wrong}"})
    assert response.status == 460
    assert (await head(api, url)).headers["Upload-Offset"] == str(len(data))
    response = await patch(api, url, data, len(data), **{"Upload-Checksum": f"sha256 {good}"})
    assert response.status == 204
    record = await (
        await api.client.get(
            f"/api/evidence/{response.headers['Avidence-Evidence-Id']}", headers=api.auth()
        )
    ).json()
    assert record["sha256"] == hashlib.sha256(data + data).hexdigest()


async def test_consumed_partial_names_its_final_upload(api: Api) -> None:
    part = await create(api, 3, meta="", **{"Upload-Concat": "partial"})
    assert (await patch(api, part, b"abc", 0)).status == 204
    headers = {
        **api.auth(),
        "Upload-Concat": f"final;{part}",
        "Upload-Metadata": metadata(case="C"),
    }
    response = await api.client.post("/files/", headers=headers)
    final_id = response.headers["Location"].rsplit("/", 1)[1]
    state = await (
        await api.client.get(f"/api/uploads/{part.rsplit('/', 1)[1]}", headers=api.auth())
    ).json()
    assert state["state"] == "consumed"
    assert state["consumed_by"] == final_id
