"""The public congestion page, its live feed, usual busy hours, and the open data."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
from redis.asyncio import Redis
from starlette.types import Message
from test_console import EventReader, Served, served  # noqa: F401  (a fixture)

from madoguchi.queue.model import Office, Service
from madoguchi.queue.tickets import QueueClient
from madoguchi.web import busy, congestion
from madoguchi.web.live import Broadcast

from conftest import OFFICE, SERVICES, T0, shown

TOKYO = ZoneInfo("Asia/Tokyo")
WAKAMATSU = Office("wakamatsu", "若松区役所", "Wakamatsu Ward Office")


def tokyo(day: str, clock: str) -> float:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=TOKYO).timestamp()


def by_service(body: dict[str, object], office: str) -> dict[str, dict[str, object]]:
    offices = body["offices"]
    assert isinstance(offices, list)
    [found] = [o for o in offices if o["office"] == office]
    return {s["service"]: s for s in found["services"]}


async def set_bands(queue: QueueClient, service: str, bands: tuple[int, int, int]) -> None:
    known = next(s for s in SERVICES if s.id == service)
    await queue.put_service(OFFICE.id, Service(**{**known.__dict__, "bands": bands}), now=T0)


# -- open data of the current waits ---------------------------------------------------------


async def test_open_waits_give_every_service_with_its_numbers(
    client: httpx.AsyncClient, queue: QueueClient
) -> None:
    await queue.open_counter(OFFICE.id, "window-1", ["certs"], now=T0)
    for n in range(3):
        await queue.issue(OFFICE.id, "certs", now=T0 + n)
    await queue.issue(OFFICE.id, "moving", now=T0 + 5)

    answer = await client.get("/open/waits.json")
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == f"public, max-age={congestion.WAITS_MAX_AGE}"
    body = answer.json()
    assert body["generated_at"] == "2026-11-26T00:00:00Z"
    [office] = body["offices"]
    assert office["office"] == "kokurakita"
    assert office["office_name_ja"] == "小倉北区役所"
    assert office["waiting"] == 4
    services = by_service(body, "kokurakita")
    assert list(services) == ["certs", "moving", "care"]  # in prefix order
    certs, moving, care = services["certs"], services["moving"], services["care"]
    assert set(certs) == set(congestion.WAITS_FIELDS) - {
        "office",
        "office_name_ja",
        "office_name_en",
        "as_of",
    }
    assert (certs["waiting"], certs["open_counters"], certs["mode"]) == (3, 1, "in_person")
    assert (moving["waiting"], moving["open_counters"]) == (1, 0)
    assert (care["waiting"], care["mode"]) == (0, "remote")
    for service in services.values():
        assert 0 <= service["wait_low_minutes"] <= service["wait_minutes"]
        assert service["wait_minutes"] <= service["wait_high_minutes"]
        assert (service["band_moderate_from"], service["band_very_long_from"]) == (15, 60)
    # Three certificates at one counter, three minutes each by default: about nine minutes.
    assert 5 <= certs["wait_minutes"] <= 14

    table = await client.get("/open/waits.csv")
    assert table.status_code == 200
    assert table.headers["content-type"] == "text/csv; charset=utf-8"
    assert table.headers["access-control-allow-origin"] == "*"
    assert table.text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(table.text.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == congestion.WAITS_FIELDS
    assert [(r["office"], r["service"], r["waiting"]) for r in rows] == [
        ("kokurakita", "certs", "3"),
        ("kokurakita", "moving", "1"),
        ("kokurakita", "care", "0"),
    ]
    assert rows[0]["wait_minutes"] == str(certs["wait_minutes"])
    assert rows[0]["band"] == certs["band"]


async def test_each_service_is_banded_by_its_own_thresholds(
    client: httpx.AsyncClient, queue: QueueClient
) -> None:
    # No counter open: a waiting certificate means about two times three minutes.
    await set_bands(queue, "certs", (3, 4, 5))
    await queue.issue(OFFICE.id, "certs", now=T0)

    services = by_service((await client.get("/open/waits.json")).json(), "kokurakita")
    certs, moving, care = services["certs"], services["moving"], services["care"]
    assert certs["wait_minutes"] >= 5
    assert certs["band"] == "very_long"  # it would be "short" under the default 15/30/60
    assert (certs["band_moderate_from"], certs["band_very_long_from"]) == (3, 5)
    # The others keep the default: an empty line with one counter's worth of a 700 s service
    # is short; a 900 s remote consultation reaches the moderate band's 15 minutes.
    assert (moving["wait_minutes"], moving["band"]) == (12, "short")
    assert (care["wait_minutes"], care["band"]) == (15, "moderate")

    page = await client.get("/?lang=en")
    assert page.status_code == 200
    rows = dict(re.findall(r'data-service="(\w+)">(.*?)</li>', page.text, re.S))
    assert "Very long wait" in rows["certs"]
    assert 'class="band band-3"' in rows["certs"]
    assert "Short wait" in rows["moving"]
    assert "#band-icon-0" in rows["moving"]
    assert "Moderate wait" in rows["care"]
    assert "No counter is open for this now." in shown(page)


async def test_the_congestion_page_speaks_the_asked_language(client: httpx.AsyncClient) -> None:
    japanese = await client.get("/?lang=ja")
    assert '<html lang="ja"' in japanese.text
    assert "小倉北区役所" in japanese.text
    assert "証明書" in japanese.text
    english = await client.get("/?lang=en")
    assert '<html lang="en"' in english.text
    assert "Kokurakita Ward Office" in english.text
    assert "Certificates" in english.text
    assert 'href="/live"' not in english.text  # the script opens the stream itself
    assert "/static/congestion.js" in english.text


# -- usual busy hours -----------------------------------------------------------------------


async def seed_history(queue: QueueClient) -> None:
    """Wakamatsu: two Mondays with 4 and 2 tickets at ten, each called after six minutes;
    a Tuesday with one ticket at two in the afternoon that nobody called."""
    start = tokyo("2026-11-01", "08:00")
    await queue.put_office(WAKAMATSU, now=start)
    await queue.put_service(WAKAMATSU.id, SERVICES[0], now=start)
    for day, count in (("2026-11-16", 4), ("2026-11-23", 2)):
        await queue.open_counter(WAKAMATSU.id, "window-1", ["certs"], now=tokyo(day, "09:00"))
        issued = tokyo(day, "10:05")
        for n in range(count):
            await queue.issue(WAKAMATSU.id, "certs", now=issued + 60 * n)
        for n in range(count):
            called = await queue.call_next(WAKAMATSU.id, "window-1", now=issued + 60 * n + 360)
            assert called is not None
            await queue.start(WAKAMATSU.id, called.id, now=issued + 60 * n + 365)
            await queue.finish(WAKAMATSU.id, called.id, now=issued + 60 * n + 390)
        await queue.close_counter(WAKAMATSU.id, "window-1", now=tokyo(day, "17:00"))
    await queue.issue(WAKAMATSU.id, "certs", now=tokyo("2026-11-24", "14:30"))


async def test_busy_hours_are_learned_per_weekday_and_hour(
    client: httpx.AsyncClient, queue: QueueClient
) -> None:
    await seed_history(queue)
    answer = await client.get("/open/busy-hours.json")
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == f"public, max-age={busy.BUSY_MAX_AGE}"
    body = answer.json()
    assert body["weeks"] == busy.WEEKS
    offices = {o["office"]: o for o in body["offices"]}
    assert offices["kokurakita"]["hours"] == []  # no history yet
    wakamatsu = offices["wakamatsu"]
    # T0 is Thursday 26 November, 09:00: the last final day is Wednesday the 25th.
    assert (wakamatsu["from"], wakamatsu["to"]) == ("2026-10-01", "2026-11-25")
    assert wakamatsu["hours"] == [
        {
            "weekday": 0,
            "weekday_name": "Monday",
            "hour": 10,
            "tickets_per_hour": 3.0,
            "mean_wait_minutes": 6.0,
            "days": 2,
            "level": 4,
        },
        {
            "weekday": 1,
            "weekday_name": "Tuesday",
            "hour": 14,
            "tickets_per_hour": 1.0,
            "mean_wait_minutes": None,
            "days": 1,
            "level": math.ceil(4 * 1.0 / 3.0),
        },
    ]

    table = await client.get("/open/busy-hours.csv")
    rows = list(csv.DictReader(io.StringIO(table.text.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == busy.BUSY_FIELDS
    assert [(r["office"], r["weekday"], r["hour"], r["tickets_per_hour"]) for r in rows] == [
        ("wakamatsu", "0", "10", "3.0"),
        ("wakamatsu", "1", "14", "1.0"),
    ]
    assert rows[1]["mean_wait_minutes"] == ""


async def test_the_busy_hours_page_draws_a_heat_map_and_its_table(
    client: httpx.AsyncClient, queue: QueueClient
) -> None:
    await seed_history(queue)
    page = await client.get("/o/wakamatsu/busy?lang=en")
    assert page.status_code == 200
    svg = re.search(r'<svg class="heat".*?</svg>', page.text, re.S)
    assert svg is not None
    # Two open weekdays, Monday and Tuesday, by the hours from ten to two: ten cells.
    cells = re.findall(r'<rect class="cell level-(\d)"', svg.group(0))
    assert len(cells) == 10
    assert cells.count("4") == 1
    assert cells.count("2") == 1
    assert cells.count("0") == 8
    assert 'role="img"' in svg.group(0)
    assert "<title" in svg.group(0)
    table = re.search(r'<table class="busy-table">.*?</table>', page.text, re.S)
    assert table is not None
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table.group(0)))
    assert "Monday 3.0 (6) – – – –" in text
    assert "Tuesday – – – – 1.0" in text

    empty = await client.get("/o/kokurakita/busy?lang=en")
    assert "not enough history" in empty.text


# -- people who follow a wrong link ---------------------------------------------------------


async def test_an_unknown_office_gets_a_page_that_says_so(client: httpx.AsyncClient) -> None:
    for path in (
        "/o/nowhere/busy",
        "/o/nowhere/board",
        "/o/nowhere/board/events",
        "/o/NOT%20AN%20ID!/board",
    ):
        answer = await client.get(path + "?lang=en")
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "No such office" in answer.text
        assert 'href="/?lang=en"' in answer.text
    japanese = await client.get("/o/nowhere/busy?lang=ja")
    assert '<html lang="ja"' in japanese.text
    assert "nowhere" in japanese.text


# -- the live feed --------------------------------------------------------------------------


async def waits_of_office(events: EventReader, office: str) -> dict[str, dict[str, object]]:
    """The services of ``office`` in the next ``waits`` event that is about it."""
    while True:
        event = await events.next()
        if event.event != "waits":
            continue
        for summary in event.data["offices"]:
            if summary["office"] == office:
                return {s["id"]: s for s in summary["services"]}


async def test_the_live_feed_sends_the_state_then_each_change(
    served: Served,  # noqa: F811
    queue: QueueClient,
) -> None:
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", "/live") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        events = EventReader(response)
        await queue.issue(OFFICE.id, "moving", now=T0)
        services = await waits_of_office(events, OFFICE.id)
        while services["moving"]["waiting"] != 1:
            services = await waits_of_office(events, OFFICE.id)
        assert services["certs"]["waiting"] == 0
        assert set(services["moving"]) == {"id", "waiting", "open", "wait", "low", "high", "band"}
        await queue.open_counter(OFFICE.id, "window-1", ["moving"], now=T0 + 1)
        services = await waits_of_office(events, OFFICE.id)
        assert services["moving"]["open"] == 1
        assert events.retry == congestion.RETRY_MS


async def test_a_burst_of_changes_is_coalesced(
    served: Served,  # noqa: F811
    queue: QueueClient,
) -> None:
    feed: congestion.Feed = served.app.state.congestion
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", "/live") as response,
    ):
        events = EventReader(response)
        began = time.monotonic()
        for n in range(30):
            await queue.issue(OFFICE.id, "certs", now=T0 + n)
        took = time.monotonic() - began
        messages = 0
        while True:
            services = await waits_of_office(events, OFFICE.id)
            messages += 1
            if services["certs"]["waiting"] == 30:
                break
    # Thirty changes, yet at most one message per interval (and the first and last).
    assert messages <= math.ceil(took / feed.interval) + 2, (messages, took)


async def test_a_new_watcher_gets_the_whole_state_first(
    served: Served,  # noqa: F811
    queue: QueueClient,
    aredis: Redis,
) -> None:
    await queue.put_office(WAKAMATSU, now=T0)
    await queue.issue(OFFICE.id, "certs", now=T0)
    [(last, _)] = await aredis.xrevrange("mg:{kokurakita}:events", count=1)
    feed: congestion.Feed = served.app.state.congestion
    deadline = time.monotonic() + 10
    while feed.offices.get("kokurakita", {}).get("event") != last or len(feed.offices) < 2:
        assert time.monotonic() < deadline, "the feed never caught up"
        await asyncio.sleep(0.05)
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        http.stream("GET", "/live") as response,
    ):
        first = await EventReader(response).next()
    assert first.event == "waits"
    assert [o["office"] for o in first.data["offices"]] == ["kokurakita", "wakamatsu"]
    assert first.data["offices"][0]["event"] == last


# -- writing one message to many ----------------------------------------------------------------


async def test_a_broadcast_skips_a_slow_reader_and_then_sends_it_the_whole_state() -> None:
    broadcast = Broadcast()
    fast: list[bytes] = []
    slow: list[bytes] = []
    full_buffer = asyncio.Event()

    async def send_fast(message: Message) -> None:
        fast.append(message["body"])

    async def send_slow(message: Message) -> None:
        if message["body"] == b"1":
            await full_buffer.wait()  # the client is not reading: the write waits
        slow.append(message["body"])

    async def send_gone(message: Message) -> None:
        raise OSError("the client went away")

    broadcast.attach(send_fast, 0)
    broadcast.attach(send_slow, 0)
    broadcast.attach(send_gone, 0)
    assert len(broadcast) == 3
    for n in (1, 2, 3):
        broadcast.publish(str(n).encode(), f"everything as of {n}".encode())
    assert fast == [b"1", b"2", b"3"]  # written at once, from the publishing task
    assert slow == []
    assert len(broadcast) == 2  # the one that is gone is no longer written to
    full_buffer.set()
    for _ in range(10):
        await asyncio.sleep(0)
    # Nothing was queued for it: it caught up with the whole state instead.
    assert slow == [b"1", b"everything as of 3"]
    broadcast.publish(b"4", b"everything as of 4")
    assert slow[-1] == b"4"
    # One that joins late, having seen an older state, is brought up to date at once.
    late: list[bytes] = []

    async def send_late(message: Message) -> None:
        late.append(message["body"])

    broadcast.attach(send_late, 1)
    assert late == [b"everything as of 4"]
