"""Each queue operation, its routing rules, its refusals and the events it leaves behind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from madoguchi.queue import keys
from madoguchi.queue.exceptions import (
    Busy,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
    WrongState,
)
from madoguchi.queue.model import (
    CancelReason,
    Channel,
    CounterState,
    Office,
    Service,
    Ticket,
    TicketStatus,
)
from madoguchi.queue.tickets import QueueClient

from conftest import OFFICE, T0

#: Midnight between 2026-11-26 and 2026-11-27 in Tokyo (15:00 UTC on the 26th).
TOKYO_MIDNIGHT = T0 + 15 * 3600
ARCHIVE = Service("archive", "D", "閉架", "Archive", active=False)
#: An in-person service no counter of the fixtures serves (``care`` is a remote one).
TAX = Service("tax", "E", "税", "Local tax", default_seconds=300)

Collect = Callable[[int], Awaitable[list[str]]]

#: Every operation on one ticket, and the states it accepts.
TICKET_OPS: dict[str, frozenset[TicketStatus]] = {
    "recall": frozenset({TicketStatus.CALLED}),
    "no_show": frozenset({TicketStatus.CALLED}),
    "start": frozenset({TicketStatus.CALLED}),
    "finish": frozenset({TicketStatus.SERVING}),
    "transfer": frozenset({TicketStatus.WAITING, TicketStatus.CALLED, TicketStatus.SERVING}),
    "cancel": frozenset({TicketStatus.WAITING, TicketStatus.CALLED}),
}


async def ticket_op(queue: QueueClient, name: str, ticket: str, now: float) -> Ticket:
    """Run operation ``name`` of ``TICKET_OPS`` on a ticket (a transfer goes to "moving")."""
    extra = ("moving",) if name == "transfer" else ()
    operation: Callable[..., Awaitable[Ticket]] = getattr(queue, name)
    return await operation(OFFICE.id, ticket, *extra, now=now)


async def issue(queue: QueueClient, service: str = "certs", **options: Any) -> Ticket:
    options.setdefault("now", T0)
    issued = await queue.issue(OFFICE.id, service, **options)
    return issued.ticket


async def view(queue: QueueClient, ticket: Ticket, now: float = T0) -> Ticket:
    return await queue.ticket(OFFICE.id, ticket.id, now=now)


async def call(queue: QueueClient, counter: str, now: float = T0) -> Ticket:
    called = await queue.call_next(OFFICE.id, counter, now=now)
    assert called is not None, f'counter "{counter}" found no one to call'
    return called


async def call_and_release(queue: QueueClient, counter: str, now: float = T0) -> str:
    """Call the counter's next ticket and mark it a no-show; its number."""
    called = await call(queue, counter, now)
    await queue.no_show(OFFICE.id, called.id, now=now)
    return called.number


async def events(redis: AsyncRedis, after: str = "-") -> list[dict[str, Any]]:
    entries = await redis.xrange(keys.events(OFFICE.id), min=after)
    return [json.loads(fields["e"]) | {"id": entry_id} for entry_id, fields in entries]


@pytest.fixture
async def counter(queue: QueueClient, office: Office) -> str:
    """Counter ``c1``, open for certificates and moving."""
    await queue.open_counter(office.id, "c1", ["certs", "moving"], now=T0)
    return "c1"


@pytest.fixture
async def tax(queue: QueueClient, office: Office) -> str:
    """A third in-person service, ``tax``, that counter ``c1`` does not serve."""
    await queue.put_service(office.id, TAX, now=T0)
    return TAX.id


async def ticket_in(queue: QueueClient, status: TicketStatus, counter: str) -> Ticket:
    """A certificates ticket brought into ``status`` the ordinary way."""
    ticket = await issue(queue)
    if status is TicketStatus.WAITING:
        return ticket
    if status in (TicketStatus.CANCELLED, TicketStatus.ABANDONED):
        reason = CancelReason(status.value if status is TicketStatus.ABANDONED else "resident")
        return await queue.cancel(OFFICE.id, ticket.id, now=T0, reason=reason)
    assert (await call(queue, counter)).id == ticket.id
    if status is TicketStatus.CALLED:
        return await view(queue, ticket)
    if status is TicketStatus.NO_SHOW:
        return await queue.no_show(OFFICE.id, ticket.id, now=T0)
    serving = await queue.start(OFFICE.id, ticket.id, now=T0)
    if status is TicketStatus.SERVING:
        return serving
    return await queue.finish(OFFICE.id, ticket.id, now=T0)


