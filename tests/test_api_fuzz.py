"""Schemathesis against a real `avidence-server` process, driven by its own /api/openapi.json.

The document is the contract integrators code against, so every operation is fuzzed with an
admin token (the role every bearer operation allows) and must never answer 5xx, and every
answer must use a documented status, content type and body shape. Examples are bounded and
derandomized, so a run is repeatable and takes well under the suite's budget on two cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from avidence.server import config
from avidence.server.openapi.document import build

from support.servers import ServerProcess, free_port, metadata


@dataclass
class Live:
    server: ServerProcess
    token: str  # an admin's: every bearer operation allows the admin role
    known: dict[str, str]  # path parameter -> the id of a real object

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Tus-Resumable": "1.0.0"}


def _objects(url: str, auth: dict[str, str]) -> dict[str, str]:
    """Real objects for the path parameters, so fuzzed bodies also reach past the 404s."""

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**auth, **kwargs.pop("headers", {})}
        answer = requests.request(method, url + path, headers=headers, timeout=30, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer

    data = b"fuzzed evidence" * 64
    finished = call(
        "POST",
        "/files/",
        data=data,
        headers={
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(case="F-1", item="1", filename="f.mp4"),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    evidence = finished.headers["Avidence-Evidence-Id"]
    unfinished = call(
        "POST", "/files/", headers={"Upload-Length": "10", "Upload-Metadata": metadata(case="F-1")}
    )
    issued = call("POST", "/api/tickets", json={"evidence": [evidence], "recipient": "Li (judge)"})
    hook = call("POST", "/api/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    hold = call(
        "POST", "/api/admin/holds", json={"scope": "case", "target": "F-1", "reason": "fuzz"}
    )
    return {
        "evidence_id": evidence,
        "upload_id": unfinished.headers["Location"].rsplit("/", 1)[1],
        "case_id": call("GET", "/api/cases?number=F-1").json()["cases"][0]["id"],
        "ticket_id": issued.json()["ticket"]["id"],
        "token": issued.json()["url"].rsplit("/", 1)[1],
        "webhook_id": hook.json()["webhook"]["id"],
        "hold_id": hold.json()["hold"]["id"],
        "name": "viewer.js",
        "scope": "site",
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One real server (local store, SQLite) for the module, an admin token, real objects."""
    data = tmp_path_factory.mktemp("fuzz")
    # The webhook registered below targets loopback, which the operator must allow.
    env = {**os.environ, "AVIDENCE_WEBHOOK_ALLOW": "127.0.0.1/32"}
    server = ServerProcess(data, free_port(), [], env)
    server.start()
    try:
        token = server.token("admin", "fuzz admin")
        auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
        yield Live(server, token, _objects(server.url, auth))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(live: Live) -> Any:
    return schemathesis.openapi.from_url(f"{live.server.url}/api/openapi.json")


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# The operations, known before the server starts: the served document is built from this
# same table, and the test fetches it from the server to fuzz with.
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in build(config.load(env={})).get("paths", {}).items()
    for method in item
    # tus PATCH bodies are a byte protocol the document cannot describe; the hypothesis tests
    # in test_tus_hostile.py fuzz every tus header and metadata field instead.
    if method != "patch"
)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_the_document(
    method: str, path: str, live: Live, api_schema: Any
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(), real=st.booleans())
    @settings(
        max_examples=15,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case: schemathesis.Case, real: bool) -> None:
        if real and case.path_parameters:  # half the examples aim at objects that exist
            case.path_parameters = {
                name: live.known.get(name, value) for name, value in case.path_parameters.items()
            }
        with requests.Session() as session:
            case.call_and_validate(
                base_url=live.server.url,
                session=session,
                headers=live.auth(),
                checks=CHECKS,
                timeout=30,
            )

    fuzz()
