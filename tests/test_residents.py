"""The residents' phone pages over HTTP: taking a ticket, limits, refusals, cancelling,
the ticket's live view and its resumption after a dropped connection."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis as AsyncRedis
from starlette.applications import Starlette

from madoguchi.queue import keys
from madoguchi.queue.model import Channel, Office, TicketStatus
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.residents.view import TicketView, positions
from madoguchi.web.residents.watch import ESTIMATE_SECONDS, QUIET_SECONDS, TicketFeed

from conftest import CHEAP_HASHES, T0, shown

FORM_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
FORM_KEY = re.compile(r'name="key" value="([^"]+)"')
PAGE = "/o/kokurakita"


@pytest.fixture
async def http(app: Starlette, office: Office) -> AsyncIterator[httpx.AsyncClient]:
    """A phone on plain ``http://localhost`` whose browser asks for English."""
    async with phone(app, **{"accept-language": "en"}) as client:
        yield client


async def open_counters(queue: QueueClient, *services: str, name: str = "3") -> None:
    await queue.open_counter("kokurakita", "c1", list(services) or ["certs"], now=T0, name=name)


async def office_form(http: httpx.AsyncClient, path: str = PAGE) -> dict[str, str]:
    """The office page's form fields (its token pairs with the cookie the page set)."""
    page = await http.get(path)
    assert page.status_code == 200, page.text
    token, key = FORM_TOKEN.search(page.text), FORM_KEY.search(page.text)
    assert token is not None
    assert key is not None
    return {"csrf": token.group(1), "key": key.group(1)}


async def take(http: httpx.AsyncClient, service: str = "certs") -> httpx.Response:
    return await http.post(PAGE, data={**await office_form(http), "service": service})


def token_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/o/kokurakita/t/([A-Za-z0-9_-]{22})", response.headers["location"])
    assert match is not None, response.headers["location"]
    return match.group(1)


@asynccontextmanager
async def phone(app: Starlette, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another phone: a client with cookies of its own."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://localhost", headers=headers
    ) as client:
        yield client


# -- the office's page and taking a ticket ------------------------------------------------


async def test_the_office_page_lists_services_with_their_waits(
    http: httpx.AsyncClient, queue: QueueClient
) -> None:
    await open_counters(queue, "certs")
    for _ in range(2):
        await queue.issue("kokurakita", "certs", now=T0)
    page = await http.get(f"{PAGE}?lang=en")
    text = shown(page)
    assert page.status_code == 200
    assert "Kokurakita Ward Office" in text
    assert "Open: you can take a ticket now." in text
    assert "Certificates" in text
    assert "2 waiting" in text
    assert re.search(r"about \d+ minutes, between \d+ and \d+", text)
    # Moving in and out has no counter open; the remote service is not offered on the web.
    assert re.search(r'value="moving" id="service-moving" disabled', page.text)
    assert "Long-term care" not in text
    assert page.headers["cache-control"] == "no-store"
    assert "madoguchi-resident=" in page.headers["set-cookie"]


async def test_taking_a_ticket_goes_to_its_page(
    http: httpx.AsyncClient, queue: QueueClient
) -> None:
    await open_counters(queue)
    token = token_of(await take(http))
    ticket = await queue.ticket("kokurakita", token, now=T0)
    assert ticket.channel is Channel.WEB
    assert ticket.status is TicketStatus.WAITING
    page = await http.get(f"/o/kokurakita/t/{token}?lang=en")
    assert page.status_code == 200
    assert ticket.number in page.text
    assert "You are next" in shown(page)


async def test_a_double_submit_gives_one_ticket_counted_once(
    app: Starlette, office: Office, queue: QueueClient, aredis: AsyncRedis
) -> None:
    app.state.settings = Settings(
        redis_url=app.state.settings.redis_url, web_tickets_per_device=1, **CHEAP_HASHES
    )
    await open_counters(queue)
    async with phone(app) as http:
        form = {**await office_form(http), "service": "certs"}
        first = token_of(await http.post(PAGE, data=form))
        again = token_of(await http.post(PAGE, data=form))
    assert first == again
    assert len(positions(await queue.snapshot("kokurakita", now=T0))) == 1


