"""The demo city: its data makes sense, and seeding it adds only what is missing."""

from __future__ import annotations

from madoguchi.demo import CITY, seed
from madoguchi.queue.model import CounterState, ServiceMode
from madoguchi.queue.tickets import QueueClient

from conftest import T0

WARDS = {
    "moji": "門司区役所",
    "kokurakita": "小倉北区役所",
    "kokuraminami": "小倉南区役所",
    "wakamatsu": "若松区役所",
    "yahatahigashi": "八幡東区役所",
    "yahatanishi": "八幡西区役所",
    "tobata": "戸畑区役所",
}


def test_the_city_is_kitakyushus_seven_wards() -> None:
    assert {demo.office.id: demo.office.name_ja for demo in CITY} == WARDS
    for demo in CITY:
        assert demo.office.name_en.endswith("Ward Office")
        service_ids = {service.id for service in demo.services}
        prefixes = [service.prefix for service in demo.services]
        assert len(set(prefixes)) == len(prefixes), demo.office.id
        assert {"certs", "moving", "koseki", "insurance", "tax", "childcare", "care"} <= service_ids
        remote = {s.id for s in demo.services if s.mode is ServiceMode.REMOTE}
        assert {"care-consult", "childcare-consult"} <= remote
        served = {sid for counter in demo.counters for sid in counter.services}
        # Specialists take the remote ones in the consultation console, not counters.
        assert served == service_ids - remote, f"{demo.office.id}: every service is served"
        assert demo.kiosks, demo.office.id
        assert all(kiosk.name_ja.endswith("市民センター") for kiosk in demo.kiosks)
    kiosk_ids = [kiosk.id for demo in CITY for kiosk in demo.kiosks]
    assert len(set(kiosk_ids)) == len(kiosk_ids)


async def test_seeding_creates_the_seven_offices(queue: QueueClient) -> None:
    seeded = await seed(queue, now=T0)
    assert await queue.office_ids() == sorted(WARDS)
    assert seeded.offices == 7
    assert seeded.services == sum(len(demo.services) for demo in CITY)
    assert seeded.counters == sum(len(demo.counters) for demo in CITY)
    snapshot = await queue.snapshot("kokurakita", now=T0)
    assert snapshot.office.name_en == "Kokurakita Ward Office"
    assert snapshot.services["care-consult"].mode is ServiceMode.REMOTE
    assert snapshot.services["certs"].name_ja.startswith("証明書")
    assert all(counter.state is CounterState.OPEN for counter in snapshot.counters)
    issued = await queue.issue("kokurakita", "certs", now=T0)
    assert issued.ticket.number == "A-001"


async def test_seeding_again_keeps_what_is_there(queue: QueueClient) -> None:
    await seed(queue, now=T0)
    ticket = (await queue.issue("tobata", "moving", now=T0 + 60)).ticket
    await queue.pause_counter("tobata", "counter-1", now=T0 + 60)

    again = await seed(queue, now=T0 + 120)

    assert not again.anything
    assert (await queue.ticket("tobata", ticket.token, now=T0 + 180)).status == "waiting"
    counters = {c.id: c for c in (await queue.snapshot("tobata", now=T0 + 180)).counters}
    assert counters["counter-1"].state is CounterState.PAUSED


async def test_seeding_completes_a_partial_city(queue: QueueClient) -> None:
    moji = CITY[0]
    await queue.put_office(moji.office, now=T0)
    await queue.put_service("moji", moji.services[0], now=T0)

    seeded = await seed(queue, now=T0)

    assert seeded.offices == 6
    assert seeded.services == sum(len(demo.services) for demo in CITY) - 1
    assert len((await queue.snapshot("moji", now=T0)).services) == len(moji.services)
