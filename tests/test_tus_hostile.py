"""Hostile input: every tus header parser and the live endpoint under generated garbage.

Whatever arrives, the answer is a 4xx with a JSON body, never a 500 and never a stored byte."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avidence.server.errors import ApiError, BadRequest
from avidence.server.tus import headers

from support.servers import Api, metadata

text = st.text(max_size=300)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@given(text)
def test_non_negative_int_accepts_only_plain_decimals(value: str) -> None:
    try:
        number = headers.non_negative_int(value, "Upload-Length")
    except BadRequest:
        return
    assert number is not None and 0 <= number < 2**63
    assert value.strip().isdigit()


@given(text)
def test_metadata_parser_never_fails_unexpectedly(value: str) -> None:
    try:
        parsed = headers.parse_metadata(value)
    except BadRequest:
        return
    for key, item in parsed.items():
        assert key and " " not in key and "," not in key
        assert all(ch.isprintable() or ch == " " for ch in item)


@given(st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=20), text, max_size=8))
def test_metadata_round_trips_printable_values(values: dict[str, str]) -> None:
    raw = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())
    try:
        parsed = headers.parse_metadata(raw)
    except BadRequest:
        return  # control characters or oversize values are refused, by design
    assert set(parsed) == set(values)


@given(text)
def test_checksum_and_concat_parsers_refuse_cleanly(value: str) -> None:
    for parse in (headers.parse_checksum, lambda v: headers.parse_concat(v, tus_path="/files/")):
        try:
            parse(value)
        except ApiError as exc:  # bad_request, concat_invalid, ...: a 400 with its own code
            assert exc.status == 400, exc


NAMES = [
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Defer-Length",
    "Upload-Checksum",
    "Tus-Resumable",
    "Content-Type",
    "X-HTTP-Method-Override",
]


@pytest.mark.parametrize("store", ["local"], indirect=True)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(NAMES), header_text, max_size=5))
async def test_post_with_garbage_headers_is_4xx_json(api: Api, extra: dict[str, str]) -> None:
    sent = {**api.auth(), "Upload-Length": "10", "Upload-Metadata": metadata(case="H"), **extra}
    response = await api.client.post("/files/", headers=sent)
    if response.status == 201:
        return
    assert 400 <= response.status < 500, await response.text()
    if response.status != 204:
        body = await response.json()
        assert body["error"]["status"] == response.status


@pytest.mark.parametrize("store", ["local"], indirect=True)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(NAMES), header_text, max_size=5), st.binary(max_size=64))
async def test_patch_with_garbage_headers_never_corrupts(
    api: Api, extra: dict[str, str], body: bytes
) -> None:
    response = await api.client.post(
        "/files/",
        headers={**api.auth(), "Upload-Length": "64", "Upload-Metadata": metadata(case="H")},
    )
    url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    sent = {
        **api.auth(),
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        **extra,
    }
    response = await api.client.patch(url, data=body, headers=sent)
    assert response.status < 500, await response.text()
    probe = await api.client.head(url, headers=api.auth())
    if probe.status == 200:
        offset = int(probe.headers["Upload-Offset"])
        assert offset in (0, len(body)) or response.status == 204