# -- issuing -------------------------------------------------------------------------------


async def test_tickets_are_numbered_per_service(queue: QueueClient, office: Office) -> None:
    first = await issue(queue, "certs")
    second = await issue(queue, "certs", now=T0 + 5)
    moving = await issue(queue, "moving", now=T0 + 6)
    third = await issue(queue, "certs", now=T0 + 7)

    assert [first.number, second.number, third.number] == ["A-001", "A-002", "A-003"]
    assert moving.number == "B-001"
    assert len({first.id, second.id, moving.id, third.id}) == 4
    assert len({first.token, second.token, moving.token, third.token}) == 4
    assert first.status is TicketStatus.WAITING
    assert (first.issued_at, first.day, first.service) == (T0, "2026-11-26", "certs")
    assert [first.position, second.position, moving.position] == [1, 2, 1]


async def test_numbering_restarts_on_a_new_day_in_tokyo(queue: QueueClient, office: Office) -> None:
    # 08:59:59 in Tokyo is still the previous day in UTC: the same office day as 09:00.
    morning = [await issue(queue, now=T0 - 1), await issue(queue, now=T0)]
    evening = await issue(queue, now=TOKYO_MIDNIGHT - 1)
    # 00:00 in Tokyo, while UTC is still on the 26th.
    next_day = [
        await issue(queue, now=TOKYO_MIDNIGHT),
        await issue(queue, now=TOKYO_MIDNIGHT + 1),
        await issue(queue, "moving", now=TOKYO_MIDNIGHT + 2),
    ]

    assert [t.number for t in morning] == ["A-001", "A-002"]
    assert evening.number == "A-003"
    assert [t.number for t in next_day] == ["A-001", "A-002", "B-001"]
    assert {t.day for t in [*morning, evening]} == {"2026-11-26"}
    assert {t.day for t in next_day} == {"2026-11-27"}
    assert len({t.id for t in [*morning, evening, *next_day]}) == 6


async def test_issue_refuses_an_unknown_or_inactive_service(
    queue: QueueClient, office: Office, aredis: AsyncRedis
) -> None:
    await queue.put_service(office.id, ARCHIVE, now=T0)
    before = await events(aredis)

    with pytest.raises(NotFound, match='service "passport" does not exist'):
        await queue.issue(office.id, "passport", now=T0)
    with pytest.raises(Unavailable, match='service "archive" is not taking tickets'):
        await queue.issue(office.id, "archive", now=T0)

    assert await events(aredis) == before
    assert (await issue(queue)).number == "A-001"


async def test_a_retried_issue_returns_the_same_ticket(
    queue: QueueClient, office: Office, aredis: AsyncRedis
) -> None:
    first = await queue.issue(office.id, "certs", now=T0, idempotency_key="kiosk-7:tap-1")
    before = await events(aredis)
    again = await queue.issue(office.id, "certs", now=T0 + 2, idempotency_key="kiosk-7:tap-1")

    assert (first.replayed, again.replayed) == (False, True)
    assert again.ticket == first.ticket
    assert await events(aredis) == before, "a replay changes nothing"
    assert (await issue(queue, now=T0 + 3)).number == "A-002"


async def test_a_replay_shows_the_ticket_as_it_is_now(
    queue: QueueClient, office: Office, counter: str
) -> None:
    first = await queue.issue(office.id, "certs", now=T0, idempotency_key="k")
    await call(queue, counter, now=T0 + 60)

    again = await queue.issue(office.id, "certs", now=T0 + 61, idempotency_key="k")

    assert again.replayed
    assert again.ticket.id == first.ticket.id
    assert (again.ticket.status, again.ticket.counter) == (TicketStatus.CALLED, counter)


