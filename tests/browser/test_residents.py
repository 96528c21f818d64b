"""The residents' phone pages in real Chromium, on a phone: take a ticket, watch the
place in line drop as counters call, get "your turn" (with sound and vibration),
cancel; the page survives a dropped connection; no axe-core violations anywhere."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from madoguchi.embedded import free_port
from madoguchi.queue import keys
from madoguchi.queue.model import Ticket
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from .conftest import LiveServer, assert_accessible
from .test_console import with_queue

OFFICE = "kokurakita"
LANGUAGES = ("ja", "ja-easy", "en", "zh-Hans", "ko", "vi")
#: Records the page's tones and vibrations (the page itself has no way to tell).
INSTRUMENT = """
window.__tones = 0;
window.__vibrations = [];
Object.defineProperty(Navigator.prototype, "vibrate", {
  configurable: true,
  value(pattern) { window.__vibrations.push(pattern); return true; },
});
const Original = window.AudioContext;
window.AudioContext = class extends Original {
  createOscillator() { window.__tones += 1; return super.createOscillator(); }
};
"""


@pytest.fixture
def phone(browser: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    """A phone-sized, touch, English-speaking browser."""
    opened = browser.new_context(
        base_url=server.url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
        locale="en-US",
    )
    opened.add_init_script(INSTRUMENT)
    yield opened
    opened.close()


class Proxy:
    """A TCP proxy in front of the server whose connections the test can cut, as when a
    phone changes networks (the browser's own offline switch leaves open streams be)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                self._close(end)

    def _close(self, end: socket.socket) -> None:
        with self._lock:
            self._open.discard(end)
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def cut(self) -> None:
        """Drop every connection open now."""
        with self._lock:
            ends = list(self._open)
        for end in ends:
            self._close(end)

    def close(self) -> None:
        self._listener.close()
        self.cut()


def open_counter(server: LiveServer, settings: Settings, counter: str, name: str) -> None:
    async def work(queue: QueueClient) -> None:
        await queue.open_counter(OFFICE, counter, ["certs"], now=server.clock(), name=name)

    with_queue(server, settings, work)


def issue(server: LiveServer, settings: Settings, count: int) -> list[Ticket]:
    async def work(queue: QueueClient) -> list[Ticket]:
        now = server.clock()
        return [(await queue.issue(OFFICE, "certs", now=now)).ticket for _ in range(count)]

    return with_queue(server, settings, work)


def call(server: LiveServer, settings: Settings, counter: str) -> Ticket | None:
    """The counter finishes whatever it holds and calls the next ticket."""

    async def work(queue: QueueClient) -> Ticket | None:
        now = server.clock()
        snapshot = await queue.snapshot(OFFICE, now=now)
        held = next(c.current for c in snapshot.counters if c.id == counter)
        if held:
            await queue.start(OFFICE, held, now=now)
            await queue.finish(OFFICE, held, now=now)
        return await queue.call_next(OFFICE, counter, now=now)

    return with_queue(server, settings, work)


def take_ticket(page: Page) -> str:
    """Take a ticket for certificates on the office page; the ticket's number."""
    page.goto(f"/o/{OFFICE}")
    page.get_by_label(re.compile("Certificates")).check()
    page.get_by_role("button", name="Take a ticket").click()
    page.wait_for_url(re.compile(r"/o/kokurakita/t/[A-Za-z0-9_-]{22}$"))
    number = page.locator(".ticket-number").inner_text()
    assert re.fullmatch(r"A-\d{3}", number)
    return number


def test_take_a_ticket_watch_it_move_and_get_your_turn(
    phone: BrowserContext, server: LiveServer, settings: Settings
) -> None:
    open_counter(server, settings, "c1", "3")
    issue(server, settings, 2)
    page = phone.new_page()
    page.goto(f"/o/{OFFICE}")
    expect(page.get_by_text("Open: you can take a ticket now.")).to_be_visible()
    assert_accessible(page)
    take_ticket(page)
    position = page.locator("#position")
    expect(position).to_have_text("You are number 3 in line")
    expect(position).to_have_attribute("aria-live", "polite")
    expect(page.locator("#live-state")).to_have_text("Updating live")
    assert_accessible(page)

    call(server, settings, "c1")
    expect(position).to_have_text("You are number 2 in line")
    expect(page.locator("#ahead-count")).to_have_text("1 ticket ahead of you")
    call(server, settings, "c1")
    expect(position).to_have_text("You are next")
    assert page.evaluate("window.__tones") == 0

    call(server, settings, "c1")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Your turn — counter 3")
    expect(alert).to_contain_text("Please go to counter 3 now.")
    expect(page.locator("#waiting")).to_be_hidden()
    expect(page.locator("#notify")).to_be_hidden()
    page.wait_for_function("window.__tones > 0")
    assert page.evaluate("window.__vibrations.length") == 1
    size = page.locator(".call-text").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 32
    assert_accessible(page)


def test_cancel_a_ticket_with_a_confirm_step(
    phone: BrowserContext, server: LiveServer, settings: Settings
) -> None:
    open_counter(server, settings, "c1", "3")
    page = phone.new_page()
    number = take_ticket(page)
    page.get_by_role("link", name="Cancel my ticket").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Cancel ticket {number}?")
    assert_accessible(page)
    page.get_by_role("button", name="Yes, cancel my ticket").click()
    expect(page.locator("#state")).to_have_text("This ticket was cancelled.")
    expect(page.get_by_role("link", name="Take a new ticket")).to_be_visible()
    assert_accessible(page)


def test_the_page_survives_a_dropped_connection(
    browser: Browser, server: LiveServer, settings: Settings
) -> None:
    open_counter(server, settings, "c1", "5")
    issue(server, settings, 3)
    port = int(server.url.rsplit(":", 1)[1])
    proxy = Proxy(port)
    context = browser.new_context(
        base_url=f"http://localhost:{proxy.port}",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        locale="en-US",
    )
    try:
        page = context.new_page()
        take_ticket(page)
        position = page.locator("#position")
        expect(position).to_have_text("You are number 4 in line")
        live = page.locator("#live-state")
        expect(live).to_have_text("Updating live")
        proxy.cut()
        call(server, settings, "c1")  # while the stream is down
        call(server, settings, "c1")
        # The browser reconnects by itself (Last-Event-ID) and is sent what it missed.
        expect(position).to_have_text("You are number 2 in line", timeout=15_000)
        expect(live).to_have_text("Updating live")
        call(server, settings, "c1")
        expect(position).to_have_text("You are next")
        proxy.cut()
        call(server, settings, "c1")
        expect(page.get_by_role("alert")).to_contain_text("Your turn — counter 5", timeout=15_000)
    finally:
        context.close()
        proxy.close()


def test_tell_me_when_by_email(
    phone: BrowserContext, server: LiveServer, settings: Settings
) -> None:
    server.app.state.settings = Settings(
        redis_url=settings.redis_url, smtp_host="127.0.0.1", estimate_interval=0.0
    )
    open_counter(server, settings, "c1", "3")
    issue(server, settings, 4)
    page = phone.new_page()
    take_ticket(page)
    form = page.locator("#notify-form")
    form.get_by_label("Tell me when this many tickets are ahead of me").select_option("2")
    form.get_by_label("E-mail address (optional)").fill("hanako@example.jp")
    form.get_by_role("button", name="Tell me").click()
    expect(page.get_by_text("Saved: we will tell you.")).to_be_visible()
    expect(page.get_by_text("You will be told when 2 tickets are ahead of you.")).to_be_visible()
    assert_accessible(page)


#: The browser's push service is outside (and unreachable here): it answers with a
#: subscription at a local endpoint, as a real one answers with its own.
FAKE_PUSH_SERVICE = """
PushManager.prototype.getSubscription = async () => null;
PushManager.prototype.subscribe = async function (options) {
  sessionStorage.setItem("subscribedWith", options.applicationServerKey.byteLength);
  return { toJSON: () => ({
    endpoint: "http://127.0.0.1:9/push/abc",
    keys: { p256dh: "BAAA", auth: "AAAA" },
  }) };
};
"""


def test_tell_me_when_by_push(browser: Browser, server: LiveServer, settings: Settings) -> None:
    server.app.state.settings = Settings(
        redis_url=settings.redis_url, push_services=("http://127.0.0.1:*",), estimate_interval=0.0
    )
    open_counter(server, settings, "c1", "3")
    issue(server, settings, 4)
    context = browser.new_context(
        base_url=server.url, viewport={"width": 390, "height": 844}, is_mobile=True, locale="en-US"
    )
    context.grant_permissions(["notifications"])
    context.add_init_script(FAKE_PUSH_SERVICE)
    try:
        page = context.new_page()
        take_ticket(page)
        form = page.locator("#notify-form")
        expect(page.locator("#notify")).to_be_visible()  # shown by the script: push works here
        form.get_by_label("Show a notification on this phone").check()
        form.get_by_role("button", name="Tell me").click()
        expect(page.get_by_text("Saved: we will tell you.")).to_be_visible()
        assert (
            page.evaluate("sessionStorage.getItem('subscribedWith')") == "65"
        )  # the VAPID public key
        registered = page.evaluate(
            "navigator.serviceWorker.getRegistration('/').then(r => r && r.scope)"
        )
        assert registered == f"{server.url}/"
        token = page.url.rsplit("/", 1)[1].split("?")[0]

        async def stored(queue: QueueClient) -> dict[str, str]:
            ticket = await queue.ticket(OFFICE, token, now=server.clock())
            found: dict[str, str] = await queue.redis.hgetall(keys.contact(OFFICE, ticket.id))
            return found

        contact = with_queue(server, settings, stored)
        assert json.loads(contact["push"])["endpoint"] == "http://127.0.0.1:9/push/abc"
        assert contact["email"] == ""
    finally:
        context.close()


def test_closed_office_and_unknown_ticket_pages(phone: BrowserContext) -> None:
    page = phone.new_page()
    page.goto(f"/o/{OFFICE}")
    expect(
        page.get_by_text("Closed: no counter is taking tickets now.", exact=False)
    ).to_be_visible()
    expect(page.get_by_role("button", name="Take a ticket")).to_have_count(0)
    assert_accessible(page)
    response = page.goto(f"/o/{OFFICE}/t/AAAAAAAAAAAAAAAAAAAAAA")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("We cannot find this ticket.")
    assert_accessible(page)


def test_the_poster_prints_a_large_code(phone: BrowserContext) -> None:
    page = phone.new_page()
    page.goto(f"/o/{OFFICE}/poster")
    expect(page.get_by_role("img", name=re.compile("QR code of"))).to_be_visible()
    assert_accessible(page)
    page.emulate_media(media="print")
    expect(page.locator(".public-bar")).to_be_hidden()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_is_accessible(
    phone: BrowserContext, server: LiveServer, settings: Settings, lang: str
) -> None:
    open_counter(server, settings, "c1", "3")
    (ticket,) = issue(server, settings, 1)
    page = phone.new_page()
    for path in (f"/o/{OFFICE}", f"/o/{OFFICE}/t/{ticket.token}", f"/o/{OFFICE}/poster"):
        page.goto(f"{path}?lang={lang}")
        assert_accessible(page)


def test_usable_at_200_percent_zoom(
    browser: Browser, server: LiveServer, settings: Settings
) -> None:
    """At 200 % zoom (a 195 px wide layout viewport) nothing needs a sideways scroll."""
    open_counter(server, settings, "c1", "3")
    (ticket,) = issue(server, settings, 1)
    context = browser.new_context(
        base_url=server.url, viewport={"width": 195, "height": 422}, locale="en-US"
    )
    try:
        page = context.new_page()
        for path in (f"/o/{OFFICE}", f"/o/{OFFICE}/t/{ticket.token}"):
            page.goto(path)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways by {overflow} px"
            for target in page.locator("button:visible, a.button:visible, select").all():
                box = target.bounding_box()
                assert box is not None
                assert box["height"] >= 44, target
                assert box["width"] >= 44, target
    finally:
        context.close()
