"""Statistics of an office's tickets per service, day and hour, read from its event stream.

What counts where
-----------------
A ticket counts on the day and in the hour (office time zone) it was *issued*, under
the service it was issued for (a transferred ticket stays with its first service).
From its events it gets:

- a **wait**, from issue (or from its appointment, when that is later) to its first
  call; every ticket that was called has one, whether it was then served or not;
- a **service time**, start to finish, when it was served (finished);
- an outcome: served, no-show, cancelled by the resident, abandoned, or still open.

A remote consultation is such a ticket too (its service is the topic the resident
chose; a transfer does not move it). When its call ends, its ``consultation`` event
adds a :class:`ConsultTally` entry under that topic: the outcome (completed,
cancelled by the resident, kiosk lost), whether it was transferred, the wait until
the call connected (or ended, when it never did) and the time talked; a later
``consult_rated`` event adds the resident's rating (1-5). Both count only while the
ticket's day is followed, as every other event.

The share **served within the target** is, of the tickets that were called or
abandoned, those called within the service's target wait: a resident who gave up
was not served in time. The target is the service's first congestion band (the
wait where "moderate" begins), 15 minutes when it has none.

Live figures and roll-ups
-------------------------
A day's tickets are followed until :data:`GRACE_SECONDS` after the day ends; from
then on the day is *final*: a ticket still waiting counts as abandoned (the hourly
close job abandons such tickets anyway), later events are ignored, and the figures
can no longer change. Until then the day is *live*, read straight from the stream.

The nightly roll-up (:func:`roll_up`, run by the rq job in :mod:`.jobs`) stores each
final day as one compact JSON value in the office's hash :func:`.keys.stats_days`,
so that figures over months read a few hundred small values, not the stream. A
roll-up is the live computation of a final day, stored: running it again stores the
same value, and reading it back gives the same figures as computing it live.

Finding a day in the stream
---------------------------
Stream ids are the Redis server's clock, but an event's time is the ``t`` its
caller gave (a virtual clock in replays). Events are appended in the order of
``t``, up to a little skew between web processes, so a day's first event is found by
bisecting the stream on ``t`` (:func:`_seek`), and reading stops a little past the
day's end.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from redis.asyncio import Redis

from . import keys
from .codec import text
from .model import Office

log = logging.getLogger(__name__)

#: How long after a day ends its tickets are still followed; then its figures are final.
GRACE_SECONDS = 3 * 3600.0
#: How far out of order (by ``t``) the stream may hold events: web processes' clocks differ.
SKEW_SECONDS = 60.0
#: The target wait of a service without congestion bands, in seconds.
DEFAULT_TARGET_SECONDS = 15 * 60.0
#: The longest range of days one report may cover.
MAX_DAYS = 366
#: Format version of a stored roll-up; a roll-up of another version is computed again.
VERSION = 1
_BATCH = 1000


@dataclass
class Tally:
    """The tickets of one service issued in one hour of one day, or any merge of such."""

    issued: int = 0
    served: int = 0
    no_show: int = 0
    cancelled: int = 0
    abandoned: int = 0
    #: Seconds from issue (or appointment) to first call, one per called ticket.
    waits: list[float] = field(default_factory=list)
    #: Seconds from start to finish, one per served ticket.
    service_times: list[float] = field(default_factory=list)

    @property
    def called(self) -> int:
        return len(self.waits)

    def add(self, other: Tally) -> None:
        self.issued += other.issued
        self.served += other.served
        self.no_show += other.no_show
        self.cancelled += other.cancelled
        self.abandoned += other.abandoned
        self.waits.extend(other.waits)
        self.service_times.extend(other.service_times)

    def to_list(self) -> list[Any]:
        return [
            self.issued,
            self.served,
            self.no_show,
            self.cancelled,
            self.abandoned,
            sorted(self.waits),
            sorted(self.service_times),
        ]

    @classmethod
    def from_list(cls, raw: Sequence[Any]) -> Tally:
        issued, served, no_show, cancelled, abandoned, waits, times = raw
        return cls(
            int(issued),
            int(served),
            int(no_show),
            int(cancelled),
            int(abandoned),
            [float(w) for w in waits],
            [float(s) for s in times],
        )


#: The faces of the satisfaction question, 1 (bad) to 5 (good).
FACES = (1, 2, 3, 4, 5)


@dataclass
class ConsultTally:
    """The ended consultations of one topic issued on one day, or any merge of such."""

    ended: int = 0
    completed: int = 0
    cancelled: int = 0
    kiosk_lost: int = 0
    #: Consultations transferred to another remote service at least once.
    transferred: int = 0
    #: Seconds from issue until the call connected (or ended, when it never did), one each.
    waits: list[float] = field(default_factory=list)
    #: Seconds talked, one per consultation that talked at all.
    talks: list[float] = field(default_factory=list)
    #: How many ratings gave each face, 1 to 5.
    ratings: list[int] = field(default_factory=lambda: [0] * len(FACES))

    def add(self, other: ConsultTally) -> None:
        self.ended += other.ended
        self.completed += other.completed
        self.cancelled += other.cancelled
        self.kiosk_lost += other.kiosk_lost
        self.transferred += other.transferred
        self.waits.extend(other.waits)
        self.talks.extend(other.talks)
        self.ratings = [a + b for a, b in zip(self.ratings, other.ratings, strict=True)]

    def to_list(self) -> list[Any]:
        return [
            self.ended,
            self.completed,
            self.cancelled,
            self.kiosk_lost,
            self.transferred,
            sorted(self.waits),
            sorted(self.talks),
            list(self.ratings),
        ]

    @classmethod
    def from_list(cls, raw: Sequence[Any]) -> ConsultTally:
        ended, completed, cancelled, kiosk_lost, transferred, waits, talks, ratings = raw
        if len(ratings) != len(FACES):
            raise ValueError(f"{len(ratings)} rating counts, not {len(FACES)}")
        return cls(
            int(ended),
            int(completed),
            int(cancelled),
            int(kiosk_lost),
            int(transferred),
            [float(w) for w in waits],
            [float(t) for t in talks],
            [int(r) for r in ratings],
        )


@dataclass
class DayStats:
    """One day of an office: a :class:`Tally` per service and hour that had tickets."""

    day: date
    #: True once the day's figures can no longer change (see the module docstring).
    final: bool
    cells: dict[tuple[str, int], Tally] = field(default_factory=dict)
    #: The consultations of the day's tickets that ended, per topic.
    consults: dict[str, ConsultTally] = field(default_factory=dict)

    def to_json(self) -> str:
        """The compact form a roll-up stores: cells in order, their lists sorted.

        ``consults`` is there only for a day that had consultations, so a day without
        any stores what it did before consultations were counted.
        """
        cells = [
            [service, hour, *self.cells[service, hour].to_list()]
            for service, hour in sorted(self.cells)
        ]
        data: dict[str, Any] = {"v": VERSION, "day": self.day.isoformat(), "cells": cells}
        if self.consults:
            data["consults"] = [
                [topic, *self.consults[topic].to_list()] for topic in sorted(self.consults)
            ]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> DayStats:
        data = json.loads(raw)
        if data.get("v") != VERSION:
            raise ValueError(f"roll-up version {data.get('v')!r} is not {VERSION}")
        cells = {(str(c[0]), int(c[1])): Tally.from_list(c[2:]) for c in data["cells"]}
        # A roll-up stored before consultations were counted has none.
        consults = {str(c[0]): ConsultTally.from_list(c[1:]) for c in data.get("consults", [])}
        return cls(date.fromisoformat(data["day"]), True, cells, consults)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0-1), interpolating linearly between the order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass(frozen=True)
class Figures:
    """What a supervisor reads for a set of tickets. Times are seconds, ``None`` without data."""

    issued: int
    called: int
    served: int
    no_show: int
    cancelled: int
    abandoned: int
    #: Tickets called within their service's target wait.
    within: int
    mean_wait: float | None
    p90_wait: float | None
    mean_service: float | None

    @property
    def share_within(self) -> float | None:
        """Of the tickets called or abandoned, the share called within the target."""
        ended = self.called + self.abandoned
        return self.within / ended if ended else None


def figures(cells: Iterable[tuple[str, Tally]], targets: Mapping[str, float]) -> Figures:
    """The figures of some tallies, each ``(service, tally)`` judged by its service's target."""
    total = Tally()
    within = 0
    for service, tally in cells:
        target = targets.get(service, DEFAULT_TARGET_SECONDS)
        within += sum(1 for w in tally.waits if w <= target)
        total.add(tally)
    return Figures(
        issued=total.issued,
        called=total.called,
        served=total.served,
        no_show=total.no_show,
        cancelled=total.cancelled,
        abandoned=total.abandoned,
        within=within,
        mean_wait=_mean(total.waits),
        p90_wait=percentile(total.waits, 0.9) if total.waits else None,
        mean_service=_mean(total.service_times),
    )


