"""Forwarded headers count only from configured proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avidence.server.audit import log as audit
from avidence.server.config import ConfigError, load
from avidence.storage.local import LocalStore

from support.servers import Api, make_api, metadata


@pytest.fixture()
async def proxied(tmp_path: Path) -> AsyncIterator[Api]:
    store = LocalStore(tmp_path / "store")
    await store.open()
    async for api in make_api(tmp_path, store, trusted_proxies="127.0.0.1"):
        yield api
    await store.close()


async def test_trusted_proxy_sets_links_and_audited_client(proxied: Api) -> None:
    api = proxied
    headers = {
        **api.auth(),
        "Upload-Length": "1",
        "Upload-Metadata": metadata(case="P"),
        "X-Forwarded-For": "203.0.113.9, 127.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evidence.example",
    }
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201
    assert response.headers["Location"].startswith("https://evidence.example/files/")
    entries = [row async for row in audit.rows(api.catalog.engine)]
    assert entries[-1].action == "upload.created"
    assert entries[-1].client == "203.0.113.9"


async def test_forwarded_headers_from_others_are_ignored(api: Api) -> None:
    headers = {
        **api.auth(),
        "Upload-Length": "1",
        "Upload-Metadata": metadata(case="P"),
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-For": "198.51.100.1",
    }
    response = await api.client.post("/files/", headers=headers)
    assert response.headers["Location"].startswith("http://127.0.0.1:")
    entries = [row async for row in audit.rows(api.catalog.engine)]
    assert entries[-1].client == "127.0.0.1"


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_invalid_host_400_and_no_link_built_from_it(api: Api) -> None:
    # RFC 9112 3.2: a Host with an invalid field value MUST be answered 400; the tus Location
    # was built from whatever it said ("http://a b/files/...").
    headers = {**api.auth(), "Upload-Length": "1", "Upload-Metadata": metadata(case="P")}
    for host in ("a b", "user@evil.example", "x/../y", "x:abc", "x:-1", "[::1", "x\\y", ""):
        response = await api.client.post("/files/", headers={**headers, "Host": host})
        assert response.status == 400, (host, response.headers.get("Location"))
        assert (await response.json())["error"]["code"] == "bad_request"
    for host, link in (("evidence.example:8443", "http://evidence.example:8443/files/"),
                       ("[::1]:80", "http://[::1]:80/files/")):
        response = await api.client.post("/files/", headers={**headers, "Host": host})
        assert response.status == 201 and response.headers["Location"].startswith(link)


def test_bad_proxy_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load(env={}, trusted_proxies="10.0.0.0/33")
