"""Two agencies on one server, each with its own tokens: the set-up of the transfer tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from avidence.server import tokens
from avidence.server.agencies import records as agencies_db
from avidence.storage.local import LocalStore

from support.servers import Api, make_api


@dataclass
class Agency:
    id: str
    name: str
    tokens: dict[str, str]  # role -> secret

    def auth(self, role: str = "handler") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def make_agency(api: Api, name: str) -> Agency:
    agency = await agencies_db.create(api.catalog.engine, name=name)
    secrets = {}
    for role in tokens.ROLES:
        _, secrets[role] = await tokens.create(
            api.catalog.engine, role=role, name=f"{name} {role}", agency_id=agency.id
        )
    return Agency(agency.id, agency.name, secrets)


@dataclass
class TwoAgencies:
    api: Api
    police: Agency
    court: Agency


async def two_agencies(
    tmp_path: Path, *, database: str | None = None, **settings: Any
) -> AsyncIterator[TwoAgencies]:
    """Police and court agencies beside the site's own (default) agency."""
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store, database=database, **settings):
            yield TwoAgencies(
                api, await make_agency(api, "City police"), await make_agency(api, "City court")
            )
    finally:
        await store.close()


@pytest.fixture()
async def agencies(tmp_path: Path) -> AsyncIterator[TwoAgencies]:
    """Police and court agencies on one in-process server (local store, SQLite)."""
    async for value in two_agencies(tmp_path):
        yield value