@dataclass(frozen=True)
class ConsultFigures:
    """What a supervisor reads for a set of ended consultations. Times are seconds."""

    ended: int
    completed: int
    cancelled: int
    kiosk_lost: int
    transferred: int
    mean_wait: float | None
    p90_wait: float | None
    #: Of the consultations that talked at all.
    mean_talk: float | None
    #: How many ratings gave each face, 1 to 5.
    faces: tuple[int, ...]

    @property
    def rated(self) -> int:
        return sum(self.faces)

    @property
    def mean_rating(self) -> float | None:
        if not self.rated:
            return None
        return sum(face * n for face, n in zip(FACES, self.faces, strict=True)) / self.rated


def consult_figures(tallies: Iterable[ConsultTally]) -> ConsultFigures:
    total = ConsultTally()
    for tally in tallies:
        total.add(tally)
    return ConsultFigures(
        ended=total.ended,
        completed=total.completed,
        cancelled=total.cancelled,
        kiosk_lost=total.kiosk_lost,
        transferred=total.transferred,
        mean_wait=_mean(total.waits),
        p90_wait=percentile(total.waits, 0.9) if total.waits else None,
        mean_talk=_mean(total.talks),
        faces=tuple(total.ratings),
    )


@dataclass(frozen=True)
class Report:
    """An office's figures over a range of days, optionally of one service."""

    office: Office
    #: One entry per day of the range, in order.
    days: list[DayStats]
    #: Target wait per service, in seconds (:data:`DEFAULT_TARGET_SECONDS` for any other).
    targets: Mapping[str, float]
    service: str | None = None

    @property
    def first(self) -> date:
        return self.days[0].day

    @property
    def last(self) -> date:
        return self.days[-1].day

    @property
    def live(self) -> bool:
        """Whether some of the figures are still live (today's, say) and may change."""
        return any(not day.final for day in self.days)

    def cells(self, day: DayStats | None = None) -> Iterable[tuple[date, str, int, Tally]]:
        for stats in self.days if day is None else [day]:
            for (service, hour), tally in sorted(stats.cells.items()):
                if self.service is None or service == self.service:
                    yield stats.day, service, hour, tally

    def total(self) -> Figures:
        return figures(((s, t) for _, s, _, t in self.cells()), self.targets)

    def by_day(self) -> list[tuple[date, Figures]]:
        return [
            (day.day, figures(((s, t) for _, s, _, t in self.cells(day)), self.targets))
            for day in self.days
        ]

    def by_hour(self) -> list[tuple[int, Figures]]:
        """Every hour from the first to the last in which a ticket was issued."""
        hours = {hour for _, _, hour, tally in self.cells() if tally.issued}
        if not hours:
            return []
        return [
            (hour, figures(((s, t) for _, s, h, t in self.cells() if h == hour), self.targets))
            for hour in range(min(hours), max(hours) + 1)
        ]

    def services(self) -> list[str]:
        return sorted({service for _, service, _, _ in self.cells()})

    def by_service(self) -> list[tuple[str, Figures]]:
        return [
            (sid, figures(((s, t) for _, s, _, t in self.cells() if s == sid), self.targets))
            for sid in self.services()
        ]

    def consult_cells(self) -> Iterable[tuple[date, str, ConsultTally]]:
        for stats in self.days:
            for topic, tally in sorted(stats.consults.items()):
                if self.service is None or topic == self.service:
                    yield stats.day, topic, tally

    def consult_total(self) -> ConsultFigures:
        return consult_figures(t for _, _, t in self.consult_cells())

    def consultations(self) -> list[tuple[str, ConsultFigures]]:
        """The consultations per topic, over the whole range."""
        topics = sorted({topic for _, topic, _ in self.consult_cells()})
        return [
            (topic, consult_figures(t for _, s, t in self.consult_cells() if s == topic))
            for topic in topics
        ]

    def consult_rows(self) -> list[tuple[date, str, ConsultFigures]]:
        """One row per day and topic that had consultations end."""
        return [(day, topic, consult_figures([t])) for day, topic, t in self.consult_cells()]

    def rows(self) -> list[tuple[date, int, str, Figures]]:
        """The finest grain: one row per day, hour and service that had tickets."""
        return [
            (day, hour, service, figures([(service, tally)], self.targets))
            for day, service, hour, tally in self.cells()
        ]


