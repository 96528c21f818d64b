"""Public information in a real browser: the congestion page, busy hours, open data, the board.

The board's speech is observed in the page itself: an init script stands in for
``speechSynthesis.speak`` and records each utterance's text and language.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis

from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web import i18n

from .conftest import LiveServer, Restartable, assert_accessible, run_async
from conftest import T0

OFFICE = "kokurakita"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
TV = {"width": 1920, "height": 1080}
#: Records every utterance the page asks to speak, instead of speaking it.
RECORD_SPEECH = """
window.__spoken = [];
if (window.speechSynthesis) {
  window.speechSynthesis.speak = (utterance) => {
    window.__spoken.push({ text: utterance.text, lang: utterance.lang });
  };
}
"""
SAID_JA = "A 1番の番号札をお持ちの方、3番窓口へお越しください。"
SAID_EN = "Ticket number A 1, please come to counter 3."


def queue_do(settings: Settings, work: Callable[[QueueClient], Any]) -> None:
    """Run ``work`` against the queue, outside the server (as another web process would)."""

    async def run() -> None:
        redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
        try:
            await work(QueueClient(redis, settings))
        finally:
            await redis.aclose()

    run_async(run())


async def counter_three(queue: QueueClient) -> None:
    await queue.put_counter(OFFICE, "window-3", ["certs"], name="3番窓口", now=T0)
    await queue.open_counter(OFFICE, "window-3", now=T0)


def call_next(clock: Callable[[], float]) -> Callable[[QueueClient], Any]:
    async def work(queue: QueueClient) -> None:
        await queue.issue(OFFICE, "certs", now=clock())
        called = await queue.call_next(OFFICE, "window-3", now=clock())
        assert called is not None
        await queue.no_show(OFFICE, called.id, now=clock())  # the counter is free again

    return work


# -- the congestion page ------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_congestion_page_updates_live_when_a_ticket_is_taken(
    browser: Browser, server: LiveServer, settings: Settings, viewport: dict[str, int]
) -> None:
    context = browser.new_context(base_url=server.url, viewport=viewport)
    try:
        page = context.new_page()
        page.goto("/?lang=en")
        office = page.locator(f'[data-office="{OFFICE}"]')
        expect(office.get_by_role("heading", level=2)).to_have_text("Kokurakita Ward Office")
        certs = office.locator('[data-service="certs"]')
        expect(certs.locator('[data-field="waiting"]')).to_have_text("0")
        expect(page.locator("#live-state")).to_have_text("Updating live")
        assert_accessible(page)

        for n in range(4):
            queue_do(settings, lambda q, n=n: q.issue(OFFICE, "certs", now=T0 + n))
        expect(certs.locator('[data-field="waiting"]')).to_have_text("4")
        # Four three-minute certificates and no counter: the band moves, in words and shape.
        expect(certs.locator('[data-field="band-name"]')).not_to_have_text("Short wait")
        expect(certs.locator('[data-field="wait"]')).to_have_text(re.compile(r"about \d+ min"))
        expect(certs.locator("use")).not_to_have_attribute("href", "#band-icon-0")
        expect(page.locator("#updated")).not_to_have_text("now")
        assert_accessible(page)
    finally:
        context.close()


@pytest.mark.parametrize("language", i18n.LANGUAGES, ids=lambda language: language.code)
def test_every_public_information_page_is_accessible(
    context: BrowserContext, settings: Settings, language: i18n.Language
) -> None:
    lang = language.code
    queue_do(settings, lambda q: q.issue(OFFICE, "moving", now=T0))
    page = context.new_page()
    for path in ("/", f"/o/{OFFICE}/busy", "/open/", "/o/nowhere/busy", f"/o/{OFFICE}/board"):
        page.goto(f"{path}?lang={lang}")
        expect(page.locator("html")).to_have_attribute("lang", language.tag)
        expect(page.get_by_role("heading", level=1)).to_be_attached()
        assert_accessible(page)
    page.set_viewport_size(PHONE)
    page.goto(f"/?lang={lang}")
    assert_accessible(page)


def test_the_open_data_can_be_read_from_another_site(context: BrowserContext) -> None:
    page = context.new_page()
    answer = page.request.get("/open/waits.json", headers={"Origin": "https://example.org"})
    assert answer.ok
    assert answer.headers["access-control-allow-origin"] == "*"
    assert [s["service"] for s in answer.json()["offices"][0]["services"]] == [
        "certs",
        "moving",
        "care",
    ]


# -- the lobby board ----------------------------------------------------------------------


def open_board(context: BrowserContext, lang: str = "ja") -> Page:
    context.add_init_script(RECORD_SPEECH)
    page = context.new_page()
    page.set_viewport_size(TV)
    page.goto(f"/o/{OFFICE}/board?lang={lang}")
    start = page.locator("#start-button")
    if start.is_visible():  # a browser that needs a gesture before it plays sound
        assert_accessible(page)
        start.click()
    expect(page.locator("#start")).to_be_hidden()
    expect(page.locator("#board")).to_have_attribute("data-state", "live")
    return page


def spoken(page: Page, count: int) -> list[dict[str, str]]:
    page.wait_for_function("(n) => window.__spoken.length >= n", arg=count, timeout=15000)
    said: list[dict[str, str]] = page.evaluate("window.__spoken")
    return said


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_board_shows_and_announces_a_call(
    context: BrowserContext, server: LiveServer, settings: Settings, lang: str
) -> None:
    queue_do(settings, counter_three)
    page = open_board(context, lang)
    assert_accessible(page)
    queue_do(settings, call_next(server.clock))

    latest = page.locator(".call.latest")
    expect(latest.locator(".call-number")).to_have_text("A-001")
    expect(latest.locator(".call-counter")).to_have_text("3番窓口")
    # Japanese then English, said twice; the words come from the server.
    assert spoken(page, 4) == [
        {"text": SAID_JA, "lang": "ja-JP"},
        {"text": SAID_EN, "lang": "en-US"},
        {"text": SAID_JA, "lang": "ja-JP"},
        {"text": SAID_EN, "lang": "en-US"},
    ]
    # The waits moved too: the ticket was taken, then called.
    certs = page.locator('[data-service="certs"]')
    expect(certs.locator('[data-field="closed"]')).to_be_hidden()
    assert_accessible(page)


def test_the_board_keeps_only_the_latest_calls(
    context: BrowserContext, server: LiveServer, settings: Settings
) -> None:
    queue_do(settings, counter_three)
    page = open_board(context)

    async def many(queue: QueueClient) -> None:
        for _ in range(9):
            await queue.issue(OFFICE, "certs", now=server.clock())
            called = await queue.call_next(OFFICE, "window-3", now=server.clock())
            assert called is not None
            await queue.no_show(OFFICE, called.id, now=server.clock())

    queue_do(settings, many)
    expect(page.locator(".call.latest .call-number")).to_have_text("A-009")
    expect(page.locator(".call")).to_have_count(6)
    expect(page.locator(".call").last.locator(".call-number")).to_have_text("A-004")


# -- a board that loses its server ---------------------------------------------------------


def test_the_board_recovers_after_its_server_restarts(
    browser: Browser, restartable: Restartable, settings: Settings
) -> None:
    queue_do(settings, counter_three)
    context = browser.new_context(base_url=restartable.url)
    try:
        page = open_board(context)
        restartable.stop()  # the connection drops, and nothing answers for a while
        expect(page.locator("#board")).to_have_attribute("data-state", "lost")
        # A call made while the board is cut off is shown and announced once it is back.
        queue_do(settings, call_next(restartable.clock))
        restartable.start()
        expect(page.locator("#board")).to_have_attribute("data-state", "live", timeout=20000)
        expect(page.locator(".call.latest .call-number")).to_have_text("A-001")
        said = spoken(page, 4)
        assert [s["text"] for s in said] == [SAID_JA, SAID_EN, SAID_JA, SAID_EN]
        # It keeps following: the next call arrives over the new connection.
        queue_do(settings, call_next(restartable.clock))
        expect(page.locator(".call.latest .call-number")).to_have_text("A-002")
    finally:
        context.close()
