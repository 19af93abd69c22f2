"""The aiohttp application: typed app state, start-up and teardown, routes, middlewares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from aiohttp import web

from avidence import __version__
from avidence.storage.base import Store

from . import auth, desk, health, kinds, retention, tickets, uploadpage
from .agencies import api as agencies_api
from .audit import api as audit_api
from .audit import log as audit
from .audit import tsa, witness
from .audit.tsa import TimeStamper
from .audit.witness import Witness
from .cases import api as cases_api
from .catalog.db import Catalog
from .config import Settings
from .cors import cors_middleware
from .drain import DRAIN, Drain
from .errors import error_middleware
from .evidence import api, scrub
from .evidence.accept import Custody
from .hosts import host_middleware
from .jobs import embedded as embedded_worker
from .keys import history
from .keys.base import KeyUnavailable
from .metrics import Metrics
from .openapi import document as openapi
from .proxies import forwarded_middleware, parse_networks
from .signing import load_signer, register
from .state import CATALOG, CUSTODY, METRICS, PINNED_KEYS, SETTINGS, SIGNER, STORE
from .storable import nul_middleware
from .stores import configured_store
from .transfers import api as transfers_api
from .tus import routes as tus_routes
from .webhooks import api as webhooks_api

log = logging.getLogger("avidence.server")


def create_app(
    settings: Settings, *, catalog: Catalog | None = None, store: Store | None = None
) -> web.Application:
    """Build the app; the catalog and store are opened at start-up unless given ready-made."""
    metrics = Metrics.create()
    drain = Drain()
    app = web.Application(
        middlewares=[
            forwarded_middleware(parse_networks(settings.trusted_proxies)),
            cors_middleware(settings.cors_origins),
            metrics.middleware(),
            tus_routes.tus_headers(settings.tus_path),
            error_middleware,
            nul_middleware,  # inside the error exit path, so its 400 is the usual JSON
            host_middleware,
            drain.middleware(),  # inside the error exit path, so its 503 is the usual JSON
        ],
        client_max_size=1024**2,  # JSON bodies; upload bodies are streamed, not read whole
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[DRAIN] = drain
    auth.setup(app)
    app.cleanup_ctx.append(_resources(catalog, store))
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/api/version", health.version)
    kinds.setup(app, settings)
    tus_routes.setup(app)
    api.setup(app)
    embedded_worker.setup(app)  # starts after the catalog and store open, stops before they close
    tickets.setup(app)
    agencies_api.setup(app)
    cases_api.setup(app)
    transfers_api.setup(app)
    webhooks_api.setup(app)  # its dispatcher starts after the catalog opens
    openapi.setup(app)
    retention.setup(app)  # admin API; reports the store's locks after it opens
    audit_api.setup(app)
    uploadpage.setup(app)
    desk.setup(app)
    return app


async def _seal_audit_log(
    app: web.Application, witnesses: list[Witness], stamper: TimeStamper | None
) -> None:
    """Sign the audit log's head every `checkpoint_interval` seconds and hand it to the
    witnesses (and the TSA, which also gets any checkpoint it missed while unreachable), so a
    truncation or a rollback costs at most that much unwitnessed history."""
    while True:
        await asyncio.sleep(app[SETTINGS].checkpoint_interval)
        try:
            await audit.checkpoint(
                app[CATALOG].engine, app[SIGNER], witnesses=witnesses, stamper=stamper
            )
        except Exception:
            log.exception("audit.checkpoint_failed")


def _resources(catalog: Catalog | None, store: Store | None) -> Any:
    async def open_and_close(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        own_catalog = catalog is None
        app[CATALOG] = catalog or Catalog(settings.database_url)
        if own_catalog:
            await app[CATALOG].ensure_current()
        app[SIGNER] = load_signer(settings)
        await register(app[CATALOG].engine, app[SIGNER])
        # The audit chain hashes with the suite's algorithm from here on (SM3 under gm).
        await audit.follow_suite(app[CATALOG].engine, settings.suite, actor="server")
        if settings.trusted_keys:
            app[PINNED_KEYS] = await history.pinned_for(app[CATALOG].engine, settings, app[SIGNER])
        shown = await history.publishable(
            app[CATALOG].engine, active=app[SIGNER].key_id, pinned=app.get(PINNED_KEYS)
        )
        if shown.left_out:
            # Keys rotated before certificates existed, or rows added behind the server's back.
            log.warning(
                "keys.not_published ids=%s reason=no_chain_to_the_key_history "
                "hint='avidence-server key certify'",
                ",".join(shown.left_out),
            )
        app[STORE] = store or await configured_store(settings, app[CATALOG].engine)
        await app[STORE].open()
        app[CUSTODY] = Custody(app[CATALOG].engine, app[STORE], settings, app[SIGNER])
        log.info(
            "server.started version=%s store=%s digests=%s suite=%s signing=%s key=%s",
            __version__,
            app[STORE].name,
            ",".join(settings.digests),
            settings.suite,
            app[SIGNER].algorithm,
            app[SIGNER].key_id,
        )
        witnesses = witness.configured(settings)
        stamper = tsa.configured(settings)
        background = [
            asyncio.create_task(
                _seal_audit_log(app, witnesses, stamper), name="audit-checkpoints"
            )
        ]
        if settings.scrub_interval > 0:
            background.append(
                asyncio.create_task(
                    scrub.run_periodically(
                        app[CATALOG].engine,
                        app[STORE],
                        interval=settings.scrub_interval,
                        older_than=timedelta(days=settings.scrub_age_days),
                        metrics=app[METRICS],
                    ),
                    name="integrity-scrub",
                )
            )
        yield
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            # Not time-stamped here: shutdown does not wait on a TSA; the next start's first
            # pass asks for the token.
            await audit.checkpoint(app[CATALOG].engine, app[SIGNER], witnesses=witnesses)
        except KeyUnavailable as exc:
            log.error("audit.checkpoint_failed reason=signing_unavailable error=%s", exc)
        await app[STORE].close()
        if own_catalog:
            await app[CATALOG].close()

    return open_and_close