# -- days and windows -----------------------------------------------------------------------


def day_start(office: Office, day: date) -> float:
    """The moment ``day`` begins in the office's time zone, in seconds since the epoch."""
    return datetime.combine(day, time(0), tzinfo=office.zone).timestamp()


def is_final(office: Office, day: date, now: float) -> bool:
    """Whether the figures of ``day`` can no longer change at ``now``."""
    return now >= day_start(office, day + timedelta(days=1)) + GRACE_SECONDS


def last_final_day(office: Office, now: float) -> date:
    """The latest day whose figures are final at ``now``."""
    return date.fromisoformat(office.day(now - GRACE_SECONDS)) - timedelta(days=1)


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# -- reading the stream ---------------------------------------------------------------------


def _event(fields: Mapping[Any, Any]) -> tuple[float, dict[str, Any]] | None:
    """An entry's event and its time, or ``None`` for an entry that is not one of ours."""
    try:
        body = json.loads(text(fields["e"]))
        return float(body["t"]), body
    except (KeyError, ValueError, TypeError):
        return None


def _ms(entry_id: Any) -> int:
    return int(text(entry_id).split("-")[0])


async def _entries(
    redis: Redis, key: str, start: str, count: int, *, reverse: bool = False
) -> list[tuple[str, Mapping[Any, Any]]]:
    """``XRANGE key start + COUNT count`` (or ``XREVRANGE key + - COUNT count``), typed."""
    if reverse:
        found = await redis.xrevrange(key, count=count)
    else:
        found = await redis.xrange(key, min=start, max="+", count=count)
    return [(text(entry_id or ""), fields or {}) for entry_id, fields in found or []]


