"""The key names built in Lua and in ``keys.py`` agree, and all carry the office's hash tag."""

from __future__ import annotations

from redis.asyncio import Redis

from madoguchi.queue import keys
from madoguchi.queue.model import CancelReason, Office
from madoguchi.queue.tickets import QueueClient

from conftest import T0


async def test_every_key_written_is_one_keys_py_builds(
    queue: QueueClient, office: Office, aredis: Redis
) -> None:
    o = office.id
    await queue.open_counter(o, "c1", ["certs", "moving"], now=T0)
    first = (await queue.issue(o, "certs", now=T0, idempotency_key="k-1")).ticket
    second = (await queue.issue(o, "moving", now=T0 + 1, priority=True)).ticket
    third = (await queue.issue(o, "moving", now=T0 + 2, appointment_at=T0 + 3600)).ticket
    fourth = (await queue.issue(o, "certs", now=T0 + 3)).ticket
    await queue.call_next(o, "c1", now=T0 + 5)
    await queue.start(o, second.id, now=T0 + 6)
    await queue.finish(o, second.id, now=T0 + 100)
    await queue.cancel(o, fourth.id, now=T0 + 101, reason=CancelReason.ABANDONED)
    await aredis.set(keys.contact(o, third.id), "mail")
    day = office.day(T0)
    expected = {
        keys.office(o),
        keys.events(o),
        keys.services(o),
        keys.counters(o),
        keys.counter(o, "c1"),
        keys.idempotency(o, "k-1"),
        keys.service_history(o, "moving"),
        keys.day_stats(o, day),
        keys.contact(o, third.id),
        keys.line(o, "certs", "regular"),
        keys.line(o, "moving", "appt"),
        *(keys.service(o, s) for s in ("certs", "moving", "care")),
        *(keys.ticket(o, t.id) for t in (first, second, third, fourth)),
        *(keys.token(o, t.token) for t in (first, second, third, fourth)),
        *(f"{keys.office_prefix(o)}seq:{day}:{s}" for s in ("certs", "moving")),
        f"{keys.office_prefix(o)}ticket_seq",
    }
    found = {k for k in await aredis.keys("*") if k != keys.OFFICES}
    assert found == expected
    assert all(k.startswith("mg:{kokurakita}:") for k in found)
    # closing a ticket deletes its contact details
    await queue.call_next(o, "c1", now=T0 + 102)
    assert await aredis.exists(keys.contact(o, third.id)) == 1
    await queue.cancel(o, third.id, now=T0 + 103)
    assert await aredis.exists(keys.contact(o, third.id)) == 0


def test_live_channel_names_round_trip() -> None:
    assert keys.office_from_channel(keys.live("tobata")) == "tobata"
