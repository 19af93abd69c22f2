"""Typed keys of the application state, importable by every handler module."""

from __future__ import annotations

from aiohttp import web

from avidence.client.canonical import PublicKeys
from avidence.storage.base import Store

from .catalog.db import Catalog
from .config import Settings
from .metrics import Metrics
from .signing import Signer

SETTINGS = web.AppKey("settings", Settings)
CATALOG = web.AppKey("catalog", Catalog)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
SIGNER = web.AppKey("signer", Signer)
# The pinned key history (`trusted_keys`), set only when configured.
PINNED_KEYS = web.AppKey("pinned_keys", PublicKeys)