async def _time_at(redis: Redis, key: str, ms: int) -> tuple[int, float] | None:
    """The first event at or after stream time ``ms``: its stream time and its ``t``."""
    while True:
        found = await _entries(redis, key, f"{ms}-0", 1)
        if not found:
            return None
        entry_id, fields = found[0]
        event = _event(fields)
        if event is not None:
            return _ms(entry_id), event[0]
        ms = _ms(entry_id) + 1  # skip an entry that is not an event


async def _seek(redis: Redis, key: str, t: float) -> str | None:
    """A stream id to read from so as not to miss any event at or after ``t``.

    Bisects on stream time, relying on events being appended in the order of
    their ``t``; ``None`` when the stream is empty.
    """
    first = await _time_at(redis, key, 0)
    if first is None:
        return None
    if first[1] >= t:
        return "-"
    latest = await _entries(redis, key, "+", 1, reverse=True)
    # The first event at or after ``lo`` is before ``t``; none at or after ``hi`` is.
    lo, hi = first[0], _ms(latest[0][0]) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        found = await _time_at(redis, key, mid)
        if found is None or found[1] >= t:
            hi = mid
        else:
            lo = found[0]
    return f"{lo}-0"


async def _events(
    redis: Redis, office: str, since: float, until: float
) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    """The office's events from a little before ``since`` to a little after ``until``."""
    key = keys.events(office)
    start = await _seek(redis, key, since - SKEW_SECONDS)
    if start is None:
        return
    while True:
        batch = await _entries(redis, key, start, _BATCH)
        for _, fields in batch:
            event = _event(fields)
            if event is None:
                continue
            if event[0] >= until + SKEW_SECONDS:
                return
            yield event
        if len(batch) < _BATCH:
            return
        start = f"({batch[-1][0]}"