async def test_a_phone_is_limited_per_day_and_so_is_an_address(
    app: Starlette, office: Office, queue: QueueClient
) -> None:
    app.state.settings = Settings(
        redis_url=app.state.settings.redis_url,
        web_tickets_per_device=2,
        web_tickets_per_address=3,
        **CHEAP_HASHES,
    )
    await open_counters(queue)
    async with phone(app, **{"accept-language": "en"}) as first:
        token_of(await take(first))
        token_of(await take(first))
        refused = await take(first)
        assert refused.status_code == 429
        assert "Too many tickets were taken today" in shown(refused)
    async with phone(app, **{"accept-language": "en"}) as second:
        token_of(await take(second))  # another phone: its own count, the address's third
        refused = await take(second)
        assert refused.status_code == 429
    # Reception and kiosks are not counted: they issue through their own paths.
    kiosk = await queue.issue("kokurakita", "certs", now=T0, channel=Channel.KIOSK)
    assert kiosk.ticket.status is TicketStatus.WAITING
    # The next office day, the phone may take tickets again.
    app.state.offset = 86_400.0
    await queue.open_counter("kokurakita", "c1", ["certs"], now=T0 + 86_400)
    async with phone(app) as third:
        token_of(await take(third))


async def test_the_limit_counters_expire(
    http: httpx.AsyncClient, queue: QueueClient, aredis: AsyncRedis
) -> None:
    await open_counters(queue)
    token_of(await take(http))
    counted = [k for k in await aredis.keys("mg:limit:web:*")]
    assert len(counted) == 2
    for key in counted:
        assert 0 < await aredis.ttl(key) <= 2 * 86_400


async def test_a_closed_office_says_so(http: httpx.AsyncClient, queue: QueueClient) -> None:
    page = await http.get(f"{PAGE}?lang=en")
    assert "Closed: no counter is taking tickets now" in shown(page)
    assert "Take a ticket</button>" not in page.text
    refused = await take(http)
    assert refused.status_code == 409
    assert "The office is closed now" in shown(refused)
    assert positions(await queue.snapshot("kokurakita", now=T0)) == {}


async def test_a_service_not_taking_tickets_says_so(
    http: httpx.AsyncClient, queue: QueueClient
) -> None:
    await open_counters(queue, "certs")
    refused = await take(http, "moving")
    assert refused.status_code == 409
    assert "This service is not taking tickets now" in shown(refused)


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"service": "nope"}, 422, "Please choose one of the services listed."),
        ({"service": "care"}, 422, "Please choose one of the services listed."),
        ({"service": "<b>"}, 422, "Please choose one of the services listed."),
        ({"key": "not a key!"}, 422, "Please choose one of the services listed."),
        ({"csrf": ""}, 403, "This form has expired"),
        ({"csrf": "x" * 43}, 403, "This form has expired"),
    ],
)
async def test_bad_input_is_refused_in_the_residents_language(
    app: Starlette,
    office: Office,
    queue: QueueClient,
    change: dict[str, str],
    status: int,
    message: str,
) -> None:
    await open_counters(queue)
    async with phone(app, **{"accept-language": "en"}) as http:
        form = {**await office_form(http), "service": "certs", **change}
        refused = await http.post(PAGE, data=form)
    assert refused.status_code == status
    assert message in shown(refused)
    assert positions(await queue.snapshot("kokurakita", now=T0)) == {}
    async with phone(app, **{"accept-language": "ja"}) as http:
        form = {**await office_form(http), "service": "certs", **change}
        refused = await http.post(PAGE, data=form)
    assert refused.status_code == status
    assert '<html lang="ja">' in refused.text


async def test_a_post_that_is_not_a_form_is_refused_with_a_page(
    http: httpx.AsyncClient, queue: QueueClient
) -> None:
    await open_counters(queue)
    await http.get(PAGE)
    for body, kind in ((b'{"service": "certs"}', "application/json"), (b"\xff=\xfe", "")):
        headers = {"content-type": kind or "application/x-www-form-urlencoded"}
        refused = await http.post(PAGE, content=body, headers=headers)
        assert refused.status_code == 400
        assert "The form could not be read." in shown(refused)
    huge = await http.post(PAGE, data={"service": "x" * 20_000})
    assert huge.status_code == 400
    assert positions(await queue.snapshot("kokurakita", now=T0)) == {}


