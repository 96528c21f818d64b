"""Browser tests: the real app under uvicorn in a thread, driven by Debian's Chromium.

Playwright's own browser download does not work here, so Chromium is the system's
(``/usr/bin/chromium``, Debian package ``chromium``). Every page is checked with
axe-core for WCAG 2.2 AA (:func:`assert_accessible`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from redis.asyncio import Redis

from madoguchi.embedded import free_port
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import AccountStore, Role, StaffAccount
from madoguchi.web.app import create_app
from madoguchi.web.http import HttpToolsProtocol

from conftest import OFFICE, SERVICES, T0, serving

CHROMIUM = os.environ.get("MADOGUCHI_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--use-fake-device-for-media-stream=device-count=2",
    "--use-fake-ui-for-media-stream",
]
#: axe-core rule tags for WCAG 2.2 AA (and what came before it).
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
PASSWORD = "Counter-Clerk-2026!"


@dataclass
class LiveServer:
    url: str
    app: Any
    clock: Callable[[], float]

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` (set-up against Redis, say) to its end."""
        return run_async(coroutine)


def run_async(coroutine: Any) -> Any:
    """Run ``coroutine`` in a thread of its own: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class _Clock:
    """The server's clock: real time moved to the test day, plus any offset a test adds."""

    def __init__(self) -> None:
        self.start = time.time()
        self.offset = 0.0

    def __call__(self) -> float:
        return T0 + (time.time() - self.start) + self.offset


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    """The app, with the office ``kokurakita`` seeded, served on a free local port."""
    run_async(_seed(settings))
    clock = _Clock()
    app = create_app(settings, clock=clock)
    with serving(app) as port:
        yield LiveServer(f"http://localhost:{port}", app, clock)


async def _seed(settings: Settings) -> None:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    queue = QueueClient(redis, settings)
    await queue.put_office(OFFICE, now=T0)
    for service in SERVICES:
        await queue.put_service(OFFICE.id, service, now=T0)
    await redis.aclose()


async def _make_account(settings: Settings, account: StaffAccount) -> None:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    await AccountStore(redis).create(account, PASSWORD)
    await redis.aclose()


@pytest.fixture
def context(browser: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    opened = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    yield opened
    opened.close()


@pytest.fixture
def make_staff(settings: Settings) -> Callable[..., StaffAccount]:
    """Create a staff account (password :data:`PASSWORD`) at ``kokurakita``."""

    def make(
        username: str = "ito",
        role: Role = Role.STAFF,
        services: tuple[str, ...] = tuple(s.id for s in SERVICES),
        name: str = "伊藤 さくら",
    ) -> StaffAccount:
        account = StaffAccount(username, name, role, (OFFICE.id,), services)
        run_async(_make_account(settings, account))
        return account

    return make


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Sign in through the real form."""
    page.goto("/staff/signin")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/staff/**")


def assert_accessible(page: Page) -> None:
    """Zero axe-core violations of WCAG 2.2 AA on the page as it stands."""
    result = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA}})
    assert result.violations_count == 0, result.generate_report()


class Restartable:
    """The app under uvicorn on a fixed port, which a test can stop and start again
    (a server going away and coming back, as a kiosk or a lobby board meets it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.clock = _Clock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = create_app(self.settings, clock=self.clock)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http=HttpToolsProtocol,  # as production serves
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            assert not self._thread.is_alive(), "the test server did not stop"
            self._server = None


@pytest.fixture
def restartable(settings: Settings) -> Iterator[Restartable]:
    """Like ``server`` (kokurakita seeded), but stoppable: ``stop()``, then ``start()``."""
    run_async(_seed(settings))
    server = Restartable(settings)
    server.start()
    yield server
    server.stop()