# -- folding events into figures --------------------------------------------------------------


@dataclass
class _Ticket:
    day: date
    hour: int
    service: str
    #: When the resident's wait began: issue, or the appointment when later.
    arrival: float
    #: Events from this moment on no longer count: the day is final.
    until: float
    #: An appointment booked for a later day: never abandoned on the day of issue.
    booked_ahead: bool
    status: str = "waiting"
    wait: float | None = None
    took: float | None = None
    #: Its consultation's ``consultation`` event, when it was one and its call ended.
    consult: dict[str, Any] | None = None
    rating: int | None = None


_STATUS = {
    "called": "called",
    "recalled": "called",
    "started": "serving",
    "finished": "done",
    "no_show": "no_show",
    "cancelled": "cancelled",
    "abandoned": "abandoned",
    "transferred": "waiting",
}


class _Fold:
    """The tickets issued on some days of one office, followed through their events."""

    def __init__(self, office: Office, days: Iterable[date]) -> None:
        self.office = office
        self.days = set(days)
        self.tickets: dict[str, _Ticket] = {}

    def issued(self, t: float, event: dict[str, Any]) -> None:
        local = datetime.fromtimestamp(t, self.office.zone)
        day = local.date()
        if day not in self.days:
            return
        appt = float(event["appt"]) if event.get("appt") else None
        booked_ahead = appt is not None and self.office.day(appt) > day.isoformat()
        self.tickets[str(event["ticket"])] = _Ticket(
            day=day,
            hour=local.hour,
            service=str(event["service"]),
            arrival=t if appt is None else max(t, appt),
            until=day_start(self.office, day + timedelta(days=1)) + GRACE_SECONDS,
            booked_ahead=booked_ahead,
        )

    def add(self, t: float, event: dict[str, Any]) -> None:
        kind = event.get("type")
        try:
            if kind == "issued":
                self.issued(t, event)
                return
            ticket = self.tickets.get(str(event.get("ticket")))
            if ticket is None or t >= ticket.until:
                return
            if kind == "consultation":
                ticket.consult = {
                    "outcome": str(event["outcome"]),
                    "waited": round(max(0.0, float(event["waited"] or 0)), 3),
                    "talked": round(max(0.0, float(event["talked"] or 0)), 3),
                    "transfers": int(event.get("transfers") or 0),
                }
                return
            if kind == "consult_rated":
                rating = int(event["rating"])
                if rating not in FACES:
                    raise ValueError(rating)
                ticket.rating = rating
                return
            if kind not in _STATUS:
                return
            ticket.status = _STATUS[kind]
            if kind == "called" and ticket.wait is None:
                ticket.wait = round(max(0.0, t - ticket.arrival), 3)
            elif kind == "finished":
                ticket.took = round(float(event["took"]), 3)
        except (KeyError, ValueError, TypeError):
            log.warning("office %s: skipping a malformed %s event", self.office.id, kind)

    def result(self, now: float) -> dict[date, DayStats]:
        stats = {day: DayStats(day, is_final(self.office, day, now)) for day in self.days}
        for ticket in self.tickets.values():
            day = stats[ticket.day]
            tally = day.cells.setdefault((ticket.service, ticket.hour), Tally())
            tally.issued += 1
            if ticket.wait is not None:
                tally.waits.append(ticket.wait)
            match ticket.status:
                case "done":
                    tally.served += 1
                    if ticket.took is not None:
                        tally.service_times.append(ticket.took)
                case "no_show":
                    tally.no_show += 1
                case "cancelled":
                    tally.cancelled += 1
                case "abandoned":
                    tally.abandoned += 1
                case "waiting" if day.final and not ticket.booked_ahead:
                    tally.abandoned += 1
            if ticket.consult is not None:
                self._consultation(day, ticket)
        for day in stats.values():
            for tally in day.cells.values():
                # Sorted, as a stored roll-up has them: the same day always reads the same.
                tally.waits.sort()
                tally.service_times.sort()
            for consults in day.consults.values():
                consults.waits.sort()
                consults.talks.sort()
        return {day: stats[day] for day in sorted(stats)}

    @staticmethod
    def _consultation(day: DayStats, ticket: _Ticket) -> None:
        record = ticket.consult
        assert record is not None
        tally = day.consults.setdefault(ticket.service, ConsultTally())
        tally.ended += 1
        match record["outcome"]:
            case "completed":
                tally.completed += 1
            case "cancelled":
                tally.cancelled += 1
            case "kiosk_lost":
                tally.kiosk_lost += 1
        if record["transfers"] > 0:
            tally.transferred += 1
        tally.waits.append(record["waited"])
        if record["talked"] > 0:
            tally.talks.append(record["talked"])
        if ticket.rating is not None:
            tally.ratings[ticket.rating - 1] += 1


