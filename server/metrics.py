"""Prometheus metrics of one app, on a registry of its own so several apps can live in one
process (tests, embedded use) without clashing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST


@dataclass(slots=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    bytes_received: Counter
    uploads_active: Gauge
    uploads_finished: Counter
    integrity_failures: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # CPU, memory, open files of this process
        return cls(
            registry=registry,
            requests=Counter(
                "avidence_http_requests_total",
                "HTTP requests by method, route and status",
                ["method", "route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "avidence_http_request_seconds",
                "Time to answer an HTTP request",
                ["method", "route"],
                registry=registry,
            ),
            bytes_received=Counter(
                "avidence_upload_bytes_total",
                "Upload bytes made durable in the store",
                ["store"],
                registry=registry,
            ),
            uploads_active=Gauge(
                "avidence_uploads_active", "PATCH requests in progress", registry=registry
            ),
            uploads_finished=Counter(
                "avidence_uploads_finished_total",
                "Uploads finished, by outcome",
                ["outcome"],
                registry=registry,
            ),
            integrity_failures=Counter(
                "avidence_integrity_failures_total",
                "Checksum or declared-digest mismatches",
                ["kind"],
                registry=registry,
            ),
        )

    def middleware(self) -> Middleware:
        @web.middleware
        async def measure(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            started = time.perf_counter()
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            finally:
                self.requests.labels(request.method, name, str(status)).inc()
                self.latency.labels(request.method, name).observe(time.perf_counter() - started)

        return measure

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
