"""The public congestion page, its live feed, and the current waits as open data.

``/`` lists every office and service with the number waiting, the estimated wait for
a new ticket and its congestion band (each service's own thresholds; see
:meth:`~madoguchi.queue.model.Service.band`). ``/live`` keeps the page current.

The live feed
-------------
Thousands of phones may watch this page, so the work per change must not grow with
them. One :class:`Feed` per web process watches every office's events (through the
:class:`~.live.EventHub`, which already holds the process's one Redis subscription),
and coalesces them: an office is summarised at most once per ``interval`` seconds,
and every summary due at the same moment goes out as one message. Each message is
encoded once, as the bytes of a server-sent event, and every watcher writes those same
bytes. A watcher that fell more than one message behind gets the whole state instead
of what it missed, so a slow client never makes the feed keep history. A keep-alive
comment goes out as a message of its own, so no watcher needs a timer.

The feed's messages carry no words, only numbers: the page renders every string in its
own language and the script fills in the numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..queue.exceptions import NotFound, QueueError
from ..queue.model import Office, Service
from ..queue.tickets import QueueClient
from ..queue.waits import Board, WaitBoard
from .live import Broadcast, Event, EventHub
from .pages import render
from .state import path_slug, queue_of, waits_of

log = logging.getLogger(__name__)

#: Names of the congestion bands in the open data, by band number.
BAND_NAMES = ("short", "moderate", "long", "very_long")
#: Seconds between keep-alive comments on the feed.
HEARTBEAT = 15.0
#: Milliseconds a browser waits before reconnecting a dropped stream.
RETRY_MS = 3000
#: Seconds open data of current waits may be cached.
WAITS_MAX_AGE = 15
OPEN_HEADERS = {"Access-Control-Allow-Origin": "*"}
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


# -- what an office's waits are -----------------------------------------------------------


@dataclass(frozen=True)
class ServiceWait:
    """One service's queue as the public sees it."""

    service: Service
    waiting: int
    #: Open counters that serve it.
    open_counters: int
    #: The estimate for a ticket taken now, in seconds: point, low and high.
    wait: float
    low: float
    high: float

    @property
    def minutes(self) -> int:
        return round(self.wait / 60)

    @property
    def low_minutes(self) -> int:
        return int(self.low // 60)

    @property
    def high_minutes(self) -> int:
        return -int(-self.high // 60)

    @property
    def band(self) -> int:
        return self.service.band(self.wait / 60)

    def to_live(self) -> dict[str, Any]:
        return {
            "id": self.service.id,
            "waiting": self.waiting,
            "open": self.open_counters,
            "wait": self.minutes,
            "low": self.low_minutes,
            "high": self.high_minutes,
            "band": self.band,
        }


@dataclass(frozen=True)
class OfficeWaits:
    office: Office
    services: list[ServiceWait]
    #: Queue time of the estimate, and the id of the last event it reflects.
    at: float
    last_event: str

    @property
    def waiting(self) -> int:
        return sum(s.waiting for s in self.services)

    def to_live(self) -> dict[str, Any]:
        return {
            "office": self.office.id,
            "event": self.last_event,
            "at": round(self.at, 3),
            "services": [s.to_live() for s in self.services],
        }


def summarise(board: Board) -> OfficeWaits:
    """The public view of an office's wait board: its active services, in prefix order."""
    snapshot = board.snapshot
    rows = []
    for service in sorted(snapshot.services.values(), key=lambda s: (s.prefix, s.id)):
        estimate = board.estimates.new.get(service.id)
        if not service.active or estimate is None:
            continue
        lines = snapshot.lines.get(service.id, {})
        rows.append(
            ServiceWait(
                service,
                waiting=sum(len(line) for line in lines.values()),
                open_counters=estimate.servers,
                wait=estimate.wait,
                low=estimate.low,
                high=estimate.high,
            )
        )
    return OfficeWaits(snapshot.office, rows, snapshot.at, snapshot.last_event)


async def all_waits(request: Request) -> list[OfficeWaits]:
    """Every office's current waits, in the order of their ids."""
    queue = queue_of(request)
    waits = waits_of(request)
    offices = sorted(await queue.office_ids())
    boards = await asyncio.gather(*(waits.board(office) for office in offices))
    return [summarise(board) for board in boards]


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    try:
        return int(ms or 0), int(seq or 0)
    except ValueError:
        return 0, 0


def sse_bytes(data: Any, *, event: str = "", id: str = "") -> bytes:
    """One server-sent event, its data as compact JSON."""
    head = (f"id: {id}\n" if id else "") + (f"event: {event}\n" if event else "")
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}data: {body}\n\n".encode()


# -- the feed ---------------------------------------------------------------------------------


class Feed:
    """Every office's waits, coalesced and encoded once for every watcher in the process.

    Offices are refreshed independently (a slow one holds up no other), each at most
    once per ``interval``; the summaries ready at the same moment go out together, at
    most one message per ``gap``, or per twice the time the last one took to write.
    """

    def __init__(
        self,
        hub: EventHub,
        waits: WaitBoard,
        queue: QueueClient,
        *,
        interval: float = 1.0,
        gap: float = 0.25,
        refresh: float = 60.0,
        heartbeat: float = HEARTBEAT,
        stale_wait: float = 0.3,
    ) -> None:
        self.hub = hub
        self.waits = waits
        self.queue = queue
        #: Least seconds between two summaries of one office.
        self.interval = interval
        #: Least seconds between two messages.
        self.gap = gap
        #: Seconds after which every office is summarised again, events or not
        #: (estimates drift as counters work).
        self.refresh = refresh
        self.heartbeat = heartbeat
        #: Longest the feed waits for an office's estimates to catch up with its events.
        self.stale_wait = stale_wait
        #: Messages published so far; a watcher remembers the last it wrote.
        self.version = 0
        #: The latest message (what changed), and the whole state, as SSE bytes.
        self.delta = b""
        self.full = b""
        #: The offices the latest message is about.
        self.changed: frozenset[str] = frozenset()
        #: Each office's latest summary, and as a message of its own.
        self.offices: dict[str, dict[str, Any]] = {}
        self.office_messages: dict[str, bytes] = {}
        self.closed = False
        #: The watchers of the whole feed (the congestion page), written to at each message.
        self.watchers = Broadcast()
        #: Offices that changed since their last summary: the id of their latest event.
        self._dirty: dict[str, str] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, dict[str, Any]] = {}
        #: The last wait board seen of each office: its estimates serve while the next
        #: one is computed.
        self._boards: dict[str, Board] = {}
        self._sent: dict[str, float] = {}
        self._published_at = 0.0
        #: Seconds the last message took to write to every watcher.
        self._cost = 0.0
        self._generation = 0
        self._wake = asyncio.Event()
        self._published = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="madoguchi-congestion-feed")

    async def stop(self) -> None:
        self.closed = True
        self._publish(b"", frozenset())
        self.watchers.close()
        tasks = [t for t in (self._task, *self._refreshing.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def next(self, seen: int) -> None:
        """Return once a message after ``seen`` is published (or the feed closed)."""
        if self.version == seen and not self.closed:
            await self._published.wait()

    def note(self, event: Event) -> None:
        """The hub's callback: the office changed."""
        self._dirty[event.office] = event.id
        self._wake.set()

    def _publish(self, delta: bytes, changed: frozenset[str]) -> None:
        self.delta = delta
        self.changed = changed
        self.version += 1
        self._published_at = began = time.monotonic()
        if delta:
            self.watchers.publish(delta, self.full)
            self._cost = time.monotonic() - began
        published, self._published = self._published, asyncio.Event()
        published.set()

    async def _run(self) -> None:
        with self.hub.watch(self.note):
            # What happened before the hub subscribed is read with the first summaries.
            await self.hub.connected.wait()
            while not self.closed:
                try:
                    await self._tick()
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    log.warning("congestion feed: offices not listed (%s); retrying", exc)
                    await asyncio.sleep(1.0)

    async def _tick(self) -> None:
        now = time.monotonic()
        if not self.offices or self.hub.generation != self._generation:
            # At the start, and after the hub lost Redis for a while (events may have been
            # missed meanwhile): summarise every office afresh.
            self._generation = self.hub.generation
            for office in await self.queue.office_ids():
                self._dirty.setdefault(office, "")
        elif self._sent and now - min(self._sent.values()) >= self.refresh:
            for office in self.offices:
                self._dirty.setdefault(office, "")
        wake_in = self.heartbeat - (now - self._published_at)
        for office in list(self._dirty):
            if office in self._refreshing:
                continue
            due = self._sent.get(office, -1e9) + self.interval
            if due <= now:
                event = self._dirty.pop(office)
                self._sent[office] = now
                self._refreshing[office] = asyncio.create_task(self._refresh(office, event))
            else:
                wake_in = min(wake_in, due - now)
        if self._ready:
            # With many watchers, writing a message takes a while: leave the process at
            # least as long again for everything else.
            publish_in = self._published_at + max(self.gap, 2 * self._cost) - now
            if publish_in <= 0:
                self._publish_ready()
                return
            wake_in = min(wake_in, publish_in)
        if wake_in <= 0:
            self._publish(b": keep-alive\n\n", frozenset())
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wake_in)

    def _publish_ready(self) -> None:
        ready, self._ready = self._ready, {}
        self.offices.update(ready)
        for office, live in ready.items():
            self.office_messages[office] = sse_bytes(live, event="office")
        every = [self.offices[office] for office in sorted(self.offices)]
        self.full = sse_bytes({"offices": every}, event="waits")
        changed = [ready[office] for office in sorted(ready)]
        self._publish(sse_bytes({"offices": changed}, event="waits"), frozenset(ready))

    async def _refresh(self, office: str, event: str) -> None:
        try:
            summary = await self._summary(office, event)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("congestion feed: office %s not refreshed (%s)", office, exc)
            self._dirty.setdefault(office, event)
        else:
            live = None if summary is None else summary.to_live()
            known = self.offices.get(office)
            # Nothing new (an estimate that has not caught up yet, say): no message.
            if live is not None and (known is None or _differs(live, known)):
                self._ready[office] = live
        finally:
            self._refreshing.pop(office, None)
            self._wake.set()

    async def _summary(self, office: str, event: str) -> OfficeWaits | None:
        """The office's summary as of ``event`` at least.

        The estimates are recomputed at most so often, and take longer the longer the
        queue: when they have not caught up after ``stale_wait``, the numbers waiting are
        read afresh and the last estimates kept, and the office is summarised again later.
        """
        deadline = time.monotonic() + self.stale_wait
        known = self._boards.get(office)
        while True:
            try:
                if known is None:
                    board = await self.waits.board(office, event)
                else:
                    # A board older than the wait board's patience is recomputed while
                    # its callers wait: bound the wait, the last one serves meanwhile.
                    left = max(0.01, deadline - time.monotonic())
                    board = await asyncio.wait_for(self.waits.board(office, event), left)
            except QueueError:
                return None  # the office was removed
            except TimeoutError:
                break
            self._boards[office] = known = board
            if _order(board.snapshot.last_event) >= _order(event):
                return summarise(board)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        self._dirty.setdefault(office, event)
        if known is None:
            return None
        snapshot = await self.queue.snapshot(office, now=self.waits.clock())
        return summarise(Board(snapshot, known.estimates, known.computed_at))


def _differs(new: dict[str, Any], old: dict[str, Any]) -> bool:
    return bool(new["event"] != old["event"] or new["services"] != old["services"])


# -- streaming the feed ---------------------------------------------------------------------


class FeedStream(Response):
    """The feed as a server-sent event stream, lean enough for ten thousand at once.

    The response's own task only waits for the client to leave: the feed's
    :class:`~.live.Broadcast` writes every message to it.
    """

    def __init__(self, feed: Feed, first: bytes, seen: int) -> None:
        super().__init__(status_code=200)
        self.feed = feed
        self.first = first
        #: The feed's version that ``first`` is as of.
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": self.first, "more_body": True})
        if self.feed.closed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        sink = self.feed.watchers.attach(send, self.seen)
        try:
            # Ends when the client leaves, or when the feed ends the response (it stops).
            await _disconnected(receive)
        finally:
            self.feed.watchers.detach(sink)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def feed_of(request: Request) -> Feed:
    feed: Feed = request.app.state.congestion
    return feed


async def live(request: Request) -> Response:
    """Every office's waits as server-sent events: the whole state, then each change."""
    feed = feed_of(request)
    first = f"retry: {RETRY_MS}\n\n".encode() + feed.full
    return FeedStream(feed, first, feed.watchers.version)


# -- the page -------------------------------------------------------------------------------


async def find_office(request: Request) -> Office | None:
    """The office named in the path, or ``None`` when there is no such office."""
    try:
        return await queue_of(request).office(path_slug(request, "office", "office"))
    except NotFound:
        return None


def missing_office(request: Request) -> Response:
    """A page for a person who followed a wrong link: what happened and where to go."""
    office = request.path_params.get("office", "")[:40]
    return render(request, "public/office_missing.html", {"missing": office}, status=404)


async def page(request: Request) -> Response:
    offices = await all_waits(request)
    return render(request, "public/congestion.html", {"offices": offices})


# -- open data ----------------------------------------------------------------------------


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def service_record(s: ServiceWait) -> dict[str, Any]:
    """One service's current wait, as the open data gives it."""
    return {
        "service": s.service.id,
        "service_name_ja": s.service.name_ja,
        "service_name_en": s.service.name_en,
        "mode": s.service.mode.value,
        "waiting": s.waiting,
        "open_counters": s.open_counters,
        "wait_minutes": s.minutes,
        "wait_low_minutes": s.low_minutes,
        "wait_high_minutes": s.high_minutes,
        "band": BAND_NAMES[s.band],
        "band_moderate_from": s.service.bands[0],
        "band_long_from": s.service.bands[1],
        "band_very_long_from": s.service.bands[2],
    }


def office_record(o: OfficeWaits) -> dict[str, Any]:
    return {
        "office": o.office.id,
        "office_name_ja": o.office.name_ja,
        "office_name_en": o.office.name_en,
        "as_of": iso(o.at),
    }


#: Columns of ``/open/waits.csv``: one row per office and service.
WAITS_FIELDS = (
    "office",
    "office_name_ja",
    "office_name_en",
    "as_of",
    "service",
    "service_name_ja",
    "service_name_en",
    "mode",
    "waiting",
    "open_counters",
    "wait_minutes",
    "wait_low_minutes",
    "wait_high_minutes",
    "band",
    "band_moderate_from",
    "band_long_from",
    "band_very_long_from",
)


def open_response(body: str, media_type: str, max_age: int, filename: str = "") -> Response:
    headers = {**OPEN_HEADERS, "Cache-Control": f"public, max-age={max_age}"}
    if filename:
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return Response(body, media_type=media_type, headers=headers)


def to_csv(fields: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    # A byte-order mark, so that Excel reads the Japanese names as UTF-8.
    return "\ufeff" + out.getvalue()


async def waits_json(request: Request) -> Response:
    offices = await all_waits(request)
    at = max((o.at for o in offices), default=request.app.state.clock())
    body = {
        "generated_at": iso(at),
        "offices": [
            office_record(o)
            | {"waiting": o.waiting, "services": list(map(service_record, o.services))}
            for o in offices
        ],
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return open_response(text, "application/json", WAITS_MAX_AGE)


async def waits_csv(request: Request) -> Response:
    rows = [
        office_record(o) | service_record(s) for o in await all_waits(request) for s in o.services
    ]
    return open_response(
        to_csv(WAITS_FIELDS, rows), "text/csv; charset=utf-8", WAITS_MAX_AGE, "waits.csv"
    )


async def open_index(request: Request) -> Response:
    return render(request, "public/open.html")


routes: list[BaseRoute] = [
    Route("/", page, methods=["GET"]),
    Route("/live", live, methods=["GET"]),
    Route("/open/", open_index, methods=["GET"]),
    Route("/open/waits.json", waits_json, methods=["GET"]),
    Route("/open/waits.csv", waits_csv, methods=["GET"]),
]
