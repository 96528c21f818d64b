"""Appointments in a real browser on a phone: book, see the code and QR, change, cancel,
check in and land on the ticket's page; and the admin's slot settings."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis

from madoguchi.queue.appointments import AppointmentClient, SlotSettings
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import Role, StaffAccount

from .conftest import LiveServer, assert_accessible, run_async, sign_in
from .test_kiosk_screens import KIOSK, enroll, kiosk_context, strict
from conftest import T0

#: 09:00-17:00 every day, so that the test day (T0, 09:00 on a Thursday) has slots.
EVERY_DAY = (((540, 1020),),) * 7
PHONE = {"width": 390, "height": 844}


async def _slots(settings: Settings) -> None:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    queue = QueueClient(redis, settings)
    client = AppointmentClient(queue)
    slots = SlotSettings("certs", minutes=30, capacity=1, hours=EVERY_DAY)
    await client.put_settings("kokurakita", slots, now=T0)
    await redis.aclose()


@pytest.fixture
def phone(browser: Browser, server: LiveServer, settings: Settings) -> Iterator[Page]:
    run_async(_slots(settings))
    context = browser.new_context(
        base_url=server.url, viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US"
    )
    page = context.new_page()
    page.goto("/?lang=en")
    yield page
    context.close()


def test_book_change_and_cancel_an_appointment(phone: Page) -> None:
    page = phone
    page.goto("/o/kokurakita/appointments")
    expect(page.get_by_role("heading", level=1)).to_have_text("Book an appointment")
    assert_accessible(page)
    page.get_by_role("link", name=re.compile("Certificates")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a time")
    assert_accessible(page)
    # 09:00 has begun: the first slot offered is 09:30
    page.get_by_text("09:30").click()
    page.get_by_label("E-mail address (optional)").fill("resident@example.jp")
    page.get_by_role("button", name="Book this time").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Your appointment")
    expect(page.get_by_role("status")).to_contain_text("Your appointment is booked")
    expect(page.locator(".appt-when")).to_contain_text("09:30")
    code = page.locator(".appt-code").inner_text()
    assert re.fullmatch(r"\d{3} \d{3}", code)
    expect(page.locator(".appt-qr svg")).to_be_visible()
    assert_accessible(page)
    booking = page.url.split("?")[0]

    # someone else cannot take the same place: it shows as full
    page.goto("/o/kokurakita/appointments/certs")
    expect(page.locator(".appt-slot", has_text="09:30")).to_contain_text("Full")
    page.goto(booking)

    page.get_by_role("link", name="Choose another time").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Change your appointment")
    expect(page.locator(".appt-slot", has_text="09:30")).to_contain_text("Your appointment")
    assert_accessible(page)
    page.get_by_text("11:00").click()
    page.get_by_role("button", name="Change to this time").click()
    expect(page.get_by_role("status")).to_contain_text("Your appointment is changed")
    expect(page.locator(".appt-when")).to_contain_text("11:00")
    assert page.locator(".appt-code").inner_text() == code

    page.get_by_role("button", name="Cancel the appointment").click()
    expect(page.get_by_role("status")).to_contain_text("Your appointment is cancelled")
    expect(page.get_by_role("button", name="Cancel the appointment")).to_have_count(0)
    assert_accessible(page)
    page.goto("/o/kokurakita/appointments/certs")
    expect(page.locator(".appt-slot", has_text="11:00")).to_contain_text("1 place left")


def test_check_in_on_arrival_leads_to_the_ticket(phone: Page, server: LiveServer) -> None:
    page = phone
    page.goto("/o/kokurakita/appointments/certs")
    page.get_by_text("10:00").click()
    page.get_by_role("button", name="Book this time").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your appointment")
    expect(page.get_by_text("You can check in here from 09:30 to 10:15.")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("I have arrived"))).to_have_count(0)

    server.clock.offset = 45 * 60  # 09:45: the window is open
    page.reload()
    page.get_by_role("button", name=re.compile("I have arrived")).click()
    page.wait_for_url(re.compile(r"/o/kokurakita/t/[A-Za-z0-9_-]{22}"))
    expect(page.get_by_text("A-001")).to_be_visible()
    assert_accessible(page)

    # back on the booking page, it leads to the ticket
    page.go_back()
    page.reload()
    expect(page.get_by_role("link", name="See your ticket")).to_be_visible()
    assert_accessible(page)


def test_bad_input_is_explained(phone: Page) -> None:
    page = phone
    page.goto("/o/kokurakita/appointments/certs")
    page.get_by_role("button", name="Book this time").click()
    expect(page.get_by_role("alert")).to_have_text("Choose a time.")
    page.get_by_text("10:30").click()
    page.get_by_label("E-mail address (optional)").fill("not-an-address")
    # the browser's own check would stop a bad address; the server must say so too
    page.locator("form.appt-form").evaluate("form => form.noValidate = true")
    page.get_by_role("button", name="Book this time").click()
    expect(page.get_by_role("alert")).to_contain_text("is not an e-mail address")
    assert_accessible(page)
    page.goto("/o/kokurakita/a/" + "x" * 22)
    expect(page.get_by_role("alert")).to_contain_text("There is no such page")
    assert_accessible(page)


def test_an_admin_sets_the_slots(
    context: BrowserContext, make_staff: Callable[..., StaffAccount]
) -> None:
    make_staff("root", Role.ADMIN, name="管理 太郎")
    page = context.new_page()
    sign_in(page, "root")
    page.goto("/admin/offices/kokurakita/services/moving")
    page.get_by_role("link", name="Appointment slots of this service").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Appointment slots: Moving in and out"
    )
    assert_accessible(page)
    page.get_by_label("Residents can book appointments").check()
    page.get_by_label("People per slot").fill("0")
    page.get_by_label("Saturday").fill("nine to five")
    page.get_by_role("button", name="Save appointment slots").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("must be a whole number from 1 to 100")
    expect(summary).to_contain_text("is not a time range")
    assert_accessible(page)
    page.get_by_label("People per slot").fill("3")
    page.get_by_label("Saturday").fill("10:00-12:00")
    page.get_by_role("button", name="Save appointment slots").click()
    expect(page.get_by_role("status")).to_have_text("The appointment slots are saved.")
    expect(page.get_by_label("Saturday")).to_have_value("10:00-12:00")


def test_check_in_at_the_kiosk_with_the_number_pad(
    browser: Browser, server: LiveServer, settings: Settings
) -> None:
    run_async(_slots(settings))

    async def book() -> str:
        redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
        client = AppointmentClient(QueueClient(redis, settings))
        booked = await client.book("kokurakita", "certs", str(int(T0 + 1800)), now=T0)
        await redis.aclose()
        return booked.code

    code = run_async(book())
    context = kiosk_context(browser, server.url, enroll(settings, KIOSK))
    page = context.new_page()
    # The way a resident finds it: take a ticket → check in for your appointment.
    page.goto("/kiosk/tickets?lang=en")
    page.get_by_role("link", name="Check in for your appointment").tap()
    page.wait_for_url("**/kiosk/check-in")
    expect(page.get_by_role("heading", level=1)).to_contain_text("6-digit code")
    assert_accessible(page)
    strict(page)
    for digit in "000000":
        page.get_by_role("button", name=digit, exact=True).tap()
    page.get_by_role("button", name="Check in").tap()
    expect(page.get_by_role("alert")).to_contain_text("No appointment today has this code")
    assert_accessible(page)
    page.get_by_role("button", name="Clear").tap()
    for digit in code:
        page.get_by_role("button", name=digit, exact=True).tap()
    expect(page.get_by_label("Check-in code (6 digits)")).to_have_value(code)
    page.get_by_role("button", name="Check in").tap()
    page.wait_for_url(re.compile(r"/kiosk/tickets/[A-Za-z0-9_-]{22}"))
    expect(page.locator(".ticket .number")).to_have_text("A-001")
    context.close()


def test_the_appointment_pages_in_every_language(phone: Page) -> None:
    page = phone
    for lang in ("ja", "ja-easy", "zh-Hans", "ko", "vi"):
        page.goto(f"/o/kokurakita/appointments?lang={lang}")
        expect(page.locator("html")).to_have_attribute("lang", re.compile(f"^{lang[:2]}"))
        assert_accessible(page)
        page.locator('a[href="/o/kokurakita/appointments/certs"]').click()
        assert_accessible(page)
        page.locator(".appt-slot:not(.full) label").first.click()
        page.locator("form.appt-form button[type=submit]").click()
        page.wait_for_url(re.compile(r"/o/kokurakita/a/[A-Za-z0-9_-]{22}"))
        expect(page.locator(".appt-code")).to_have_text(re.compile(r"^\d{3} \d{3}$"))
        assert_accessible(page)
