"""Enrolling a kiosk, revoking it, and the fleet page, in real Chromium.

The kiosk is a portrait touch screen (1080 × 1920, touch events, no keyboard): the code
is tapped on the on-screen number pad. The administrator uses the admin pages with a
mouse and keyboard, in a browser context of their own.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from madoguchi import __version__
from madoguchi.kiosk.devices import Kiosk, KioskStore, Printer
from madoguchi.settings import Settings
from madoguchi.web.accounts import Role, StaffAccount

from .conftest import LiveServer, assert_accessible, sign_in
from .test_kiosk_screens import PORTRAIT, in_redis, strict
from kiosks import ASHIHARA

T = TypeVar("T")
KIOSK = dataclasses.replace(ASHIHARA, printer=Printer("browser", width_mm=80))
HEALTHY = {
    "cameras": 2,
    "microphones": 1,
    "printer": "unknown",
    "round_trip_ms": 35,
    "version": __version__,
}


def store_work(settings: Settings, work: Callable[[KioskStore], Awaitable[T]]) -> T:
    return in_redis(settings, lambda redis: work(KioskStore(redis)))


def register(settings: Settings, kiosk: Kiosk = KIOSK) -> None:
    store_work(settings, lambda store: store.put(kiosk))


def code_for(settings: Settings, server: LiveServer, kiosk: Kiosk = KIOSK) -> str:
    code = store_work(settings, lambda store: store.issue_code(kiosk.id, server.clock()))
    assert isinstance(code, str)
    return code


@pytest.fixture
def touch(browser: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    """A kiosk's browser: portrait, touch, Japanese, never enrolled."""
    opened = browser.new_context(
        base_url=server.url, viewport=PORTRAIT, has_touch=True, locale="ja-JP"
    )
    yield opened
    opened.close()


def tap_code(page: Page, code: str) -> None:
    for digit in code:
        page.locator(f'.numpad [data-digit="{digit}"]').tap()


def enroll_with(page: Page, code: str) -> None:
    """Tap ``code`` on the pad, then the button that sends it."""
    tap_code(page, code)
    page.locator(".enroll-submit").tap()


def test_a_kiosk_enrolls_on_the_number_pad(
    touch: BrowserContext, server: LiveServer, settings: Settings
) -> None:
    register(settings)
    code = code_for(settings, server)
    page = touch.new_page()
    page.goto("/kiosk/")
    expect(page).to_have_url(re.compile(r"/kiosk/enroll$"))  # not enrolled: sent to enroll
    assert_accessible(page)
    strict(page)
    field = page.locator("#code")
    assert field.get_attribute("inputmode") == "none"  # no on-screen keyboard pops up
    # Typing, correcting, clearing: all on the pad.
    tap_code(page, "12")
    expect(field).to_have_value("12")
    page.locator('.numpad [data-action="back"]').tap()
    expect(field).to_have_value("1")
    page.locator('.numpad [data-action="clear"]').tap()
    expect(field).to_have_value("")
    tap_code(page, code + "99")  # extra digits are not taken
    expect(field).to_have_value(code)
    page.locator(".enroll-submit").tap()
    expect(page).to_have_url(re.compile(r"/kiosk/enroll\?done=1$"))
    expect(page.get_by_role("status")).to_contain_text("小倉北 — 足原市民センター")
    expect(page.get_by_role("status")).to_contain_text("1階ロビー")
    assert_accessible(page)
    strict(page)
    # The device cookie is out of reach of scripts.
    assert "madoguchi-kiosk" not in page.evaluate("document.cookie")
    cookies = {c["name"]: c for c in touch.cookies()}
    assert cookies["madoguchi-kiosk"]["httpOnly"]
    assert cookies["madoguchi-kiosk"]["sameSite"] == "Strict"
    page.locator(".enroll-start").tap()
    expect(page).to_have_url(re.compile(r"/kiosk/$"))  # the kiosk's start screen


def test_a_wrong_code_says_so_and_the_pad_is_there_again(
    touch: BrowserContext, server: LiveServer, settings: Settings
) -> None:
    register(settings)
    code = code_for(settings, server)
    page = touch.new_page()
    page.goto("/kiosk/enroll?lang=en")
    enroll_with(page, "00000000" if code != "00000000" else "11111111")
    expect(page.get_by_role("alert")).to_contain_text("This code is not right")
    assert_accessible(page)
    strict(page)
    # An expired code: a quarter of an hour later.
    server.clock.offset += 15 * 60  # type: ignore[attr-defined]
    enroll_with(page, code)
    expect(page.get_by_role("alert")).to_contain_text("This code has expired")
    assert "madoguchi-kiosk" not in {c["name"] for c in touch.cookies()}


