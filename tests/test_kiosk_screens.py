"""The kiosk screens over HTTP: tickets for the kiosk's own office only, one ticket per
tap, and every refusal a kiosk page in the chosen language (never JSON, never a 500)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno
from starlette.applications import Starlette

from madoguchi.embedded import free_port
from madoguchi.kiosk.devices import KIOSK_COOKIE, Kiosk, Printer
from madoguchi.queue.model import Channel, Office
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.app import create_app

from conftest import SERVICES, T0
from kiosks import ASAHARA, enrolled
from test_kiosk_printing import PAPER_OUT, FakePrinter, fake_printer  # noqa: F401 - a fixture

MOJI = Office("moji", "門司区役所", "Moji Ward Office")
TICKET_PAGE = re.compile(r"^/kiosk/tickets/([A-Za-z0-9_-]{22})(\?.*)?$")
KEY = "k" * 24

Enroll = Callable[[Kiosk], Coroutine[Any, Any, dict[str, str]]]


@pytest.fixture
def enroll(app: Starlette) -> Enroll:
    """Register and enroll a kiosk; the headers that carry its device cookie."""

    async def make(kiosk: Kiosk) -> dict[str, str]:
        return {"Cookie": f"{KIOSK_COOKIE}={await enrolled(app.state.kiosks, kiosk)}"}

    return make


def with_language(headers: dict[str, str], lang: str) -> dict[str, str]:
    return {**headers, "Cookie": f"{headers['Cookie']}; madoguchi-lang={lang}"}


def take(service: str = "certs", office: str = "kokurakita", key: str = KEY) -> dict[str, str]:
    return {"office": office, "service": service, "key": key}


def page_text(response: httpx.Response) -> str:
    return html.unescape(response.text)


def assert_kiosk_page(response: httpx.Response, status: int, lang: str = "ja") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert f'<html lang="{lang}">' in response.text
    assert 'href="/kiosk/"' in response.text, "the way back to the start"
    return page_text(response)


async def test_the_start_screen_offers_four_choices(client: httpx.AsyncClient, enroll: Enroll):
    headers = await enroll(ASAHARA)
    response = await client.get("/kiosk/", headers=headers)
    text = assert_kiosk_page(response, 200)
    for target in ("/kiosk/consult", "/kiosk/tickets", "/kiosk/waits", "/kiosk/language"):
        assert f'href="{target}"' in text
    assert "足原市民センター" in text
    assert "小倉北区役所" in text


async def test_a_kiosk_without_topics_offers_no_consultation(
    client: httpx.AsyncClient, enroll: Enroll
):
    headers = await enroll(Kiosk(**{**ASAHARA.__dict__, "topics": ()}))
    text = assert_kiosk_page(await client.get("/kiosk/", headers=headers), 200)
    assert 'href="/kiosk/consult"' not in text


async def test_without_a_device_token_pages_go_to_enrollment_and_actions_are_refused(
    client: httpx.AsyncClient,
):
    for path in ("/kiosk/", "/kiosk/tickets", "/kiosk/waits", "/kiosk/reset"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/kiosk/enroll"
    response = await client.post(
        "/kiosk/tickets", data=take(), headers={"Cookie": "madoguchi-lang=en"}
    )
    text = assert_kiosk_page(response, 401, lang="en")
    assert "not ready to be used" in text


async def test_a_ticket_taken_at_the_kiosk(
    client: httpx.AsyncClient, enroll: Enroll, queue: QueueClient
):
    headers = await enroll(ASAHARA)
    picker = await client.get("/kiosk/tickets", headers=headers)
    text = assert_kiosk_page(picker, 200)
    assert "証明書" in text
    assert "転入・転出" in text
    assert "介護" not in text, "a remote service is a consultation, not a ticket"
    key = re.search(r'name="key" value="([^"]+)"', picker.text)
    assert key is not None
    response = await client.post("/kiosk/tickets", data=take(key=key[1]), headers=headers)
    assert response.status_code == 303, response.text
    found = TICKET_PAGE.match(response.headers["location"])
    assert found is not None, response.headers["location"]
    assert found[2] == "?print=1"
    ticket = await queue.ticket("kokurakita", found[1], now=T0)
    assert ticket.channel is Channel.KIOSK
    assert ticket.service == "certs"
    shown = await client.get(f"/kiosk/tickets/{found[1]}?print=1", headers=headers)
    text = assert_kiosk_page(shown, 200)
    assert ticket.number in text
    # The QR code (on screen and on the receipt) holds the ticket's phone page, absolute.
    phone_page = segno.make(f"http://testserver/o/kokurakita/t/{ticket.token}", error="m")
    for scale in (5, 3):
        assert phone_page.svg_inline(scale=scale, svgclass="qr-code") in shown.text
    assert 'data-print="1"' in text
    assert "receipt-80.css" in text


async def test_a_consultation_topic_is_not_a_ticket(
    client: httpx.AsyncClient, enroll: Enroll, queue: QueueClient
):
    """A topic is raised as a consultation (tests/test_kiosk_calls.py), never a ticket."""
    headers = await enroll(ASAHARA)
    picker = await client.get("/kiosk/consult", headers=headers)
    assert "介護" in assert_kiosk_page(picker, 200)
    response = await client.post("/kiosk/tickets", data=take("care"), headers=headers)
    assert_kiosk_page(response, 422)
    snapshot = await queue.snapshot("kokurakita", now=T0)
    assert not any(snapshot.lines["care"].values())


async def test_the_same_tap_twice_issues_one_ticket(
    client: httpx.AsyncClient, enroll: Enroll, queue: QueueClient, app: Starlette
):
    headers = await enroll(ASAHARA)
    first = await client.post("/kiosk/tickets", data=take(), headers=headers)
    again = await client.post("/kiosk/tickets", data=take(), headers=headers)
    assert first.status_code == again.status_code == 303
    token = first.headers["location"].split("?")[0]
    assert again.headers["location"] == token, "the same ticket, and no second print"
    snapshot = await queue.snapshot("kokurakita", now=T0)
    assert sum(len(line) for line in snapshot.lines["certs"].values()) == 1
    other = await client.post("/kiosk/tickets", data=take(key="z" * 24), headers=headers)
    assert other.headers["location"].split("?")[0] != token, "a new page, a new ticket"


async def test_a_kiosk_acts_only_for_its_own_office(
    client: httpx.AsyncClient, enroll: Enroll, queue: QueueClient, app: Starlette
):
    await queue.put_office(MOJI, now=T0)
    for service in SERVICES:
        await queue.put_service(MOJI.id, service, now=T0)
    moji = await enroll(Kiosk(**{**ASAHARA.__dict__, "id": "dairi", "office": "moji"}))
    response = await client.post(
        "/kiosk/tickets", data=take(office="kokurakita"), headers=with_language(moji, "en")
    )
    text = assert_kiosk_page(response, 403, lang="en")
    assert "cannot do that" in text
    snapshot = await queue.snapshot("kokurakita", now=T0)
    assert not any(snapshot.lines["certs"].values()), "no ticket issued at kokurakita"
    # Its own office works, and a ticket of kokurakita is not shown at moji's kiosk.
    own = await client.post("/kiosk/tickets", data=take(office="moji"), headers=moji)
    assert own.status_code == 303
    kokura = await enroll(ASAHARA)
    theirs = await client.post("/kiosk/tickets", data=take(), headers=kokura)
    path = theirs.headers["location"].split("?")[0]
    assert_kiosk_page(await client.get(path, headers=moji), 404)


@pytest.mark.parametrize(
    ("form", "status", "words"),
    [
        (take("moving", key="short"), 422, "did not work"),
        (take("care-x"), 422, "did not work"),
        (take("tax"), 422, "did not work"),
        ({"office": "kokurakita"}, 422, "did not work"),
        (take(office="Not An Office"), 403, "cannot do that"),
    ],
)
async def test_bad_input_gets_a_kiosk_page_in_the_language(
    client: httpx.AsyncClient, enroll: Enroll, form: dict[str, str], status: int, words: str
):
    headers = with_language(await enroll(ASAHARA), "en")
    response = await client.post("/kiosk/tickets", data=form, headers=headers)
    text = assert_kiosk_page(response, status, lang="en")
    assert words in text
    assert "Back to the start" in text


async def test_a_service_not_taking_tickets_says_so(
    client: httpx.AsyncClient, enroll: Enroll, queue: QueueClient
):
    await queue.put_service(
        "kokurakita", SERVICES[0].__class__(**{**SERVICES[0].__dict__, "active": False}), now=T0
    )
    headers = with_language(await enroll(ASAHARA), "en")
    response = await client.post("/kiosk/tickets", data=take(), headers=headers)
    assert "not taking tickets" in assert_kiosk_page(response, 409, lang="en")


async def test_unknown_tickets_and_languages_are_kiosk_pages(
    client: httpx.AsyncClient, enroll: Enroll
):
    headers = await enroll(ASAHARA)
    for path, status in (
        ("/kiosk/tickets/not-a-token", 404),
        ("/kiosk/tickets/AAAAAAAAAAAAAAAAAAAAAA", 404),
    ):
        assert_kiosk_page(await client.get(path, headers=headers), status)


async def test_language_furigana_and_the_reset(client: httpx.AsyncClient, enroll: Enroll):
    headers = await enroll(ASAHARA)
    languages = assert_kiosk_page(await client.get("/kiosk/language", headers=headers), 200)
    for code, name in (
        ("ja", "日本語"),
        ("ja-easy", "やさしい日本語"),
        ("en", "English"),
        ("zh-Hans", "简体中文"),
        ("ko", "한국어"),
        ("vi", "Tiếng Việt"),
    ):
        assert f'href="/kiosk/?lang={code}"' in languages
        assert name in languages
    chosen = await client.get("/kiosk/?lang=vi", headers=headers)
    assert_kiosk_page(chosen, 200, lang="vi")
    assert "madoguchi-lang=vi" in chosen.headers["set-cookie"]
    # A browser that prefers English still starts in Japanese: the kiosk is for everyone.
    english = {**headers, "Accept-Language": "en-US,en;q=0.9"}
    assert_kiosk_page(await client.get("/kiosk/", headers=english), 200, lang="ja")
    furigana = await client.get("/kiosk/waits?furigana=1", headers=headers)
    assert "<ruby>" in assert_kiosk_page(furigana, 200)
    assert "madoguchi-furigana=1" in furigana.headers["set-cookie"]
    reset = await client.get("/kiosk/reset", headers=with_language(headers, "vi"))
    assert reset.headers["location"] == "/kiosk/"
    cookies = reset.headers.get_list("set-cookie")
    assert any(c.startswith("madoguchi-lang=") and "Max-Age=0" in c for c in cookies)
    assert any(c.startswith("madoguchi-furigana=") and "Max-Age=0" in c for c in cookies)


async def test_the_waits_in_plain_words(
    client: httpx.AsyncClient, enroll: Enroll, queue: QueueClient
):
    headers = await enroll(ASAHARA)
    await queue.open_counter("kokurakita", "window-1", ["certs"], now=T0)
    for _ in range(3):
        await queue.issue("kokurakita", "certs", now=T0)
    waits = await client.get("/kiosk/waits", headers=with_language(headers, "en"))
    text = assert_kiosk_page(waits, 200, lang="en")
    assert re.search(r"3 waiting\. About \d+ minutes\.", text), text
    assert "No counter is open for this right now." in text


# -- an ESC/POS printer at the branch: printed by the server, shown on screen all the same --


def escpos(port: int) -> Kiosk:
    return Kiosk(**{**ASAHARA.__dict__, "printer": Printer("escpos", "127.0.0.1", port, 58)})


async def test_an_escpos_kiosk_prints_on_its_printer_once(
    client: httpx.AsyncClient,
    enroll: Enroll,
    fake_printer: tuple[FakePrinter, int],  # noqa: F811 - the fixture imported above
):
    fake, port = fake_printer
    headers = await enroll(escpos(port))
    response = await client.post("/kiosk/tickets", data=take(), headers=headers)
    assert response.status_code == 303
    assert response.headers["location"].endswith("?printed=1")
    assert fake.done.wait(5)
    assert b"\x1dv0" in fake.received, "the receipt was printed as an image"
    printed = len(fake.received)
    again = await client.post("/kiosk/tickets", data=take(), headers=headers)
    assert again.headers["location"] == response.headers["location"].split("?")[0]
    assert len(fake.received) == printed, "a double tap prints nothing more"
    shown = await client.get(response.headers["location"], headers=with_language(headers, "en"))
    text = assert_kiosk_page(shown, 200, lang="en")
    assert 'data-print="1"' not in text, "the browser does not print it too"
    assert "take your ticket from the printer" in text


async def test_out_of_paper_the_ticket_is_on_screen_with_what_to_do(
    client: httpx.AsyncClient,
    enroll: Enroll,
    fake_printer: tuple[FakePrinter, int],  # noqa: F811 - the fixture imported above
):
    fake, port = fake_printer
    fake.paper = PAPER_OUT
    headers = with_language(await enroll(escpos(port)), "en")
    response = await client.post("/kiosk/tickets", data=take(), headers=headers)
    assert response.headers["location"].endswith("?printed=0")
    text = assert_kiosk_page(
        await client.get(response.headers["location"], headers=headers), 200, lang="en"
    )
    assert "Please remember it, or take a photo of this screen." in text
    assert "tell staff" in text


async def test_a_browser_printer_reported_out_of_paper_prints_nothing(
    client: httpx.AsyncClient, enroll: Enroll
):
    headers = await enroll(ASAHARA)
    report = {"cameras": 2, "microphones": 1, "printer": "no_paper", "version": "0"}
    answer = await client.post("/kiosk/api/health", json=report, headers=headers)
    assert answer.status_code == 200, answer.text
    response = await client.post("/kiosk/tickets", data=take(), headers=headers)
    assert response.headers["location"].endswith("?printed=0")


async def test_an_unknown_kiosk_address_is_a_kiosk_page(client: httpx.AsyncClient, enroll: Enroll):
    headers = with_language(await enroll(ASAHARA), "en")
    text = assert_kiosk_page(await client.get("/kiosk/nothing-here", headers=headers), 404, "en")
    assert "could not find" in text
    wrong = await client.delete("/kiosk/tickets", headers=headers)
    assert_kiosk_page(wrong, 405, "en")
    api = await client.get("/kiosk/api/nothing", headers=headers)
    assert api.headers["content-type"] == "application/json", "the API answers in JSON"


async def test_with_redis_down_a_kiosk_screen_asks_to_wait(tmp_path: Path) -> None:
    """No JSON, no 500: a calm page in plain words, which the kiosk can retry."""
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", estimate_interval=0.0)
    app = create_app(settings, clock=lambda: T0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"Cookie": f"{KIOSK_COOKIE}={'t' * 43}; madoguchi-lang=en"}
            for path in ("/kiosk/", "/kiosk/waits"):
                response = await http.get(path, headers=headers)
                text = assert_kiosk_page(response, 503, "en")
                assert "the system is busy" in text
                assert "Try again" in text
                assert response.headers["retry-after"] == "5"
            taken = await http.post("/kiosk/tickets", data=take(), headers=headers)
            assert "the system is busy" in assert_kiosk_page(taken, 503, "en")