async def test_a_form_from_another_phone_is_refused(
    app: Starlette, office: Office, queue: QueueClient
) -> None:
    await open_counters(queue)
    async with phone(app) as mine, phone(app) as theirs:
        form = {**await office_form(mine), "service": "certs"}
        await theirs.get(PAGE)  # a cookie of its own
        refused = await theirs.post(PAGE, data=form)
    assert refused.status_code == 403


async def test_unknown_office_and_ticket_are_friendly_404s(http: httpx.AsyncClient) -> None:
    for path in (
        "/o/nowhere",
        "/o/NOT_A_SLUG",
        "/o/nowhere/poster",
        "/o/kokurakita/t/AAAAAAAAAAAAAAAAAAAAAA",
        "/o/kokurakita/t/short",
        "/o/kokurakita/t/AAAAAAAAAAAAAAAAAAAAAA/events",
        "/o/kokurakita/t/AAAAAAAAAAAAAAAAAAAAAA/cancel",
    ):
        page = await http.get(path, headers={"accept-language": "en"})
        assert page.status_code == 404, path
        assert "Sorry" in page.text, path
    missing = await http.get("/o/kokurakita/t/AAAAAAAAAAAAAAAAAAAAAA?lang=en")
    assert "We cannot find this ticket" in shown(missing)


# -- cancelling --------------------------------------------------------------------------------


async def test_cancel_asks_first_then_cancels(http: httpx.AsyncClient, queue: QueueClient) -> None:
    await open_counters(queue)
    token = token_of(await take(http))
    confirm = await http.get(f"/o/kokurakita/t/{token}/cancel?lang=en")
    assert confirm.status_code == 200
    assert "Yes, cancel my ticket" in confirm.text
    csrf = FORM_TOKEN.search(confirm.text)
    assert csrf is not None
    done = await http.post(f"/o/kokurakita/t/{token}/cancel", data={"csrf": csrf.group(1)})
    assert done.status_code == 303
    assert done.headers["location"] == f"/o/kokurakita/t/{token}"
    assert (await queue.ticket("kokurakita", token, now=T0)).status is TicketStatus.CANCELLED
    page = await http.get(done.headers["location"])
    assert "This ticket was cancelled." in shown(page)
    assert "Take a new ticket" in page.text
    again = await http.post(f"/o/kokurakita/t/{token}/cancel", data={"csrf": csrf.group(1)})
    assert again.status_code == 409
    assert "no longer waiting" in shown(again)


async def test_cancel_without_the_form_token_is_refused(
    http: httpx.AsyncClient, queue: QueueClient
) -> None:
    await open_counters(queue)
    token = token_of(await take(http))
    for data in ({}, {"csrf": "w" * 43}):
        refused = await http.post(f"/o/kokurakita/t/{token}/cancel", data=data)
        assert refused.status_code == 403
    assert (await queue.ticket("kokurakita", token, now=T0)).status is TicketStatus.WAITING


# -- "tell me when" ------------------------------------------------------------------------------


async def test_notify_form_checks_its_input(
    app: Starlette, office: Office, queue: QueueClient, aredis: AsyncRedis
) -> None:
    app.state.settings = Settings(
        redis_url=app.state.settings.redis_url, smtp_host="127.0.0.1", **CHEAP_HASHES
    )
    await open_counters(queue)
    async with phone(app, **{"accept-language": "en"}) as http:
        token = token_of(await take(http))
        page = await http.get(f"/o/kokurakita/t/{token}")
        csrf = FORM_TOKEN.search(page.text)
        assert csrf is not None
        path = f"/o/kokurakita/t/{token}/notify"
        base = {"csrf": csrf.group(1), "ahead": "3"}
        cases: list[tuple[dict[str, str], int, str]] = [
            ({**base, "email": "nobody"}, 422, "does not look complete"),
            ({**base, "ahead": "7", "email": "a@example.jp"}, 422, "how many tickets ahead"),
            (base, 422, "Please give an e-mail address"),
            ({**base, "push": "{not json"}, 422, "could not be set up"),
            (
                {**base, "push": json.dumps({"endpoint": "http://10.0.0.1/", "keys": {}})},
                422,
                "could not be set up",
            ),
            ({"ahead": "3", "email": "a@example.jp"}, 403, "expired"),
        ]
        for data, status, message in cases:
            refused = await http.post(path, data=data)
            assert refused.status_code == status, data
            assert message in shown(refused), data
        ticket = await queue.ticket("kokurakita", token, now=T0)
        assert await aredis.exists(keys.contact("kokurakita", ticket.id)) == 0
        saved = await http.post(path, data={**base, "email": "hanako@example.jp"})
        assert saved.status_code == 303
        contact = await aredis.hgetall(keys.contact("kokurakita", ticket.id))
        assert contact["email"] == "hanako@example.jp"
        assert contact["ahead"] == "3"
        assert contact["lang"] == "en"
        assert "hanako" not in str(await aredis.hgetall(keys.ticket("kokurakita", ticket.id)))
        page = await http.get(saved.headers["location"])
        assert "You will be told when 3 tickets are ahead of you." in shown(page)