@pytest.mark.parametrize(
    "change",
    [
        {"service": "moving"},
        {"priority": True},
        {"appointment_at": T0 + 3600},
        {"channel": Channel.KIOSK},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_an_idempotency_key_reused_for_another_request_conflicts(
    queue: QueueClient, office: Office, aredis: AsyncRedis, change: dict[str, Any]
) -> None:
    await queue.issue(office.id, "certs", now=T0, idempotency_key="tap-1")
    before = await events(aredis)
    request: dict[str, Any] = {"service": "certs", "channel": Channel.WEB} | change

    with pytest.raises(Conflict, match='idempotency key "tap-1" was already used'):
        await queue.issue(office.id, now=T0 + 1, idempotency_key="tap-1", **request)

    assert await events(aredis) == before


async def test_idempotency_keys_are_checked(queue: QueueClient, office: Office) -> None:
    with pytest.raises(InvalidInput, match='not "two words"'):
        await queue.issue(office.id, "certs", now=T0, idempotency_key="two words")


# -- calling -------------------------------------------------------------------------------


async def test_call_next_with_no_one_waiting_returns_none_and_records_nothing(
    queue: QueueClient, counter: str, aredis: AsyncRedis, tax: str
) -> None:
    await issue(queue, tax)  # a service the counter does not serve
    before = await events(aredis)

    assert await queue.call_next(OFFICE.id, counter, now=T0) is None
    assert await events(aredis) == before


async def test_call_next_takes_the_longest_wait_across_the_counters_services(
    queue: QueueClient, counter: str, tax: str
) -> None:
    care = await issue(queue, tax, now=T0)
    moving = await issue(queue, "moving", now=T0 + 10)
    certs = await issue(queue, "certs", now=T0 + 20)
    later_moving = await issue(queue, "moving", now=T0 + 30)

    called = await call(queue, counter, now=T0 + 40)

    assert called.id == moving.id
    assert (called.status, called.counter, called.called_at, called.position) == (
        TicketStatus.CALLED,
        counter,
        T0 + 40,
        0,
    )
    await queue.no_show(OFFICE.id, called.id, now=T0 + 41)
    assert [await call_and_release(queue, counter) for _ in range(2)] == [
        certs.number,
        later_moving.number,
    ]
    assert await queue.call_next(OFFICE.id, counter, now=T0 + 50) is None
    assert (await view(queue, care)).status is TicketStatus.WAITING


async def test_ties_go_to_the_ticket_issued_first(queue: QueueClient, counter: str) -> None:
    # Same second, two services: issue order (the ticket id) decides.
    tickets = [
        await issue(queue, "moving"),
        await issue(queue, "certs"),
        await issue(queue, "moving"),
        await issue(queue, "certs"),
    ]

    called = [await call_and_release(queue, counter) for _ in tickets]

    assert called == ["B-001", "A-001", "B-002", "A-002"]


async def test_a_due_appointment_is_called_first(queue: QueueClient, counter: str) -> None:
    regular = await issue(queue, "certs", now=T0)
    priority = await issue(queue, "moving", now=T0 + 1, priority=True)
    # Due 300 s (the office's appt_early) before its slot: exactly due at T0 + 10.
    appointment = await issue(queue, "moving", now=T0 + 2, appointment_at=T0 + 310)

    assert (await call(queue, counter, now=T0 + 10)).id == appointment.id
    await queue.no_show(OFFICE.id, appointment.id, now=T0 + 10)
    assert (await call(queue, counter, now=T0 + 10)).id == priority.id
    await queue.no_show(OFFICE.id, priority.id, now=T0 + 10)
    assert (await call(queue, counter, now=T0 + 10)).id == regular.id


async def test_an_appointment_waits_until_it_is_due(queue: QueueClient, counter: str) -> None:
    appointment = await issue(queue, "certs", now=T0, appointment_at=T0 + 311)
    regular = await issue(queue, "moving", now=T0 + 5)

    # At T0 + 10 the slot is 301 s away: not due yet, so the regular ticket goes first.
    assert (await call(queue, counter, now=T0 + 10)).id == regular.id
    await queue.no_show(OFFICE.id, regular.id, now=T0 + 10)
    assert await queue.call_next(OFFICE.id, counter, now=T0 + 10) is None
    assert (await call(queue, counter, now=T0 + 11)).id == appointment.id


async def test_appointments_go_by_their_slot_not_their_issue_time(
    queue: QueueClient, counter: str
) -> None:
    later_slot = await issue(queue, "certs", now=T0, appointment_at=T0 + 200)
    earlier_slot = await issue(queue, "moving", now=T0 + 1, appointment_at=T0 + 100)

    assert [await call_and_release(queue, counter) for _ in range(2)] == [
        earlier_slot.number,
        later_slot.number,
    ]


async def test_the_appointment_lead_is_the_offices(queue: QueueClient, office: Office) -> None:
    await queue.put_office(Office(office.id, office.name_ja, office.name_en, appt_early=60), now=T0)
    await queue.open_counter(office.id, "c1", ["certs"], now=T0)
    appointment = await issue(queue, now=T0, appointment_at=T0 + 100)
    regular = await issue(queue, now=T0 + 1)

    assert (await call(queue, "c1", now=T0 + 39)).id == regular.id
    await queue.no_show(office.id, regular.id, now=T0 + 39)
    assert await queue.call_next(office.id, "c1", now=T0 + 39) is None
    assert (await call(queue, "c1", now=T0 + 40)).id == appointment.id


async def test_priority_tickets_go_before_regular_ones(queue: QueueClient, counter: str) -> None:
    regular = await issue(queue, "certs", now=T0)
    priority = await issue(queue, "moving", now=T0 + 30, priority=True)

    assert [await call_and_release(queue, counter) for _ in range(2)] == [
        priority.number,
        regular.number,
    ]


async def test_priority_calls_are_capped_while_regular_tickets_wait(
    queue: QueueClient, counter: str
) -> None:
    assert OFFICE.priority_cap == 3
    regular = [await issue(queue, "certs", now=T0 + i) for i in range(2)]
    priority = [await issue(queue, "moving", now=T0 + 10 + i, priority=True) for i in range(5)]

    called = [await call_and_release(queue, counter) for _ in range(7)]

    p, r = [t.number for t in priority], [t.number for t in regular]
    assert called == [p[0], p[1], p[2], r[0], p[3], p[4], r[1]]


async def test_the_priority_cap_is_the_offices(queue: QueueClient, office: Office) -> None:
    await queue.put_office(
        Office(office.id, office.name_ja, office.name_en, priority_cap=1), now=T0
    )
    await queue.open_counter(office.id, "c1", ["certs"], now=T0)
    regular = [await issue(queue, now=T0 + i) for i in range(2)]
    priority = [await issue(queue, now=T0 + 10 + i, priority=True) for i in range(2)]

    called = [await call_and_release(queue, "c1") for _ in range(4)]

    assert called == [priority[0].number, regular[0].number, priority[1].number, regular[1].number]


async def test_priority_is_not_held_back_when_no_regular_ticket_waits(
    queue: QueueClient, counter: str
) -> None:
    priority = [await issue(queue, now=T0 + i, priority=True) for i in range(5)]

    called = [await call_and_release(queue, counter) for _ in range(5)]

    assert called == [t.number for t in priority]


async def test_closing_a_counter_resets_its_priority_streak(
    queue: QueueClient, counter: str
) -> None:
    for i in range(3):
        await issue(queue, now=T0 + 10 + i, priority=True)
    for _ in range(3):
        await call_and_release(queue, counter)
    regular = await issue(queue, now=T0 + 20)
    priority = await issue(queue, now=T0 + 21, priority=True)
    await queue.close_counter(OFFICE.id, counter, now=T0 + 30)
    await queue.open_counter(OFFICE.id, counter, now=T0 + 31)

    assert await call_and_release(queue, counter) == priority.number
    assert await call_and_release(queue, counter) == regular.number


async def test_a_counter_calls_only_its_own_services(
    queue: QueueClient, office: Office, tax: str
) -> None:
    await queue.open_counter(office.id, "c1", ["certs"], now=T0)
    await queue.open_counter(office.id, "c2", [tax], now=T0)
    care = await issue(queue, tax, now=T0)
    certs = await issue(queue, "certs", now=T0 + 1)

    assert (await call(queue, "c1")).id == certs.id
    assert (await call(queue, "c2")).id == care.id


# -- positions -----------------------------------------------------------------------------


async def test_positions_follow_appointments_priority_then_issue_time(
    queue: QueueClient, counter: str
) -> None:
    regular = await issue(queue, "certs", now=T0)
    other_service = await issue(queue, "moving", now=T0 + 1, priority=True)
    priority = await issue(queue, "certs", now=T0 + 2, priority=True)
    later = await issue(queue, "certs", now=T0 + 3)
    not_due = await issue(queue, "certs", now=T0 + 4, appointment_at=T0 + 3600)
    due = await issue(queue, "certs", now=T0 + 5, appointment_at=T0 + 60)

    positions = [
        (await view(queue, t, now=T0 + 10)).position
        for t in (due, not_due, priority, regular, later, other_service)
    ]
    # Appointments count by rank among the service's appointments; only due ones
    # count ahead of the others. Each service has its own line.
    assert positions == [1, 2, 2, 3, 4, 1]

    # An hour later the second appointment is due too and counts ahead of the rest.
    assert (await view(queue, regular, now=T0 + 3600)).position == 4

    await call(queue, counter, now=T0 + 10)  # the due appointment
    after = [(await view(queue, t, now=T0 + 10)).position for t in (not_due, priority, regular)]
    assert after == [1, 1, 2]


async def test_a_ticket_that_is_not_waiting_has_no_position(
    queue: QueueClient, counter: str
) -> None:
    ticket = await issue(queue)
    behind = await issue(queue, now=T0 + 1)
    called = await call(queue, counter)

    assert called.position == 0
    assert (await view(queue, ticket)).position == 0
    assert (await view(queue, behind)).position == 1


async def test_a_ticket_can_be_read_by_its_token(queue: QueueClient, office: Office) -> None:
    ticket = await issue(queue)

    assert await queue.ticket(office.id, ticket.token, now=T0) == ticket
    with pytest.raises(NotFound):
        await queue.ticket(office.id, "A" * 22, now=T0)


# -- working a ticket ----------------------------------------------------------------------


async def test_recall_calls_the_ticket_again(queue: QueueClient, counter: str) -> None:
    ticket = await issue(queue)
    await call(queue, counter)

    first = await queue.recall(OFFICE.id, ticket.id, now=T0 + 30)
    second = await queue.recall(OFFICE.id, ticket.token, now=T0 + 60)

    assert (first.recalls, second.recalls) == (1, 2)
    assert (second.status, second.counter) == (TicketStatus.CALLED, counter)


async def test_a_no_show_frees_the_counter(queue: QueueClient, counter: str) -> None:
    ticket = await issue(queue)
    following = await issue(queue, now=T0 + 1)
    await call(queue, counter)

    gone = await queue.no_show(OFFICE.id, ticket.id, now=T0 + 120)

    assert (gone.status, gone.finished_at) == (TicketStatus.NO_SHOW, T0 + 120)
    assert (await call(queue, counter, now=T0 + 121)).id == following.id


async def test_start_then_finish(queue: QueueClient, counter: str) -> None:
    ticket = await issue(queue)
    following = await issue(queue, now=T0 + 1)
    await call(queue, counter, now=T0 + 10)

    serving = await queue.start(OFFICE.id, ticket.id, now=T0 + 20)
    with pytest.raises(Busy, match=r'counter "c1" still has ticket A-001 \(serving\)'):
        await queue.call_next(OFFICE.id, counter, now=T0 + 30)
    done = await queue.finish(OFFICE.id, ticket.token, now=T0 + 200)

    assert (serving.status, serving.started_at, serving.counter) == (
        TicketStatus.SERVING,
        T0 + 20,
        counter,
    )
    assert (done.status, done.finished_at, done.position) == (TicketStatus.DONE, T0 + 200, 0)
    assert (await call(queue, counter, now=T0 + 201)).id == following.id


async def test_a_transferred_ticket_keeps_its_place_by_issue_time(
    queue: QueueClient, office: Office
) -> None:
    await queue.open_counter(office.id, "c2", ["moving"], now=T0)
    ticket = await issue(queue, "certs", now=T0)
    moving = [await issue(queue, "moving", now=T0 + 10 + i) for i in range(2)]

    moved = await queue.transfer(office.id, ticket.id, "moving", now=T0 + 60)

    assert (moved.number, moved.service, moved.status, moved.transfers) == (
        "A-001",
        "moving",
        TicketStatus.WAITING,
        1,
    )
    assert moved.position == 1
    assert (await view(queue, moving[0], now=T0 + 60)).position == 2
    assert (await call(queue, "c2", now=T0 + 61)).id == ticket.id


async def test_transferring_a_called_ticket_frees_the_counter(
    queue: QueueClient, office: Office, counter: str, tax: str
) -> None:
    ticket = await issue(queue, "certs", now=T0)
    following = await issue(queue, "certs", now=T0 + 1)
    await call(queue, counter, now=T0 + 5)
    await queue.start(office.id, ticket.id, now=T0 + 6)

    moved = await queue.transfer(office.id, ticket.id, tax, now=T0 + 100)

    assert (moved.status, moved.service, moved.counter, moved.called_at, moved.started_at) == (
        TicketStatus.WAITING,
        tax,
        None,
        None,
        None,
    )
    assert (await call(queue, counter, now=T0 + 101)).id == following.id
    await queue.open_counter(office.id, "c2", [tax], now=T0)
    assert (await call(queue, "c2", now=T0 + 102)).id == ticket.id


async def test_a_transfer_needs_another_existing_open_service(
    queue: QueueClient, office: Office, aredis: AsyncRedis
) -> None:
    await queue.put_service(office.id, ARCHIVE, now=T0)
    ticket = await issue(queue, "certs")
    before = await events(aredis)

    with pytest.raises(InvalidInput, match='ticket A-001 is already in service "certs"'):
        await queue.transfer(office.id, ticket.id, "certs", now=T0)
    with pytest.raises(NotFound, match='service "passport" does not exist'):
        await queue.transfer(office.id, ticket.id, "passport", now=T0)
    with pytest.raises(Unavailable, match='service "archive" is not taking tickets'):
        await queue.transfer(office.id, ticket.id, "archive", now=T0)

    assert await events(aredis) == before
    assert await view(queue, ticket) == ticket


@pytest.mark.parametrize("reason", list(CancelReason))
async def test_cancelling_a_waiting_ticket_takes_it_out_of_line(
    queue: QueueClient, counter: str, reason: CancelReason
) -> None:
    ticket = await issue(queue)
    behind = await issue(queue, now=T0 + 1)

    cancelled = await queue.cancel(OFFICE.id, ticket.token, now=T0 + 50, reason=reason)

    expected = TicketStatus.CANCELLED if reason is CancelReason.RESIDENT else TicketStatus.ABANDONED
    assert (cancelled.status, cancelled.finished_at) == (expected, T0 + 50)
    assert (await view(queue, behind)).position == 1
    assert (await call(queue, counter, now=T0 + 51)).id == behind.id


async def test_cancelling_a_called_ticket_frees_the_counter(
    queue: QueueClient, counter: str
) -> None:
    ticket = await issue(queue)
    behind = await issue(queue, now=T0 + 1)
    await call(queue, counter)

    cancelled = await queue.cancel(OFFICE.id, ticket.id, now=T0 + 5)

    assert cancelled.status is TicketStatus.CANCELLED
    assert (await call(queue, counter, now=T0 + 6)).id == behind.id


# -- refusals ------------------------------------------------------------------------------

WRONG_STATES = [
    (name, status)
    for name, allowed in TICKET_OPS.items()
    for status in TicketStatus
    if status not in allowed
]


@pytest.mark.parametrize(("name", "status"), WRONG_STATES, ids=lambda v: str(v))
async def test_every_operation_refuses_a_ticket_in_a_wrong_state(
    queue: QueueClient, counter: str, aredis: AsyncRedis, name: str, status: TicketStatus
) -> None:
    ticket = await ticket_in(queue, status, counter)
    assert ticket.status is status
    before = await events(aredis)

    with pytest.raises(WrongState) as refused:
        await ticket_op(queue, name, ticket.id, T0 + 1)

    allowed_text = " or ".join(s.value for s in TicketStatus if s in TICKET_OPS[name])
    assert refused.value.message == f"ticket {ticket.number} is {status.value}, not {allowed_text}"
    assert await view(queue, ticket) == ticket
    assert await events(aredis) == before


@pytest.mark.parametrize("name", list(TICKET_OPS))
async def test_every_operation_refuses_an_unknown_ticket(
    queue: QueueClient, office: Office, name: str
) -> None:
    with pytest.raises(NotFound, match='ticket "99999999" does not exist at office "kokurakita"'):
        await ticket_op(queue, name, "99999999", T0)
    with pytest.raises(NotFound, match="is not a ticket id or token"):
        await ticket_op(queue, name, "A-001", T0)


# -- counters ------------------------------------------------------------------------------


async def test_opening_pausing_and_closing_a_counter(
    queue: QueueClient, office: Office, tax: str
) -> None:
    opened = await queue.open_counter(office.id, "c1", ["certs", "moving"], now=T0, name="窓口1")
    paused = await queue.pause_counter(office.id, "c1", now=T0 + 1)
    resumed = await queue.open_counter(office.id, "c1", now=T0 + 2)
    changed = await queue.open_counter(office.id, "c1", [tax], now=T0 + 3)
    closed = await queue.close_counter(office.id, "c1", now=T0 + 4)
    reopened = await queue.open_counter(office.id, "c1", now=T0 + 5)

    assert (opened.state, opened.services, opened.name, opened.current) == (
        CounterState.OPEN,
        ("certs", "moving"),
        "窓口1",
        None,
    )
    assert paused.state is CounterState.PAUSED
    assert (resumed.state, resumed.services) == (CounterState.OPEN, ("certs", "moving"))
    assert changed.services == (tax,)
    assert (closed.state, closed.services) == (CounterState.CLOSED, (tax,))
    assert (reopened.state, reopened.services, reopened.name) == (
        CounterState.OPEN,
        (tax,),
        "窓口1",
    )


async def test_a_counter_needs_known_services_to_open(queue: QueueClient, office: Office) -> None:
    with pytest.raises(InvalidInput, match='counter "c9" needs at least one service'):
        await queue.open_counter(office.id, "c9", now=T0)
    with pytest.raises(NotFound, match='service "passport" does not exist'):
        await queue.open_counter(office.id, "c9", ["certs", "passport"], now=T0)
    with pytest.raises(NotFound, match='counter "c9" does not exist'):
        await queue.call_next(office.id, "c9", now=T0)


async def test_remote_consultations_never_reach_a_counter(
    queue: QueueClient, office: Office, counter: str, aredis: AsyncRedis
) -> None:
    """``care`` is a remote service: specialists take it in the consultation console, a
    kiosk raises it; a counter may neither serve it nor be handed one of its tickets."""
    ticket = await issue(queue, "certs", now=T0)
    before = await events(aredis)

    with pytest.raises(InvalidInput, match='"care" is a remote consultation: it is raised from'):
        await queue.issue(office.id, "care", now=T0)
    with pytest.raises(InvalidInput, match='"care" is a remote consultation: specialists take'):
        await queue.open_counter(office.id, "c2", ["certs", "care"], now=T0)
    with pytest.raises(InvalidInput, match='"care" is a remote consultation: specialists take'):
        await queue.put_counter(office.id, counter, ["care"], now=T0)
    with pytest.raises(InvalidInput, match="transferred within its call, not at a counter"):
        await queue.transfer(office.id, ticket.id, "care", now=T0)

    assert await events(aredis) == before
    counters = (await queue.snapshot(office.id, now=T0)).counters
    assert [(c.id, c.services) for c in counters] == [(counter, ("certs", "moving"))]


@pytest.mark.parametrize("state", ["paused", "closed"])
async def test_a_counter_that_is_not_open_calls_no_one(
    queue: QueueClient, counter: str, aredis: AsyncRedis, state: str
) -> None:
    ticket = await issue(queue)
    stop = queue.pause_counter if state == "paused" else queue.close_counter
    await stop(OFFICE.id, counter, now=T0)
    before = await events(aredis)

    with pytest.raises(WrongState, match=f'counter "c1" is {state}, not open'):
        await queue.call_next(OFFICE.id, counter, now=T0 + 1)

    assert (await view(queue, ticket)).status is TicketStatus.WAITING
    assert await events(aredis) == before


@pytest.mark.parametrize("status", [TicketStatus.CALLED, TicketStatus.SERVING])
async def test_a_counter_holding_a_ticket_can_neither_call_nor_close(
    queue: QueueClient, counter: str, aredis: AsyncRedis, status: TicketStatus
) -> None:
    held = await ticket_in(queue, status, counter)
    waiting = await issue(queue, now=T0 + 1)
    before = await events(aredis)

    message = rf'counter "c1" still has ticket A-001 \({status.value}\)'
    with pytest.raises(Busy, match=message):
        await queue.call_next(OFFICE.id, counter, now=T0 + 2)
    with pytest.raises(Busy, match=message):
        await queue.close_counter(OFFICE.id, counter, now=T0 + 2)

    assert await events(aredis) == before
    assert (await view(queue, held)).status is status
    assert (await view(queue, waiting)).position == 1
    # Pausing with a ticket in hand is allowed: the ticket is finished later.
    assert (await queue.pause_counter(OFFICE.id, counter, now=T0 + 3)).current == held.id


async def test_counter_state_changes_are_refused_when_they_make_no_sense(
    queue: QueueClient, counter: str
) -> None:
    await queue.pause_counter(OFFICE.id, counter, now=T0)
    with pytest.raises(WrongState, match='counter "c1" is paused, not open'):
        await queue.pause_counter(OFFICE.id, counter, now=T0)
    await queue.close_counter(OFFICE.id, counter, now=T0)
    with pytest.raises(WrongState, match='counter "c1" is already closed'):
        await queue.close_counter(OFFICE.id, counter, now=T0)
    with pytest.raises(WrongState, match='counter "c1" is closed, not open'):
        await queue.pause_counter(OFFICE.id, counter, now=T0)
    for refuse in (queue.pause_counter, queue.close_counter):
        with pytest.raises(NotFound, match='counter "c9" does not exist'):
            await refuse(OFFICE.id, "c9", now=T0)


# -- events --------------------------------------------------------------------------------


@pytest.fixture
async def live(redis_url: str, office: Office) -> AsyncIterator[Collect]:
    """A real subscription to the office's live channel; call it to collect n messages."""
    subscriber = AsyncRedis.from_url(redis_url, decode_responses=True)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(keys.live(office.id))
    confirmation = await pubsub.get_message(timeout=10)
    assert confirmation is not None
    assert confirmation["type"] == "subscribe"

    async def collect(n: int) -> list[str]:
        received = []
        while len(received) < n:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            assert message is not None, f"only {len(received)} of {n} live messages arrived"
            received.append(message["data"])
        assert await pubsub.get_message(timeout=0.2) is None, "more messages than events"
        return received

    yield collect
    await pubsub.aclose()
    await subscriber.aclose()


async def test_every_change_is_appended_to_the_stream_and_published(
    queue: QueueClient,
    office: Office,
    aredis: AsyncRedis,
    live: Collect,
) -> None:
    start = (await events(aredis))[-1]["id"]
    q, o = queue, office.id

    await q.open_counter(o, "c1", ["certs"], now=T0, actor="staff:7")
    first = await issue(q, idempotency_key="tap-1", channel=Channel.KIOSK)
    await q.issue(o, "certs", now=T0, idempotency_key="tap-1", channel=Channel.KIOSK)
    second = await issue(q, now=T0 + 1, priority=True)
    await q.call_next(o, "c1", now=T0 + 2)  # the priority ticket
    await q.recall(o, second.id, now=T0 + 3)
    await q.start(o, second.id, now=T0 + 4)
    with pytest.raises(WrongState):
        await q.start(o, second.id, now=T0 + 4)
    await q.finish(o, second.id, now=T0 + 5)
    await q.call_next(o, "c1", now=T0 + 6)
    await q.no_show(o, first.id, now=T0 + 7)
    assert await q.call_next(o, "c1", now=T0 + 8) is None
    third = await issue(q, now=T0 + 9)
    await q.transfer(o, third.id, "moving", now=T0 + 10)
    await q.cancel(o, third.id, now=T0 + 11, reason=CancelReason.ABANDONED)
    fourth = await issue(q, now=T0 + 12)
    await q.cancel(o, fourth.id, now=T0 + 13)
    await q.open_counter(o, "c1", ["certs", "moving"], now=T0 + 14)
    await q.pause_counter(o, "c1", now=T0 + 15)
    await q.close_counter(o, "c1", now=T0 + 16)

    appended = await events(aredis, after=f"({start}")
    assert [(e["type"], e.get("ticket") or e.get("counter")) for e in appended] == [
        ("counter_opened", "c1"),
        ("issued", first.id),
        ("issued", second.id),
        ("called", second.id),
        ("recalled", second.id),
        ("started", second.id),
        ("finished", second.id),
        ("called", first.id),
        ("no_show", first.id),
        ("issued", third.id),
        ("transferred", third.id),
        ("abandoned", third.id),
        ("issued", fourth.id),
        ("cancelled", fourth.id),
        ("counter_changed", "c1"),
        ("counter_paused", "c1"),
        ("counter_closed", "c1"),
    ]
    assert all(e["office"] == o for e in appended)
    # Each event carries the "now" of its operation; nothing happened at T0 + 8.
    assert [float(e["t"]) for e in appended] == [
        T0,
        *(T0 + i for i in (*range(8), *range(9, 17))),
    ]
    assert [e["actor"] for e in appended[:2]] == ["staff:7", "system"]
    called = appended[3]
    assert float(called.pop("waited")) == 1
    assert called | {"id": ""} == {
        "id": "",
        "type": "called",
        "ticket": second.id,
        "number": "A-002",
        "service": "certs",
        "counter": "c1",
        "t": repr(T0 + 2),
        "actor": "system",
        "office": o,
    }

    published = await live(len(appended))
    entries = await aredis.xrange(keys.events(o), min=f"({start}")
    assert published == [f"{entry_id} {fields['e']}" for entry_id, fields in entries]


async def test_events_carry_what_each_change_needs(
    queue: QueueClient, office: Office, aredis: AsyncRedis
) -> None:
    await queue.open_counter(office.id, "c1", ["certs"], now=T0)
    ticket = await issue(queue, now=T0, appointment_at=T0 + 100)
    await call(queue, "c1", now=T0 + 40)
    await queue.start(office.id, ticket.id, now=T0 + 50)
    await queue.transfer(office.id, ticket.id, "moving", now=T0 + 60)

    issued, called, started, transferred = (await events(aredis))[-4:]

    assert (issued["type"], issued["appt"], issued["channel"], issued["priority"]) == (
        "issued",
        repr(T0 + 100),
        "web",
        "0",
    )
    assert (called["counter"], float(called["waited"])) == ("c1", 40)
    assert (started["type"], started["counter"]) == ("started", "c1")
    assert (transferred["service"], transferred["from_service"]) == ("moving", "certs")
