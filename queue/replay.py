"""Replay office-day traces in virtual time, and score the published wait estimates.

A trace (JSON Lines, in the format of the project's ``traces/FORMAT.md``; samples
in ``tests/data/``) is one ward-office day: the office and its services, counters
opening and closing, residents arriving. :func:`replay` drives the real
queue (:class:`~.tickets.QueueClient`, so the real Lua scripts against Redis) and
the real :class:`~.estimator.Estimator` through that day, with a virtual clock:

- an arrival issues a ticket, then the estimator is asked, from a snapshot taken
  at that moment, what wait to publish for it;
- an open counter that is idle calls next at once; which ticket it gets is the
  queue's own routing;
- service starts at the call and lasts the trace's ``service_seconds``; a resident
  who does not come is marked a no-show 60 s after the call;
- a resident still waiting when ``patience_seconds`` have passed gives up (the
  ticket is cancelled as abandoned);
- a counter told to close first finishes the ticket it holds: it is paused at
  once (so it calls no one and the estimator stops counting it) and closed when
  that ticket is done;
- at ``end`` no one else is called; tickets still waiting are ``unserved``.

The trace's truth (``service_seconds``, ``patience_seconds``, ``no_show``) stays
in this module: the queue only ever sees a service and a priority flag, and the
estimator only a :class:`~.model.Snapshot` read from Redis.

Events at the same moment happen in this order: residents whose patience runs
out, then the trace's own lines in file order, then counters finishing or giving
up on a no-show. So a resident whose patience ends just as a counter frees up has
already left, and a counter closed at the moment it finishes calls no one.

:func:`score` turns the replay's rows into the accuracy figures of the format,
for the system and for a plain baseline, ``(ahead + 1) × mean service time /
servers``, fed the same ``ahead`` and ``servers`` the system published.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import heapq
import itertools
import json
import logging
import math
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import redis
from redis.asyncio import Redis

from ..embedded import EmbeddedRedisError, RedisServer, find_redis_server
from ..settings import Settings, load_settings
from . import keys
from .estimator import Estimator
from .exceptions import QueueError
from .model import CancelReason, Estimate, Office, Service, Snapshot, check_slug
from .tickets import QueueClient

log = logging.getLogger(__name__)

#: Every trace is a day at an office in Japan, opening at 08:30 local time.
ZONE = ZoneInfo("Asia/Tokyo")
OPENING = time(8, 30)
#: Seconds a counter waits for a called resident who never comes.
NO_SHOW_AFTER = 60.0
#: Congestion bands, in seconds of wait: under 15 min, 15-30, 30-60, over 60. A wait
#: on an edge belongs to the band above it (exactly 15 min is in 15-30).
BANDS = (15 * 60.0, 30 * 60.0, 60 * 60.0)


def _letters() -> Iterable[str]:
    alphabet = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    yield from alphabet
    for first, second in itertools.product(alphabet, alphabet):
        yield first + second


#: Ticket-number prefixes given to a trace's services, in trace order.
PREFIXES = tuple(_letters())


class TraceError(ValueError):
    """A trace line is not what the format allows; the message names the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class ReplayError(RuntimeError):
    """The replay cannot go on: the Redis it was given, or the estimator, is not fit for it."""


# -- the trace ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceService:
    id: str
    name: str


@dataclass(frozen=True)
class Truth:
    """What really happened to a resident: known to the harness, never to the system."""

    service_seconds: float
    patience_seconds: float
    no_show: bool


@dataclass(frozen=True)
class Staff:
    line: int
    t: float
    counter: str
    #: The services the counter serves on ``open``; empty on ``close``.
    services: tuple[str, ...]

    @property
    def opens(self) -> bool:
        return bool(self.services)


@dataclass(frozen=True)
class Arrival:
    line: int
    t: float
    ticket: str
    service: str
    priority: bool
    truth: Truth


@dataclass(frozen=True)
class End:
    line: int
    t: float


@dataclass(frozen=True)
class Trace:
    office: str
    date: date
    open_seconds: float
    services: tuple[TraceService, ...]
    #: Staff and arrival lines in time order; the trace's ``end`` is :attr:`end`.
    events: tuple[Staff | Arrival, ...]
    end: End

    @property
    def arrivals(self) -> list[Arrival]:
        return [e for e in self.events if isinstance(e, Arrival)]

    @property
    def opening(self) -> float:
        """The moment the office opens (``t = 0``), in seconds since the epoch."""
        return datetime.combine(self.date, OPENING, tzinfo=ZONE).timestamp()


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required fields, optional fields)
    "office": (_names("office date open_seconds services"), frozenset()),
    "staff": (_names("t counter action"), _names("services")),
    "arrival": (
        _names("t ticket service priority service_seconds patience_seconds no_show"),
        frozenset(),
    ),
    "end": (_names("t"), frozenset()),
}


