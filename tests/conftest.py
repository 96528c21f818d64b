"""Test fixtures: a real ``redis-server`` per test session, flushed for every test."""

from __future__ import annotations

import contextlib
import html
import re
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from redis.asyncio import Redis as AsyncRedis
from rq import SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer
from starlette.applications import Starlette

from madoguchi.embedded import RedisServer, find_redis_server, free_port
from madoguchi.queue.jobs import job_queue
from madoguchi.queue.model import Office, Service, ServiceMode
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import AccountStore, Role, StaffAccount, password_hasher
from madoguchi.web.app import create_app
from madoguchi.web.http import HttpToolsProtocol

#: A fixed, plausible moment (2026-11-26 09:00 in Tokyo) for tests that do not care.
T0 = 1_795_651_200.0
#: The password of every account the tests make.
PASSWORD = "Counter-Clerk-2026!"
#: argon2 at its least cost: the real parameters take a second a hash on a busy test machine.
CHEAP_HASHES = {"password_hash_memory_kib": 1024, "password_hash_time_cost": 1}
#: The CSRF token a staff page carries in its forms.
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        binary=find_redis_server(),
        data_dir=tmp_path_factory.mktemp("redis"),
        fsync="everysec",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, flushed for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, estimate_interval=0.0, **CHEAP_HASHES)


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def queue(aredis: AsyncRedis, settings: Settings) -> QueueClient:
    return QueueClient(aredis, settings)


OFFICE = Office("kokurakita", "小倉北区役所", "Kokurakita Ward Office")
SERVICES = (
    Service("certs", "A", "証明書", "Certificates", default_seconds=180),
    Service("moving", "B", "転入・転出", "Moving in and out", default_seconds=700),
    Service("care", "C", "介護", "Long-term care", mode=ServiceMode.REMOTE, default_seconds=900),
)


@pytest.fixture
async def office(queue: QueueClient) -> Office:
    """The office ``kokurakita`` with three services and no counters."""
    await queue.put_office(OFFICE, now=T0)
    for service in SERVICES:
        await queue.put_service(OFFICE.id, service, now=T0)
    return OFFICE


@pytest.fixture
def connection(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The worker's connection; jobs find the same Redis through ``REDIS_URL``."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def work(connection: redis.Redis, *, with_scheduler: bool = False) -> None:
    """Run every queued rq job in this process, then return."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = SimpleWorker(
            [job_queue(connection)], connection=connection, serializer=JSONSerializer
        )
        worker.work(burst=True, with_scheduler=with_scheduler)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def run_job(connection: redis.Redis, function: object, *args: object) -> Job:
    """Enqueue one job, run it, and return it as it ended."""
    job = job_queue(connection).enqueue(function, *args)
    work(connection)
    job.refresh()
    return job


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The web app with its lifespan running; its clock is ``T0`` plus ``app.state.offset``."""
    application = create_app(settings, clock=lambda: T0 + application.state.offset)
    application.state.offset = 0.0
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette, office: Office) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app, with the demo office ``kokurakita`` in place."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def session_headers(response: httpx.Response) -> dict[str, str]:
    """Headers that carry the session ``POST /api/v1/session`` answered with.

    The test client talks to ``http://testserver``, where the cookie is the ``Secure``
    ``__Host-madoguchi``, which a client sends back only over https: so the headers
    carry it themselves.
    """
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"].split(";")[0]
    return {"Cookie": cookie, "X-CSRF-Token": response.json()["csrf"]}


async def make_account(
    redis: AsyncRedis,
    username: str = "clerk",
    role: Role = Role.STAFF,
    offices: tuple[str, ...] = (OFFICE.id,),
    services: tuple[str, ...] = tuple(s.id for s in SERVICES),
    **flags: bool,
) -> StaffAccount:
    """Create an account with the password :data:`PASSWORD`."""
    account = StaffAccount(username, f"Test {username}", role, offices, services, **flags)
    hasher = password_hasher(1024, 1)
    return await AccountStore(redis, hasher=hasher).create(account, PASSWORD)


async def sign_in(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, code: str | None = None
) -> dict[str, str]:
    """Sign in through ``POST /api/v1/session``; the headers of the session (see above)."""
    body = {"username": username, "password": password} | ({"code": code} if code else {})
    response = await client.post("/api/v1/session", json=body)
    client.cookies.clear()  # requests without these headers stay anonymous
    return session_headers(response)


def shown(response: httpx.Response) -> str:
    """The page's text as a person reads it (entities such as &#34; decoded)."""
    return html.unescape(response.text)


async def refusal(http: httpx.AsyncClient, status: int, url: str, data: Mapping[str, Any]) -> str:
    """Post a form the app refuses with *status*; the answer's text as a person reads it."""
    response = await http.post(url, data=data)
    assert response.status_code == status, response.text
    return shown(response)


@pytest.fixture
async def http(app: Starlette, office: Office) -> AsyncIterator[httpx.AsyncClient]:
    """A client on plain ``http://localhost``, where the session cookie needs no TLS."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


async def sign_in_form(
    http: httpx.AsyncClient,
    app: Starlette,
    username: str,
    role: Role,
    offices: tuple[str, ...] = (OFFICE.id,),
) -> str:
    """Create an account, sign in through the form, and return the session's CSRF token."""
    account = StaffAccount(username, f"Test {username}", role, offices, ("certs",))
    await app.state.accounts.create(account, PASSWORD)
    form = await http.get("/staff/signin")
    token = CSRF.search(form.text)
    assert token is not None
    signed = await http.post(
        "/staff/signin",
        data={"username": username, "password": PASSWORD, "csrf": token.group(1), "next": "/"},
    )
    assert signed.status_code == 303, signed.text
    found = CSRF.search((await http.get("/staff/")).text)
    assert found is not None
    return found.group(1)


@pytest.fixture
async def staff(client: httpx.AsyncClient, aredis: AsyncRedis) -> dict[str, str]:
    """Headers of a clerk of ``kokurakita``, signed in: the session cookie and its CSRF token."""
    await make_account(aredis, "clerk")
    return await sign_in(client, "clerk")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last: Playwright's sync API keeps an event loop running in
    the main thread for the session, and ``asyncio.run`` elsewhere would refuse to start."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[int]:
    """``app`` under uvicorn on a free local port, in a thread, while the block runs: the port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http=HttpToolsProtocol,  # as production serves
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
