"""Evidence and tickets made through the public HTTP APIs, for the ticket and viewer tests."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.server.catalog.schema import audit_log

from support.servers import Api, metadata

OCTET = "application/offset+octet-stream"


async def upload(
    api: Api,
    data: bytes,
    *,
    filename: str = "clip.mp4",
    case: str = "C-1",
    item: str = "1",
    token: str | None = None,
) -> str:
    """Upload `data` with tus creation-with-upload and return the evidence id."""
    headers = {
        **api.auth(token),
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(case=case, item=item, filename=filename),
    }
    if data:
        headers["Content-Type"] = OCTET
        response = await api.client.post("/files/", data=io.BytesIO(data), headers=headers)
    else:
        created = await api.client.post("/files/", headers=headers)
        assert created.status == 201, await created.text()
        url = "/files/" + created.headers["Location"].rsplit("/", 1)[1]
        response = await api.client.patch(
            url,
            data=b"",
            headers={**api.auth(token), "Upload-Offset": "0", "Content-Type": OCTET},
        )
    assert response.status in (201, 204), await response.text()
    return str(response.headers["Avidence-Evidence-Id"])


async def issue(
    api: Api, evidence: list[str], *, token: str | None = None, **fields: Any
) -> dict[str, Any]:
    """POST /api/tickets (as the admin unless `token` is given); the 201 body."""
    body = {"evidence": evidence, "recipient": "Li Ming (judge)", **fields}
    response = await api.client.post(
        "/api/tickets", json=body, headers={"Authorization": f"Bearer {token or api.admin}"}
    )
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def start_view(api: Api, token: str, evidence_id: str, **headers: str) -> str:
    """Count a view as the page does and return its grant."""
    response = await api.client.post(
        f"/t/{token}/views", json={"evidence": evidence_id}, headers=headers
    )
    assert response.status == 201, await response.text()
    grant: str = (await response.json())["view"]
    return grant


def token_of(issued: dict[str, Any]) -> str:
    """The link token of a POST /api/tickets answer."""
    return str(issued["url"]).rsplit("/", 1)[1]


def media_url(token: str, evidence_id: str, grant: str) -> str:
    return f"/t/{token}/media/{evidence_id}?view={grant}"


async def audit_entries(where: Api | AsyncEngine, action: str) -> list[Any]:
    """The audit entries of one action, oldest first."""
    engine = where.catalog.engine if isinstance(where, Api) else where
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq)
        )
        return list(result.all())


async def wait_for_entries(api: Api, action: str, count: int, *, within: float = 10.0) -> list[Any]:
    """Entries written after the response body (downloads are audited once fully sent)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        entries = await audit_entries(api, action)
        if len(entries) >= count or asyncio.get_running_loop().time() > deadline:
            return entries
        await asyncio.sleep(0.05)
