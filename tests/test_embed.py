"""`/t/<token>?embed=1`: the viewer inside a case system's page, framable only by the origins
in `[viewer] embed_origins`; every other viewer page stays unframable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from avidence.server import config
from avidence.server.state import SETTINGS
from avidence.server.tickets.runtime import embed_ancestors

from support.agencies import TwoAgencies, two_agencies
from support.tickets import issue, token_of, upload


@pytest.fixture()
async def embedding(tmp_path: Path) -> AsyncIterator[TwoAgencies]:
    toml = tmp_path / "avidence.toml"
    toml.write_text(
        '[viewer]\nembed_origins = ["https://cases.example", "http://127.0.0.1:9000"]\n'
    )
    async for value in two_agencies(tmp_path, config_file=toml):
        yield value


async def _link(agencies: TwoAgencies) -> str:
    evidence_id = await upload(agencies.api, b"clip", token=agencies.police.tokens["uploader"])
    return token_of(
        await issue(agencies.api, [evidence_id], token=agencies.police.tokens["handler"])
    )


def _ancestors(csp: str) -> str:
    return next(p for p in csp.split("; ") if p.startswith("frame-ancestors")).split(" ", 1)[1]


async def test_embed_page_is_framable_only_by_configured_origins(embedding: TwoAgencies) -> None:
    token = await _link(embedding)
    embedded = await embedding.api.client.get(f"/t/{token}?embed=1")
    assert embedded.status == 200
    assert _ancestors(embedded.headers["Content-Security-Policy"]) == (
        "https://cases.example http://127.0.0.1:9000"
    )
    assert "X-Frame-Options" not in embedded.headers
    assert '<body class="embed">' in await embedded.text()
    plain = await embedding.api.client.get(f"/t/{token}")
    assert _ancestors(plain.headers["Content-Security-Policy"]) == "'none'"
    assert plain.headers["X-Frame-Options"] == "DENY"
    assert '<body class="page">' in await plain.text()
    # the media answers never become framable documents
    media = await embedding.api.client.get(f"/t/{token}/receipt/x?embed=1")
    assert _ancestors(media.headers["Content-Security-Policy"]).startswith("'none'")


async def test_without_embed_origins_nothing_may_frame_the_embed_page(
    agencies: TwoAgencies,
) -> None:
    token = await _link(agencies)
    embedded = await agencies.api.client.get(f"/t/{token}?embed=1")
    assert _ancestors(embedded.headers["Content-Security-Policy"]) == "'none'"
    assert embedded.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    "value",
    [
        '"https://cases.example"',
        '["*"]',
        '["https://cases.example/path"]',
        '["javascript:x"]',
        "[1]",
    ],
)
def test_bad_embed_origins_stop_the_server(tmp_path: Path, value: str) -> None:
    toml = tmp_path / "avidence.toml"
    toml.write_text(f"[viewer]\nembed_origins = {value}\n")
    app = web.Application()
    app[SETTINGS] = config.load(config_file=toml, env={})
    with pytest.raises(ValueError, match=r"viewer\.embed_origins"):
        embed_ancestors(app)
