"""The kiosk's screens of a consultation over HTTP (kiosk/calls.py): touching a topic
raises it, the waiting screen shows its place, ending it works from a plain form, the
five faces come only after a talk; every refusal is a kiosk page (never JSON, never a 500)."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from starlette.applications import Starlette

from madoguchi.consult.calls import Calls, CallState
from madoguchi.kiosk.devices import KIOSK_COOKIE, Kiosk

from conftest import T0
from kiosks import ASAHARA, enrolled

CALL_PAGE = re.compile(r"^/kiosk/call/(kokurakita\.\d{8})$")
KEY = "k" * 24
OTHER = Kiosk(**{**ASAHARA.__dict__, "id": "other"})


def calls_of(app: Starlette) -> Calls:
    calls: Calls = app.state.switchboard.calls
    return calls


async def headers_of(app: Starlette, kiosk: Kiosk = ASAHARA, lang: str = "en") -> dict[str, str]:
    token = await enrolled(app.state.kiosks, kiosk)
    return {"Cookie": f"{KIOSK_COOKIE}={token}; madoguchi-lang={lang}"}


def topic(name: str = "care", office: str = "kokurakita", key: str = KEY) -> dict[str, str]:
    return {"office": office, "topic": name, "key": key}


def kiosk_page(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert 'href="/kiosk/"' in response.text, "the way back to the start"
    return html.unescape(response.text)


async def raise_one(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post("/kiosk/consult", data=topic(), headers=headers)
    assert response.status_code == 303, response.text
    found = CALL_PAGE.match(response.headers["location"])
    assert found is not None, response.headers["location"]
    return found[1]


async def test_touching_a_topic_raises_a_consultation_and_waits(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    headers = await headers_of(app)
    picker = kiosk_page(await client.get("/kiosk/consult", headers=headers), 200)
    assert 'action="/kiosk/consult"' in picker
    assert 'name="topic" value="care"' in picker
    call = await raise_one(client, headers)
    assert await raise_one(client, headers) == call, "the same touch again: the same call"
    opened = await calls_of(app).of_kiosk("kokurakita", ASAHARA.id)
    assert opened is not None
    assert (opened.id, opened.state, opened.topic) == (call, CallState.WAITING, "care")
    text = kiosk_page(await client.get(f"/kiosk/call/{call}", headers=headers), 200)
    assert f'data-ws="/consult/ws/{call}"' in text
    assert "Please wait here. A specialist will talk with you soon." in text
    assert "You are next." in text
    assert "Stop waiting" in text
    assert 'src="/kiosk/static/call.js' in text


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        (topic("certs"), 422, "Sorry, that did not work."),  # a ticket service, not a topic
        (topic("nursing"), 422, "Sorry, that did not work."),
        (topic(key=""), 422, "Sorry, that did not work."),
        (topic(key="short"), 422, "Sorry, that did not work."),
        (topic(office="moji"), 403, "Sorry, this kiosk cannot do that."),
        ({"office": "kokurakita"}, 422, "Sorry, that did not work."),
    ],
)
async def test_a_bad_touch_is_a_kiosk_page(
    client: httpx.AsyncClient, app: Starlette, form: dict[str, str], status: int, says: str
) -> None:
    headers = await headers_of(app)
    text = kiosk_page(await client.post("/kiosk/consult", data=form, headers=headers), status)
    assert says in text
    assert await calls_of(app).of_kiosk("kokurakita", ASAHARA.id) is None


async def test_an_oversized_form_and_an_unenrolled_kiosk_are_refused(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    headers = await headers_of(app)
    big = {**topic(), "padding": "x" * 5000}
    response = await client.post("/kiosk/consult", data=big, headers=headers)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("text/html")
    stranger = {"Cookie": "madoguchi-lang=en"}
    kiosk_page(await client.post("/kiosk/consult", data=topic(), headers=stranger), 401)
    away = await client.get("/kiosk/call/kokurakita.00000001", headers=stranger)
    assert (away.status_code, away.headers["location"]) == (303, "/kiosk/enroll")


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/kiosk/call/nonsense", 404, "Sorry, we could not find that."),
        ("/kiosk/call/kokurakita.99999999", 404, "Sorry, we could not find that."),
        ("/kiosk/call/moji.00000001", 403, "Sorry, this kiosk cannot do that."),
        ("/kiosk/call/kokurakita.99999999/survey", 404, "Sorry, we could not find that."),
    ],
)
async def test_a_call_that_is_not_there_is_a_kiosk_page(
    client: httpx.AsyncClient, app: Starlette, path: str, status: int, says: str
) -> None:
    headers = await headers_of(app)
    assert says in kiosk_page(await client.get(path, headers=headers), status)


async def test_another_kiosks_consultation_is_not_shown_nor_ended(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    call = await raise_one(client, await headers_of(app, OTHER))
    headers = await headers_of(app)
    text = kiosk_page(await client.get(f"/kiosk/call/{call}", headers=headers), 403)
    assert "Sorry, this kiosk cannot do that." in text
    kiosk_page(await client.post(f"/kiosk/call/{call}/end", headers=headers), 403)
    left = await client.get(f"/kiosk/call/{call}/reset", headers=headers)
    assert left.headers["location"] == "/kiosk/reset"
    state = await calls_of(app).get("kokurakita", call.partition(".")[2])
    assert state.state is CallState.WAITING, "still waiting: only its own kiosk may end it"


async def test_stop_waiting_cancels_and_goes_to_the_start(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    headers = await headers_of(app)
    call = await raise_one(client, headers)
    stopped = await client.post(f"/kiosk/call/{call}/end", headers=headers)
    assert (stopped.status_code, stopped.headers["location"]) == (303, "/kiosk/")
    state = await calls_of(app).get("kokurakita", call.partition(".")[2])
    assert (state.state, state.reason) == (CallState.ENDED, "cancelled")
    again = await client.get(f"/kiosk/call/{call}", headers=headers)
    assert again.headers["location"] == "/kiosk/", "nothing of it is shown again"
    survey = await client.get(f"/kiosk/call/{call}/survey", headers=headers)
    assert survey.headers["location"] == "/kiosk/reset", "no question without a talk"


async def test_the_idle_reset_ends_a_waiting_consultation(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    headers = await headers_of(app)
    call = await raise_one(client, headers)
    reset = await client.get(f"/kiosk/call/{call}/reset", headers=headers)
    assert (reset.status_code, reset.headers["location"]) == (303, "/kiosk/reset")
    assert await calls_of(app).of_kiosk("kokurakita", ASAHARA.id) is None
    again = await client.get(f"/kiosk/call/{call}/reset", headers=headers)
    assert again.headers["location"] == "/kiosk/reset", "twice is harmless"


async def test_after_a_talk_the_five_faces_once(client: httpx.AsyncClient, app: Starlette) -> None:
    headers = await headers_of(app)
    call = await raise_one(client, headers)
    calls, ticket = calls_of(app), call.partition(".")[2]
    await calls.accept("kokurakita", "clerk", ("care",), now=T0 + 5)
    await calls.join("kokurakita", ticket, kiosk=ASAHARA.id, connection="k", now=T0 + 6)
    await calls.join("kokurakita", ticket, staff="clerk", connection="s", now=T0 + 7)
    ended = await client.post(f"/kiosk/call/{call}/end", headers=headers)
    assert ended.headers["location"] == f"/kiosk/call/{call}/survey"
    state = await calls.get("kokurakita", ticket)
    assert (state.state, state.reason) == (CallState.ENDED, "completed")
    text = kiosk_page(await client.get(ended.headers["location"], headers=headers), 200)
    assert text.count('data-rating="') == 5
    assert f'data-rate="/consult/api/calls/{call}/rate"' in text
    assert "How was it?" in text
    await calls.rate("kokurakita", ticket, ASAHARA.id, 4, now=T0 + 60)
    asked = await client.get(f"/kiosk/call/{call}/survey", headers=headers)
    assert asked.headers["location"] == "/kiosk/reset", "asked once"
