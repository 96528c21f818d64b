"""Notifications end to end: a resident asks on the ticket page, counters call, the web
process notices and queues the job, the rq worker (a burst ``SimpleWorker``) sends one
e-mail to a real local SMTP server (aiosmtpd) and one Web Push to a real local push
endpoint that checks the VAPID signature and decrypts the message; never twice."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import httpx
import pytest
import redis
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from redis.asyncio import Redis as AsyncRedis
from rq.job import Job

from madoguchi.embedded import free_port
from madoguchi.queue import keys
from madoguchi.queue.model import Ticket, TicketStatus
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings, load_settings
from madoguchi.web.app import create_app
from madoguchi.web.notifications import notify_office, vapid_public_key

from conftest import CHEAP_HASHES, OFFICE, SERVICES, run_job, serving, work

FORM_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
CONTACT = "mailto:counters@city.example.jp"


# -- a real SMTP server and a real push endpoint ------------------------------------------------


class Mailbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


@dataclass
class Pushed:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PushService:
    """A local push service: records each push it receives, and answers 201."""

    url: str
    received: list[Pushed] = field(default_factory=list)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def push_service() -> Iterator[PushService]:
    port = free_port()
    service = PushService(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            service.received.append(Pushed(self.path, headers, body))
            self.send_response(201)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield service
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class Browser:
    """A browser's push subscription: the keys a push service encrypts for."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": _b64(public), "auth": _b64(self.auth)},
        }

    def read(self, pushed: Pushed) -> dict[str, Any]:
        """Decrypt a push as the browser would."""
        assert pushed.headers["content-encoding"] == "aes128gcm"
        plain = http_ece.decrypt(
            pushed.body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        decoded: dict[str, Any] = json.loads(plain)
        return decoded


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def browser(push_service: PushService) -> Browser:
    return Browser(
        ec.generate_private_key(ec.SECP256R1()),
        secrets.token_bytes(16),
        f"{push_service.url}/push/{secrets.token_urlsafe(8)}",
    )


# -- the app under uvicorn, and the worker's environment ------------------------------------------


@dataclass
class World:
    url: str
    settings: Settings
    connection: redis.Redis
    mailbox: Mailbox
    push: PushService

    def run(self, work: Callable[[QueueClient], Any]) -> Any:
        """Run ``work`` with a queue client (the web server runs in its own thread)."""

        async def go() -> Any:
            client = AsyncRedis.from_url(str(self.settings.redis_url), decode_responses=True)
            try:
                return await work(QueueClient(client, self.settings))
            finally:
                await client.aclose()

        return asyncio.run(go())


@pytest.fixture
def world(
    redis_url: str,
    connection: redis.Redis,
    mailbox: tuple[Mailbox, int],
    push_service: PushService,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    box, smtp_port = mailbox
    environment = {
        "REDIS_URL": redis_url,
        "MADOGUCHI_SMTP_HOST": "127.0.0.1",
        "MADOGUCHI_SMTP_PORT": str(smtp_port),
        "MADOGUCHI_SMTP_TLS": "none",
        "MADOGUCHI_SMTP_FROM": "madoguchi@city.example.jp",
        "MADOGUCHI_PUSH_SERVICES": "http://127.0.0.1:*",
        "MADOGUCHI_PUSH_CONTACT": CONTACT,
        "MADOGUCHI_PUBLIC_URL": "https://madoguchi.city.example.jp",
        "MADOGUCHI_ESTIMATE_INTERVAL": "0",
        "MADOGUCHI_PASSWORD_HASH_MEMORY_KIB": str(CHEAP_HASHES["password_hash_memory_kib"]),
        "MADOGUCHI_PASSWORD_HASH_TIME_COST": str(CHEAP_HASHES["password_hash_time_cost"]),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()

    async def seed(queue: QueueClient) -> None:
        now = time.time()
        await queue.put_office(OFFICE, now=now)
        for service in SERVICES:
            await queue.put_service(OFFICE.id, service, now=now)
        await queue.open_counter(OFFICE.id, "c1", ["certs"], now=now, name="3")

    with serving(create_app(settings)) as port:
        world = World(f"http://localhost:{port}", settings, connection, box, push_service)
        world.run(seed)
        yield world


def _issue(world: World, count: int) -> list[Ticket]:
    async def issue(queue: QueueClient) -> list[Ticket]:
        return [
            (await queue.issue(OFFICE.id, "certs", now=time.time())).ticket for _ in range(count)
        ]

    issued: list[Ticket] = world.run(issue)
    return issued


def _call(world: World) -> str:
    """Finish what counter c1 holds, call the next ticket there; the call's event id."""

    async def call(queue: QueueClient) -> str:
        now = time.time()
        snapshot = await queue.snapshot(OFFICE.id, now=now)
        held = snapshot.counters[0].current
        if held:
            await queue.start(OFFICE.id, held, now=now)
            await queue.finish(OFFICE.id, held, now=now)
        await queue.call_next(OFFICE.id, "c1", now=now)
        return await queue.last_event(OFFICE.id)

    event: str = world.run(call)
    return event


def _ask(world: World, ticket: Ticket, browser: Browser, ahead: int) -> None:
    """The resident asks on the ticket page: e-mail and this phone's push, at ``ahead``."""
    with httpx.Client(base_url=world.url) as http:
        page = http.get(f"/o/{OFFICE.id}/t/{ticket.token}?lang=en")
        assert page.status_code == 200
        assert 'type="email"' in page.text
        token = FORM_TOKEN.search(page.text)
        assert token is not None
        saved = http.post(
            f"/o/{OFFICE.id}/t/{ticket.token}/notify",
            data={
                "csrf": token.group(1),
                "ahead": str(ahead),
                "email": "hanako@example.jp",
                "push": json.dumps(browser.subscription()),
            },
        )
        assert saved.status_code == 303, saved.text


def _job_for(world: World, event: str) -> None:
    """Wait for the web process to queue the job for ``event`` (it follows the events)."""
    job_id = f"madoguchi-notify-{OFFICE.id}-{event}"
    deadline = time.monotonic() + 10
    while not Job.exists(job_id, connection=world.connection):
        assert time.monotonic() < deadline, f"no job {job_id} was queued"
        time.sleep(0.02)


def _check_vapid(world: World, pushed: Pushed) -> None:
    """The push carries a VAPID token signed with the app's key, for this push service."""
    authorization = pushed.headers["authorization"]
    assert authorization.startswith("vapid t=")
    assert Vapid02.verify(authorization)
    parts = dict(part.split("=", 1) for part in authorization[len("vapid ") :].split(","))

    async def public(queue: QueueClient) -> str:
        return await vapid_public_key(queue.redis)

    assert parts["k"] == world.run(public)
    claims = json.loads(base64.urlsafe_b64decode(parts["t"].split(".")[1] + "=="))
    assert claims["aud"] == world.push.url
    assert claims["sub"] == CONTACT
    assert claims["exp"] > time.time()


def test_a_ticket_passing_its_threshold_gets_one_email_and_one_push(
    world: World, browser: Browser
) -> None:
    *_, mine = _issue(world, 4)  # three ahead
    _ask(world, mine, browser, ahead=1)
    work(world.connection)  # the check queued on asking: three ahead, not yet
    assert world.mailbox.messages == []
    assert world.push.received == []

    _call(world)  # two ahead
    event = _call(world)  # one ahead: the threshold
    _job_for(world, event)
    work(world.connection)
    assert len(world.mailbox.messages) == 1
    assert len(world.push.received) == 1
    email = world.mailbox.messages[0]
    assert email["To"] == "hanako@example.jp"
    assert email["Subject"] == f"1 ticket ahead of ticket {mine.number}"
    body = email.get_content()
    assert f"https://madoguchi.city.example.jp/o/{OFFICE.id}/t/{mine.token}" in body
    pushed = world.push.received[0]
    assert pushed.path == browser.endpoint.removeprefix(world.push.url)
    _check_vapid(world, pushed)
    message = browser.read(pushed)
    assert message["title"] == email["Subject"]
    assert message["url"].endswith(f"/t/{mine.token}")

    # The job again, twice, and another call: nothing more for this threshold.
    for _ in range(2):
        job = run_job(world.connection, notify_office, OFFICE.id, "again")
        assert job.return_value() == {"email": 0, "push": 0}
    event = _call(world)  # next: still under the threshold, already told
    _job_for(world, event)
    work(world.connection)
    assert (len(world.mailbox.messages), len(world.push.received)) == (1, 1)

    # Called: "your turn", once.
    event = _call(world)
    _job_for(world, event)
    work(world.connection)
    run_job(world.connection, notify_office, OFFICE.id, "again")
    assert len(world.mailbox.messages) == 2
    assert len(world.push.received) == 2
    assert world.mailbox.messages[1]["Subject"] == f"Your turn: ticket {mine.number}, counter 3"
    assert browser.read(world.push.received[1])["title"].startswith("Your turn")


def test_contact_details_are_deleted_when_the_ticket_closes(world: World, browser: Browser) -> None:
    first, second, third = _issue(world, 3)
    for ticket in (first, second, third):
        _ask(world, ticket, browser, ahead=0)
    contact = {t.id: keys.contact(OFFICE.id, t.id) for t in (first, second, third)}
    assert all(world.connection.exists(k) for k in contact.values())

    def close(queue: QueueClient) -> Any:
        async def go() -> None:
            now = time.time()
            await queue.cancel(OFFICE.id, second.id, now=now)  # cancelled
            await queue.call_next(OFFICE.id, "c1", now=now)
            await queue.no_show(OFFICE.id, first.id, now=now)  # no-show
            await queue.call_next(OFFICE.id, "c1", now=now)
            await queue.start(OFFICE.id, third.id, now=now)
            await queue.finish(OFFICE.id, third.id, now=now)  # finished

        return go()

    world.run(close)
    assert not any(world.connection.exists(k) for k in contact.values())
    work(world.connection)
    assert world.connection.scard(keys.notify_watch(OFFICE.id)) == 0
    # What stays is no one's details: markers of what was sent.
    left = [k.decode() for k in world.connection.keys("mg:{kokurakita}:*")]
    assert not [k for k in left if ":contact:" in k]


def test_a_send_that_failed_is_retried_and_still_sent_once(
    world: World, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    (mine,) = _issue(world, 1)
    _ask(world, mine, browser, ahead=0)
    # Nothing listens at the SMTP port for this run: the e-mail fails, the push goes.
    monkeypatch.setenv("MADOGUCHI_SMTP_PORT", str(_closed_port()))
    failed = run_job(world.connection, notify_office, OFFICE.id, "first")
    assert failed.is_failed or failed.is_scheduled
    marker = keys.notified(OFFICE.id, mine.id, "ahead-0", "email")
    assert world.connection.get(marker) == b"failed"
    assert len(world.push.received) == 1
    # Back up: a retry sends the e-mail, and not the push again.
    monkeypatch.setenv("MADOGUCHI_SMTP_PORT", str(world.settings.smtp_port))
    for _ in range(2):
        run_job(world.connection, notify_office, OFFICE.id, "retry")
    assert len(world.mailbox.messages) == 1
    assert len(world.push.received) == 1
    assert world.connection.get(marker) == b"sent"


def test_a_notification_being_sent_elsewhere_is_not_sent_again(
    world: World, browser: Browser
) -> None:
    (mine,) = _issue(world, 1)
    _ask(world, mine, browser, ahead=0)
    # Another worker has claimed both sends (and may have died mid-send): at most once.
    for channel in ("email", "push"):
        world.connection.set(keys.notified(OFFICE.id, mine.id, "ahead-0", channel), "sending x")
    job = run_job(world.connection, notify_office, OFFICE.id, "x")
    assert job.return_value() == {"email": 0, "push": 0}
    assert (world.mailbox.messages, world.push.received) == ([], [])


def test_the_vapid_key_is_made_once_and_kept(world: World) -> None:
    async def twice(queue: QueueClient) -> tuple[str, str]:
        return await vapid_public_key(queue.redis), await vapid_public_key(queue.redis)

    first, second = world.run(twice)
    assert first == second
    assert len(base64.urlsafe_b64decode(first + "=")) == 65
    assert world.connection.exists(keys.vapid())


def test_a_ticket_that_is_not_waiting_takes_no_details(world: World, browser: Browser) -> None:
    (mine,) = _issue(world, 1)
    with httpx.Client(base_url=world.url) as http:
        page = http.get(f"/o/{OFFICE.id}/t/{mine.token}")
        token = FORM_TOKEN.search(page.text)
        assert token is not None
        _call(world)
        refused = http.post(
            f"/o/{OFFICE.id}/t/{mine.token}/notify?lang=en",
            data={"csrf": token.group(1), "ahead": "1", "email": "hanako@example.jp"},
        )
    assert refused.status_code == 409
    assert not world.connection.exists(keys.contact(OFFICE.id, mine.id))

    def status(queue: QueueClient) -> Any:
        return queue.ticket(OFFICE.id, mine.id, now=time.time())

    assert world.run(status).status is TicketStatus.CALLED


def _closed_port() -> int:
    return free_port()
