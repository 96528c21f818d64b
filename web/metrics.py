"""Prometheus metrics: request latencies, and waiting tickets and estimated waits per service."""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..queue.waits import WaitBoard


class Metrics:
    """The metrics of one app, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "madoguchi_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.waiting = Gauge(
            "madoguchi_waiting_tickets",
            "Tickets waiting, by office and service.",
            ["office", "service"],
            registry=self.registry,
        )
        self.wait = Gauge(
            "madoguchi_estimated_wait_seconds",
            "Estimated wait for a ticket issued now, by office and service.",
            ["office", "service"],
            registry=self.registry,
        )

    async def refresh(self, waits: WaitBoard) -> None:
        for office in await waits.queue.office_ids():
            board = await waits.board(office)
            for sid, lines in board.snapshot.lines.items():
                self.waiting.labels(office, sid).set(sum(len(line) for line in lines.values()))
                estimate = board.estimates.new.get(sid)
                if estimate is not None:
                    self.wait.labels(office, sid).set(estimate.wait)


class LatencyMiddleware:
    """Times every HTTP request and records it under its route template.

    ``headers`` are added to every response (the security headers): one layer that wraps
    ``send`` once costs less on every request than one layer for each of the two jobs.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.headers = tuple(headers)
        # labels() hashes and validates its arguments on every call; keep the children.
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500
        headers = self.headers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            key = (scope["method"], getattr(route, "path", "unmatched"), status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.metrics.latency.labels(
                    key[0], key[1], str(status)
                )
            child.observe(perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    await metrics.refresh(request.app.state.waits)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
