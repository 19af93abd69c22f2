"""Typed keys of the application state, importable by every handler module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from avidence.client.canonical import PublicKeys
from avidence.storage.base import Store

from .catalog.db import Catalog
from .config import Settings
from .metrics import Metrics
from .signing import Signer

if TYPE_CHECKING:  # the custody core imports handler-level modules; only its type is needed here
    from .evidence.accept import Custody

SETTINGS = web.AppKey("settings", Settings)
CATALOG = web.AppKey("catalog", Catalog)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
SIGNER = web.AppKey("signer", Signer)
CUSTODY: web.AppKey[Custody] = web.AppKey("custody")
# The pinned key history (`trusted_keys`), set only when configured.
PINNED_KEYS = web.AppKey("pinned_keys", PublicKeys)
