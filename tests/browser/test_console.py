"""The counter console in real Chromium: the whole flow at one counter, and two consoles at once."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis

from madoguchi.queue.model import Ticket, TicketStatus
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import StaffAccount

from .conftest import LiveServer, assert_accessible, sign_in

OFFICE = "kokurakita"
T = TypeVar("T")


async def _with_queue(settings: Settings, work: Callable[[QueueClient], Awaitable[T]]) -> T:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        return await work(QueueClient(redis, settings))
    finally:
        await redis.aclose()


def with_queue(
    server: LiveServer, settings: Settings, work: Callable[[QueueClient], Awaitable[T]]
) -> T:
    """Run ``work`` against the queue, as another part of the system would."""
    result: T = server.run(_with_queue(settings, work))
    return result


def issue(server: LiveServer, settings: Settings, *services: str) -> list[Ticket]:
    async def work(queue: QueueClient) -> list[Ticket]:
        now = server.clock()
        return [(await queue.issue(OFFICE, s, now=now + n)).ticket for n, s in enumerate(services)]

    return with_queue(server, settings, work)


def status_of(server: LiveServer, settings: Settings, ticket: Ticket) -> TicketStatus:
    async def work(queue: QueueClient) -> Ticket:
        return await queue.ticket(OFFICE, ticket.id, now=server.clock())

    return with_queue(server, settings, work).status


def open_counter(page: Page, counter: str, services: set[str]) -> None:
    """Pick ``counter`` and ``services`` on the picker (the page is on it) and open it."""
    page.get_by_label("Counter", exact=True).fill(counter)
    for box in page.get_by_role("group", name="Services to serve").get_by_role("checkbox").all():
        box.set_checked(box.get_attribute("value") in services)
    page.get_by_role("button", name="Open counter").click()
    expect(page).to_have_url(f"/staff/console/{OFFICE}/{counter}")
    expect(page.locator("#live-state")).to_have_text("Live")
    expect(page.locator("#counter-state")).to_have_text("Open")


@pytest.fixture
def second(browser: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    """Another browser (its own cookies), on the smaller laptop screen."""
    opened = browser.new_context(base_url=server.url, viewport={"width": 1024, "height": 700})
    yield opened
    opened.close()


def test_one_counter_through_the_whole_flow(
    context: BrowserContext,
    server: LiveServer,
    settings: Settings,
    make_staff: Callable[..., StaffAccount],
) -> None:
    make_staff("ito", services=("certs", "moving"))
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 720})
    sign_in(page, "ito")
    page.get_by_role("link", name="Counter console").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Open a counter")
    # Only her in-person services are offered: "care" is remote.
    boxes = page.get_by_role("group", name="Services to serve").get_by_role("checkbox")
    expect(boxes).to_have_count(2)
    assert_accessible(page)  # picking

    open_counter(page, "1", {"certs"})
    status = page.get_by_role("status")
    call = page.get_by_role("button", name="Call next")
    expect(call).to_be_enabled()
    expect(page.locator("#counter-waiting")).to_have_text("0")
    expect(page.locator("#no-ticket")).to_be_visible()
    assert_accessible(page)  # idle

    first, second_, third, moving = issue(server, settings, "certs", "certs", "certs", "moving")
    expect(page.locator("#counter-waiting")).to_have_text("3")
    expect(page.locator('#waiting-rows tr[data-service="moving"] .waiting-count')).to_have_text("1")

    # The shortcut: N, with the focus outside any field.
    expect(call).to_have_attribute("aria-keyshortcuts", "N")
    page.keyboard.press("n")
    expect(status).to_have_text(f"Called {first.number} (Certificates).")
    expect(page.locator("#ticket-number")).to_have_text(first.number)
    expect(page.locator("#ticket-service")).to_have_text("Certificates")
    expect(page.locator("#ticket-status")).to_contain_text("waiting for the resident")
    expect(page.locator("#ticket-wait")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(page.locator("#counter-waiting")).to_have_text("2")
    expect(call).to_be_disabled()
    expect(page.locator("#call-hint")).to_contain_text(f"Finish {first.number}")
    assert_accessible(page)  # with a ticket

    page.get_by_role("button", name="Recall").click()
    expect(status).to_have_text(f"Called {first.number} again.")
    page.get_by_role("button", name="No-show").click()
    expect(status).to_have_text(f"{first.number} marked as a no-show.")
    expect(page.locator("#no-ticket")).to_be_visible()
    assert status_of(server, settings, first) is TicketStatus.NO_SHOW

    call.click()
    expect(page.locator("#ticket-number")).to_have_text(second_.number)
    page.get_by_role("button", name="Start").click()
    expect(status).to_have_text(f"Service for {second_.number} started.")
    expect(page.locator("#ticket-status")).to_have_text("Serving")
    expect(page.locator("#ticket-since-label")).to_have_text("Serving for")
    expect(page.get_by_role("button", name="Start")).to_be_disabled()
    page.get_by_label("Transfer to").select_option("moving")
    page.get_by_role("button", name="Transfer", exact=True).click()
    expect(status).to_have_text(f"{second_.number} transferred to Moving in and out.")
    expect(page.locator("#no-ticket")).to_be_visible()
    expect(page.locator('#waiting-rows tr[data-service="moving"] .waiting-count')).to_have_text("2")
    assert status_of(server, settings, second_) is TicketStatus.WAITING

    # With the shortcut turned off, N calls no one; the button still does.
    page.get_by_label("Call next with the N key").uncheck()
    page.keyboard.press("n")
    call.click()
    expect(status).to_have_text(f"Called {third.number} (Certificates).")
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="Finish").click()
    expect(status).to_have_text(f"{third.number} finished.")
    assert status_of(server, settings, third) is TicketStatus.DONE

    # This counter serves certificates only: the moving tickets are not for it.
    call.click()
    expect(status).to_have_text("No one is waiting for this counter.")
    assert status_of(server, settings, moving) is TicketStatus.WAITING

    page.get_by_role("button", name="Pause").click()
    expect(status).to_have_text("Counter paused: no tickets will be called.")
    expect(page.locator("#counter-state")).to_have_text("Paused")
    expect(call).to_be_disabled()
    page.get_by_label("Call next with the N key").check()
    page.keyboard.press("n")
    expect(status).to_have_text("The counter is paused. Resume it to call tickets.")
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("Counter open: you can call tickets.")
    expect(call).to_be_enabled()

    # The page remembers its counter: the console link leads back to it.
    page.goto("/staff/")
    page.get_by_role("link", name="Counter console").click()
    expect(page).to_have_url(f"/staff/console/{OFFICE}/1")


def test_two_consoles_see_each_other_live(
    context: BrowserContext,
    second: BrowserContext,
    server: LiveServer,
    settings: Settings,
    make_staff: Callable[..., StaffAccount],
) -> None:
    make_staff("ito", services=("certs",))
    make_staff("kato", services=("certs",), name="加藤 まこと")
    a = context.new_page()
    sign_in(a, "ito")
    a.goto("/staff/console")
    open_counter(a, "1", {"certs"})
    b = second.new_page()
    sign_in(b, "kato")
    b.goto("/staff/console")
    open_counter(b, "2", {"certs"})

    one, two = issue(server, settings, "certs", "certs")
    for page in (a, b):
        expect(page.locator("#counter-waiting")).to_have_text("2")
        certs = page.locator('#waiting-rows tr[data-service="certs"]')
        expect(certs.locator(".waiting-count")).to_have_text("2")
        expect(certs.locator("td").last).to_have_text("2")  # counters open: A's and B's

    a.get_by_role("button", name="Call next").click()
    expect(a.locator("#ticket-number")).to_have_text(one.number)
    expect(b.locator("#counter-waiting")).to_have_text("1")  # B sees A's call, live
    b.get_by_role("button", name="Call next").click()
    expect(b.locator("#ticket-number")).to_have_text(two.number)
    expect(a.locator("#counter-waiting")).to_have_text("0")
    # Everything B needs fits the small screen, without scrolling.
    for name in ("Call next", "Recall", "No-show", "Start", "Finish", "Transfer"):
        expect(b.get_by_role("button", name=name, exact=True)).to_be_in_viewport()
    assert_accessible(b)

    b.get_by_role("button", name="Start").click()
    b.get_by_role("button", name="Finish").click()
    expect(b.get_by_role("status")).to_have_text(f"{two.number} finished.")
    [last] = issue(server, settings, "certs")
    expect(b.locator("#counter-waiting")).to_have_text("1")
    a.get_by_role("button", name="No-show").click()
    a.get_by_role("button", name="Call next").click()
    expect(a.locator("#ticket-number")).to_have_text(last.number)
    # A took the last ticket: B's call finds no one.
    b.get_by_role("button", name="Call next").click()
    expect(b.get_by_role("status")).to_have_text("No one is waiting for this counter.")
    expect(b.locator("#counter-waiting")).to_have_text("0")

    # A colleague's tab on A's counter, cut off from live updates, still shows the
    # ticket as A called it; A starts serving it; the stale tab's no-show is refused.
    stale = second.new_page()
    stale.route("**/staff/live/**", lambda route: route.abort())
    stale.goto(f"/staff/console/{OFFICE}/1")
    expect(stale.locator("#ticket-number")).to_have_text(last.number)  # held, shown on load
    expect(stale.locator("#live-state")).to_have_text("Reconnecting…")
    a.get_by_role("button", name="Start").click()
    expect(a.get_by_role("status")).to_have_text(f"Service for {last.number} started.")
    stale.get_by_role("button", name="No-show").click()
    expect(stale.get_by_role("status")).to_contain_text(
        f"That is no longer possible: ticket {last.number} is serving, not called."
    )
    expect(stale.get_by_role("status")).to_contain_text("Someone else may have got there first")
    expect(stale.locator("#ticket-status")).to_have_text("Serving")  # and it caught up
    assert status_of(server, settings, last) is TicketStatus.SERVING

    # The resident of the ticket B just called cancels it on their phone: B is told.
    [gone] = issue(server, settings, "certs")
    b.get_by_role("button", name="Call next").click()
    expect(b.locator("#ticket-number")).to_have_text(gone.number)

    async def cancel(queue: QueueClient) -> Ticket:
        return await queue.cancel(OFFICE, gone.token, now=server.clock(), actor="resident")

    with_queue(server, settings, cancel)
    expect(b.get_by_role("status")).to_have_text(f"{gone.number} was cancelled by the resident.")
    expect(b.locator("#no-ticket")).to_be_visible()
    expect(b.get_by_role("button", name="Call next")).to_be_enabled()
