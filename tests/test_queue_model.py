"""Random operation sequences against real Redis agree with a plain-Python model.

Hypothesis drives ``QueueClient`` and ``tests/queue_model.py`` side by side: every
operation must succeed or fail (by exception class) the same way on both, call-next
must choose the same ticket, and after every step every ticket, every waiting
ticket's position, every counter, every waiting line and the events appended must
match.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from random import Random
from typing import Any, NamedTuple, TypeVar

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis as AsyncRedis

from madoguchi.queue import keys
from madoguchi.queue.exceptions import QueueError
from madoguchi.queue.model import Channel, Counter, Office, Service, Ticket
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from queue_model import ModelCounter, ModelService, ModelTicket, QueueModel

T = TypeVar("T")

#: 2026-11-26 09:00 in Tokyo.
START = 1_795_651_200.0
#: Each run sets its own priority cap and appointment lead.
OFFICE = Office("wakamatsu", "若松区役所", "Wakamatsu Ward Office")
SERVICES = (
    Service("certs", "A", "証明書", "Certificates"),
    Service("moving", "B", "転入・転出", "Moving in and out"),
    Service("care", "C", "介護", "Long-term care"),
    Service("archive", "D", "閉架", "Archive", active=False),
)
#: A valid id that names no service.
UNKNOWN_SERVICE = "nosuch"
#: An id no ticket has.
UNKNOWN_TICKET = "99999999"
#: Counters open from the start; "c3" does not exist until a step opens it.
INITIAL_COUNTERS = {"c1": ("care", "moving"), "c2": ("certs", "moving")}
#: Hypothesis picks early choices more often: the counter serving two services comes first.
COUNTERS = ["c2", "c1", "c3"]
#: Appointment slots, in seconds after the moment of issue: around the moment they become
#: due (office.appt_early before the slot, 300 s or 0 in these runs).
SLOTS = [0, 300, 299, 301, -600, 1800]


class Request(NamedTuple):
    service: str
    channel: Channel
    #: "walk-in", "priority", "appointment" or "priority appointment".
    kind: str
    #: For appointments: the slot, in seconds after the moment of issue.
    slot: int
    key: str | None


requests = st.builds(
    Request,
    # Mostly services that take tickets, so that most requests get past the checks.
    service=st.sampled_from(["certs", "moving", "care"] * 3 + ["archive", UNKNOWN_SERVICE]),
    channel=st.sampled_from(list(Channel)),
    # Walk-ins twice as often as the others.
    kind=st.sampled_from(["walk-in", "priority", "walk-in", "appointment", "priority appointment"]),
    slot=st.sampled_from(SLOTS),
    # A few keys, so that retries (same request) and misuse (another request) both happen.
    key=st.none() | st.sampled_from(["k1", "k2", "k3"]),
)
#: Time that passes before a step, in seconds; long waits cross into the next day.
elapses = st.sampled_from([0, 1, 60, 299, 300, 301, 1800, 6 * 3600, 15 * 3600])

#: Any operation on one ticket, whatever state it is in.
TICKET_OPERATIONS = [
    "recall",
    "no_show",
    "start",
    "finish",
    "cancel",
    "abandon",
    *(f"transfer:{s}" for s in ("certs", "moving", "care", "archive", UNKNOWN_SERVICE)),
]
#: How a called ticket ends, some with steps that must be refused on the way
#: (finishing before starting; a recall, a cancel or a no-show once serving).
ENDINGS = [
    ("start", "finish"),
    ("no_show",),
    ("recall", "no_show"),
    ("cancel",),
    ("abandon",),
    ("finish", "start", "recall", "cancel", "no_show", "finish"),
    ("start", "transfer:care"),
    ("transfer:moving",),
]
counter_services = st.lists(
    st.sampled_from(["certs", "moving", "care"]), min_size=1, max_size=3, unique=True
) | st.sampled_from([[], ["archive"], ["certs", UNKNOWN_SERVICE]])


class QueueMachine(RuleBasedStateMachine):
    """One office, four services (one inactive), three counters and a virtual clock."""

    #: Set by the test to the session's Redis.
    redis_url: str = ""
    #: Set up by ``open_office``, the first step of every run.
    model: QueueModel
    last_event: str

    def __init__(self) -> None:
        super().__init__()
        flusher = redis.Redis.from_url(self.redis_url)
        flusher.flushall()
        flusher.close()
        self.loop = asyncio.new_event_loop()
        self.redis = AsyncRedis.from_url(self.redis_url, decode_responses=True)
        self.queue = QueueClient(self.redis, Settings(redis_url=self.redis_url))
        self.now = START
        self.tokens: dict[str, str] = {}

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def both(
        self, real: Callable[[], Awaitable[T]], model: Callable[[], Any]
    ) -> tuple[T, Any] | None:
        """Run one operation on Redis and on the model; ``None`` when both refused it."""
        try:
            expected = model()
        except QueueError as exc:
            with pytest.raises(type(exc)):
                self.run(real())
            return None
        return self.run(real()), expected

    def check_ticket(self, real: Ticket, expected: ModelTicket, *, position: bool = True) -> None:
        assert (
            real.id,
            real.number,
            real.service,
            real.channel.value,
            real.priority,
            real.appointment_at,
            real.issued_at,
            real.day,
            real.status.value,
            real.counter,
            real.called_at,
            real.started_at,
            real.finished_at,
            real.recalls,
            real.transfers,
        ) == (
            expected.id,
            expected.number,
            expected.service,
            expected.channel,
            expected.priority,
            expected.appointment_at,
            expected.issued_at,
            expected.day,
            expected.status,
            expected.counter,
            expected.called_at,
            expected.started_at,
            expected.finished_at,
            expected.recalls,
            expected.transfers,
        )
        if position:
            assert real.position == self.model.position(expected, self.now), expected.number

    @staticmethod
    def check_counter(real: Counter, expected: ModelCounter) -> None:
        assert (real.id, real.state.value, real.services, real.current) == (
            expected.id,
            expected.state,
            expected.services,
            expected.current,
        )

    def held(self, counter: str) -> str | None:
        found = self.model.counters.get(counter)
        return None if found is None else found.current

    # -- rules -----------------------------------------------------------------------

    @initialize(
        priority_cap=st.integers(1, 3),
        appt_early=st.sampled_from([300, 0]),
        walk_ins=st.integers(2, 12),
        priority=st.integers(1, 6),
        slots=st.lists(st.sampled_from(SLOTS), max_size=4),
        shuffle=st.integers(0, 2**16),
    )
    def open_office(
        self,
        priority_cap: int,
        appt_early: int,
        walk_ins: int,
        priority: int,
        slots: list[int],
        shuffle: int,
    ) -> None:
        """The office, its services and two open counters, and a mixed crowd waiting already.

        The crowd is built from counts and shuffled, rather than drawn ticket by ticket, so
        that every run has walk-ins and priority tickets for the same counters to choose from.
        """
        office = replace(OFFICE, priority_cap=priority_cap, appt_early=appt_early)
        self.run(self.queue.put_office(office, now=self.now))
        for service in SERVICES:
            self.run(self.queue.put_service(office.id, service, now=self.now))
        self.model = QueueModel(
            timezone=office.timezone,
            priority_cap=priority_cap,
            appt_early=appt_early,
            services={s.id: ModelService(s.id, s.prefix, s.active) for s in SERVICES},
        )
        for counter, services in INITIAL_COUNTERS.items():
            self.counter(counter, "open", list(services))
        self.last_event = self.run(self.queue.last_event(office.id))
        self.model.take_events()
        crowd = ["walk-in"] * walk_ins + ["priority"] * priority
        Random(shuffle).shuffle(crowd)
        for i, kind in enumerate(crowd):
            service = ("certs", "moving", "care")[i % 3]
            # Two at a time, so that some calls are decided by the tie rule.
            self.issue(Request(service, Channel.KIOSK, kind, 0, None), elapse=i % 2)
        # Appointments last, so that their slots are relative to when calling begins.
        for i, slot in enumerate(slots):
            service = ("moving", "certs", "care")[i % 3]
            self.issue(Request(service, Channel.PHONE, "appointment", slot, None), elapse=0)

    @rule(request=requests, elapse=elapses)
    def issue(self, request: Request, elapse: int) -> None:
        self.now += elapse
        priority = "priority" in request.kind
        appointment_at = self.now + request.slot if "appointment" in request.kind else None
        outcome = self.both(
            partial(
                self.queue.issue,
                OFFICE.id,
                request.service,
                now=self.now,
                channel=request.channel,
                priority=priority,
                appointment_at=appointment_at,
                idempotency_key=request.key,
            ),
            partial(
                self.model.issue,
                request.service,
                now=self.now,
                channel=request.channel.value,
                priority=priority,
                appointment_at=appointment_at,
                key=request.key,
            ),
        )
        if outcome is None:
            return
        issued, (expected, replayed) = outcome
        assert issued.replayed == replayed
        self.check_ticket(issued.ticket, expected)
        if replayed:
            assert issued.ticket.token == self.tokens[expected.id]
        else:
            self.tokens[expected.id] = issued.ticket.token

    @rule(counter=st.sampled_from(COUNTERS), elapse=elapses)
    def call_next(self, counter: str, elapse: int) -> None:
        self.now += elapse
        outcome = self.both(
            partial(self.queue.call_next, OFFICE.id, counter, now=self.now),
            partial(self.model.call_next, counter, now=self.now),
        )
        if outcome is None:
            return
        called, expected = outcome
        if expected is None:
            assert called is None
        else:
            assert called is not None
            self.check_ticket(called, expected)

    @rule(counter=st.sampled_from(COUNTERS), ending=st.sampled_from(ENDINGS), elapse=elapses)
    def serve(self, counter: str, ending: tuple[str, ...], elapse: int) -> None:
        """A counter's usual round: call the next ticket (unless it holds one) and see it out."""
        if self.held(counter) is None:
            self.call_next(counter, elapse)
        held = self.held(counter)
        if held is not None:
            for operation in ending:
                self.ticket_op(operation, held, by_token=False)

    @rule(data=st.data(), operation=st.sampled_from(TICKET_OPERATIONS), by_token=st.booleans())
    def act_on_ticket(self, data: st.DataObject, operation: str, by_token: bool) -> None:
        """Any ticket operation on any ticket, whatever state it is in."""
        ticket = data.draw(st.sampled_from([*sorted(self.model.tickets), UNKNOWN_TICKET]))
        self.ticket_op(operation, ticket, by_token)

    @rule(
        counter=st.sampled_from(COUNTERS),
        action=st.sampled_from(["open", "pause", "close"]),
        services=counter_services,
    )
    def counter(self, counter: str, action: str, services: list[str]) -> None:
        if action == "open":
            real = partial(self.queue.open_counter, OFFICE.id, counter, services, now=self.now)
            model = partial(self.model.open_counter, counter, tuple(services), now=self.now)
        else:
            operation = f"{action}_counter"
            real = partial(getattr(self.queue, operation), OFFICE.id, counter, now=self.now)
            model = partial(getattr(self.model, operation), counter, now=self.now)
        outcome = self.both(real, model)
        if outcome is not None:
            self.check_counter(*outcome)

    @rule(counter=st.sampled_from(COUNTERS), stop=st.sampled_from(["close", "pause"]))
    def take_a_break(self, counter: str, stop: str) -> None:
        """Close or pause a counter and open it again with the services it had."""
        self.counter(counter, stop, [])
        self.now += 1800
        self.counter(counter, "open", [])

    def ticket_op(self, operation: str, ticket: str, by_token: bool) -> None:
        ref = self.tokens[ticket] if by_token and ticket in self.tokens else ticket
        name, _, service = operation.partition(":")
        real: Callable[[], Awaitable[Ticket]]
        model: Callable[[], ModelTicket]
        if name in ("cancel", "abandon"):
            reason = "resident" if name == "cancel" else "abandoned"
            real = partial(self.queue.cancel, OFFICE.id, ref, now=self.now, reason=reason)
            model = partial(self.model.cancel, ticket, now=self.now, reason=reason)
        elif name == "transfer":
            real = partial(self.queue.transfer, OFFICE.id, ref, service, now=self.now)
            model = partial(self.model.transfer, ticket, service, now=self.now)
        else:
            real = partial(getattr(self.queue, name), OFFICE.id, ref, now=self.now)
            model = partial(getattr(self.model, name), ticket, now=self.now)
        outcome = self.both(real, model)
        if outcome is not None:
            self.check_ticket(*outcome)

    # -- after every step ------------------------------------------------------------

    @invariant()
    def tickets_agree(self) -> None:
        """Every ticket as stored, and the position of every waiting one."""
        ids = sorted(self.model.tickets)
        pipe = self.redis.pipeline(transaction=False)
        for ticket_id in ids:
            pipe.hgetall(keys.ticket(OFFICE.id, ticket_id))
        for ticket_id, raw in zip(ids, self.run(pipe.execute()), strict=True):
            self.check_ticket(Ticket.from_redis(raw), self.model.tickets[ticket_id], position=False)
        waiting = [self.model.tickets[i] for i in ids if self.model.tickets[i].status == "waiting"]

        async def view_all() -> list[Ticket]:
            # Concurrently, on several connections: this check runs after every step.
            views = (self.queue.ticket(OFFICE.id, t.id, now=self.now) for t in waiting)
            return await asyncio.gather(*views)

        for real, expected in zip(self.run(view_all()), waiting, strict=True):
            self.check_ticket(real, expected)

    @invariant()
    def counters_and_lines_agree(self) -> None:
        snapshot = self.run(self.queue.snapshot(OFFICE.id, now=self.now))
        assert len(snapshot.counters) == len(self.model.counters)
        for counter in snapshot.counters:
            self.check_counter(counter, self.model.counters[counter.id])
        assert snapshot.lines == {
            service.id: {
                kind: [(t.id, t.score) for t in self.model.line(service.id, kind)]
                for kind in ("appt", "priority", "regular")
            }
            for service in SERVICES
        }

    @invariant()
    def events_agree(self) -> None:
        entries = self.run(
            self.redis.xrange(keys.events(OFFICE.id), min=f"({self.last_event}", max="+")
        )
        if entries:
            self.last_event = entries[-1][0]
        appended = []
        for _, fields in entries:
            event = json.loads(fields["e"])
            appended.append((event["type"], event.get("ticket")))
        assert appended == self.model.take_events()


# Passing takes well under a minute; shrinking a failure may take Hypothesis five.
@pytest.mark.timeout(420)
def test_queue_matches_model(redis_url: str) -> None:
    machine = type("BoundQueueMachine", (QueueMachine,), {"redis_url": redis_url})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
