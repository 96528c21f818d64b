"""A plain-Python model of one office's ticket queue, for the stateful test.

It restates the rules of ``queue/scripts/*.lua`` as directly as possible, without
sorted sets or counters kept in step: each waiting line is recomputed from the
tickets every time it is needed. Operations check every precondition before they
change anything and raise the same exception classes as ``QueueClient``.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from madoguchi.queue.exceptions import (
    Busy,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
    WrongState,
)

CLOSED = frozenset({"done", "no_show", "cancelled", "abandoned"})


@dataclass
class ModelService:
    id: str
    prefix: str
    active: bool = True


@dataclass
class ModelTicket:
    id: str
    number: str
    service: str
    channel: str
    priority: bool
    appointment_at: float | None
    issued_at: float
    day: str
    status: str = "waiting"
    counter: str | None = None
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    recalls: int = 0
    transfers: int = 0

    @property
    def kind(self) -> str:
        """The waiting line the ticket belongs in."""
        if self.appointment_at is not None:
            return "appt"
        return "priority" if self.priority else "regular"

    @property
    def score(self) -> float:
        """Its order in that line: appointments by their slot, the rest by issue time."""
        return self.appointment_at if self.appointment_at is not None else self.issued_at


@dataclass
class ModelCounter:
    id: str
    services: tuple[str, ...]
    state: str = "open"
    current: str | None = None
    streak: int = 0


@dataclass
class QueueModel:
    timezone: str
    priority_cap: int
    appt_early: int
    services: dict[str, ModelService]
    tickets: dict[str, ModelTicket] = field(default_factory=dict)
    counters: dict[str, ModelCounter] = field(default_factory=dict)
    #: Idempotency key -> (ticket id, what was asked for).
    keys: dict[str, tuple[str, tuple[object, ...]]] = field(default_factory=dict)
    numbers: Tally[tuple[str, str]] = field(default_factory=Tally)
    #: Events the queue should have appended since the last ``take_events``.
    events: list[tuple[str, str | None]] = field(default_factory=list)

    # -- reading ---------------------------------------------------------------------

    def day(self, now: float) -> str:
        return datetime.fromtimestamp(now, ZoneInfo(self.timezone)).date().isoformat()

    def line(self, service: str, kind: str) -> list[ModelTicket]:
        """The waiting tickets of one line of one service, in calling order."""
        waiting = [
            t
            for t in self.tickets.values()
            if t.status == "waiting" and t.service == service and t.kind == kind
        ]
        return sorted(waiting, key=lambda t: (t.score, t.id))

    def due(self, ticket: ModelTicket, now: float) -> bool:
        return ticket.appointment_at is not None and ticket.appointment_at <= now + self.appt_early

    def position(self, ticket: ModelTicket, now: float) -> int:
        """1 for the next of its own service's line; 0 once it is not waiting."""
        if ticket.status != "waiting":
            return 0
        rank = self.line(ticket.service, ticket.kind).index(ticket) + 1
        if ticket.kind == "appt":
            return rank
        due = sum(self.due(t, now) for t in self.line(ticket.service, "appt"))
        if ticket.kind == "priority":
            return due + rank
        return due + len(self.line(ticket.service, "priority")) + rank

    def take_events(self) -> list[tuple[str, str | None]]:
        events, self.events = self.events, []
        return events

    # -- tickets ---------------------------------------------------------------------

    def issue(
        self,
        service: str,
        *,
        now: float,
        channel: str,
        priority: bool,
        appointment_at: float | None,
        key: str | None,
    ) -> tuple[ModelTicket, bool]:
        request = (service, channel, priority, appointment_at)
        if key is not None and key in self.keys:
            ticket_id, asked = self.keys[key]
            if asked != request:
                raise Conflict(f'idempotency key "{key}" was already used')
            return self.tickets[ticket_id], True
        found = self.services.get(service)
        if found is None:
            raise NotFound(f'service "{service}" does not exist')
        if not found.active:
            raise Unavailable(f'service "{service}" is not taking tickets now')
        day = self.day(now)
        self.numbers[day, service] += 1
        ticket = ModelTicket(
            id=f"{len(self.tickets) + 1:08d}",
            number=f"{found.prefix}-{self.numbers[day, service]:03d}",
            service=service,
            channel=channel,
            priority=priority,
            appointment_at=appointment_at,
            issued_at=now,
            day=day,
        )
        self.tickets[ticket.id] = ticket
        if key is not None:
            self.keys[key] = (ticket.id, request)
        self.events.append(("issued", ticket.id))
        return ticket, False

    def _ticket(self, ticket_id: str, *allowed: str) -> ModelTicket:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise NotFound(f'ticket "{ticket_id}" does not exist')
        if ticket.status not in allowed:
            raise WrongState(f"ticket {ticket.number} is {ticket.status}")
        return ticket

    def _free_counter(self, ticket: ModelTicket) -> None:
        counter = self.counters.get(ticket.counter or "")
        if counter is not None and counter.current == ticket.id:
            counter.current = None

    def call_next(self, counter_id: str, *, now: float) -> ModelTicket | None:
        counter = self.counters.get(counter_id)
        if counter is None:
            raise NotFound(f'counter "{counter_id}" does not exist')
        if counter.state != "open":
            raise WrongState(f'counter "{counter_id}" is {counter.state}')
        if counter.current is not None:
            raise Busy(f'counter "{counter_id}" still has a ticket')

        def first(kind: str) -> ModelTicket | None:
            waiting = [t for s in counter.services for t in self.line(s, kind)]
            return min(waiting, key=lambda t: (t.score, t.id), default=None)

        appointment = first("appt")
        if appointment is not None and self.due(appointment, now):
            chosen = appointment
        else:
            priority, regular = first("priority"), first("regular")
            if priority is not None and (regular is None or counter.streak < self.priority_cap):
                chosen = priority
                counter.streak += 1
            elif regular is not None:
                chosen = regular
                counter.streak = 0
            else:
                return None
        chosen.status = "called"
        chosen.called_at = now
        chosen.counter = counter.id
        counter.current = chosen.id
        self.events.append(("called", chosen.id))
        return chosen

    def recall(self, ticket_id: str, *, now: float) -> ModelTicket:
        ticket = self._ticket(ticket_id, "called")
        ticket.recalls += 1
        self.events.append(("recalled", ticket.id))
        return ticket

    def no_show(self, ticket_id: str, *, now: float) -> ModelTicket:
        ticket = self._ticket(ticket_id, "called")
        self._free_counter(ticket)
        ticket.status = "no_show"
        ticket.finished_at = now
        self.events.append(("no_show", ticket.id))
        return ticket

    def start(self, ticket_id: str, *, now: float) -> ModelTicket:
        ticket = self._ticket(ticket_id, "called")
        ticket.status = "serving"
        ticket.started_at = now
        self.events.append(("started", ticket.id))
        return ticket

    def finish(self, ticket_id: str, *, now: float) -> ModelTicket:
        ticket = self._ticket(ticket_id, "serving")
        self._free_counter(ticket)
        ticket.status = "done"
        ticket.finished_at = now
        self.events.append(("finished", ticket.id))
        return ticket

    def transfer(self, ticket_id: str, service: str, *, now: float) -> ModelTicket:
        ticket = self._ticket(ticket_id, "waiting", "called", "serving")
        if service == ticket.service:
            raise InvalidInput(f'ticket {ticket.number} is already in service "{service}"')
        target = self.services.get(service)
        if target is None:
            raise NotFound(f'service "{service}" does not exist')
        if not target.active:
            raise Unavailable(f'service "{service}" is not taking tickets now')
        self._free_counter(ticket)
        ticket.status = "waiting"
        ticket.service = service
        ticket.counter = None
        ticket.called_at = None
        ticket.started_at = None
        ticket.transfers += 1
        self.events.append(("transferred", ticket.id))
        return ticket

    def cancel(self, ticket_id: str, *, now: float, reason: str) -> ModelTicket:
        ticket = self._ticket(ticket_id, "waiting", "called")
        self._free_counter(ticket)
        ticket.status = "abandoned" if reason == "abandoned" else "cancelled"
        ticket.finished_at = now
        self.events.append((ticket.status, ticket.id))
        return ticket

    # -- counters --------------------------------------------------------------------

    def open_counter(
        self, counter_id: str, services: tuple[str, ...], *, now: float
    ) -> ModelCounter:
        counter = self.counters.get(counter_id)
        wanted = tuple(dict.fromkeys(services))
        if not wanted:
            if counter is None:
                raise InvalidInput(f'counter "{counter_id}" needs at least one service')
            wanted = counter.services
        for service in wanted:
            if service not in self.services:
                raise NotFound(f'service "{service}" does not exist')
        if counter is None:
            counter = self.counters[counter_id] = ModelCounter(counter_id, wanted, state="closed")
        kind = "counter_changed" if counter.state == "open" else "counter_opened"
        counter.state = "open"
        counter.services = wanted
        self.events.append((kind, None))
        return counter

    def pause_counter(self, counter_id: str, *, now: float) -> ModelCounter:
        counter = self.counters.get(counter_id)
        if counter is None:
            raise NotFound(f'counter "{counter_id}" does not exist')
        if counter.state != "open":
            raise WrongState(f'counter "{counter_id}" is {counter.state}')
        counter.state = "paused"
        self.events.append(("counter_paused", None))
        return counter

    def close_counter(self, counter_id: str, *, now: float) -> ModelCounter:
        counter = self.counters.get(counter_id)
        if counter is None:
            raise NotFound(f'counter "{counter_id}" does not exist')
        if counter.state == "closed":
            raise WrongState(f'counter "{counter_id}" is already closed')
        if counter.current is not None:
            raise Busy(f'counter "{counter_id}" still has a ticket')
        counter.state = "closed"
        counter.streak = 0
        self.events.append(("counter_closed", None))
        return counter
