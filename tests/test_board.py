"""The lobby board: its page, what it says for a call, and its resumable event stream."""

from __future__ import annotations

import re

import httpx
from redis.asyncio import Redis
from test_console import EventReader, Received, Served, served  # noqa: F401  (a fixture)

from madoguchi import __version__
from madoguchi.queue import keys
from madoguchi.queue.tickets import QueueClient
from madoguchi.web import board

from conftest import OFFICE, T0

BOARD = f"/o/{OFFICE.id}/board"


def test_a_call_is_said_in_japanese_then_english() -> None:
    assert board.spoken_number("A-023") == "A 23"
    assert board.spoken_number("AB-100") == "AB 100"
    assert board.announcement("A-023", "3番窓口") == (
        ("ja-JP", "A 23番の番号札をお持ちの方、3番窓口へお越しください。"),
        ("en-US", "Ticket number A 23, please come to counter 3."),
    )
    # A counter named by a bare number is a numbered counter in Japanese too.
    assert board.announcement("B-007", "12")[0][1].endswith("12番窓口へお越しください。")
    assert board.announcement("B-007", "相談室")[1][1].endswith("counter 相談室.")


async def test_the_page_shows_the_latest_in_person_calls_and_the_waits(
    client: httpx.AsyncClient, queue: QueueClient
) -> None:
    await queue.put_counter(OFFICE.id, "window-3", ["certs"], now=T0, name="3番窓口")
    await queue.open_counter(OFFICE.id, "window-3", now=T0)
    for n, service in enumerate(["certs", "certs", "moving"]):
        await queue.issue(OFFICE.id, service, now=T0 + n)
    numbers = []
    for n in range(2):
        called = await queue.call_next(OFFICE.id, "window-3", now=T0 + 10 + n)
        assert called is not None
        numbers.append(called.number)
        await queue.no_show(OFFICE.id, called.id, now=T0 + 10.5 + n)
    assert numbers == ["A-001", "A-002"]

    page = await client.get(BOARD + "?lang=en")
    assert page.status_code == 200
    calls = re.findall(
        r'<li class="call( latest)?" data-id="[\d-]+">\s*<span class="call-number">([^<]+)</span>'
        r'.*?<span class="call-counter">([^<]+)</span>',
        page.text,
        re.S,
    )
    # Newest first and largest.
    assert calls == [(" latest", "A-002", "3番窓口"), ("", "A-001", "3番窓口")]
    assert f'data-version="{__version__}"' in page.text
    assert "Start the board" in page.text
    waits = re.findall(r'data-service="(\w+)">.*?data-field="waiting">(\d+)<', page.text, re.S)
    assert waits == [("certs", "0"), ("moving", "1"), ("care", "0")]


async def next_call(events: EventReader) -> Received:
    while True:
        event = await events.next()
        if event.event == "call":
            return event


async def test_the_stream_sends_each_call_with_what_to_say(
    served: Served,  # noqa: F811
    queue: QueueClient,
    aredis: Redis,
) -> None:
    await queue.put_counter(OFFICE.id, "window-3", ["certs"], now=T0, name="3番窓口")
    await queue.open_counter(OFFICE.id, "window-3", now=T0)
    await queue.issue(OFFICE.id, "certs", now=T0)
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", BOARD + "/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = EventReader(response)
        hello, ready = await events.until("ready")
        assert (hello.event, hello.data) == ("hello", {"version": __version__})
        assert events.retry == board.RETRY_MS
        [(latest, _)] = await aredis.xrevrange(keys.events(OFFICE.id), count=1)
        assert ready.id == latest
        now = served.app.state.clock()
        called = await queue.call_next(OFFICE.id, "window-3", now=now)
        assert called is not None
        call = await next_call(events)
    [(call_id, _)] = await aredis.xrevrange(keys.events(OFFICE.id), count=1)
    assert call.id == call_id
    assert call.data == {
        "number": "A-001",
        "counter": "3番窓口",
        "service": "certs",
        "recall": False,
        "say": [
            {"lang": "ja-JP", "text": "A 1番の番号札をお持ちの方、3番窓口へお越しください。"},
            {"lang": "en-US", "text": "Ticket number A 1, please come to counter 3."},
        ],
        "announce": True,
    }

    # A board that lost its connection resumes after the last event it saw: the call again.
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", BOARD + "/events", headers={"Last-Event-ID": ready.id}) as response,
    ):
        events = EventReader(response)
        resumed = await events.until("ready")
    calls = [e for e in resumed if e.event == "call"]
    assert [(e.id, e.data["number"]) for e in calls] == [(call_id, "A-001")]
    assert resumed[-1].id == call_id

    # One that saw the call gets nothing again.
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", BOARD + f"/events?after={call_id}") as response,
    ):
        resumed = await EventReader(response).until("ready")
    assert [e.event for e in resumed] == ["hello", "ready"]


async def test_calls_missed_long_ago_are_shown_but_not_announced_again(
    served: Served,  # noqa: F811
    queue: QueueClient,
    aredis: Redis,
) -> None:
    await queue.open_counter(OFFICE.id, "window-1", ["certs"], now=T0)
    await queue.issue(OFFICE.id, "certs", now=T0)
    [(before, _)] = await aredis.xrevrange(keys.events(OFFICE.id), count=1)
    old = served.app.state.clock() - board.ANNOUNCE_SECONDS - 30
    await queue.call_next(OFFICE.id, "window-1", now=old)
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", BOARD + f"/events?after={before}") as response,
    ):
        resumed = await EventReader(response).until("ready")
    [call] = [e for e in resumed if e.event == "call"]
    assert call.data["announce"] is False


async def test_the_stream_carries_the_office_waits(
    served: Served,  # noqa: F811
    queue: QueueClient,
) -> None:
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", BOARD + "/events") as response,
    ):
        events = EventReader(response)
        await events.until("ready")
        await queue.issue(OFFICE.id, "moving", now=T0)
        while True:
            event = await events.next()
            if event.event != "office":
                continue
            services = {s["id"]: s for s in event.data["services"]}
            if services["moving"]["waiting"] == 1:
                break
        assert event.data["office"] == OFFICE.id


async def test_a_malformed_last_event_id_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.get(BOARD + "/events", headers={"Last-Event-ID": "yesterday"})
    assert answer.status_code == 400
    assert "yesterday" in answer.json()["error"]["message"]