# -- the live view over server-sent events ---------------------------------------------------------


@dataclass
class Stream:
    """An SSE response read straight from the app, event by event."""

    events: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)
    status: int = 0
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    #: The response is over (its last body said no more comes).
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    raw: list[bytes] = field(default_factory=list)

    async def next(self) -> dict[str, str]:
        return await asyncio.wait_for(self.events.get(), 10)

    async def view(self) -> tuple[str, dict[str, Any]]:
        event = await self.next()
        return event["id"], json.loads(event["data"])


@asynccontextmanager
async def sse(app: Starlette, path: str, last_event_id: str = "") -> AsyncIterator[Stream]:
    stream = Stream()
    headers = [(b"host", b"localhost"), (b"accept", b"text/event-stream")]
    if last_event_id:
        headers.append((b"last-event-id", last_event_id.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50_001),
        "server": ("localhost", 80),
    }
    buffer = b""
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await stream.gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal buffer
        if message["type"] == "http.response.start":
            stream.status = message["status"]
            stream.started.set()
            return
        chunk = message.get("body", b"")
        stream.raw.append(chunk)
        if not message.get("more_body", False):
            stream.ended.set()
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode().split("\n"):
                name, _, value = line.partition(": ")
                if name in ("id", "data", "event"):
                    fields[name] = value
            if "data" in fields:
                await stream.events.put(fields)

    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(stream.started.wait(), 10)
    try:
        yield stream
    finally:
        stream.gone.set()
        await asyncio.wait_for(task, 10)


async def finish_held(queue: QueueClient, counter: str, now: float) -> None:
    snapshot = await queue.snapshot("kokurakita", now=now)
    held = next(c.current for c in snapshot.counters if c.id == counter)
    assert held is not None
    await queue.start("kokurakita", held, now=now)
    await queue.finish("kokurakita", held, now=now + 1)


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


async def test_the_ticket_page_is_live_and_resumes_after_a_dropped_connection(
    app: Starlette, office: Office, queue: QueueClient
) -> None:
    await open_counters(queue, "certs", name="3")
    await queue.open_counter("kokurakita", "c2", ["certs"], now=T0, name="5")
    for _ in range(3):
        await queue.issue("kokurakita", "certs", now=T0)
    mine = (await queue.issue("kokurakita", "certs", now=T0 + 1)).ticket
    path = f"/o/kokurakita/t/{mine.token}/events"
    async with sse(app, path) as stream:
        assert stream.status == 200
        first_id, first = await stream.view()
        assert first["status"] == "waiting"
        assert first["position"] == 4
        assert first["ahead"] == 3
        assert first["wait"] is not None
        assert first["low"] <= first["wait"] <= first["high"]
        await queue.call_next("kokurakita", "c1", now=T0 + 10)
        second_id, second = await stream.view()
        assert second["position"] == 3
        assert _order(second_id) > _order(first_id)
    # While the phone is away: everyone ahead is called, and then this ticket, at counter 5.
    await queue.call_next("kokurakita", "c2", now=T0 + 20)
    for counter in ("c1", "c2"):
        await finish_held(queue, counter, T0 + 30)
    await queue.call_next("kokurakita", "c1", now=T0 + 50)
    called = await queue.call_next("kokurakita", "c2", now=T0 + 51)
    assert called is not None
    assert called.id == mine.id
    async with sse(app, path, last_event_id=second_id) as stream:
        resumed_id, resumed = await stream.view()
        assert resumed["status"] == "called"
        assert resumed["counter"] == "5"
        assert resumed["position"] == 0
        assert _order(resumed_id) > _order(second_id)
    # Up to date: nothing is sent again; the next message is the next change.
    async with sse(app, path, last_event_id=resumed_id) as stream:
        await queue.recall("kokurakita", mine.id, now=T0 + 60)
        _, recalled = await stream.view()
        assert recalled["status"] == "called"
        assert recalled["recalls"] == 1
        assert not stream.ended.is_set()
        await queue.no_show("kokurakita", mine.id, now=T0 + 70)
        _, ended = await stream.view()
        assert ended["status"] == "no_show"
        # The ticket is closed: the stream says so and ends.
        await asyncio.wait_for(stream.ended.wait(), 10)