@dataclass
class _Line:
    """One parsed JSON line, with checked accessors whose errors name the line."""

    number: int
    data: dict[str, Any]

    def fail(self, message: str) -> TraceError:
        return TraceError(self.number, message)

    def text(self, name: str) -> str:
        value = self.data[name]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f'"{name}" must be a non-empty string, not {json.dumps(value)}')
        return value

    def slug(self, name: str, kind: str) -> str:
        value = self.text(name)
        try:
            return check_slug(kind, value)
        except QueueError as exc:
            raise self.fail(exc.message) from exc

    def flag(self, name: str) -> bool:
        value = self.data[name]
        if not isinstance(value, bool):
            raise self.fail(f'"{name}" must be true or false, not {json.dumps(value)}')
        return value

    def seconds(self, name: str, *, positive: bool = False) -> float:
        value = self.data[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (positive and value == 0)
        ):
            wanted = "a positive number" if positive else "a number, at least 0"
            raise self.fail(f'"{name}" must be {wanted} of seconds, not {json.dumps(value)}')
        return float(value)


def _read_line(number: int, raw: str) -> _Line:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TraceError(number, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise TraceError(number, f"must be a JSON object, not {type(data).__name__}")
    kind = data.get("kind")
    if kind not in _FIELDS:
        known = ", ".join(_FIELDS)
        raise TraceError(number, f"unknown kind {json.dumps(kind)} (expected one of {known})")
    required, optional = _FIELDS[kind]
    missing = sorted(required - data.keys())
    if missing:
        raise TraceError(number, f"{kind} line lacks {', '.join(missing)}")
    unexpected = sorted(data.keys() - required - optional - {"kind"})
    if unexpected:
        raise TraceError(number, f"{kind} line has unexpected {', '.join(unexpected)}")
    return _Line(number, data)


def _office_line(line: _Line) -> tuple[str, date, float, tuple[TraceService, ...]]:
    office = line.slug("office", "office")
    try:
        day = date.fromisoformat(line.text("date"))
    except ValueError as exc:
        raise line.fail(f'"date" must be YYYY-MM-DD, not {json.dumps(line.data["date"])}') from exc
    open_seconds = line.seconds("open_seconds", positive=True)
    raw = line.data["services"]
    if not isinstance(raw, list) or not raw:
        raise line.fail('"services" must be a non-empty list of {"id": …, "name": …}')
    services: list[TraceService] = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) != {"id", "name"}:
            raise line.fail(f'each service must be {{"id": …, "name": …}}, not {json.dumps(entry)}')
        item = _Line(line.number, entry)
        service = TraceService(item.slug("id", "service"), item.text("name"))
        if any(s.id == service.id for s in services):
            raise line.fail(f'service "{service.id}" is listed twice')
        services.append(service)
    if len(services) > len(PREFIXES):
        raise line.fail(f"a trace may offer at most {len(PREFIXES)} services")
    return office, day, open_seconds, tuple(services)


def parse_trace(lines: Iterable[str]) -> Trace:
    """Read and check a trace given as its lines; blank lines are skipped.

    Raises :class:`TraceError` naming the first line that breaks the format.
    """
    header: tuple[str, date, float, tuple[TraceService, ...]] | None = None
    events: list[Staff | Arrival] = []
    end: End | None = None
    known: set[str] = set()
    tickets: set[str] = set()
    open_counters: set[str] = set()
    clock = 0.0
    number = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        line = _read_line(number, raw)
        kind = line.data["kind"]
        if header is None:
            if kind != "office":
                raise line.fail(f"the first line must be the office line, not a {kind} line")
            header = _office_line(line)
            known = {s.id for s in header[3]}
            continue
        if kind == "office":
            raise line.fail("a trace has one office line, and it is the first")
        if end is not None:
            raise line.fail(f"nothing may follow the end line (line {end.line})")
        t = line.seconds("t")
        if t < clock:
            raise line.fail(f"time goes backwards: t = {t} after t = {clock}")
        clock = t
        if kind == "end":
            end = End(number, t)
        elif kind == "staff":
            events.append(_staff_line(line, t, known, open_counters))
        else:
            arrival = _arrival_line(line, t, known)
            if arrival.ticket in tickets:
                raise line.fail(f'ticket "{arrival.ticket}" arrives twice')
            tickets.add(arrival.ticket)
            events.append(arrival)
    if header is None:
        raise TraceError(max(number, 1), "the trace is empty: it needs an office line first")
    if end is None:
        raise TraceError(number + 1, "the trace has no end line")
    office, day, open_seconds, services = header
    return Trace(office, day, open_seconds, services, tuple(events), end)


