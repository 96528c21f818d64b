"""The replay: an office-day trace played in virtual time through the real queue and estimator.

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
"""

from __future__ import annotations

import enum
import heapq
import itertools
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

from .. import keys
from ..estimator import Estimator
from ..model import CancelReason, Estimate, Office, Service, Snapshot
from ..tickets import QueueClient
from .trace import PREFIXES, ZONE, Arrival, End, Staff, Trace

log = logging.getLogger(__name__)

#: Seconds a counter waits for a called resident who never comes.
NO_SHOW_AFTER = 60.0


class ReplayError(RuntimeError):
    """The replay cannot go on: the Redis it was given, or the estimator, is not fit for it."""


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
