"""The aiohttp application: typed app state, start-up and teardown, routes, middlewares."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from avidence import __version__
from avidence.storage.base import Store

from . import api, health
from .catalog.db import Catalog
from .config import Settings
from .cors import cors_middleware
from .errors import error_middleware
from .metrics import Metrics
from .state import CATALOG, METRICS, SETTINGS, STORE
from .stores import build_store
from .tus import routes as tus_routes

log = logging.getLogger("avidence.server")


def create_app(
    settings: Settings, *, catalog: Catalog | None = None, store: Store | None = None
) -> web.Application:
    """Build the app; the catalog and store are opened at start-up unless given ready-made."""
    metrics = Metrics.create()
    app = web.Application(
        middlewares=[
            cors_middleware(settings.cors_origins),
            metrics.middleware(),
            tus_routes.tus_headers(settings.tus_path),
            error_middleware,
        ],
        client_max_size=1024**2,  # JSON bodies; upload bodies are streamed, not read whole
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.cleanup_ctx.append(_resources(catalog, store))
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/api/version", health.version)
    tus_routes.setup(app)
    api.setup(app)
    return app


def _resources(catalog: Catalog | None, store: Store | None) -> Any:
    async def open_and_close(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        own_catalog = catalog is None
        app[CATALOG] = catalog or Catalog(settings.database_url)
        if own_catalog:
            await app[CATALOG].ensure_current()
        app[STORE] = store or build_store(settings)
        await app[STORE].open()
        log.info(
            "server.started version=%s store=%s digests=%s",
            __version__,
            app[STORE].name,
            ",".join(settings.digests),
        )
        yield
        await app[STORE].close()
        if own_catalog:
            await app[CATALOG].close()

    return open_and_close