def _staff_line(line: _Line, t: float, known: set[str], open_counters: set[str]) -> Staff:
    counter = line.slug("counter", "counter")
    action = line.data["action"]
    if action == "close":
        if "services" in line.data:
            raise line.fail('a close line takes no "services"')
        if counter not in open_counters:
            raise line.fail(f'counter "{counter}" closes but is not open')
        open_counters.discard(counter)
        return Staff(line.number, t, counter, ())
    if action != "open":
        raise line.fail(f'"action" must be "open" or "close", not {json.dumps(action)}')
    raw = line.data.get("services")
    if not isinstance(raw, list) or not raw:
        raise line.fail(f'counter "{counter}" opens without a non-empty "services" list')
    services: list[str] = []
    for sid in raw:
        if sid not in known:
            raise line.fail(
                f"counter {json.dumps(counter)} serves unknown service {json.dumps(sid)}"
            )
        services.append(sid)
    open_counters.add(counter)
    return Staff(line.number, t, counter, tuple(dict.fromkeys(services)))


def _arrival_line(line: _Line, t: float, known: set[str]) -> Arrival:
    ticket = line.text("ticket")
    service = line.data["service"]
    if service not in known:
        raise line.fail(f"ticket {json.dumps(ticket)} is for unknown service {json.dumps(service)}")
    truth = Truth(
        service_seconds=line.seconds("service_seconds", positive=True),
        patience_seconds=line.seconds("patience_seconds"),
        no_show=line.flag("no_show"),
    )
    return Arrival(line.number, t, ticket, service, line.flag("priority"), truth)


def load_trace(path: Path) -> Trace:
    """Read and check the trace in ``path`` (UTF-8 JSON Lines)."""
    with path.open(encoding="utf-8") as lines:
        return parse_trace(lines)


# -- the replay -----------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    SERVED = "served"
    NO_SHOW = "no_show"
    ABANDONED = "abandoned"
    UNSERVED = "unserved"


@dataclass(frozen=True)
class Row:
    """One ticket of a replay: what was published at issue, and what happened."""

    ticket: str
    service: str
    #: Trace seconds, like every time in a row.
    issued_at: float
    predicted_wait: float
    low: float
    high: float
    ahead: int
    servers: int
    called_at: float | None
    outcome: Outcome
    #: What the baseline predicts from the same snapshot; not part of the output line.
    baseline_wait: float = 0.0

    @property
    def waited(self) -> float | None:
        """The realised wait, for the tickets it is defined for (served and no-show)."""
        if self.called_at is None or self.outcome not in (Outcome.SERVED, Outcome.NO_SHOW):
            return None
        return self.called_at - self.issued_at

    def to_json(self) -> str:
        """The output line of the trace format: every field but the baseline's, in order."""
        line = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "baseline_wait"}
        return json.dumps(line, ensure_ascii=False)


def baseline_wait(snapshot: Snapshot, service: str, ahead: int, servers: int) -> float:
    """``(ahead + 1) × mean service time / servers``, from what the snapshot knows.

    The mean is that of the service's recorded history, or the service's default
    while it has none; no open server counts as one.
    """
    history = snapshot.history.get(service) or []
    mean = (
        math.fsum(history) / len(history) if history else snapshot.services[service].default_seconds
    )
    return (ahead + 1) * mean / max(servers, 1)


@dataclass(frozen=True)
class _Leave:
    """A waiting resident's patience runs out."""

    ticket: str


@dataclass(frozen=True)
class _Release:
    """A counter is done with its ticket: service over, or the resident never came."""

    counter: str


# Order of events at the same moment (see the module docstring).
_LEAVE, _TRACE, _RELEASE = 0, 1, 2

_Event = Staff | Arrival | End | _Leave | _Release


