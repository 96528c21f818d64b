"""The supervisor's view in a real browser: counters and waits, live, and the counter controls."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, expect
from redis.asyncio import Redis

from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import Role, StaffAccount

from .conftest import LiveServer, assert_accessible, sign_in
from conftest import T0

OFFICE = "kokurakita"


async def _queue_do(settings: Settings, action: str) -> None:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    queue = QueueClient(redis, settings)
    try:
        if action == "set up":
            await queue.put_counter(OFFICE, "c1", ["certs"], name="1番窓口", now=T0)
            await queue.put_counter(OFFICE, "c2", ["certs"], name="2番窓口", now=T0)
            await queue.open_counter(OFFICE, "c1", now=T0)
            for i in range(3):
                await queue.issue(OFFICE, "certs", now=T0 + i)
            await queue.call_next(OFFICE, "c1", now=T0 + 10)  # A-001 at 1番窓口
        elif action == "issue":
            await queue.issue(OFFICE, "certs", now=T0 + 20)
    finally:
        await redis.aclose()


def test_supervisor_sees_and_runs_the_counters(
    context: BrowserContext,
    server: LiveServer,
    settings: Settings,
    make_staff: Callable[..., StaffAccount],
) -> None:
    make_staff("boss", Role.SUPERVISOR)
    server.run(_queue_do(settings, "set up"))
    page = context.new_page()
    sign_in(page, "boss")
    page.goto("/staff/supervisor")
    expect(page).to_have_url(f"/staff/supervisor/{OFFICE}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Kokurakita Ward Office")
    c1, c2 = page.locator("#counter-c1"), page.locator("#counter-c2")
    expect(c1.locator('[data-figure="state"]')).to_have_text("Open")
    expect(c1).to_contain_text("A-001")
    expect(c2.locator('[data-figure="state"]')).to_have_text("Closed")
    certs = page.locator("#service-certs")
    expect(certs.locator('[data-figure="waiting"]')).to_have_text("2")
    expect(page.locator('dd[data-figure="issued"]')).to_have_text("3")
    assert_accessible(page)

    # a ticket issued elsewhere shows up without a reload
    marker = page.evaluate("() => (window.__notReloaded = true)")
    assert marker is True
    server.run(_queue_do(settings, "issue"))
    expect(certs.locator('[data-figure="waiting"]')).to_have_text("3")
    expect(page.locator('dd[data-figure="issued"]')).to_have_text("4")
    assert page.evaluate("() => window.__notReloaded === true")

    # pause, then resume, the open counter
    c1.get_by_role("button", name="Pause 1番窓口").click()
    expect(page.get_by_role("status")).to_have_text("Counter 1番窓口 is paused.")
    expect(c1.locator('[data-figure="state"]')).to_have_text("Paused")
    assert_accessible(page)
    c1.get_by_role("button", name="Resume 1番窓口").click()
    expect(c1.locator('[data-figure="state"]')).to_have_text("Open")

    # a counter that still holds a ticket cannot close: a clear message says why
    c1.get_by_role("button", name="Close 1番窓口").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text('counter "c1" still has ticket A-001')
    expect(c1.locator('[data-figure="state"]')).to_have_text("Open")
    assert_accessible(page)

    # change what the closed counter serves, then open it
    page.goto(f"/staff/supervisor/{OFFICE}")
    c2.get_by_text("Change services").click()
    c2.get_by_label("B Moving in and out").check()
    c2.get_by_label("A Certificates").uncheck()
    assert_accessible(page)
    c2.get_by_role("button", name="Save services 2番窓口").click()
    expect(page.get_by_role("status")).to_contain_text("services of counter 2番窓口 are saved")
    expect(c2).to_contain_text("Moving in and out")
    expect(c2.locator('[data-figure="state"]')).to_have_text("Closed")
    c2.get_by_role("button", name="Open 2番窓口").click()
    expect(c2.locator('[data-figure="state"]')).to_have_text("Open")
    expect(page.locator("#service-moving td").nth(1)).to_have_text("1")
    c2.get_by_role("button", name="Close 2番窓口").click()
    expect(c2.locator('[data-figure="state"]')).to_have_text(re.compile("Closed"))
    assert_accessible(page)
