"""Evidence kinds: metadata checked against the kind's JSON Schema at tus creation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from avidence.server import config
from avidence.server.catalog.schema import uploads
from avidence.server.config import ConfigError
from avidence.server.kinds import load

from support.agencies import TwoAgencies
from support.servers import metadata

GOOD = {
    "case": "GA-2026-17",
    "kind": "interrogation",
    "subject": "Zhang San",
    "interviewers": "Wang Wu, Zhao Liu",
    "room": "R-3",
    "start": "2026-03-01T09:30:00+08:00",
    "end": "2026-03-01T11:05:00+08:00",
    "filename": "r3.mp4",
}


def _headers(token: str, fields: dict[str, str], length: int = 4) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(length),
        "Upload-Metadata": metadata(**fields),
    }


async def _upload_count(agencies: TwoAgencies) -> int:
    async with agencies.api.catalog.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(uploads))).scalar())


async def test_interrogation_missing_and_malformed_fields_400_names_every_one(
    agencies: TwoAgencies,
) -> None:
    fields = {k: v for k, v in GOOD.items() if k not in ("subject", "room")}
    fields["start"] = "yesterday"
    fields["interviewers"] = "only one"
    response = await agencies.api.client.post(
        "/files/",
        data=io.BytesIO(b"data"),
        headers={
            **_headers(agencies.police.tokens["uploader"], fields),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "metadata_incomplete"
    assert error["details"]["kind"] == "interrogation"
    assert sorted(error["details"]["missing"]) == ["room", "subject"]
    assert sorted(error["details"]["malformed"]) == ["interviewers", "start"]
    for name in ("subject", "room", "start", "interviewers"):
        assert name in error["message"]
    assert await _upload_count(agencies) == 0  # refused before a byte was stored


@pytest.mark.parametrize(
    "start",
    [
        "2026-13-45T99:99:99Z",  # the pattern's shape, no real moment
        "2026-02-30T09:30:00+08:00",
        "2026-03-01T09:30:00+99:00",
        "\u0662\u0660\u0662\u0666-03-01T09:30:00Z",  # Arabic-Indic digits matched \\d
    ],
)
async def test_a_start_that_is_no_real_moment_is_malformed(
    agencies: TwoAgencies, start: str
) -> None:
    response = await agencies.api.client.post(
        "/files/", headers=_headers(agencies.police.tokens["uploader"], {**GOOD, "start": start})
    )
    assert response.status == 400, start
    error = (await response.json())["error"]
    assert error["code"] == "metadata_incomplete" and list(error["details"]["malformed"]) == [
        "start"
    ]
    fine = {**GOOD, "start": "2026-03-01T01:30:00.5Z", "item": "2"}
    response = await agencies.api.client.post(
        "/files/", headers=_headers(agencies.police.tokens["uploader"], fine)
    )
    assert response.status == 201, await response.text()


async def test_complete_interrogation_metadata_becomes_evidence_with_the_fields(
    agencies: TwoAgencies,
) -> None:
    api = agencies.api
    response = await api.client.post(
        "/files/",
        data=io.BytesIO(b"data"),
        headers={
            **_headers(agencies.police.tokens["uploader"], GOOD),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert response.status == 201, await response.text()
    evidence_id = response.headers["Avidence-Evidence-Id"]
    record = await api.client.get(
        f"/api/evidence/{evidence_id}", headers=agencies.police.auth("handler")
    )
    body = await record.json()
    assert body["metadata"]["subject"] == "Zhang San"
    assert body["metadata"]["kind"] == "interrogation"


async def test_unknown_kind_is_400_listing_the_known_ones(agencies: TwoAgencies) -> None:
    fields = {"case": "C-1", "kind": "hologram"}
    response = await agencies.api.client.post(
        "/files/", headers=_headers(agencies.police.tokens["uploader"], fields)
    )
    assert response.status == 400
    message = (await response.json())["error"]["message"]
    assert "hologram" in message and "interrogation" in message


async def test_partial_uploads_skip_the_kind_check_and_the_final_one_is_checked(
    agencies: TwoAgencies,
) -> None:
    token = agencies.police.tokens["uploader"]
    partial = await agencies.api.client.post(
        "/files/",
        headers={**_headers(token, {"kind": "interrogation"}), "Upload-Concat": "partial"},
    )
    assert partial.status == 201
    url = partial.headers["Location"]
    await agencies.api.client.patch(
        "/files/" + url.rsplit("/", 1)[1],
        data=b"abcd",
        headers={
            "Authorization": f"Bearer {token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    final = await agencies.api.client.post(
        "/files/",
        headers={
            "Authorization": f"Bearer {token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Concat": f"final;{url}",
            "Upload-Metadata": metadata(case="C-1", kind="interrogation"),
        },
    )
    assert final.status == 400
    assert (await final.json())["error"]["code"] == "metadata_incomplete"


async def test_kinds_are_published(agencies: TwoAgencies) -> None:
    response = await agencies.api.client.get("/api/kinds")
    names = [k["name"] for k in (await response.json())["kinds"]]
    assert names[:5] == ["interrogation", "cctv", "bodycam", "audio", "other"]


def test_config_adds_and_overrides_kinds(tmp_path: Path) -> None:
    schema = tmp_path / "drone.json"
    schema.write_text('{"type": "object", "required": ["case", "pilot"]}')
    file = tmp_path / "avidence.toml"
    file.write_text(
        f'[kinds.drone]\ntitle = "Drone footage"\nschema_file = "{schema}"\n\n'
        '[kinds.audio]\nschema = { type = "object", required = ["case", "speaker"] }\n'
    )
    registry = load(config.load(config_file=file, env={}))
    assert registry.kinds["drone"].title == "Drone footage"
    assert registry.check({"case": "C", "kind": "drone", "pilot": "Li"}) == "drone"
    assert registry.kinds["audio"].schema["required"] == ["case", "speaker"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[kinds.x]\ntitle = "no schema"\n', "kinds.x: a new kind needs a schema"),
        ("[kinds.x]\nschema = { type = 12 }\n", "kinds.x.schema: not a JSON Schema"),
        ('[kinds.x]\nschema_file = "/nonexistent.json"\n', "kinds.x.schema_file: cannot read"),
        ('[kinds.audio]\ncolour = "red"\n', "kinds.audio: unknown key(s) colour"),
    ],
)
def test_bad_kind_config_is_one_line(tmp_path: Path, toml: str, message: str) -> None:
    file = tmp_path / "avidence.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(config.load(config_file=file, env={}))
