"""The kiosk screens in real Chromium, as a resident meets them: a portrait touch screen
(1080 × 1920, touch events), an enrolled kiosk's device cookie, every screen in every
language checked by axe-core and by a stricter check of our own (targets at least
64 px both ways, text contrast at least 7:1).

Outside things are stood in for only where the browser cannot have them: the print
dialog (``window.print`` is counted, then the receipt is printed to PDF through
DevTools), the speech engine (``speechSynthesis.speak`` is recorded), and, for one
test, a kiosk whose camera is unplugged (``enumerateDevices`` lists none). The page's
timers run on Playwright's clock where a test needs a minute to pass: the tests
jump it forward (``fast_forward``), so that each due timer fires once, as after a
minute of real time.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pypdf import PdfReader
from redis.asyncio import Redis

from madoguchi import __version__
from madoguchi.kiosk.devices import PLAIN_KIOSK_COOKIE, Kiosk, KioskStore, Printer
from madoguchi.queue import keys
from madoguchi.queue.model import Channel, Office, Ticket
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from .conftest import LiveServer, Restartable, assert_accessible, run_async
from conftest import SERVICES, T0
from kiosks import ASAHARA, enrolled

T = TypeVar("T")
KIOSK = ASAHARA
LANGUAGES = ("ja", "ja-easy", "en", "zh-Hans", "ko", "vi")
PORTRAIT = {"width": 1080, "height": 1920}
#: Stand-ins for the print dialog and the speech engine, and a record of their use.
RECORDER = """
window.__printed = 0;
window.print = () => { window.__printed += 1; };
window.__spoken = [];
if (window.speechSynthesis) {
  speechSynthesis.speak = (u) => { window.__spoken.push([u.text, u.lang]); };
}
"""
NO_CAMERA = """
navigator.mediaDevices.enumerateDevices = async () => [
  { kind: "audioinput", deviceId: "mic", label: "", groupId: "g" },
];
"""
#: Our stricter check: every visible target at least 64 × 64 px, every visible text at
#: least 7:1 against the background it is drawn on (alpha-blended up the ancestors).
STRICT = """
() => {
  const parse = (value) => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const blend = (top, below) => {
    const a = top[3] + below[3] * (1 - top[3]);
    if (a === 0) return [0, 0, 0, 0];
    const mix = (i) => (top[i] * top[3] + below[i] * below[3] * (1 - top[3])) / a;
    return [mix(0), mix(1), mix(2), a];
  };
  const background = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      layers.push(parse(getComputedStyle(node).backgroundColor));
    }
    let colour = [255, 255, 255, 1];
    for (const layer of layers.reverse()) colour = blend(layer, colour);
    return colour;
  };
  const luminance = ([r, g, b]) => {
    const lin = (c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const problems = [];
  const targets = "a[href], button, input:not([type=hidden]), select, textarea, "
    + "[role=button], [role=switch]";
  for (const el of document.querySelectorAll(targets)) {
    if (!el.checkVisibility()) continue;
    const box = el.getBoundingClientRect();
    if (box.width < 64 || box.height < 64) {
      const size = `${Math.round(box.width)}x${Math.round(box.height)}`;
      problems.push(`target ${size}: ${el.outerHTML.slice(0, 80)}`);
    }
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el.checkVisibility()) continue;
    const back = background(el);
    const ink = blend(parse(getComputedStyle(el).color), back);
    const [hi, lo] = [luminance(ink), luminance(back)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const text = node.textContent.trim().slice(0, 40);
    if (ratio < 7) problems.push(`contrast ${ratio.toFixed(2)}: "${text}"`);
  }
  return problems;
}
"""


# -- the world: a kiosk of kokurakita, enrolled, in a portrait touch browser ------------


async def _in_redis(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        return await work(redis)
    finally:
        await redis.aclose()


def in_redis(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    result: T = run_async(_in_redis(settings, work))
    return result


def enroll(settings: Settings, kiosk: Kiosk) -> str:
    """Register and enroll ``kiosk``; its device token."""

    return in_redis(settings, lambda redis: enrolled(KioskStore(redis), kiosk))


def issue(
    server: LiveServer, settings: Settings, service: str, channel: Channel = Channel.KIOSK
) -> Ticket:
    async def work(redis: Redis) -> Ticket:
        queue = QueueClient(redis, settings)
        issued = await queue.issue("kokurakita", service, now=server.clock(), channel=channel)
        return issued.ticket

    return in_redis(settings, work)


def waiting(settings: Settings, service: str) -> int:
    async def work(redis: Redis) -> int:
        snapshot = await QueueClient(redis, settings).snapshot("kokurakita", now=T0)
        return sum(len(line) for line in snapshot.lines.get(service, {}).values())

    return in_redis(settings, work)


def kiosk_context(browser: Browser, url: str, token: str, **options: Any) -> BrowserContext:
    context = browser.new_context(
        base_url=url, viewport=PORTRAIT, has_touch=True, locale="ja-JP", **options
    )
    context.add_cookies([{"name": PLAIN_KIOSK_COOKIE, "value": token, "url": url}])
    context.add_init_script(RECORDER)
    return context


@pytest.fixture
def kiosk(browser: Browser, server: LiveServer, settings: Settings) -> Iterator[Page]:
    """A page of the enrolled kiosk ``asahara`` of kokurakita (80 mm browser printing)."""
    context = kiosk_context(browser, server.url, enroll(settings, KIOSK))
    yield context.new_page()
    context.close()


def strict(page: Page) -> None:
    """Our own check, stricter than WCAG AA: 64 px targets, 7:1 contrast."""
    problems = page.evaluate(STRICT)
    assert problems == [], f"{page.url}:\n" + "\n".join(problems)


def take_ticket(page: Page, service: str = "証明書") -> str:
    """Tap "take a ticket" and the service; the ticket's number as shown."""
    page.goto("/kiosk/")
    page.locator('a[href="/kiosk/tickets"]').tap()
    page.get_by_role("button", name=re.compile(service)).tap()
    page.wait_for_url(re.compile(r"/kiosk/tickets/[A-Za-z0-9_-]{22}"))
    number = page.locator(".ticket .number").inner_text()
    assert re.fullmatch(r"[A-Z]{1,2}-\d{3}", number), number
    return number


def pdf_text(page: Page) -> tuple[str, tuple[float, float]]:
    """The page printed to PDF through DevTools, as the print stylesheet lays it out:
    its text and the first sheet's size in millimetres."""
    reader = PdfReader(io.BytesIO(page.pdf(prefer_css_page_size=True)))
    box = reader.pages[0].mediabox
    size = (float(box.width) * 25.4 / 72, float(box.height) * 25.4 / 72)
    text = "\n".join(p.extract_text() for p in reader.pages)
    # Fonts may map a CJK glyph to its Kangxi radical twin (⼩ for 小): compare as NFKC.
    return unicodedata.normalize("NFKC", text), size


# -- tickets ------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 58])
def test_a_ticket_is_printed_as_a_receipt(
    browser: Browser, server: LiveServer, settings: Settings, width: int
) -> None:
    printer = Printer("browser", width_mm=width)  # type: ignore[arg-type]
    token = enroll(settings, Kiosk(**{**KIOSK.__dict__, "printer": printer}))
    context = kiosk_context(browser, server.url, token)
    page = context.new_page()
    number = take_ticket(page)
    page.wait_for_function("window.__printed === 1")
    assert "print=1" not in page.url, "a reload does not print it again"
    assert_accessible(page)
    strict(page)
    text, (paper_width, _) = pdf_text(page)
    assert abs(paper_width - width) < 1, paper_width
    assert "証明書" in text
    assert "小倉北区役所" in text
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", text), text
    # On screen the number is in the heading and on the ticket; on paper only once.
    assert text.count(number) == 1, "only the receipt is printed"
    # The QR code on the receipt: a path, drawn by the server (no image to fetch).
    assert page.locator(".receipt svg path").count() == 1
    page.reload()
    assert page.evaluate("window.__printed") == 0
    context.close()


def test_a_double_tap_issues_one_ticket(kiosk: Page, settings: Settings) -> None:
    kiosk.goto("/kiosk/tickets")
    button = kiosk.get_by_role("button", name=re.compile("証明書"))
    # Both taps in one go, the second while the first is on its way. (Two of Playwright's
    # touchscreen taps can hang: each waits for the page to handle it, and the first one's
    # navigation may land in the middle of the second.)
    button.evaluate("button => { button.click(); button.click(); }")
    kiosk.wait_for_url(re.compile(r"/kiosk/tickets/[A-Za-z0-9_-]{22}"))
    kiosk.wait_for_function("window.__printed === 1")
    assert waiting(settings, "certs") == 1


def test_a_kiosk_of_another_office_cannot_take_tickets_here(
    browser: Browser, server: LiveServer, settings: Settings
) -> None:
    moji = Office("moji", "門司区役所", "Moji Ward Office")

    async def seed(redis: Redis) -> None:
        queue = QueueClient(redis, settings)
        await queue.put_office(moji, now=T0)
        for service in SERVICES:
            await queue.put_service("moji", service, now=T0)

    in_redis(settings, seed)
    ours = kiosk_context(browser, server.url, enroll(settings, KIOSK))
    page = ours.new_page()
    # The page's first health report (which renews the device cookie) lands before the
    # cookie is swapped below, so that it cannot put kokurakita's cookie back.
    with page.expect_response(lambda answer: answer.url.endswith("/kiosk/api/health")):
        page.goto("/kiosk/tickets")
    # The screen of kokurakita's kiosk, with the device cookie of moji's.
    other = enroll(settings, Kiosk(**{**KIOSK.__dict__, "id": "dairi", "office": "moji"}))
    ours.add_cookies([{"name": PLAIN_KIOSK_COOKIE, "value": other, "url": server.url}])
    with page.expect_navigation() as refused:
        page.get_by_role("button", name=re.compile("証明書")).tap()
    response = refused.value
    assert response is not None
    assert response.status == 403
    assert response.headers["content-type"].startswith("text/html")
    expect(page.locator(".notice")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "ja"
    assert waiting(settings, "certs") == 0
    assert_accessible(page)
    strict(page)
    ours.close()


# -- voice, camera, language and furigana ----------------------------------------------------


def test_voice_guidance_reads_each_screen_and_can_be_turned_off(kiosk: Page) -> None:
    kiosk.goto("/kiosk/")
    kiosk.wait_for_function("window.__spoken.length === 1")
    text, lang = kiosk.evaluate("window.__spoken[0]")
    assert text == kiosk.locator("#instruction").inner_text().strip()
    assert lang == "ja-JP"
    voice = kiosk.locator("#voice")
    expect(voice).to_have_attribute("aria-checked", "true")
    voice.tap()
    expect(voice).to_have_attribute("aria-checked", "false")
    kiosk.locator('a[href="/kiosk/waits"]').tap()
    kiosk.wait_for_url("**/kiosk/waits")
    expect(kiosk.locator("#voice")).to_have_attribute("aria-checked", "false")
    kiosk.wait_for_timeout(300)
    assert kiosk.evaluate("window.__spoken") == [], "voice off: nothing read out"
    kiosk.locator("#voice").tap()
    kiosk.wait_for_function("window.__spoken.length === 1")


def test_without_a_camera_the_consult_choice_offers_a_ticket(
    browser: Browser, server: LiveServer, settings: Settings
) -> None:
    context = kiosk_context(browser, server.url, enroll(settings, KIOSK))
    context.add_init_script(NO_CAMERA)
    page = context.new_page()
    page.goto("/kiosk/")
    consult = page.locator("#consult")
    expect(consult).to_have_class(re.compile("unavailable"))
    expect(consult.locator(".no-camera")).to_be_visible()
    assert_accessible(page)
    strict(page)
    consult.tap()
    page.wait_for_url("**/kiosk/tickets")
    expect(page.get_by_role("button", name=re.compile("証明書"))).to_be_visible()
    context.close()


def test_language_switching_and_furigana(kiosk: Page) -> None:
    kiosk.goto("/kiosk/")
    kiosk.locator('a[href="/kiosk/language"]').tap()
    names = kiosk.locator(".choices a")
    expect(names).to_have_count(6)
    assert [names.nth(i).get_attribute("lang") for i in range(6)] == [
        "ja",
        "ja-x-easy",
        "en",
        "zh-Hans",
        "ko",
        "vi",
    ]
    kiosk.locator('a[lang="en"]').tap()
    kiosk.wait_for_url("**/kiosk/?lang=en")
    assert kiosk.locator("html").get_attribute("lang") == "en"
    kiosk.locator('a[href="/kiosk/tickets"]').tap()
    expect(kiosk.get_by_role("button", name=re.compile("Certificates"))).to_be_visible()
    assert kiosk.locator("html").get_attribute("lang") == "en", "the choice stays"
    expect(kiosk.locator('a[href*="furigana"]')).to_have_count(0)  # Japanese only

    kiosk.locator("a.home").tap()  # the way back, on every screen
    kiosk.wait_for_url(re.compile(r"/kiosk/$"))
    kiosk.locator('a[href="/kiosk/language"]').tap()
    kiosk.locator('a[lang="ja"]').tap()
    kiosk.wait_for_url("**/kiosk/?lang=ja")
    assert kiosk.locator("ruby").count() == 0
    furigana = kiosk.locator('a[href*="furigana=1"]')
    expect(furigana).to_have_attribute("aria-checked", "false")
    furigana.tap()
    kiosk.wait_for_url("**/kiosk/?furigana=1")
    expect(kiosk.locator("ruby").first).to_be_attached()
    expect(kiosk.locator('a[href*="furigana=0"]')).to_have_attribute("aria-checked", "true")
    kiosk.locator('a[href="/kiosk/waits"]').tap()
    kiosk.wait_for_url("**/kiosk/waits")
    expect(kiosk.locator("ruby").first).to_be_attached()  # remembered on every screen
    kiosk.locator('a[href*="furigana=0"]').tap()
    kiosk.wait_for_url("**/kiosk/waits?furigana=0")
    assert kiosk.locator("ruby").count() == 0

    kiosk.goto("/kiosk/language")
    kiosk.locator('a[lang="ja-x-easy"]').tap()
    kiosk.wait_for_url("**/kiosk/?lang=ja-easy")
    assert kiosk.locator("html").get_attribute("lang") == "ja-x-easy"
    expect(kiosk.locator("ruby").first).to_be_attached()  # easy Japanese: always


# -- health ---------------------------------------------------------------------------------


def test_the_kiosk_reports_its_health(kiosk: Page, settings: Settings) -> None:
    kiosk.clock.install()
    with kiosk.expect_response("**/kiosk/api/health") as first:
        kiosk.goto("/kiosk/")
    assert first.value.status == 200, first.value.text()

    async def latest(redis: Redis) -> dict[str, Any]:
        raw = await redis.hget(keys.kiosk_health(KIOSK.id), "report")
        assert raw is not None
        report: dict[str, Any] = json.loads(raw)
        return report

    report = in_redis(settings, latest)
    # Chromium's fake devices: two cameras (face and document) and a microphone.
    assert report["cameras"] == 2
    assert report["microphones"] >= 1
    assert report["printer"] == "unknown", "a browser cannot see its printer's paper"
    assert report["version"] == __version__
    assert isinstance(report["round_trip_ms"], (int, float))
    # And again every 30 s, without a touch.
    with kiosk.expect_response("**/kiosk/api/health") as again:
        kiosk.clock.fast_forward(30_000)
    assert again.value.status == 200


# -- the idle reset ------------------------------------------------------------------------


def test_a_minute_without_a_touch_clears_everything(kiosk: Page) -> None:
    kiosk.clock.install()
    kiosk.goto("/kiosk/?lang=en")
    kiosk.locator("#voice").tap()
    expect(kiosk.locator("#voice")).to_have_attribute("aria-checked", "false")
    number = take_ticket(kiosk, "Certificates")
    assert kiosk.locator("html").get_attribute("lang") == "en"

    # A touch within the minute starts it again.
    kiosk.clock.fast_forward(45_000)
    kiosk.locator("#instruction").tap()
    kiosk.clock.fast_forward(45_000)
    expect(kiosk.locator(".ticket .number")).to_have_text(number)

    kiosk.clock.fast_forward(16_000)
    kiosk.wait_for_url(re.compile(r"/kiosk/$"))
    expect(kiosk.locator("html")).to_have_attribute("lang", "ja")
    expect(kiosk.locator("#voice")).to_have_attribute("aria-checked", "true")
    expect(kiosk.locator("body")).not_to_contain_text(number)
    kiosk.wait_for_function("window.__spoken.length === 1")  # the voice is back
    # Nothing was kept: the next screen is Japanese too.
    kiosk.locator('a[href="/kiosk/waits"]').tap()
    kiosk.wait_for_url("**/kiosk/waits")
    assert kiosk.locator("html").get_attribute("lang") == "ja"


# -- when the server goes away ---------------------------------------------------------------


def test_the_server_going_away_and_coming_back(
    browser: Browser, restartable: Restartable, settings: Settings
) -> None:
    context = kiosk_context(browser, restartable.url, enroll(settings, KIOSK))
    page = context.new_page()
    page.clock.install()
    number = take_ticket(page)
    offline = page.locator("#offline")
    expect(offline).to_be_hidden()

    restartable.stop()
    page.clock.fast_forward(11_000)  # the next heartbeat finds no server
    expect(offline).to_be_visible()
    assert_accessible(page)
    strict(page)
    # What still works: the ticket on screen.
    page.locator("#offline-back").tap()
    expect(offline).to_be_hidden()
    expect(page.locator(".ticket .number")).to_have_text(number)
    # A tap that needs the server brings the calm screen back, never an error page.
    page.locator("a.home").tap()
    expect(offline).to_be_visible()
    assert re.search(r"/kiosk/tickets/", page.url)
    # A minute later, still away: the ticket is gone, even from behind the calm screen.
    page.clock.fast_forward(61_000)
    expect(page.locator("#offline-back")).to_be_hidden()
    expect(page.locator(".ticket")).to_have_count(0)
    expect(offline).to_be_visible()

    restartable.start()
    page.clock.fast_forward(4_000)  # the next retry finds it, and goes where the tap asked
    page.wait_for_url(re.compile(r"/kiosk/$"))
    expect(page.locator("#offline")).to_be_hidden()
    context.close()


# -- every screen, every language: axe-core and our own stricter check ------------------------


def test_every_screen_in_every_language_is_accessible(
    kiosk: Page, server: LiveServer, settings: Settings
) -> None:
    in_person = issue(server, settings, "certs")
    screens = [
        "/kiosk/",
        "/kiosk/consult",
        "/kiosk/tickets",
        "/kiosk/waits",
        "/kiosk/language",
        f"/kiosk/tickets/{in_person.token}",
        f"/kiosk/tickets/{in_person.token}?printed=0",
        "/kiosk/tickets/AAAAAAAAAAAAAAAAAAAAAA",  # the error page
    ]
    for lang in LANGUAGES:
        kiosk.goto(f"/kiosk/?lang={lang}")
        for path in screens:
            kiosk.goto(path)
            assert kiosk.locator("html").get_attribute("lang") in (lang, "ja-x-easy")
            assert_accessible(kiosk)
            strict(kiosk)
    kiosk.goto("/kiosk/?lang=ja&furigana=1")
    for path in screens:
        kiosk.goto(path)
        assert_accessible(kiosk)
        strict(kiosk)
