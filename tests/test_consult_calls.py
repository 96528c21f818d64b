"""The call state machine: real Redis, the real scripts, the test's own clock."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from madoguchi.consult.calls import Call, Calls, CallState, Role, parse_call_id, source
from madoguchi.consult.exceptions import CallEnded, NotParticipant
from madoguchi.kiosk.devices import Kiosk, KioskStore
from madoguchi.queue import keys
from madoguchi.queue.exceptions import InvalidInput, NotFound, WrongState
from madoguchi.queue.model import Office, Service, ServiceMode, TicketStatus
from madoguchi.queue.tickets import QueueClient

from conftest import T0, make_account, sign_in

PENSION = Service("pension", "P", "国保・年金", "Insurance and pension", mode=ServiceMode.REMOTE)


@pytest.fixture
async def calls(queue: QueueClient, office: Office) -> Calls:
    await queue.put_service(office.id, PENSION, now=T0)
    return Calls(queue, ring_seconds=30, reconnect_seconds=20)


async def events(redis: Redis, office: str = "kokurakita") -> list[dict[str, Any]]:
    return [json.loads(f["e"]) for _, f in await redis.xrange(keys.events(office))]


async def consult_events(redis: Redis) -> list[tuple[str, str]]:
    return [
        (e["type"], e.get("reason", ""))
        for e in await events(redis)
        if e["type"].startswith("consult_")
    ]


async def connected(calls: Calls, at: float = T0) -> Call:
    """A consultation of kiosk k1 about care, accepted by "clerk", both ends joined."""
    call = await calls.request("kokurakita", "k1", "care", now=at)
    await calls.join("kokurakita", call.ticket, kiosk="k1", connection="kc", now=at + 1)
    accepted = await calls.accept("kokurakita", "clerk", ("care",), now=at + 60)
    assert accepted is not None
    joined = await calls.join(
        "kokurakita", call.ticket, staff="clerk", connection="sc", now=at + 62
    )
    assert joined.role is Role.SPECIALIST
    return joined.call


def test_the_scripts_compile_with_their_libraries() -> None:
    for name in ("request", "accept", "join", "leave", "expire", "end", "transfer"):
        assert "local function end_call" in source(name)
    assert "issue_ticket" in source("request")
    with pytest.raises(KeyError, match="nope"):
        source("nope")


def test_call_ids() -> None:
    assert parse_call_id("kokurakita.00000012") == ("kokurakita", "00000012")
    for bad in ("kokurakita", "kokurakita.12", "Koku.00000012", "a.00000012/x", ""):
        with pytest.raises(NotFound):
            parse_call_id(bad)


async def test_a_whole_consultation(calls: Calls, queue: QueueClient, aredis: Redis) -> None:
    call = await calls.request("kokurakita", "k1", "care", now=T0)
    assert call.state is CallState.WAITING
    assert call.id == f"kokurakita.{call.ticket}"
    ticket = await queue.ticket("kokurakita", call.ticket, now=T0)
    assert ticket.channel.value == "kiosk"
    assert ticket.position == 1
    # Asking again returns the open one.
    again = await calls.request("kokurakita", "k1", "care", now=T0 + 5)
    assert again.ticket == call.ticket
    live = await connected(calls)
    assert live.state is CallState.CONNECTED
    assert live.present == {Role.KIOSK, Role.SPECIALIST}
    assert live.waited == 62
    serving = await queue.ticket("kokurakita", call.ticket, now=T0 + 62)
    assert serving.status is TicketStatus.SERVING
    ended = await calls.end("kokurakita", call.ticket, Role.SPECIALIST, "clerk", now=T0 + 362)
    assert (ended.state, ended.reason) == (CallState.ENDED, "completed")
    assert ended.talked == 300
    done = await queue.ticket("kokurakita", call.ticket, now=T0 + 400)
    assert done.status is TicketStatus.DONE
    rated = await calls.rate("kokurakita", call.ticket, "k1", 5, now=T0 + 370)
    assert rated.rating == 5
    assert rated.record() == {
        "call": call.id,
        "topic": "care",
        "service": "care",
        "specialist": "clerk",
        "kiosk": "k1",
        "waited": 62.0,
        "talked": 300.0,
        "outcome": "completed",
        "transfer": None,
        "rating": 5,
    }
    with pytest.raises(Exception, match="already rated"):
        await calls.rate("kokurakita", call.ticket, "k1", 4, now=T0 + 371)
    assert await consult_events(aredis) == [
        ("consult_waiting", "requested"),
        ("consult_ringing", "accepted"),
        ("consult_connected", "specialist_joined"),
        ("consult_ended", "completed"),
        ("consult_rated", ""),
    ]
    record = next(e for e in await events(aredis) if e["type"] == "consultation")
    assert record["outcome"] == "completed"
    assert record["topic"] == "care"
    assert float(record["talked"]) == 300
    kinds = [e["type"] for e in await events(aredis) if e.get("ticket") == call.ticket]
    assert kinds[:1] == ["issued"]
    assert {"called", "started", "finished"} <= set(kinds)
    # The kiosk may raise a new one now.
    fresh = await calls.request("kokurakita", "k1", "care", now=T0 + 400)
    assert fresh.ticket != call.ticket


async def test_only_the_participants_may_join(calls: Calls) -> None:
    call = await calls.request("kokurakita", "k1", "care", now=T0)
    with pytest.raises(NotParticipant):
        await calls.join("kokurakita", call.ticket, kiosk="k2", connection="x", now=T0)
    with pytest.raises(NotParticipant):  # nobody has accepted it yet
        await calls.join("kokurakita", call.ticket, staff="clerk", connection="x", now=T0)
    await calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    with pytest.raises(NotParticipant):
        await calls.join("kokurakita", call.ticket, staff="other", connection="x", now=T0 + 2)
    await calls.invite("kokurakita", call.ticket, "clerk", "interpreter", now=T0 + 3)
    guest = await calls.join(
        "kokurakita", call.ticket, staff="interpreter", connection="g", now=T0 + 4
    )
    assert guest.role is Role.GUEST
    with pytest.raises(NotParticipant):
        await calls.invite("kokurakita", call.ticket, "interpreter", "someone", now=T0 + 5)
    await calls.end("kokurakita", call.ticket, Role.KIOSK, "k1", now=T0 + 6)
    with pytest.raises(CallEnded):
        await calls.join("kokurakita", call.ticket, kiosk="k1", connection="y", now=T0 + 7)


async def test_a_specialist_may_accept_only_what_they_serve(calls: Calls) -> None:
    call = await calls.request("kokurakita", "k1", "care", now=T0)
    with pytest.raises(NotParticipant, match="care"):
        await calls.accept("kokurakita", "clerk", ("pension",), now=T0, ticket=call.ticket)
    assert await calls.accept("kokurakita", "clerk", ("pension",), now=T0) is None
    with pytest.raises(InvalidInput, match="not a remote"):
        await calls.request("kokurakita", "k2", "certs", now=T0)


async def test_accept_takes_the_longest_waiting(calls: Calls) -> None:
    first = await calls.request("kokurakita", "k1", "care", now=T0)
    second = await calls.request("kokurakita", "k2", "pension", now=T0 + 10)
    got = await calls.accept("kokurakita", "a", ("care", "pension"), now=T0 + 20)
    assert got is not None
    assert got.ticket == first.ticket
    got = await calls.accept("kokurakita", "b", ("care", "pension"), now=T0 + 21)
    assert got is not None
    assert got.ticket == second.ticket
    with pytest.raises(WrongState):
        await calls.accept("kokurakita", "c", ("care",), now=T0 + 22, ticket=first.ticket)


async def test_an_unanswered_call_puts_the_resident_back_at_the_front(
    calls: Calls, queue: QueueClient, aredis: Redis
) -> None:
    first = await calls.request("kokurakita", "k1", "care", now=T0)
    await calls.join("kokurakita", first.ticket, kiosk="k1", connection="kc", now=T0)
    second = await calls.request("kokurakita", "k2", "care", now=T0 + 10)
    await calls.accept("kokurakita", "clerk", ("care",), now=T0 + 20)
    third = await calls.request("kokurakita", "k3", "care", now=T0 + 25)
    assert await calls.expire_due(T0 + 49) == 0
    assert await calls.expire_due(T0 + 50) == 1
    back = await calls.get("kokurakita", first.ticket)
    assert (back.state, back.reason, back.specialist) == (CallState.WAITING, "unanswered", "")
    ticket = await queue.ticket("kokurakita", first.ticket, now=T0 + 50)
    assert (ticket.status, ticket.position) == (TicketStatus.WAITING, 1)
    for later, position in ((second, 2), (third, 3)):
        assert (await queue.ticket("kokurakita", later.ticket, now=T0 + 50)).position == position
    # The next specialist gets the same resident first.
    again = await calls.accept("kokurakita", "other", ("care",), now=T0 + 60)
    assert again is not None
    assert again.ticket == first.ticket
    assert ("consult_waiting", "unanswered") in await consult_events(aredis)


async def test_a_declined_call_goes_back_too(calls: Calls) -> None:
    call = await calls.request("kokurakita", "k1", "care", now=T0)
    await calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    back = await calls.end("kokurakita", call.ticket, Role.SPECIALIST, "clerk", now=T0 + 2)
    assert (back.state, back.reason) == (CallState.WAITING, "declined")


async def test_a_vanished_kiosk_ends_the_call(
    calls: Calls, queue: QueueClient, aredis: Redis
) -> None:
    call = await connected(calls)
    left = await calls.leave("kokurakita", call.ticket, Role.KIOSK, connection="kc", now=T0 + 100)
    assert (left.state, left.reason) == (CallState.RECONNECTING, "kiosk_left")
    assert left.deadline == T0 + 120
    assert await calls.expire_due(T0 + 119) == 0
    assert await calls.expire_due(T0 + 120) == 1
    ended = await calls.get("kokurakita", call.ticket)
    assert (ended.state, ended.reason) == (CallState.ENDED, "kiosk_lost")
    ticket = await queue.ticket("kokurakita", call.ticket, now=T0 + 120)
    assert ticket.status is TicketStatus.DONE  # they did talk
    assert await calls.of_kiosk("kokurakita", "k1") is None
    assert not await aredis.zrange(keys.calls_due("kokurakita"), 0, -1)


async def test_a_kiosk_that_comes_back_in_time_keeps_the_call(calls: Calls) -> None:
    call = await connected(calls)
    await calls.leave("kokurakita", call.ticket, Role.KIOSK, connection="kc", now=T0 + 100)
    back = await calls.join("kokurakita", call.ticket, kiosk="k1", connection="kc2", now=T0 + 110)
    assert (back.call.state, back.call.reason) == (CallState.CONNECTED, "kiosk_joined")
    assert back.call.deadline is None
    assert await calls.expire_due(T0 + 500) == 0
    # The old connection closing late changes nothing.
    still = await calls.leave("kokurakita", call.ticket, Role.KIOSK, connection="kc", now=T0 + 111)
    assert still.state is CallState.CONNECTED


async def test_a_lost_specialist_puts_the_resident_back(calls: Calls, queue: QueueClient) -> None:
    call = await connected(calls)
    await calls.leave("kokurakita", call.ticket, Role.SPECIALIST, connection="sc", now=T0 + 100)
    await calls.expire_due(T0 + 120)
    back = await calls.get("kokurakita", call.ticket)
    assert (back.state, back.reason) == (CallState.WAITING, "specialist_lost")
    assert back.talked == 120 - 62  # reconnecting counts as talking time
    ticket = await queue.ticket("kokurakita", call.ticket, now=T0 + 120)
    assert (ticket.status, ticket.position) == (TicketStatus.WAITING, 1)


async def test_a_kiosk_gone_while_waiting_gives_up_its_place(
    calls: Calls, queue: QueueClient
) -> None:
    call = await calls.request("kokurakita", "k1", "care", now=T0)
    await calls.join("kokurakita", call.ticket, kiosk="k1", connection="kc", now=T0)
    await calls.leave("kokurakita", call.ticket, Role.KIOSK, connection="kc", now=T0 + 5)
    await calls.expire_due(T0 + 25)
    ended = await calls.get("kokurakita", call.ticket)
    assert (ended.state, ended.reason) == (CallState.ENDED, "kiosk_lost")
    ticket = await queue.ticket("kokurakita", call.ticket, now=T0 + 25)
    assert ticket.status is TicketStatus.ABANDONED


async def test_the_kiosk_may_cancel_while_waiting(calls: Calls, queue: QueueClient) -> None:
    call = await calls.request("kokurakita", "k1", "care", now=T0)
    ended = await calls.end("kokurakita", call.ticket, Role.KIOSK, "k1", now=T0 + 5)
    assert (ended.state, ended.reason) == (CallState.ENDED, "cancelled")
    ticket = await queue.ticket("kokurakita", call.ticket, now=T0 + 5)
    assert ticket.status is TicketStatus.CANCELLED


async def test_transfer_keeps_the_place(calls: Calls, queue: QueueClient, aredis: Redis) -> None:
    early = await calls.request("kokurakita", "k1", "care", now=T0)
    waiting = await calls.request("kokurakita", "k2", "pension", now=T0 + 10)
    await calls.join("kokurakita", early.ticket, kiosk="k1", connection="kc", now=T0)
    await calls.accept("kokurakita", "clerk", ("care",), now=T0 + 20)
    await calls.join("kokurakita", early.ticket, staff="clerk", connection="sc", now=T0 + 21)
    with pytest.raises(NotParticipant):
        await calls.transfer("kokurakita", early.ticket, "other", "pension", now=T0 + 30)
    with pytest.raises(InvalidInput, match="not a remote"):
        await calls.transfer("kokurakita", early.ticket, "clerk", "certs", now=T0 + 30)
    moved = await calls.transfer("kokurakita", early.ticket, "clerk", "pension", now=T0 + 81)
    assert (moved.state, moved.reason, moved.service) == (
        CallState.WAITING,
        "transferred",
        "pension",
    )
    assert (moved.topic, moved.transfer, moved.talked) == ("care", "pension", 60)
    ticket = await queue.ticket("kokurakita", early.ticket, now=T0 + 81)
    assert (ticket.service, ticket.position) == ("pension", 1)
    assert (await queue.ticket("kokurakita", waiting.ticket, now=T0 + 81)).position == 2
    # The first specialist may no longer join.
    with pytest.raises(NotParticipant):
        await calls.join("kokurakita", early.ticket, staff="clerk", connection="x", now=T0 + 82)
    again = await calls.accept("kokurakita", "pensions", ("pension",), now=T0 + 90)
    assert again is not None
    assert again.ticket == early.ticket
    await calls.join("kokurakita", early.ticket, staff="pensions", connection="p", now=T0 + 91)
    ended = await calls.end("kokurakita", early.ticket, Role.KIOSK, "k1", now=T0 + 191)
    assert ended.record()["transfer"] == "pension"
    assert ended.record()["specialist"] == "pensions"
    assert ended.talked == 160


# -- the flow over HTTP --------------------------------------------------------------------


@pytest.fixture
async def kiosk_headers(aredis: Redis) -> dict[str, str]:
    store = KioskStore(aredis)
    await store.put(Kiosk("k1", "kokurakita", "足原市民センター", "1F", (), ("care",), ("face",)))
    token = (await store.enroll(await store.issue_code("k1", T0), T0))[1]
    return {"Cookie": f"__Host-madoguchi-kiosk={token}"}


async def test_the_flow_over_http(
    client: httpx.AsyncClient,
    app: Starlette,
    aredis: Redis,
    kiosk_headers: dict[str, str],
) -> None:
    await app.state.queue.put_service("kokurakita", PENSION, now=T0)
    await make_account(aredis, "clerk", services=("care",))
    await make_account(aredis, "interpreter")
    clerk = await sign_in(client, "clerk")
    none = await client.get("/consult/api/calls/current", headers=kiosk_headers)
    assert none.json() == {"call": None}
    raised = await client.post("/consult/api/calls", json={"topic": "care"}, headers=kiosk_headers)
    assert raised.status_code == 201, raised.text
    call = raised.json()["call"]
    assert call["ws"] == f"/consult/ws/{call['id']}"
    assert call["state"] == "waiting"
    current = await client.get("/consult/api/calls/current", headers=kiosk_headers)
    assert current.json()["call"]["id"] == call["id"]
    waiting = await client.get("/consult/api/offices/kokurakita/queue", headers=clerk)
    assert [c["id"] for c in waiting.json()["calls"]] == [call["id"]]
    accepted = await client.post("/consult/api/offices/kokurakita/accept", json={}, headers=clerk)
    assert accepted.json()["call"]["state"] == "ringing"
    assert accepted.json()["call"]["specialist"] == "clerk"
    # One call at a time (see test_consult_console.py).
    busy = await client.post("/consult/api/offices/kokurakita/accept", headers=clerk)
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "busy")
    invited = await client.post(
        f"/consult/api/calls/{call['id']}/invite", json={"username": "interpreter"}, headers=clerk
    )
    assert invited.json()["call"]["guest"] == "interpreter"
    unknown = await client.post(
        f"/consult/api/calls/{call['id']}/invite", json={"username": "nobody"}, headers=clerk
    )
    assert unknown.status_code == 422
    moved = await client.post(
        f"/consult/api/calls/{call['id']}/transfer", json={"service": "pension"}, headers=clerk
    )
    assert moved.json()["call"]["service"] == "pension"
    assert moved.json()["call"]["state"] == "waiting"
    # The clerk serves care only: the pension line is not theirs.
    mine = await client.get("/consult/api/offices/kokurakita/queue", headers=clerk)
    assert mine.json() == {"calls": []}
    early = await client.post(
        f"/consult/api/calls/{call['id']}/rate", json={"rating": 5}, headers=kiosk_headers
    )
    assert early.status_code == 409  # not ended yet
    await app.state.switchboard.calls.end("kokurakita", call["id"][-8:], Role.KIOSK, "k1", now=T0)
    rated = await client.post(
        f"/consult/api/calls/{call['id']}/rate", json={"rating": 4}, headers=kiosk_headers
    )
    assert rated.json()["call"]["record"]["rating"] == 4


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/consult/api/calls", {"topic": "certs"}, 422),  # not a topic of this kiosk
        ("/consult/api/calls", {"topic": 5}, 422),
        ("/consult/api/calls", {"topic": "care", "key": "bad key!"}, 422),
        ("/consult/api/calls/kokurakita.00000001/rate", {"rating": 5}, 404),
        ("/consult/api/calls/nonsense/rate", {"rating": 5}, 404),
        ("/consult/api/calls/moji.00000001/rate", {"rating": 5}, 404),
    ],
)
async def test_bad_kiosk_requests_get_a_clear_answer(
    client: httpx.AsyncClient,
    kiosk_headers: dict[str, str],
    path: str,
    body: dict[str, Any],
    status: int,
) -> None:
    response = await client.post(path, json=body, headers=kiosk_headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


async def test_a_rating_must_be_one_to_five(
    client: httpx.AsyncClient, kiosk_headers: dict[str, str], app: Starlette
) -> None:
    raised = await client.post("/consult/api/calls", json={"topic": "care"}, headers=kiosk_headers)
    call = raised.json()["call"]["id"]
    await app.state.switchboard.calls.end("kokurakita", call[-8:], Role.KIOSK, "k1", now=T0)
    for rating in (0, 6, 2.5, "5", True):
        response = await client.post(
            f"/consult/api/calls/{call}/rate", json={"rating": rating}, headers=kiosk_headers
        )
        assert response.status_code == 422, (rating, response.text)


async def test_every_key_a_call_writes_is_one_keys_py_builds(calls: Calls, aredis: Redis) -> None:
    call = await connected(calls)
    await calls.leave("kokurakita", call.ticket, Role.KIOSK, connection="kc", now=T0 + 100)
    other = await calls.request("kokurakita", "k2", "care", now=T0 + 101)
    written = {str(k) for k in await aredis.keys("*call*")}
    assert written == {
        keys.call("kokurakita", call.ticket),
        keys.call("kokurakita", other.ticket),
        keys.calls_due("kokurakita"),
        keys.kiosk_call("kokurakita", "k1"),
        keys.kiosk_call("kokurakita", "k2"),
        keys.specialist_call("kokurakita", "clerk"),
    }
    assert all(k.startswith(keys.office_prefix("kokurakita")) for k in written)
    assert keys.call_from_relay(keys.call_relay("kokurakita", call.ticket)) == (
        "kokurakita",
        call.ticket,
    )
