"""The counter console's pages, and the staff's live event stream (``/staff/live/{office}``).

The stream is read over real HTTP from the app under uvicorn: an in-process ASGI
transport collects a whole response before returning it, and an event stream never ends.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from madoguchi.queue import keys
from madoguchi.queue.model import CounterState, Office
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web import console
from madoguchi.web.accounts import AccountStore, Role, StaffAccount
from madoguchi.web.app import create_app
from madoguchi.web.sessions import end_sessions

from conftest import T0, serving

PASSWORD = "Counter-Clerk-2026!"


@dataclass
class Served:
    url: str
    app: Any


@pytest.fixture
def served(settings: Settings, office: Office) -> Iterator[Served]:
    """The app under uvicorn on a free port, with the office ``kokurakita`` in place."""
    started = time.time()
    app = create_app(settings, clock=lambda: T0 + (time.time() - started))
    with serving(app) as port:
        yield Served(f"http://127.0.0.1:{port}", app)


async def make_account(
    aredis: Redis,
    username: str,
    *,
    role: Role = Role.STAFF,
    offices: tuple[str, ...] = ("kokurakita",),
    services: tuple[str, ...] = ("certs", "moving", "care"),
) -> StaffAccount:
    account = StaffAccount(username, f"Clerk {username}", role, offices, services)
    return await AccountStore(aredis).create(account, PASSWORD)


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        yield client


async def sign_in(client: httpx.AsyncClient, username: str) -> None:
    """Sign in through the real form, with the token it carries."""
    token = csrf_of((await client.get("/staff/signin")).text)
    answer = await client.post(
        "/staff/signin",
        data={"csrf": token, "username": username, "password": PASSWORD, "next": "/staff/"},
    )
    assert answer.status_code == 303, answer.text
    assert client.cookies.get("madoguchi")


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf(?:-token)?" (?:content|value)="([^"]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


# -- the picker and the page ---------------------------------------------------------------


async def test_the_console_asks_anonymous_visitors_to_sign_in(http: httpx.AsyncClient) -> None:
    answer = await http.get("/staff/console")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/staff/signin?next=/staff/console"
    answer = await http.get("/staff/console/kokurakita/3")
    assert answer.headers["location"] == "/staff/signin?next=/staff/console/kokurakita/3"


async def test_the_picker_offers_only_the_in_person_services_the_account_may_serve(
    http: httpx.AsyncClient, aredis: Redis
) -> None:
    await make_account(aredis, "ito", services=("certs", "care"))
    await sign_in(http, "ito")
    page = (await http.get("/staff/console")).text
    offered = re.findall(r'name="services" value="([a-z-]+)"', page)
    # "moving" is not hers; "care" is hers but remote: answered by staff, not at a counter.
    assert offered == ["certs"]
    assert 'name="office" value="kokurakita"' in page


async def test_someone_at_two_offices_picks_the_office_first(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await queue.put_office(Office("tobata", "戸畑区役所", "Tobata Ward Office"), now=T0)
    await queue.put_office(Office("moji", "門司区役所", "Moji Ward Office"), now=T0)
    await make_account(aredis, "ito", offices=("kokurakita", "tobata"))
    await sign_in(http, "ito")
    page = (await http.get("/staff/console")).text
    assert re.findall(r'<option value="([a-z]+)">', page) == ["kokurakita", "tobata"]
    assert 'name="services"' not in page
    chosen = (await http.get("/staff/console?office=kokurakita")).text
    assert 'name="office" value="kokurakita"' in chosen
    assert re.findall(r'name="services" value="([a-z-]+)"', chosen) == ["certs", "moving"]
    # An office she does not work at is not offered, even when asked for.
    assert 'name="services"' not in (await http.get("/staff/console?office=moji")).text


async def test_opening_a_counter_leads_to_its_console_and_is_remembered(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await make_account(aredis, "ito", services=("certs", "moving"))
    await sign_in(http, "ito")
    token = csrf_of((await http.get("/staff/console")).text)
    answer = await http.post(
        "/staff/console",
        data={"csrf": token, "office": "kokurakita", "counter": "3", "services": ["moving"]},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/staff/console/kokurakita/3"
    [counter] = (await queue.snapshot("kokurakita", now=T0)).counters
    assert (counter.id, counter.state, counter.services) == ("3", CounterState.OPEN, ("moving",))
    [(_, fields)] = await aredis.xrevrange(keys.events("kokurakita"), count=1)
    assert json.loads(fields["e"])["actor"] == "staff:ito"

    # Back to /staff/console later: this browser goes straight to its counter.
    again = await http.get("/staff/console")
    assert again.status_code == 303
    assert again.headers["location"] == "/staff/console/kokurakita/3"
    # "Change" shows the picker, with what the counter serves ticked.
    change = (await http.get("/staff/console?office=kokurakita&counter=3")).text
    assert re.search(r'value="moving" checked', change)
    assert not re.search(r'value="certs" checked', change)

    page = await http.get("/staff/console/kokurakita/3")
    assert page.status_code == 200
    assert f'<meta name="csrf-token" content="{token}">' in page.text
    assert 'data-office="kokurakita" data-counter="3"' in page.text
    assert '<script type="module" src="/static/console.js' in page.text
    assert "Call next" in page.text
    assert "<script>" not in page.text  # the CSP allows no inline script


async def test_a_closed_counter_is_not_where_the_console_goes_back_to(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    token = csrf_of((await http.get("/staff/console")).text)
    await http.post(
        "/staff/console",
        data={"csrf": token, "office": "kokurakita", "counter": "3", "services": ["certs"]},
    )
    await queue.close_counter("kokurakita", "3", now=T0 + 60)
    answer = await http.get("/staff/console")
    assert answer.status_code == 200
    assert "Open a counter" in answer.text


BAD_CHOICES: list[tuple[dict[str, Any], str]] = [
    ({"counter": "3", "services": ["moving"]}, "Choose at least one service"),  # not hers
    ({"counter": "3", "services": []}, "Choose at least one service"),
    ({"counter": "3", "services": ["nothing"]}, "Choose at least one service"),
    ({"counter": "Counter 3!", "services": ["certs"]}, "lowercase letters"),
    ({"counter": "", "services": ["certs"]}, "lowercase letters"),
    ({"office": "tobata", "counter": "3", "services": ["certs"]}, "office you work at"),
]


async def test_opening_refuses_bad_choices_with_a_clear_message(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await make_account(aredis, "ito", services=("certs",))
    await sign_in(http, "ito")
    token = csrf_of((await http.get("/staff/console")).text)
    for form, message in BAD_CHOICES:
        data = {"csrf": token, "office": "kokurakita"} | form
        answer = await http.post("/staff/console", data=data)
        assert answer.status_code == 422, form
        assert message in answer.text, form
        assert 'role="alert"' in answer.text
    assert (await queue.snapshot("kokurakita", now=T0)).counters == []


async def test_opening_needs_the_csrf_token(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    answer = await http.post(
        "/staff/console",
        data={"csrf": "forged", "office": "kokurakita", "counter": "3", "services": ["certs"]},
    )
    assert answer.status_code == 403
    assert (await queue.snapshot("kokurakita", now=T0)).counters == []


async def test_the_console_of_a_counter_that_does_not_exist_offers_to_open_it(
    http: httpx.AsyncClient, aredis: Redis
) -> None:
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    answer = await http.get("/staff/console/kokurakita/9")
    assert answer.status_code == 404
    assert "does not exist at this office yet" in answer.text
    assert 'value="9"' in answer.text


async def test_the_console_of_another_office_is_forbidden(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await queue.put_office(Office("tobata", "戸畑区役所", "Tobata Ward Office"), now=T0)
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    assert (await http.get("/staff/console/tobata/1")).status_code == 403
    assert (await http.get("/staff/console?office=tobata")).status_code == 200  # picker, unchosen


# -- the live stream -----------------------------------------------------------------------


@dataclass
class Received:
    id: str
    event: str
    data: dict[str, Any]


@dataclass
class EventReader:
    """Server-sent events off a streaming response, one at a time."""

    response: httpx.Response
    lines: AsyncIterator[str] = field(init=False)
    retry: int | None = None

    def __post_init__(self) -> None:
        self.lines = self.response.aiter_lines()

    async def next(self) -> Received:
        return await asyncio.wait_for(self._next(), 10.0)

    async def _next(self) -> Received:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line == "":
                if "data" in fields:
                    return Received(
                        fields.get("id", ""),
                        fields.get("event", "message"),
                        json.loads(fields["data"]),
                    )
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value
        raise AssertionError("the stream ended")

    async def until(self, kind: str) -> list[Received]:
        """Every event up to and including the first of ``kind``."""
        seen = [await self.next()]
        while seen[-1].event != kind:
            seen.append(await self.next())
        return seen


async def stream_ids(aredis: Redis, office: str = "kokurakita") -> list[str]:
    return [entry_id for entry_id, _ in await aredis.xrange(keys.events(office))]


async def test_the_stream_refuses_anonymous_and_other_offices(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await queue.put_office(Office("tobata", "戸畑区役所", "Tobata Ward Office"), now=T0)
    anonymous = await http.get("/staff/live/kokurakita")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    await make_account(aredis, "ito", offices=("tobata",))
    await sign_in(http, "ito")
    answer = await http.get("/staff/live/kokurakita")
    assert answer.status_code == 403
    assert "kokurakita" in answer.json()["error"]["message"]


async def test_the_stream_refuses_a_malformed_last_event_id(
    http: httpx.AsyncClient, aredis: Redis
) -> None:
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    answer = await http.get("/staff/live/kokurakita", headers={"Last-Event-ID": "yesterday"})
    assert answer.status_code == 400
    assert "yesterday" in answer.json()["error"]["message"]
    assert (await http.get("/staff/live/kokurakita?after=0-0;drop")).status_code == 400


async def test_an_admin_asking_for_an_office_that_does_not_exist_gets_404(
    http: httpx.AsyncClient, aredis: Redis
) -> None:
    await make_account(aredis, "sato", role=Role.ADMIN, offices=())
    await sign_in(http, "sato")
    answer = await http.get("/staff/live/nowhere")
    assert answer.status_code == 404


async def test_events_arrive_with_their_stream_ids(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await queue.issue("kokurakita", "certs", now=T0)  # before the stream: not sent again
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    async with http.stream("GET", "/staff/live/kokurakita") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = EventReader(response)
        [ready] = await events.until("ready")
        assert events.retry == console.RETRY_MS
        assert ready.id == (await stream_ids(aredis))[-1]
        issued = (await queue.issue("kokurakita", "moving", now=T0 + 5)).ticket
        await queue.open_counter("kokurakita", "1", ["moving"], now=T0 + 6, actor="staff:ito")
        await queue.call_next("kokurakita", "1", now=T0 + 7, actor="staff:ito")
        got = [await events.next() for _ in range(3)]
    assert [e.data["type"] for e in got] == ["issued", "counter_opened", "called"]
    assert [e.id for e in got] == (await stream_ids(aredis))[-3:]
    assert got[0].data["ticket"] == issued.id
    assert got[2].data == got[2].data | {"number": issued.number, "counter": "1"}
    assert got[2].data["actor"] == "staff:ito"


async def test_a_reconnecting_stream_misses_nothing(
    http: httpx.AsyncClient, aredis: Redis, queue: QueueClient
) -> None:
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    await queue.issue("kokurakita", "certs", now=T0)
    async with http.stream("GET", "/staff/live/kokurakita") as response:
        events = EventReader(response)
        await events.until("ready")
        await queue.issue("kokurakita", "certs", now=T0 + 1)
        seen = await events.next()
    # Disconnected: all this happens while the console is away.
    for n in range(3):
        await queue.issue("kokurakita", "moving", now=T0 + 10 + n)
    await queue.open_counter("kokurakita", "1", ["certs"], now=T0 + 20)
    await queue.call_next("kokurakita", "1", now=T0 + 21)
    missed = (await stream_ids(aredis))[-5:]

    # The browser's own reconnection sends Last-Event-ID.
    headers = {"Last-Event-ID": seen.id}
    async with http.stream("GET", "/staff/live/kokurakita", headers=headers) as response:
        events = EventReader(response)
        replayed = await events.until("ready")
        assert [e.id for e in replayed[:-1]] == missed
        kinds = [e.data["type"] for e in replayed[:-1]]
        assert kinds == ["issued", "issued", "issued", "counter_opened", "called"]
        assert replayed[-1].id == missed[-1]
        # Then it goes on live, sending nothing twice.
        await queue.issue("kokurakita", "certs", now=T0 + 30)
        later = await events.next()
        assert later.data["type"] == "issued"
        assert later.id == (await stream_ids(aredis))[-1]

    # A page that opens a new stream says where it was with ?after=.
    async with http.stream("GET", f"/staff/live/kokurakita?after={seen.id}") as response:
        replayed = await EventReader(response).until("ready")
    assert [e.id for e in replayed[:-1]] == [*missed, later.id]


async def test_a_stream_too_far_behind_is_told_to_reset(
    http: httpx.AsyncClient,
    aredis: Redis,
    queue: QueueClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console, "REPLAY_LIMIT", 3)
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    await queue.issue("kokurakita", "certs", now=T0)
    start = (await stream_ids(aredis))[-1]
    for n in range(5):
        await queue.issue("kokurakita", "certs", now=T0 + n + 1)
    headers = {"Last-Event-ID": start}
    async with http.stream("GET", "/staff/live/kokurakita", headers=headers) as response:
        events = EventReader(response)
        got = await events.until("ready")
    assert [e.event for e in got] == ["reset", "ready"]
    assert got[0].id == got[1].id == (await stream_ids(aredis))[-1]


async def test_a_stream_ends_when_its_session_does(
    http: httpx.AsyncClient,
    aredis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console, "HEARTBEAT", 0.2)
    await make_account(aredis, "ito")
    await sign_in(http, "ito")
    async with http.stream("GET", "/staff/live/kokurakita") as response:
        events = EventReader(response)
        await events.until("ready")
        await end_sessions(aredis, "ito")  # as an admin who ends them does
        ended = await events.next()
    assert ended.event == "signed-out"