@dataclass
class _Desk:
    """The harness's view of one counter."""

    services: tuple[str, ...] = ()
    open: bool = False
    #: Told to close while holding a ticket: closes when it is released.
    closing: bool = False
    #: The trace ticket it holds.
    holding: str | None = None

    def idle(self) -> bool:
        return self.open and not self.closing and self.holding is None


@dataclass
class _Visit:
    """One resident's ticket, as the harness follows it."""

    arrival: Arrival
    ticket_id: str
    estimate: Estimate
    baseline: float
    waiting: bool = True
    called_at: float | None = None
    outcome: Outcome = Outcome.UNSERVED

    def row(self) -> Row:
        e = self.estimate
        return Row(
            ticket=self.arrival.ticket,
            service=self.arrival.service,
            issued_at=_round(self.arrival.t),
            predicted_wait=_round(e.wait),
            low=_round(e.low),
            high=_round(e.high),
            ahead=e.ahead,
            servers=e.servers,
            called_at=None if self.called_at is None else _round(self.called_at),
            outcome=self.outcome,
            baseline_wait=_round(self.baseline),
        )


def _round(seconds: float) -> float:
    # Virtual times are sums of trace times; a millisecond hides the float dust.
    return round(seconds, 3)


@dataclass
class _Replay:
    trace: Trace
    queue: QueueClient
    estimator: Estimator
    desks: dict[str, _Desk] = field(default_factory=dict)
    visits: dict[str, _Visit] = field(default_factory=dict)
    by_ticket_id: dict[str, str] = field(default_factory=dict)
    agenda: list[tuple[float, int, int, _Event]] = field(default_factory=list)
    order: Iterator[int] = field(default_factory=itertools.count)
    ended: bool = False

    def __post_init__(self) -> None:
        self.office = self.trace.office
        self.opening = self.trace.opening

    def now(self, t: float) -> float:
        """The epoch seconds the queue is told for trace time ``t``."""
        return self.opening + t

    def schedule(self, t: float, rank: int, event: _Event) -> None:
        # ``order`` breaks ties, so events are never compared and equal ranks keep their order.
        heapq.heappush(self.agenda, (t, rank, next(self.order), event))

    async def run(self) -> list[Row]:
        await self.set_up()
        for line in (*self.trace.events, self.trace.end):
            self.schedule(line.t, _TRACE, line)
        while self.agenda:
            t, _, _, event = heapq.heappop(self.agenda)
            await self.handle(t, event)
        return [visit.row() for visit in self.visits.values()]

    async def set_up(self) -> None:
        if await self.queue.redis.exists(keys.office(self.office)):
            raise ReplayError(
                f'office "{self.office}" already exists in this Redis: replay into an '
                "empty database, or let the replay start a throw-away Redis"
            )
        now = self.now(0.0)
        settings = self.queue.settings
        await self.queue.put_office(
            Office(
                self.office,
                name_ja=self.office,
                name_en=self.office,
                timezone=ZONE.key,
                priority_cap=settings.priority_cap,
                appt_early=settings.appointment_early_seconds,
            ),
            now=now,
        )
        for service, prefix in zip(self.trace.services, PREFIXES, strict=False):
            await self.queue.put_service(
                self.office,
                Service(
                    service.id,
                    prefix,
                    name_ja=service.name,
                    name_en=service.id,
                    default_seconds=settings.default_service_seconds,
                ),
                now=now,
            )

    async def handle(self, t: float, event: _Event) -> None:
        match event:
            case Arrival():
                await self.arrive(t, event)
            case Staff() if event.opens:
                await self.open(t, event)
            case Staff():
                await self.close(t, event.counter)
            case End():
                log.debug("%s office closes at t=%s", self.office, t)
                self.ended = True
            case _Leave(ticket):
                await self.leave(t, ticket)
            case _Release(counter):
                await self.release(t, counter)

    async def arrive(self, t: float, arrival: Arrival) -> None:
        now = self.now(t)
        issued = await self.queue.issue(
            self.office, arrival.service, now=now, priority=arrival.priority
        )
        ticket_id = issued.ticket.id
        snapshot = await self.queue.snapshot(self.office, now=now)
        estimate = self.estimator.estimate(snapshot).tickets.get(ticket_id)
        if estimate is None:
            raise ReplayError(
                f"line {arrival.line}: the estimator gave no estimate for waiting ticket "
                f"{issued.ticket.number} ({ticket_id})"
            )
        baseline = baseline_wait(snapshot, arrival.service, estimate.ahead, estimate.servers)
        self.visits[arrival.ticket] = _Visit(arrival, ticket_id, estimate, baseline)
        self.by_ticket_id[ticket_id] = arrival.ticket
        self.schedule(t + arrival.truth.patience_seconds, _LEAVE, _Leave(arrival.ticket))
        for cid in sorted(self.desks):
            desk = self.desks[cid]
            if desk.idle() and arrival.service in desk.services and await self.call(t, cid):
                break

    async def open(self, t: float, staff: Staff) -> None:
        desk = self.desks.setdefault(staff.counter, _Desk())
        # Opening again changes the services; it also undoes a close still pending.
        await self.queue.open_counter(self.office, staff.counter, staff.services, now=self.now(t))
        desk.services, desk.open, desk.closing = staff.services, True, False
        if desk.idle():
            await self.call(t, staff.counter)

    async def close(self, t: float, counter: str) -> None:
        desk = self.desks[counter]
        if desk.holding is None:
            await self.queue.close_counter(self.office, counter, now=self.now(t))
            desk.open = False
        else:
            await self.queue.pause_counter(self.office, counter, now=self.now(t))
            desk.closing = True

    async def call(self, t: float, counter: str) -> bool:
        """Let an idle counter call next; whether it got a ticket."""
        if self.ended:
            return False
        called = await self.queue.call_next(self.office, counter, now=self.now(t))
        if called is None:
            return False
        name = self.by_ticket_id.get(called.id)
        if name is None:
            raise ReplayError(
                f'counter "{counter}" called {called.number}, a ticket not issued here'
            )
        visit = self.visits[name]
        visit.waiting, visit.called_at = False, t
        self.desks[counter].holding = name
        truth = visit.arrival.truth
        if truth.no_show:
            visit.outcome = Outcome.NO_SHOW
            self.schedule(t + NO_SHOW_AFTER, _RELEASE, _Release(counter))
        else:
            visit.outcome = Outcome.SERVED
            await self.queue.start(self.office, visit.ticket_id, now=self.now(t))
            self.schedule(t + truth.service_seconds, _RELEASE, _Release(counter))
        return True

    async def leave(self, t: float, name: str) -> None:
        visit = self.visits[name]
        if self.ended or not visit.waiting:
            return
        await self.queue.cancel(
            self.office, visit.ticket_id, now=self.now(t), reason=CancelReason.ABANDONED
        )
        visit.waiting, visit.outcome = False, Outcome.ABANDONED

    async def release(self, t: float, counter: str) -> None:
        desk = self.desks[counter]
        name = desk.holding
        assert name is not None, f"counter {counter} released nothing"
        visit = self.visits[name]
        now = self.now(t)
        if visit.outcome is Outcome.NO_SHOW:
            await self.queue.no_show(self.office, visit.ticket_id, now=now)
        else:
            await self.queue.finish(self.office, visit.ticket_id, now=now)
        desk.holding = None
        if desk.closing:
            await self.queue.close_counter(self.office, counter, now=now)
            desk.open = desk.closing = False
        else:
            await self.call(t, counter)