async def compute_days(
    redis: Redis, office: Office, days: Sequence[date], now: float
) -> dict[date, DayStats]:
    """The figures of ``days``, computed from the stream as it stands at ``now``.

    Reads the stream once from the first day to the end of the last day's grace.
    """
    fold = _Fold(office, days)
    if days:
        since = day_start(office, min(days))
        until = day_start(office, max(days) + timedelta(days=1)) + GRACE_SECONDS
        async for t, event in _events(redis, office.id, since, min(until, now + SKEW_SECONDS)):
            fold.add(t, event)
    return fold.result(now)


async def rolled_up(redis: Redis, office: str, days: Sequence[date]) -> dict[date, DayStats]:
    """The stored roll-ups of those of ``days`` that have one."""
    if not days:
        return {}
    raw = await redis.hmget(keys.stats_days(office), [d.isoformat() for d in days])
    found: dict[date, DayStats] = {}
    for day, value in zip(days, raw, strict=True):
        if value is None:
            continue
        try:
            found[day] = DayStats.from_json(text(value))
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("office %s: roll-up of %s is unreadable; computing it again", office, day)
    return found


async def roll_up(
    redis: Redis, office: Office, days: Sequence[date], now: float
) -> dict[date, DayStats]:
    """Compute and store the roll-ups of those of ``days`` that are final at ``now``."""
    final = [day for day in days if is_final(office, day, now)]
    computed = await compute_days(redis, office, final, now)
    if computed:
        await redis.hset(
            keys.stats_days(office.id),
            mapping={day.isoformat(): stats.to_json() for day, stats in computed.items()},
        )
    return computed


async def days_to_roll_up(redis: Redis, office: Office, now: float, *, back: int) -> list[date]:
    """The final days of the last ``back`` days that the stream has events of and no roll-up.

    Nothing before the stream's first event: a new office has no past to roll up.
    """
    last = last_final_day(office, now)
    first = last - timedelta(days=back - 1)
    oldest = await _time_at(redis, keys.events(office.id), 0)
    if oldest is None:
        return []
    first = max(first, date.fromisoformat(office.day(oldest[1])))
    days = day_range(first, last) if first <= last else []
    stored = await rolled_up(redis, office.id, days)
    return [day for day in days if day not in stored]


async def day_stats(
    redis: Redis, office: Office, first: date, last: date, now: float
) -> list[DayStats]:
    """The figures of every day from ``first`` to ``last``: roll-ups where there are,
    the stream for the others (today, and any day the roll-up job has not reached)."""
    days = day_range(first, last)
    found = await rolled_up(redis, office.id, days)
    missing = [day for day in days if day not in found]
    # One read of the stream per run of consecutive missing days.
    runs: list[list[date]] = []
    for day in missing:
        if runs and runs[-1][-1] + timedelta(days=1) == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    for run in runs:
        found.update(await compute_days(redis, office, run, now))
    return [found[day] for day in days]