@pytest.fixture
def admin(
    browser: Browser, server: LiveServer, make_staff: Callable[..., StaffAccount]
) -> Iterator[Page]:
    make_staff("boss", Role.ADMIN, name="松本 恵子")
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, "boss")
    yield page
    context.close()


def fleet_row(page: Page, kiosk_id: str = KIOSK.id) -> str:
    page.goto("/admin/kiosks")
    return re.sub(r"\s+", " ", page.locator(f'tr[data-kiosk="{kiosk_id}"]').inner_text())


def test_register_enroll_watch_and_revoke_a_kiosk(
    admin: Page, touch: BrowserContext, server: LiveServer
) -> None:
    # The admin registers the kiosk.
    admin.goto("/admin/")
    admin.get_by_role("link", name="The kiosk fleet: state, problems, enrollment").click()
    expect(admin.get_by_role("heading", name="Kiosks", level=1)).to_be_visible()
    assert_accessible(admin)
    admin.get_by_role("link", name="Register a kiosk").click()
    assert_accessible(admin)
    admin.get_by_label("Kiosk ID (required)").fill("x")  # wrong first: problems shown by the fields
    admin.get_by_role("button", name="Register kiosk").click()
    expect(admin.get_by_role("alert")).to_contain_text("Enter “Branch”.")
    assert_accessible(admin)
    admin.get_by_label("Kiosk ID (required)").fill(KIOSK.id)
    admin.get_by_label("Ward office (required)").select_option("kokurakita")
    admin.get_by_label("Branch (required)").fill(KIOSK.branch)
    admin.get_by_label("Place in the building (required)").fill(KIOSK.place)
    admin.get_by_label("Certificates (Kokurakita Ward Office)", exact=True).check()
    admin.get_by_label("Long-term care (Kokurakita Ward Office)", exact=True).check()
    admin.get_by_role("button", name="Register kiosk").click()
    expect(admin.get_by_role("status")).to_contain_text("The kiosk is registered.")
    assert "Not enrolled" in fleet_row(admin)

    # It issues a code, shown once with its expiry.
    admin.goto(f"/admin/kiosks/{KIOSK.id}")
    admin.get_by_role("button", name="Issue an enrollment code").click()
    code = admin.locator("#enrollment-code").inner_text().strip()
    assert re.fullmatch(r"\d{8}", code)
    expect(admin.get_by_role("status")).to_contain_text("15 minutes")
    assert_accessible(admin)

    # The kiosk enrolls with it.
    kiosk = touch.new_page()
    kiosk.goto("/kiosk/enroll")
    # Enrolled, its page reports its health at once: let that land, then leave the page,
    # so that only the reports below reach the fleet page.
    with kiosk.expect_response(lambda answer: answer.url.endswith("/kiosk/api/health")):
        enroll_with(kiosk, code)
    expect(kiosk).to_have_url(re.compile(r"done=1$"))
    kiosk.goto("about:blank")

    # Reporting, it is online; silent for two minutes, offline.
    answer = kiosk.request.post("/kiosk/api/health", data=HEALTHY)
    assert answer.status == 200, answer.text()
    row = fleet_row(admin)
    assert "Online" in row
    assert "35 ms" in row
    assert __version__ in row
    assert_accessible(admin)
    server.clock.offset += 120  # type: ignore[attr-defined]
    row = fleet_row(admin)
    assert "Offline" in row
    assert "No report for 2 minutes" in row
    bad = {**HEALTHY, "cameras": 1, "printer": "no_paper"}
    assert kiosk.request.post("/kiosk/api/health", data=bad).status == 200
    row = fleet_row(admin)
    assert "Problem" in row
    assert "Cameras: 1 of 2 found" in row
    assert "The printer is out of paper" in row
    assert_accessible(admin)

    # Revoked, the kiosk is refused at once: its next page is the enrollment page.
    admin.goto(f"/admin/kiosks/{KIOSK.id}")
    admin.get_by_role("button", name="Revoke this kiosk").click()
    expect(admin.get_by_role("status")).to_contain_text("revoked")
    assert "Revoked" in fleet_row(admin)
    kiosk.goto("/kiosk/")
    expect(kiosk).to_have_url(re.compile(r"/kiosk/enroll$"))
    assert kiosk.request.post("/kiosk/api/health", data=HEALTHY).status == 401