async def replay(trace: Trace, queue: QueueClient, estimator: Estimator) -> list[Row]:
    """Play ``trace`` through the queue and the estimator; one row per arrival, in trace order.

    ``queue`` must talk to a Redis where the trace's office does not exist yet.
    """
    return await _Replay(trace, queue, estimator).run()


# -- scoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """How good a predictor's waits were, over the tickets that were called.

    Every figure is NaN when no ticket was called; ``coverage`` is ``None`` for a
    predictor without an interval.
    """

    scored: int
    mae: float
    rmse: float
    p90: float
    coverage: float | None
    bands: float


def band(seconds: float) -> int:
    """The congestion band of a wait: 0 under 15 min, 1 for 15-30, 2 for 30-60, 3 beyond."""
    return sum(seconds >= edge for edge in BANDS)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0-1) with linear interpolation between order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _accuracy(rows: Iterable[Row], predict: Callable[[Row], float], interval: bool) -> Accuracy:
    pairs = [(predict(row), row.waited, row) for row in rows if row.waited is not None]
    if not pairs:
        return Accuracy(0, math.nan, math.nan, math.nan, math.nan if interval else None, math.nan)
    errors = [abs(predicted - waited) for predicted, waited, _ in pairs]
    n = len(pairs)
    coverage = sum(row.low <= waited <= row.high for _, waited, row in pairs) / n
    return Accuracy(
        scored=n,
        mae=math.fsum(errors) / n,
        rmse=math.sqrt(math.fsum(e * e for e in errors) / n),
        p90=percentile(errors, 0.9),
        coverage=coverage if interval else None,
        bands=sum(band(predicted) == band(waited) for predicted, waited, _ in pairs) / n,
    )


def score(rows: Iterable[Row]) -> Accuracy:
    """The accuracy of the system's published estimates."""
    return _accuracy(rows, lambda row: row.predicted_wait, interval=True)