async def test_a_view_is_encoded_once_for_every_phone_and_only_when_it_changes(
    app: Starlette, office: Office, queue: QueueClient
) -> None:
    await open_counters(queue, "certs")
    ahead = (await queue.issue("kokurakita", "certs", now=T0)).ticket
    mine = (await queue.issue("kokurakita", "certs", now=T0 + 1)).ticket
    path = f"/o/kokurakita/t/{mine.token}/events"
    async with sse(app, path) as one, sse(app, path) as two:
        _, first = await one.view()
        await two.view()
        feeds = app.state.ticket_watch._feeds["kokurakita"]
        assert list(feeds) == [mine.id]
        assert feeds[mine.id].watchers == 2
        # A ticket for another service changes nothing this phone sees: nothing is sent.
        await queue.issue("kokurakita", "moving", now=T0 + 2)
        await queue.cancel("kokurakita", ahead.id, now=T0 + 3)
        _, one_next = await one.view()
        _, two_next = await two.view()
        assert one_next == two_next
        assert (first["position"], one_next["position"]) == (2, 1)
        assert one.raw[-1] == two.raw[-1]
        # The same encoded message, not two equal ones.
        assert one.raw[-1] is two.raw[-1] is feeds[mine.id].message
    assert (
        "kokurakita" not in app.state.ticket_watch._feeds
        or not app.state.ticket_watch._feeds["kokurakita"]
    )


async def test_an_event_stream_of_a_closed_ticket_says_so_and_ends(
    app: Starlette, office: Office, queue: QueueClient
) -> None:
    await open_counters(queue, "certs")
    mine = (await queue.issue("kokurakita", "certs", now=T0)).ticket
    await queue.cancel("kokurakita", mine.id, now=T0 + 1)
    async with sse(app, f"/o/kokurakita/t/{mine.token}/events") as stream:
        closed_id, view = await stream.view()
        assert view["status"] == "cancelled"
        await asyncio.wait_for(stream.ended.wait(), 10)
    # A phone that has seen the last view is told nothing more, and the stream ends.
    async with sse(app, f"/o/kokurakita/t/{mine.token}/events", closed_id) as stream:
        await asyncio.wait_for(stream.ended.wait(), 10)
        assert stream.events.empty()


