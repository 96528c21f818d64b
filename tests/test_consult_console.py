"""The specialist's side of consultation: presence, one call at a time, the console's pages."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from madoguchi.consult.calls import Call, Calls, CallState, Role
from madoguchi.consult.presence import PRESENCE_SECONDS
from madoguchi.queue.estimator import Estimator
from madoguchi.queue.model import Office, Service, ServiceMode
from madoguchi.web.accounts import Role as StaffRole

from conftest import T0, make_account, sign_in

OFFICE_API = "/consult/api/offices/kokurakita"
PENSION = Service("pension", "P", "国保・年金", "Insurance and pension", mode=ServiceMode.REMOTE)


def calls_of(app: Starlette) -> Calls:
    calls: Calls = app.state.switchboard.calls
    return calls


async def raised(app: Starlette, kiosk: str = "k1", topic: str = "care") -> Call:
    return await calls_of(app).request("kokurakita", kiosk, topic, now=T0 + app.state.offset)


async def presence(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    answer = await client.get(f"{OFFICE_API}/presence", headers=headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


async def set_presence(
    client: httpx.AsyncClient, headers: dict[str, str], state: object
) -> httpx.Response:
    return await client.post(f"{OFFICE_API}/presence", json={"state": state}, headers=headers)


def me(found: dict[str, object]) -> dict[str, object]:
    value = found["me"]
    assert isinstance(value, dict)
    return value


# -- presence -----------------------------------------------------------------------------------


async def test_presence_holds_while_refreshed_and_lapses_to_away(
    app: Starlette, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    assert me(await presence(client, staff))["state"] == "away"  # never set
    answer = await set_presence(client, staff, "available")
    assert answer.status_code == 200, answer.text
    assert answer.json()["presence"]["state"] == "available"
    assert answer.json()["presence"]["until"] == T0 + PRESENCE_SECONDS
    app.state.offset = PRESENCE_SECONDS - 1
    assert me(await presence(client, staff))["state"] == "available"
    await set_presence(client, staff, "available")  # the console's refresh
    app.state.offset = 2 * PRESENCE_SECONDS - 2
    assert me(await presence(client, staff))["state"] == "available"
    # The browser was closed: nothing refreshes it, and it falls back to away.
    app.state.offset = 2 * PRESENCE_SECONDS
    found = me(await presence(client, staff))
    assert (found["state"], found["chosen"], found["until"]) == ("away", "away", None)
    assert (await set_presence(client, staff, "busy")).json()["presence"]["state"] == "busy"


async def test_everyone_at_the_office_is_listed_with_their_presence(
    aredis: Redis, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    await make_account(aredis, "lead", services=("care",))
    await make_account(aredis, "elsewhere", offices=("moji",))
    lead = await sign_in(client, "lead")
    await set_presence(client, lead, "available")
    listed = {p["username"]: p for p in (await presence(client, staff))["staff"]}  # type: ignore[attr-defined]
    assert set(listed) == {"clerk", "lead"}
    assert listed["lead"]["state"] == "available"
    assert listed["lead"]["name"] == "Test lead"
    assert listed["clerk"]["state"] == "away"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"state": "sleeping"}, 422, "presence must be one of available, busy, away"),
        ({"state": 3}, 422, 'field "state" must be a string'),
        ({}, 422, 'field "state" is required'),
        ({"state": "away", "mood": "ok"}, 422, 'unknown field "mood"'),
        ([], 400, "must be a JSON object"),
    ],
)
async def test_bad_presence_is_refused_clearly(
    client: httpx.AsyncClient, staff: dict[str, str], body: object, status: int, says: str
) -> None:
    answer = await client.post(f"{OFFICE_API}/presence", json=body, headers=staff)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]["message"]


async def test_presence_needs_the_csrf_token_and_the_office(
    aredis: Redis, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    no_token = {"Cookie": staff["Cookie"]}
    answer = await client.post(f"{OFFICE_API}/presence", json={"state": "away"}, headers=no_token)
    assert answer.status_code == 403
    assert (await client.get(f"{OFFICE_API}/presence")).status_code == 401
    moji = await client.post(
        "/consult/api/offices/moji/presence", json={"state": "away"}, headers=staff
    )
    assert moji.status_code == 403
    assert "moji" in moji.json()["error"]["message"]
    bad = await client.post(
        "/consult/api/offices/No_Such/presence", json={"state": "away"}, headers=staff
    )
    assert bad.status_code == 404
    await make_account(aredis, "boss", StaffRole.ADMIN, offices=())
    boss = await sign_in(client, "boss")
    gone = await client.post(
        "/consult/api/offices/nowhere/presence", json={"state": "away"}, headers=boss
    )
    assert gone.status_code == 404
    assert "nowhere" in gone.json()["error"]["message"]
    assert (
        await client.get("/consult/api/offices/nowhere/presence", headers=boss)
    ).status_code == 404


async def test_a_specialist_in_a_call_is_busy_until_it_ends(
    app: Starlette, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    await set_presence(client, staff, "available")
    call = await raised(app)
    accepted = await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)
    assert accepted.json()["call"]["id"] == call.id
    found = me(await presence(client, staff))
    assert (found["state"], found["chosen"], found["role"]) == ("busy", "available", "specialist")
    assert isinstance(found["call"], dict)
    assert (found["call"]["id"], found["call"]["ws"]) == (call.id, f"/consult/ws/{call.id}")
    listed = (await presence(client, staff))["staff"]
    assert listed == [
        {
            "username": "clerk",
            "name": "Test clerk",
            "role": "staff",
            "state": "busy",
            "in_call": True,
        }
    ]
    # Declined (the call rang, and the specialist said bye): available again.
    await calls_of(app).end("kokurakita", call.ticket, Role.SPECIALIST, "clerk", now=T0 + 5)
    found = me(await presence(client, staff))
    assert (found["state"], found["call"]) == ("available", None)


async def test_an_invited_colleague_sees_the_invitation(
    app: Starlette, aredis: Redis, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    await make_account(aredis, "interpreter", services=())
    guest = await sign_in(client, "interpreter")
    call = await raised(app)
    await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)
    invited = await client.post(
        f"/consult/api/calls/{call.id}/invite", json={"username": "interpreter"}, headers=staff
    )
    assert invited.status_code == 200, invited.text
    found = me(await presence(client, guest))
    assert (found["state"], found["role"]) == ("busy", "guest")
    assert isinstance(found["call"], dict)
    assert (found["call"]["id"], found["call"]["specialist"]) == (call.id, "clerk")
    await calls_of(app).end("kokurakita", call.ticket, Role.SPECIALIST, "clerk", now=T0 + 9)
    assert me(await presence(client, guest))["call"] is None


# -- one call at a time ----------------------------------------------------------------------


async def test_a_specialist_takes_one_call_at_a_time(
    app: Starlette, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    first = await raised(app, "k1")
    second = await raised(app, "k2")
    assert (await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)).status_code == 200
    for body in ({}, {"call": second.id}):
        refused = await client.post(f"{OFFICE_API}/accept", json=body, headers=staff)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "busy"
        assert error["message"] == (
            f"you are already in consultation {first.number} (ringing); "
            "end it before accepting another"
        )
    # The second is still waiting for someone else.
    waiting = (await client.get(f"{OFFICE_API}/queue", headers=staff)).json()["calls"]
    assert [c["id"] for c in waiting] == [second.id]
    # Connected, then reconnecting: still refused.
    calls = calls_of(app)
    await calls.join("kokurakita", first.ticket, kiosk="k1", connection="kc", now=T0 + 1)
    await calls.join("kokurakita", first.ticket, staff="clerk", connection="sc", now=T0 + 2)
    await calls.leave("kokurakita", first.ticket, Role.KIOSK, connection="kc", now=T0 + 3)
    assert (await calls.get("kokurakita", first.ticket)).state is CallState.RECONNECTING
    refused = await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "busy")
    assert "(reconnecting)" in refused.json()["error"]["message"]
    # Once it ended, the next one may be taken.
    await calls.end("kokurakita", first.ticket, Role.SPECIALIST, "clerk", now=T0 + 4)
    taken = await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)
    assert taken.json()["call"]["id"] == second.id


async def test_a_call_sent_back_to_the_queue_frees_the_specialist(
    app: Starlette, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    await app.state.queue.put_service("kokurakita", PENSION, now=T0)
    first = await raised(app, "k1")
    second = await raised(app, "k2")
    await calls_of(app).join("kokurakita", second.ticket, kiosk="k2", connection="kc", now=T0)
    await client.post(f"{OFFICE_API}/accept", json={"call": first.id}, headers=staff)
    moved = await client.post(
        f"/consult/api/calls/{first.id}/transfer", json={"service": "pension"}, headers=staff
    )
    assert moved.json()["call"]["state"] == "waiting"
    # Transferred: the specialist may take the next one at once.
    taken = await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)
    assert taken.json()["call"]["id"] == second.id
    # Unanswered: the ring timed out, and the specialist is free again.
    await calls_of(app).expire_due(T0 + 100)
    assert (await calls_of(app).get("kokurakita", second.ticket)).reason == "unanswered"
    again = await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)
    assert again.json()["call"]["id"] == second.id


async def test_two_accepts_at_once_take_one_call(
    app: Starlette, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    """The guard is in the accept script: two tabs racing cannot both win."""
    raised_calls = [await raised(app, f"k{i}") for i in range(4)]
    answers = await asyncio.gather(
        *(client.post(f"{OFFICE_API}/accept", json={}, headers=staff) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    states = [(await calls_of(app).get("kokurakita", c.ticket)).state for c in raised_calls]
    assert states.count(CallState.RINGING) == 1


# -- the pages ----------------------------------------------------------------------------------


async def test_the_console_page(
    app: Starlette, aredis: Redis, office: Office, client: httpx.AsyncClient
) -> None:
    await app.state.queue.put_service("kokurakita", PENSION, now=T0)
    await make_account(aredis, "clerk")
    headers = {"Cookie": (await sign_in(client, "clerk"))["Cookie"]}
    picked = await client.get("/staff/consult", headers=headers)
    assert (picked.status_code, picked.headers["location"]) == (303, "/staff/consult/kokurakita")
    page = await client.get("/staff/consult/kokurakita", headers=headers)
    assert page.status_code == 200
    assert 'src="/static/consult.js' in page.text
    assert "Remote queue" in page.text
    # The transfer picker knows the remote services, and only those.
    assert '"id": "pension"' in page.text
    assert '"id": "care"' in page.text
    assert '"id": "certs"' not in page.text
    home = await client.get("/staff/", headers=headers)
    assert 'href="/staff/consult"' in home.text
    assert (await client.get("/staff/consult/moji", headers=headers)).status_code == 403
    await make_account(aredis, "boss", StaffRole.ADMIN, offices=())
    boss = {"Cookie": (await sign_in(client, "boss"))["Cookie"]}
    assert (await client.get("/staff/consult/nowhere", headers=boss)).status_code == 404


async def test_the_counter_console_links_to_the_calls(
    app: Starlette, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    await app.state.queue.open_counter("kokurakita", "w1", ["certs"], now=T0)
    page = await client.get("/staff/console/kokurakita/w1", headers={"Cookie": staff["Cookie"]})
    assert page.status_code == 200
    assert 'href="/staff/consult/kokurakita"' in page.text
    assert 'id="remote-waiting"' in page.text


async def test_supervisors_see_the_specialists_presence(
    app: Starlette, aredis: Redis, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    await make_account(aredis, "lead", StaffRole.SUPERVISOR)
    await make_account(aredis, "counter", services=("certs",))
    await make_account(aredis, "nurse", services=("care",))
    lead = {"Cookie": (await sign_in(client, "lead"))["Cookie"]}
    await set_presence(client, staff, "available")
    board = await client.get("/staff/supervisor/kokurakita/board", headers=lead)
    assert board.status_code == 200
    line = board.text.split('id="specialist-clerk"')[1].split("</li>")[0]
    assert "Test clerk" in line
    assert "Available" in line
    assert 'id="specialist-counter"' not in board.text  # serves no remote service
    # Serves care, never set a presence: away.
    assert "Away" in board.text.split('id="specialist-nurse"')[1].split("</li>")[0]
    call = await raised(app)
    await client.post(f"{OFFICE_API}/accept", json={}, headers=staff)
    board = await client.get("/staff/supervisor/kokurakita/board", headers=lead)
    line = board.text.split('id="specialist-clerk"')[1].split("</li>")[0]
    assert "Busy" in line
    assert f"in a call with {call.number}" in line


async def test_specialists_present_are_the_servers_the_estimate_counts(
    app: Starlette, client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    """Available or busy, a specialist is a server for the remote services they take (and
    for no in-person one); away, or once their presence lapsed, they are not."""
    queue = app.state.queue
    waiting = await raised(app)
    await set_presence(client, staff, "available")
    snapshot = await queue.snapshot("kokurakita", now=T0)
    assert [(d.id, d.services) for d in snapshot.desks] == [("desk:clerk", ("care",))]
    estimates = Estimator(app.state.settings).estimate(snapshot)
    assert estimates.tickets[waiting.ticket].servers == 1
    assert estimates.new["certs"].servers == 0

    await set_presence(client, staff, "away")
    assert (await queue.snapshot("kokurakita", now=T0)).desks == []
    await set_presence(client, staff, "busy")
    assert len((await queue.snapshot("kokurakita", now=T0)).desks) == 1
    lapsed = await queue.snapshot("kokurakita", now=T0 + PRESENCE_SECONDS + 1)
    assert lapsed.desks == []