def score_baseline(rows: Iterable[Row]) -> Accuracy:
    """The accuracy of the baseline ``(ahead + 1) × mean service time / servers``."""
    return _accuracy(rows, lambda row: row.baseline_wait, interval=False)


def summary(rows: Sequence[Row]) -> str:
    """A short table: outcomes, then the figures for the system and the baseline."""
    counts = Counter(row.outcome for row in rows)
    lines = [
        f"{len(rows)} tickets: "
        + ", ".join(f"{counts[outcome]} {outcome.value}" for outcome in Outcome),
        "",
        f"{'predictor':<10}{'scored':>7}{'MAE min':>9}{'RMSE min':>10}{'p90 min':>9}"
        f"{'in interval':>13}{'right band':>12}",
    ]
    for name, accuracy in (("system", score(rows)), ("baseline", score_baseline(rows))):
        coverage = "—" if accuracy.coverage is None else _percent(accuracy.coverage)
        lines.append(
            f"{name:<10}{accuracy.scored:>7}{_minutes(accuracy.mae):>9}"
            f"{_minutes(accuracy.rmse):>10}{_minutes(accuracy.p90):>9}"
            f"{coverage:>13}{_percent(accuracy.bands):>12}"
        )
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds / 60:.1f}"


def _percent(share: float) -> str:
    return "—" if math.isnan(share) else f"{100 * share:.1f} %"


# -- command line ---------------------------------------------------------------------------


async def _replay_into(trace: Trace, redis_url: str, settings: Settings) -> list[Row]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        return await replay(trace, QueueClient(client, settings), Estimator(settings))
    finally:
        await client.aclose()


def run(trace: Trace, settings: Settings, redis_url: str | None = None) -> list[Row]:
    """Replay ``trace`` into ``redis_url``, or into a throw-away embedded Redis when ``None``."""
    if redis_url is not None:
        return asyncio.run(_replay_into(trace, redis_url, settings))
    with tempfile.TemporaryDirectory(prefix="madoguchi-replay-") as scratch:
        server = RedisServer(binary=find_redis_server(), data_dir=Path(scratch), ephemeral=True)
        server.start()
        try:
            return asyncio.run(_replay_into(trace, server.url, settings))
        finally:
            server.stop()


def write_rows(rows: Iterable[Row], out: TextIO) -> None:
    for row in rows:
        out.write(row.to_json() + "\n")


def main(argv: list[str]) -> int:
    """``madoguchi replay TRACE --out OUT [--redis-url URL]``; ``argv`` follows ``replay``."""
    parser = argparse.ArgumentParser(
        prog="madoguchi replay",
        description="Replay an office-day trace in virtual time through the queue and the "
        "wait estimator, write one line per ticket and print the estimate's accuracy.",
    )
    parser.add_argument("trace", type=Path, help="the trace, JSON Lines")
    parser.add_argument("--out", type=Path, required=True, help="where to write the ticket lines")
    parser.add_argument(
        "--redis-url",
        help="Redis to replay into (default: REDIS_URL, else a throw-away embedded Redis)",
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        trace = load_trace(args.trace)
    except OSError as exc:
        print(f"madoguchi replay: cannot read the trace: {exc}", file=sys.stderr)
        return 1
    except TraceError as exc:
        print(f"madoguchi replay: {args.trace}: {exc}", file=sys.stderr)
        return 1
    try:
        rows = run(trace, settings, args.redis_url or settings.redis_url)
    except redis.ConnectionError as exc:
        # The URL may carry a password: the error names host and port already.
        print(f"madoguchi replay: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    except (ReplayError, EmbeddedRedisError) as exc:
        print(f"madoguchi replay: {exc}", file=sys.stderr)
        return 1
    try:
        with args.out.open("w", encoding="utf-8") as out:
            write_rows(rows, out)
    except OSError as exc:
        print(f"madoguchi replay: cannot write the results: {exc}", file=sys.stderr)
        return 1
    print(f"{args.trace.name} ({trace.office}, {trace.date}) -> {args.out}")
    print(summary(rows))
    return 0
