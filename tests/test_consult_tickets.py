"""A consultation's ticket changes only through its call: the counter operations, which
act on a ticket by its id or token, refuse it and leave everything as it was."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from madoguchi.consult.calls import Calls, CallState
from madoguchi.queue import keys
from madoguchi.queue.estimator import Estimator
from madoguchi.queue.exceptions import Conflict
from madoguchi.queue.model import CancelReason, Office, TicketStatus
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from conftest import T0


@pytest.fixture
def calls(queue: QueueClient, office: Office) -> Calls:
    return Calls(queue, ring_seconds=30, reconnect_seconds=20)


async def test_counter_operations_leave_a_consultation_alone(
    calls: Calls, queue: QueueClient, aredis: Redis
) -> None:
    ringing = await calls.request("kokurakita", "k1", "care", now=T0)
    waiting = await calls.request("kokurakita", "k2", "care", now=T0 + 1)
    accepted = await calls.accept("kokurakita", "clerk", ("care",), now=T0 + 2)
    assert accepted is not None
    assert accepted.ticket == ringing.ticket
    ticket = await queue.ticket("kokurakita", waiting.ticket, now=T0 + 3)
    stream = await aredis.xlen(keys.events("kokurakita"))

    operations = {
        "cancel": lambda ref: queue.cancel("kokurakita", ref, now=T0 + 3),
        "abandon": lambda ref: queue.cancel(
            "kokurakita", ref, now=T0 + 3, reason=CancelReason.ABANDONED
        ),
        "transfer": lambda ref: queue.transfer("kokurakita", ref, "certs", now=T0 + 3),
        "start": lambda ref: queue.start("kokurakita", ref, now=T0 + 3),
        "finish": lambda ref: queue.finish("kokurakita", ref, now=T0 + 3),
        "recall": lambda ref: queue.recall("kokurakita", ref, now=T0 + 3),
        "no_show": lambda ref: queue.no_show("kokurakita", ref, now=T0 + 3),
    }
    for operation in operations.values():
        for ref in (waiting.ticket, ringing.ticket, ticket.token):
            with pytest.raises(Conflict, match="is a remote consultation: it changes only"):
                await operation(ref)

    assert await aredis.xlen(keys.events("kokurakita")) == stream
    assert (await calls.get("kokurakita", waiting.ticket)).state is CallState.WAITING
    assert (await calls.get("kokurakita", ringing.ticket)).state is CallState.RINGING
    assert (await queue.ticket("kokurakita", waiting.ticket, now=T0 + 4)).status is (
        TicketStatus.WAITING
    )


async def test_specialists_present_are_the_servers_of_a_remote_service(
    calls: Calls, queue: QueueClient, aredis: Redis, settings: Settings
) -> None:
    """A consultation's wait is estimated from the specialists present for its service,
    as ``consult/presence.py`` lists them, each busy with the call they are in."""
    first = await calls.request("kokurakita", "k1", "care", now=T0)
    second = await calls.request("kokurakita", "k2", "care", now=T0 + 1)
    estimator = Estimator(settings)

    nobody = await queue.snapshot("kokurakita", now=T0 + 2)
    assert (nobody.desks, estimator.estimate(nobody).new["care"].servers) == ([], 0)

    await aredis.hset(
        keys.desks("kokurakita"),
        mapping={"clerk": f"care {T0 + 60!r}", "gone": f"care {T0 - 1!r}", "bad": "care"},
    )
    accepted = await calls.accept("kokurakita", "clerk", ("care",), now=T0 + 2)
    assert accepted is not None
    assert accepted.ticket == first.ticket
    present = await queue.snapshot("kokurakita", now=T0 + 3)
    assert [(d.id, d.services, d.current) for d in present.desks] == [
        ("desk:clerk", ("care",), first.ticket)
    ]
    assert present.held["desk:clerk"].id == first.ticket
    assert present.counters == []
    estimates = estimator.estimate(present)
    assert estimates.tickets[second.ticket].servers == 1
    assert estimates.tickets[second.ticket].ahead == 0
    assert estimates.tickets[second.ticket].wait > 0  # the specialist is in a call

    lapsed = await queue.snapshot("kokurakita", now=T0 + 61)
    assert lapsed.desks == []
