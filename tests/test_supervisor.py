"""The supervisor's view over HTTP: what it shows, and its counter controls."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette

from madoguchi.queue.model import CancelReason, CounterState, Office
from madoguchi.queue.tickets import QueueClient
from madoguchi.web.accounts import Role

from conftest import T0, refusal, shown, sign_in_form

OFFICE = "kokurakita"


@pytest.fixture
async def boss(http: httpx.AsyncClient, app: Starlette) -> str:
    return await sign_in_form(http, app, "boss", Role.SUPERVISOR)


async def counters(queue: QueueClient) -> dict[str, tuple[str, tuple[str, ...]]]:
    snapshot = await queue.snapshot(OFFICE, now=T0)
    return {c.id: (c.state.value, c.services) for c in snapshot.counters}


async def busy_office(app: Starlette) -> QueueClient:
    """Two counters, one serving A-001; tickets waiting; a no-show and an abandoned ticket."""
    queue: QueueClient = app.state.queue
    await queue.put_counter(OFFICE, "c1", ["certs"], name="1番窓口", now=T0)
    await queue.put_counter(OFFICE, "c2", ["certs", "moving"], name="2番窓口", now=T0)
    await queue.open_counter(OFFICE, "c1", now=T0)
    first = (await queue.issue(OFFICE, "certs", now=T0)).ticket
    gone = (await queue.issue(OFFICE, "certs", now=T0 + 10)).ticket
    await queue.issue(OFFICE, "certs", now=T0 + 20)
    await queue.issue(OFFICE, "moving", now=T0 + 30)  # B-001, waits longest at the end
    left = (await queue.issue(OFFICE, "moving", now=T0 + 40)).ticket  # B-002
    await queue.cancel(OFFICE, left.id, reason=CancelReason.ABANDONED, now=T0 + 50)
    await queue.call_next(OFFICE, "c1", now=T0 + 60)
    await queue.start(OFFICE, first.id, now=T0 + 70)
    await queue.finish(OFFICE, first.id, now=T0 + 200)
    await queue.call_next(OFFICE, "c1", now=T0 + 210)
    await queue.no_show(OFFICE, gone.id, now=T0 + 300)
    await queue.call_next(OFFICE, "c1", now=T0 + 310)  # A-003, held at c1
    app.state.offset = 1530.0  # 09:25:30: B-001 has waited 25 minutes
    return queue


async def test_the_page_needs_a_supervisor_of_the_office(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    anonymous = await http.get(f"/staff/supervisor/{OFFICE}")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/staff/signin?next=/staff/supervisor/{OFFICE}"
    await sign_in_form(http, app, "clerk", Role.STAFF)
    assert (await http.get(f"/staff/supervisor/{OFFICE}")).status_code == 403
    assert (await http.get(f"/staff/supervisor/{OFFICE}/board")).status_code == 403


async def test_a_supervisor_elsewhere_is_refused(http: httpx.AsyncClient, app: Starlette) -> None:
    await app.state.queue.put_office(Office("tobata", "戸畑区役所", "Tobata"), now=T0)
    csrf = await sign_in_form(http, app, "far", Role.SUPERVISOR, ("tobata",))
    assert (await http.get(f"/staff/supervisor/{OFFICE}")).status_code == 403
    refused = await http.post(f"/staff/supervisor/{OFFICE}/counters/c1/open", data={"csrf": csrf})
    assert refused.status_code == 403
    # with one office, the picker goes straight to it
    picked = await http.get("/staff/supervisor")
    assert picked.headers["location"] == "/staff/supervisor/tobata"


async def test_an_admin_picks_among_every_office(http: httpx.AsyncClient, app: Starlette) -> None:
    await app.state.queue.put_office(Office("tobata", "戸畑区役所", "Tobata"), now=T0)
    await sign_in_form(http, app, "root", Role.ADMIN, ())
    page = await http.get("/staff/supervisor")
    assert page.status_code == 200
    assert 'href="/staff/supervisor/kokurakita"' in page.text
    assert 'href="/staff/supervisor/tobata"' in page.text


async def test_the_page_shows_counters_waits_and_today(
    http: httpx.AsyncClient, app: Starlette, boss: str
) -> None:
    await busy_office(app)
    page = await http.get(f"/staff/supervisor/{OFFICE}")
    assert page.status_code == 200
    text = shown(page)
    figures = dict(re.findall(r'<dd data-figure="(\w+)">\s*([^<]+?)\s*(?:<|$)', text))
    assert figures == {
        "waiting": "1",
        "longest": "25 min",
        "issued": "5",
        "served": "1",
        "no_show": "1",
        "abandoned": "1",
    }
    assert "B-001 · Moving in and out" in text
    counter_rows = re.findall(r'<tr id="counter-(\w+)" data-state="(\w+)">', text)
    assert counter_rows == [("c1", "open"), ("c2", "closed")]
    assert "A-003" in text.split('id="counter-c1"')[1].split("</tr>")[0]
    service_rows = re.findall(
        r'<tr id="service-(\w+)">.*?<td data-figure="waiting">(\d+)</td>\s*<td>(\d+)</td>',
        text,
        re.S,
    )
    assert service_rows == [("certs", "0", "1"), ("moving", "1", "0"), ("care", "0", "0")]
    assert "no counter open" in text
    # the live fragment carries the same figures, and nothing of the page around them
    board = await http.get(f"/staff/supervisor/{OFFICE}/board")
    assert board.status_code == 200
    assert 'data-live="counters"' in board.text
    assert "<html" not in board.text


async def test_yesterdays_events_do_not_count_today(
    http: httpx.AsyncClient, app: Starlette, boss: str
) -> None:
    queue: QueueClient = app.state.queue
    await queue.issue(OFFICE, "certs", now=T0 - 86_400)
    await queue.issue(OFFICE, "certs", now=T0 - 60)
    text = shown(await http.get(f"/staff/supervisor/{OFFICE}"))
    assert re.search(r'<dd data-figure="issued">1</dd>', text)


async def test_pause_resume_and_close_a_counter(
    http: httpx.AsyncClient, app: Starlette, boss: str
) -> None:
    queue: QueueClient = app.state.queue
    await queue.put_counter(OFFICE, "c2", ["certs"], name="2番窓口", now=T0)
    await queue.open_counter(OFFICE, "c2", now=T0)
    base = f"/staff/supervisor/{OFFICE}/counters/c2"
    paused = await http.post(f"{base}/pause", data={"csrf": boss})
    assert paused.status_code == 303
    assert (
        paused.headers["location"] == f"/staff/supervisor/{OFFICE}?done=pause&counter=c2#counter-c2"
    )
    assert (await counters(queue))["c2"][0] == CounterState.PAUSED
    notice = await http.get(paused.headers["location"])
    assert "Counter 2番窓口 is paused." in shown(notice)
    await http.post(f"{base}/open", data={"csrf": boss})
    assert (await counters(queue))["c2"][0] == CounterState.OPEN
    await http.post(f"{base}/close", data={"csrf": boss})
    assert (await counters(queue))["c2"][0] == CounterState.CLOSED
    events = [e for _, e in await queue.events(OFFICE, count=3)]
    assert [(e["type"], e["actor"]) for e in events] == [
        ("counter_closed", "staff:boss"),
        ("counter_opened", "staff:boss"),
        ("counter_paused", "staff:boss"),
    ]


async def test_change_the_services_of_a_counter_keeps_its_state(
    http: httpx.AsyncClient, app: Starlette, boss: str
) -> None:
    queue: QueueClient = app.state.queue
    await queue.put_counter(OFFICE, "c2", ["certs"], now=T0)
    await queue.open_counter(OFFICE, "c2", now=T0)
    await queue.pause_counter(OFFICE, "c2", now=T0)
    changed = await http.post(
        f"/staff/supervisor/{OFFICE}/counters/c2/services",
        data={"csrf": boss, "services": ["moving", "certs"]},
    )
    assert changed.status_code == 303
    assert (await counters(queue))["c2"] == ("paused", ("moving", "certs"))
    remote = await http.post(
        f"/staff/supervisor/{OFFICE}/counters/c2/services",
        data={"csrf": boss, "services": ["moving", "care"]},
    )
    assert remote.status_code == 422
    assert '"care" is a remote consultation: specialists take it, not counters' in shown(remote)
    none = await http.post(f"/staff/supervisor/{OFFICE}/counters/c2/services", data={"csrf": boss})
    assert none.status_code == 422
    assert 'counter "c2" needs at least one service' in shown(none)
    assert 'role="alert"' in none.text
    assert 'service "nope" does not exist' in await refusal(
        http,
        404,
        f"/staff/supervisor/{OFFICE}/counters/c2/services",
        data={"csrf": boss, "services": ["nope"]},
    )
    missing = await http.post(
        f"/staff/supervisor/{OFFICE}/counters/c9/services",
        data={"csrf": boss, "services": ["certs"]},
    )
    assert missing.status_code == 404
    assert "c9" not in await counters(queue)
    assert (await counters(queue))["c2"] == ("paused", ("moving", "certs"))


async def test_a_counter_holding_a_ticket_cannot_be_closed(
    http: httpx.AsyncClient, app: Starlette, boss: str
) -> None:
    queue = await busy_office(app)
    refused = await http.post(f"/staff/supervisor/{OFFICE}/counters/c1/close", data={"csrf": boss})
    assert refused.status_code == 409
    text = shown(refused)
    assert 'counter "c1" still has ticket A-003 (called)' in text
    assert '<p class="error" role="alert" id="error">' in refused.text
    assert (await counters(queue))["c1"][0] == "open"
    assert 'counter "c2" is closed, not open' in await refusal(
        http, 409, f"/staff/supervisor/{OFFICE}/counters/c2/pause", data={"csrf": boss}
    )


@pytest.mark.parametrize("action", ["open", "pause", "close", "services"])
async def test_every_counter_control_needs_its_csrf_token(
    http: httpx.AsyncClient, app: Starlette, boss: str, action: str
) -> None:
    queue: QueueClient = app.state.queue
    await queue.put_counter(OFFICE, "c1", ["certs"], now=T0)
    await queue.open_counter(OFFICE, "c1", now=T0)
    before = await queue.events(OFFICE, count=1)
    for data in ({"services": "moving"}, {"csrf": "forged", "services": "moving"}):
        refused = await http.post(f"/staff/supervisor/{OFFICE}/counters/c1/{action}", data=data)
        assert refused.status_code == 403
    assert await queue.events(OFFICE, count=1) == before


async def test_unknown_actions_and_offices(http: httpx.AsyncClient, boss: str) -> None:
    assert (
        await http.post(f"/staff/supervisor/{OFFICE}/counters/c1/explode", data={"csrf": boss})
    ).status_code == 404
    assert (await http.get("/staff/supervisor/Not%20An%20Office")).status_code == 404
