"""Many counters and kiosks at once, each on its own Redis connection, against real Redis.

The scripts are atomic, so no interleaving of calls may hand one ticket to two
counters, skip a ticket, or let one idempotency key issue two tickets.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis as AsyncRedis

from madoguchi.queue import keys
from madoguchi.queue.model import Office, Service, TicketStatus
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from conftest import OFFICE, T0

TICKETS = 10_000
#: Issued before the counters open; the rest arrive while they call.
ISSUED_FIRST = 4_000
ISSUERS = 5
COUNTERS = 50
#: What the counters serve: every service by several counters, some by many.
SERVICE_SETS = [
    ("certs",),
    ("moving",),
    ("tax",),
    ("certs", "moving"),
    ("moving", "tax"),
    ("certs", "tax"),
    ("certs", "moving", "tax"),
]
SERVICES = ("certs", "moving", "tax")
#: The fixtures' third service, ``care``, is remote: counters never call it.
TAX = Service("tax", "E", "税", "Local tax", default_seconds=300)


@pytest.fixture
async def connect(settings: Settings) -> AsyncIterator[Callable[[], QueueClient]]:
    """Makes queue clients that each have their own connection pool, closed at the end."""
    made: list[AsyncRedis] = []

    def client() -> QueueClient:
        made.append(AsyncRedis.from_url(settings.redis_url, decode_responses=True))
        return QueueClient(made[-1], settings)

    yield client
    for redis in made:
        await redis.aclose()


@pytest.mark.slow
async def test_fifty_counters_call_ten_thousand_tickets_exactly_once(
    office: Office, aredis: AsyncRedis, connect: Callable[[], QueueClient]
) -> None:
    # One virtual clock for everyone; each operation takes the next second.
    clock = itertools.count()

    def tick() -> float:
        return T0 + next(clock)

    await connect().put_service(office.id, TAX, now=tick())
    issued: list[str] = []

    async def issue_tickets(numbers: range) -> None:
        queue = connect()
        for i in numbers:
            # A mix of services, priority tickets and due appointments.
            result = await queue.issue(
                office.id,
                SERVICES[i % 3],
                now=tick(),
                priority=i % 7 == 0,
                appointment_at=T0 if i % 50 == 0 else None,
            )
            issued.append(result.ticket.id)

    await asyncio.gather(*(issue_tickets(range(k, ISSUED_FIRST, ISSUERS)) for k in range(ISSUERS)))
    arrivals_over = asyncio.Event()

    async def arrivals() -> None:
        await asyncio.gather(
            *(issue_tickets(range(ISSUED_FIRST + k, TICKETS, ISSUERS)) for k in range(ISSUERS))
        )
        arrivals_over.set()

    async def work_counter(n: int) -> list[str]:
        """Call until no one is left, seeing each ticket out one of three ways."""
        queue, counter = connect(), f"c{n}"
        await queue.open_counter(
            office.id, counter, SERVICE_SETS[n % len(SERVICE_SETS)], now=tick()
        )
        called: list[str] = []
        while True:
            last_round = arrivals_over.is_set()
            ticket = await queue.call_next(office.id, counter, now=tick())
            if ticket is None:
                if last_round:
                    return called
                await asyncio.sleep(0.001)  # let the kiosks catch up
                continue
            assert (ticket.status, ticket.counter) == (TicketStatus.CALLED, counter)
            called.append(ticket.id)
            if len(called) % 3 == 0:
                await queue.no_show(office.id, ticket.id, now=tick())
            else:
                await queue.start(office.id, ticket.id, now=tick())
                await queue.finish(office.id, ticket.id, now=tick())

    _, *per_counter = await asyncio.gather(arrivals(), *(work_counter(n) for n in range(COUNTERS)))

    everything = [ticket for called in per_counter for ticket in called]
    assert len(issued) == len(set(issued)) == TICKETS
    assert len(everything) == TICKETS, "a ticket was called twice or never"
    assert set(everything) == set(issued)
    assert sum(1 for called in per_counter if called) > COUNTERS // 2, "counters took turns"

    # Redis agrees: each ticket was called once, by the counter that got it, and is closed.
    got = {ticket: f"c{n}" for n, called in enumerate(per_counter) for ticket in called}
    entries = await aredis.xrange(keys.events(office.id))
    calls = [json.loads(fields["e"]) for _, fields in entries]
    calls = [e for e in calls if e["type"] == "called"]
    assert Counter(e["ticket"] for e in calls) == Counter(issued)
    assert all(got[e["ticket"]] == e["counter"] for e in calls)
    snapshot = await connect().snapshot(office.id, now=tick())
    assert all(not line for lines in snapshot.lines.values() for line in lines.values())
    assert all(c.current is None for c in snapshot.counters)
    pipe = aredis.pipeline(transaction=False)
    for ticket in issued:
        pipe.hget(keys.ticket(office.id, ticket), "status")
    assert set(await pipe.execute()) == {"done", "no_show"}


async def test_a_key_sent_by_many_kiosks_at_once_issues_one_ticket(
    office: Office, connect: Callable[[], QueueClient]
) -> None:
    results = await asyncio.gather(
        *(
            connect().issue(office.id, "certs", now=T0, idempotency_key="double-tap")
            for _ in range(50)
        )
    )

    assert len({r.ticket.id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * 49
    assert (await connect().issue(office.id, "certs", now=T0 + 1)).ticket.number == "A-002"


async def test_counters_calling_at_once_share_out_a_short_queue(
    office: Office, connect: Callable[[], QueueClient]
) -> None:
    tickets = [(await connect().issue(office.id, "certs", now=T0 + i)).ticket for i in range(10)]
    queues = [connect() for _ in range(COUNTERS)]
    for n, queue in enumerate(queues):
        await queue.open_counter(office.id, f"c{n}", ["certs"], now=T0 + 20)

    called = await asyncio.gather(
        *(queue.call_next(OFFICE.id, f"c{n}", now=T0 + 30) for n, queue in enumerate(queues))
    )

    taken = [t for t in called if t is not None]
    assert sorted(t.id for t in taken) == [t.id for t in tickets]
    assert len({t.counter for t in taken}) == len(tickets)
