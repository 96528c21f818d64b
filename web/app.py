"""The Starlette application, assembled in one factory.

``uvicorn --factory madoguchi.web.app:create_app`` runs it. The lifespan owns the
long-lived resources: the Redis connection pool, the queue client built on it, and
the event hub's one subscription to every office's live channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import quote

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..consult import api as consult_api
from ..consult import console as consult_console
from ..consult import echo, probe, signaling, switchboard
from ..consult import forms as consult_forms
from ..consult.presence import PresenceBoard
from ..kiosk import calls as kiosk_calls
from ..kiosk import checkin as kiosk_checkin
from ..kiosk import enrollment, health, screens
from ..kiosk.devices import KioskStore, KioskUnenrolled
from ..queue.estimator import Estimator
from ..queue.exceptions import QueueError
from ..queue.tickets import QueueClient
from ..queue.waits import WaitBoard
from ..settings import Settings, load_settings
from . import (
    admin,
    api,
    board,
    busy,
    congestion,
    console,
    furigana,
    i18n,
    memory,
    metrics,
    notifications,
    pages,
    residents,
    staff,
    stats,
    supervisor,
)
from . import appointments as appointment_pages
from .accounts import AccountStore, password_hasher
from .exceptions import HTTPError, SecondFactorRequired, Unauthorized
from .live import EventHub
from .responses import JSONResponse
from .security import SECURITY_HEADERS, StaffCache
from .sessions import SessionStore

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
UNREACHABLE = "the queue store (Redis) is unreachable; please try again shortly"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def on_queue_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueueError)
    return _error(exc.status, exc.code, exc.message)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    if isinstance(exc, Unauthorized) and _wants_page(request):
        # A person at a browser is sent to sign in, and brought back afterwards.
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/staff/signin?next={target}", status_code=303)
    if isinstance(exc, KioskUnenrolled) and _wants_kiosk_page(request):
        return RedirectResponse("/kiosk/enroll", status_code=303)
    if isinstance(exc, SecondFactorRequired) and _wants_page(request):
        return RedirectResponse("/staff/totp", status_code=303)
    return _error(exc.status, exc.code, exc.message)


def _wants_page(request: Request) -> bool:
    return request.method == "GET" and not request.url.path.startswith(("/api/", "/consult/api/"))


def _wants_kiosk_page(request: Request) -> bool:
    path = request.url.path
    kiosk_page = path.startswith("/kiosk/") and not path.startswith("/kiosk/api/")
    return request.method == "GET" and kiosk_page


async def on_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if screens.is_screen(request):
        return screens.error_page(request, exc, exc.status_code)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {
        404: f'nothing at "{request.url.path[:80]}"',
        405: f"{request.method} is not allowed here",
    }.get(exc.status_code, str(exc.detail))
    return _error(exc.status_code, codes.get(exc.status_code, "error"), message)


async def on_redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unreachable answering %s %s: %s", request.method, request.url.path, exc)
    response = _error(503, "unavailable", UNREACHABLE)
    response.headers["Retry-After"] = "2"
    return response


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    redis: Redis = request.app.state.redis
    await redis.ping()
    return JSONResponse({"status": "ready"})


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """Build the app. ``clock`` gives "now" to every queue operation (tests pass their own)."""
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level)
    registry = metrics.Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = settings.redis_url or DEFAULT_REDIS_URL
        redis = Redis.from_url(
            url,
            decode_responses=True,
            # No socket timeout: QueueClient bounds each operation with one deadline
            # (redis-py would wrap every command in asyncio.wait_for instead).
            socket_timeout=None,
            socket_connect_timeout=2.0,
            health_check_interval=15,
            retry=Retry(NoBackoff(), 1),
            max_connections=256,
        )
        queue = QueueClient(redis, settings)
        app.state.redis = redis
        app.state.queue = queue
        app.state.staff_cache = cache = StaffCache(redis, seconds=settings.session_cache_seconds)
        cache.start()
        app.state.accounts = AccountStore(
            redis,
            hasher=password_hasher(
                settings.password_hash_memory_kib, settings.password_hash_time_cost
            ),
            forget=cache.forget,
        )
        app.state.sessions = SessionStore(
            redis,
            idle_seconds=settings.session_idle_seconds,
            absolute_seconds=settings.session_absolute_seconds,
            forget=cache.forget,
        )
        app.state.kiosks = KioskStore(redis)
        app.state.presence = PresenceBoard(redis)
        app.state.events = hub = EventHub(redis)
        hub.start()
        await switchboard.start(app)
        app.state.notifier = notifier = notifications.Notifier(redis, hub, url)
        notifier.start()
        # The simulation runs in a process of its own, so that it neither stalls the
        # event loop nor competes with it for the GIL.
        # (With no interval, as in tests and replays, estimates are computed in line.)
        estimating = (
            ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
            if settings.estimate_interval > 0
            else None
        )
        app.state.waits = WaitBoard(
            queue,
            Estimator(settings),
            interval=settings.estimate_interval,
            clock=clock,
            executor=estimating,
        )
        app.state.congestion = feed = congestion.Feed(hub, app.state.waits, queue)
        feed.start()
        app.state.busy = busy.BusyCache()
        log.info("web using redis %s", url)
        # What start-up made, and every long-lived connection after it, stays out of the
        # garbage collector's full passes (web/memory.py says why and how).
        freezer = memory.Freezer(
            freeze_seconds=settings.gc_freeze_seconds,
            reclaim_hour=settings.gc_reclaim_hour,
            loaded=lambda: asyncio.to_thread(furigana.ruby, "漢字"),
        )
        freezer.start()
        try:
            yield
        finally:
            await freezer.stop()
            await notifier.stop()
            await feed.stop()
            await residents.stop(app)
            await switchboard.stop(app)
            await hub.stop()
            await cache.stop()
            if estimating is not None:
                estimating.shutdown(cancel_futures=True)
            await redis.aclose()

    app = Starlette(
        routes=[
            *api.routes,  # first: the busiest (routes are tried in order)
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *metrics.routes,
            *staff.routes,
            *console.routes,
            *supervisor.routes,
            *admin.routes,
            *stats.routes,
            *residents.routes,
            *congestion.routes,
            *busy.routes,
            *board.routes,
            *appointment_pages.routes,
            *enrollment.routes,
            *health.routes,
            *screens.routes,
            *kiosk_checkin.routes,
            *kiosk_calls.routes,
            *signaling.routes,
            *consult_api.routes,
            *consult_console.routes,
            *echo.routes,
            *probe.routes,
            *consult_forms.routes,
            enrollment.static,
            pages.static,
            Mount(
                "/consult/static",
                StaticFiles(directory=Path(signaling.__file__).parent / "static"),
                name="consult-static",
            ),
        ],
        middleware=[
            Middleware(metrics.LatencyMiddleware, metrics=registry, headers=SECURITY_HEADERS),
        ],
        exception_handlers={
            QueueError: on_queue_error,
            HTTPError: on_http_error,
            HTTPException: on_starlette_error,
            RedisConnectionError: on_redis_down,
            RedisTimeoutError: on_redis_down,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.templates = pages.environment()
    app.state.catalogues = i18n.Catalogues.load()
    i18n.warm_up()  # furigana's dictionary, before the first page needs it
    app.state.metrics = registry
    app.state.clock = clock
    return app