async def test_events_at_a_counter_read_only_the_ticket_they_name(
    app: Starlette, office: Office, queue: QueueClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await open_counters(queue, "certs")
    first = (await queue.issue("kokurakita", "certs", now=T0)).ticket
    second = (await queue.issue("kokurakita", "certs", now=T0 + 1)).ticket
    async with (
        sse(app, f"/o/kokurakita/t/{first.token}/events") as called,
        sse(app, f"/o/kokurakita/t/{second.token}/events") as waiting,
    ):
        _, view = await waiting.view()
        assert view["position"] == 2
        await called.view()
        await queue.call_next("kokurakita", "c1", now=T0 + 10)
        _, view = await called.view()
        assert view["status"] == "called"
        _, view = await waiting.view()
        assert view["position"] == 1
        snapshots = 0
        watch = app.state.ticket_watch
        refresh = watch.refresh

        async def counted(office: str, touched: Any, last: str) -> int:
            nonlocal snapshots
            snapshots += 1
            return int(await refresh(office, touched, last))

        monkeypatch.setattr(watch, "refresh", counted)
        await queue.start("kokurakita", first.id, now=T0 + 20)
        _, view = await called.view()
        assert view["status"] == "serving"
        await queue.finish("kokurakita", first.id, now=T0 + 30)
        _, view = await called.view()
        assert view["status"] == "done"
        await asyncio.wait_for(called.ended.wait(), 10)
        # Nobody moved in line: the office was not read again (a refresh reads it
        # whole), and the other phone was sent nothing.
        assert snapshots == 0
        assert waiting.events.empty()
        await queue.call_next("kokurakita", "c1", now=T0 + 40)
        _, view = await waiting.view()
        assert view["status"] == "called"
        assert snapshots >= 1


async def test_a_wait_that_moves_a_little_is_sent_at_most_so_often(
    office: Office, queue: QueueClient
) -> None:
    ticket = (await queue.issue("kokurakita", "certs", now=T0)).ticket
    feed = TicketFeed("kokurakita", ticket)
    written: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        written.append(message["body"])

    feed.stream.attach(send, feed.stream.version)

    def view(position: int, wait: int) -> TicketView:
        return TicketView("waiting", ticket.number, "certs", position, wait, wait - 5, wait + 5)

    assert feed.update(view(4, 30), "1-0", now=100.0)
    # Nothing new: nothing written.
    assert not feed.update(view(4, 30), "1-1", now=101.0)
    # A minute more or less: not worth waking the phone for, yet.
    assert not feed.update(view(4, 31), "1-2", now=102.0)
    assert len(written) == 1
    # Its place in line is sent at once, with the wait as it is then.
    assert feed.update(view(3, 29), "1-3", now=103.0)
    assert json.loads(written[-1].split(b"data: ")[1])["wait"] == 29
    # A wait that moved by much is sent at once too; by little, once enough time passed.
    assert feed.update(view(3, 40), "1-4", now=104.0)
    assert not feed.update(view(3, 41), "1-5", now=104.0 + ESTIMATE_SECONDS - 1)
    assert feed.update(view(3, 41), "1-6", now=104.0 + ESTIMATE_SECONDS)
    assert len(written) == 4
    assert written[-1] is feed.message
    assert feed.version == "1-6"
    # A quiet stream gets a keep-alive comment now and then, and nothing new.
    quiet = 104.0 + ESTIMATE_SECONDS
    feed.keep_alive(quiet + QUIET_SECONDS - 1)
    assert len(written) == 4
    feed.keep_alive(quiet + QUIET_SECONDS)
    assert written[-1] == b": keep-alive\n\n"
    assert feed.message.startswith(b"id: 1-6\n")


async def test_positions_agree_with_the_queue_scripts(office: Office, queue: QueueClient) -> None:
    await open_counters(queue, "certs", "moving")
    issued = [
        (await queue.issue("kokurakita", "certs", now=T0)).ticket,
        (await queue.issue("kokurakita", "certs", now=T0 + 1, priority=True)).ticket,
        (await queue.issue("kokurakita", "moving", now=T0 + 2)).ticket,
        (await queue.issue("kokurakita", "certs", now=T0 + 3, appointment_at=T0 + 60)).ticket,
        (await queue.issue("kokurakita", "certs", now=T0 + 4, appointment_at=T0 + 9000)).ticket,
        (await queue.issue("kokurakita", "certs", now=T0 + 5)).ticket,
    ]
    found = positions(await queue.snapshot("kokurakita", now=T0 + 10))
    for ticket in issued:
        assert (
            found[ticket.id] == (await queue.ticket("kokurakita", ticket.id, now=T0 + 10)).position
        )


async def test_the_poster_is_a_large_qr_code_of_the_office_page(http: httpx.AsyncClient) -> None:
    page = await http.get("/o/kokurakita/poster")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert "小倉北区役所" in page.text
    assert "Kokurakita Ward Office" in page.text
    assert "http://localhost/o/kokurakita" in page.text
    assert "Scan to take a ticket" in page.text


async def test_the_service_worker_is_served_from_the_root(http: httpx.AsyncClient) -> None:
    worker = await http.get("/sw.js")
    assert worker.status_code == 200
    assert worker.headers["content-type"].startswith("text/javascript")
    assert "showNotification" in worker.text
