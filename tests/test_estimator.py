"""The wait estimator, on snapshots built by hand (it is pure computation)."""

from __future__ import annotations

import pytest

from madoguchi.queue.estimator import Estimator, ServiceTimes
from madoguchi.queue.model import (
    Channel,
    Counter,
    CounterState,
    Snapshot,
    Ticket,
    TicketStatus,
)
from madoguchi.settings import Settings

from conftest import OFFICE, SERVICES, T0

SERVICE_IDS = [s.id for s in SERVICES]


def snapshot(
    regular: dict[str, int],
    counters: list[tuple[str, tuple[str, ...]]],
    *,
    priority: dict[str, int] | None = None,
    history: dict[str, list[float]] | None = None,
    held: dict[str, Ticket] | None = None,
    day: dict[str, float] | None = None,
) -> Snapshot:
    lines: dict[str, dict[str, list[tuple[str, float]]]] = {}
    seq = 0
    for sid in SERVICE_IDS:
        lines[sid] = {"appt": [], "priority": [], "regular": []}
        for kind, counts in (("priority", priority or {}), ("regular", regular)):
            for _ in range(counts.get(sid, 0)):
                seq += 1
                lines[sid][kind].append((f"{seq:08d}", T0 - 1000 + seq))
    return Snapshot(
        office=OFFICE,
        services={s.id: s for s in SERVICES},
        lines=lines,
        history=history or {sid: [300.0] * 200 for sid in SERVICE_IDS},
        counters=[
            Counter(cid, cid, CounterState.OPEN, services, (held or {}).get(cid) and "x")
            for cid, services in counters
        ],
        held=held or {},
        day=day or {},
        last_event="1-0",
        at=T0,
    )


def estimator() -> Estimator:
    return Estimator(Settings(estimate_samples=64))


def test_one_idle_counter_works_through_the_line_in_order() -> None:
    result = estimator().estimate(snapshot({"certs": 5}, [("c1", ("certs",))]))
    waits = [result.tickets[f"{i:08d}"].wait for i in range(1, 6)]
    assert waits == pytest.approx([0, 300, 600, 900, 1200])
    assert [result.tickets[f"{i:08d}"].ahead for i in range(1, 6)] == [0, 1, 2, 3, 4]
    assert result.new["certs"].wait == pytest.approx(1500)
    assert result.new["certs"].servers == 1
    for estimate in result.tickets.values():
        assert estimate.low <= estimate.wait <= estimate.high


def test_two_counters_halve_the_wait() -> None:
    patient = {"exposure": 1e9}  # nobody gives up
    one = estimator().estimate(snapshot({"certs": 8}, [("c1", ("certs",))], day=patient))
    two = estimator().estimate(
        snapshot({"certs": 8}, [("c1", ("certs",)), ("c2", ("certs", "moving"))], day=patient)
    )
    assert two.new["certs"].wait == pytest.approx(one.new["certs"].wait / 2)
    assert two.new["certs"].servers == 2


def test_priority_tickets_go_first_but_the_cap_lets_others_through() -> None:
    result = estimator().estimate(
        snapshot({"certs": 2}, [("c1", ("certs",))], priority={"certs": 4})
    )
    # tickets 1-4 are priority, 5-6 regular: the cap of 3 lets regular 5 in fourth
    order = sorted(result.tickets, key=lambda tid: result.tickets[tid].wait)
    assert order == ["00000001", "00000002", "00000003", "00000005", "00000004", "00000006"]


def test_tickets_of_other_services_share_the_counter() -> None:
    result = estimator().estimate(
        snapshot({"certs": 2, "moving": 2}, [("c1", ("certs", "moving"))])
    )
    # longest wait first across both services: 1, 2 (certs), then 3, 4 (moving)
    assert result.tickets["00000003"].wait == pytest.approx(600)
    assert result.tickets["00000003"].ahead == 2


def test_a_busy_counter_frees_after_the_rest_of_its_service() -> None:
    held = Ticket(
        id="00000099",
        number="A-099",
        service="certs",
        channel=Channel.WEB,
        priority=False,
        status=TicketStatus.SERVING,
        issued_at=T0 - 500,
        token="t" * 22,
        started_at=T0 - 100,
        called_at=T0 - 110,
    )
    history = {sid: [300.0] * 100 + [500.0] * 100 for sid in SERVICE_IDS}
    result = estimator().estimate(
        snapshot({"certs": 1}, [("c1", ("certs",))], held={"c1": held}, history=history)
    )
    # the service has run 100 s; it lasts 300 or 500 s, so 200 or 400 s remain
    assert 200 <= result.tickets["00000001"].wait <= 400


def test_a_service_no_counter_serves_is_estimated_with_servers_zero() -> None:
    result = estimator().estimate(snapshot({"care": 3}, [("c1", ("certs",))]))
    estimate = result.new["care"]
    assert estimate.servers == 0
    assert estimate.low <= estimate.wait <= estimate.high
    assert estimate.wait > 0


def test_giving_up_shortens_the_waits_of_those_behind() -> None:
    patient = estimator().estimate(snapshot({"certs": 20}, [("c1", ("certs",))]))
    leaving = estimator().estimate(
        snapshot({"certs": 20}, [("c1", ("certs",))], day={"leaves": 40.0, "exposure": 40_000})
    )
    assert leaving.new["certs"].wait < 0.8 * patient.new["certs"].wait


def test_service_times_clip_outliers_and_lean_on_the_default_when_new() -> None:
    fresh = ServiceTimes([], default=600)
    assert fresh.mean == 600
    learned = ServiceTimes([200.0] * 50 + [20_000.0], default=600)
    assert learned.mean < 400
    assert ServiceTimes([200.0] * 50, default=600).mean == pytest.approx((50 * 200 + 5 * 600) / 55)


def test_estimates_are_repeatable_for_the_same_state() -> None:
    state = snapshot({"certs": 6, "moving": 3}, [("c1", ("certs", "moving"))], history={})
    assert estimator().estimate(state) == estimator().estimate(state)
