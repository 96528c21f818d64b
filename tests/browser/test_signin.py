"""Staff sign-in, sign-out, throttling and the authenticator set-up, in a real browser."""

from __future__ import annotations

import re
from collections.abc import Callable

import pyotp
from playwright.sync_api import BrowserContext, Page, expect
from redis.asyncio import Redis

from madoguchi.settings import Settings
from madoguchi.web.accounts import AccountStore, StaffAccount
from madoguchi.web.sessions import MAX_FAILURES

from .conftest import PASSWORD, LiveServer, assert_accessible, run_async, sign_in


def test_sign_in_and_out(context: BrowserContext, make_staff: Callable[..., StaffAccount]) -> None:
    make_staff("ito")
    page = context.new_page()
    page.goto("/staff/")
    expect(page).to_have_url("/staff/signin?next=/staff/")
    assert_accessible(page)
    page.get_by_label("User name").fill("ito")
    page.get_by_label("Password").fill("wrong password, surely")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    assert_accessible(page)
    sign_in(page, "ito")
    expect(page.get_by_role("heading", level=1)).to_contain_text("伊藤")
    assert_accessible(page)
    cookie = next(c for c in context.cookies() if c["name"] == "madoguchi")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/staff/signin")
    page.goto("/staff/")
    expect(page).to_have_url("/staff/signin?next=/staff/")


def test_too_many_failures_say_so(
    context: BrowserContext, make_staff: Callable[..., StaffAccount]
) -> None:
    make_staff("ito")
    page = context.new_page()
    page.goto("/staff/signin")
    for _ in range(MAX_FAILURES):
        page.get_by_label("User name").fill("ito")
        page.get_by_label("Password").fill("wrong password, surely")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not right")
    sign_in_attempt(page, "ito")
    expect(page.get_by_role("alert")).to_contain_text("Too many failed attempts")
    expect(page.get_by_role("alert")).to_contain_text("Wait 15 minutes")
    assert_accessible(page)


def sign_in_attempt(page: Page, username: str) -> None:
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _require_totp(settings: Settings, username: str) -> None:
    async def change() -> None:
        redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
        accounts = AccountStore(redis)
        account = await accounts.get(username)
        await accounts.update(
            StaffAccount(
                account.username,
                account.name,
                account.role,
                account.offices,
                account.services,
                totp_required=True,
            )
        )
        await redis.aclose()

    run_async(change())


def test_a_required_authenticator_is_set_up_then_asked_for(
    context: BrowserContext,
    server: LiveServer,
    settings: Settings,
    make_staff: Callable[..., StaffAccount],
) -> None:
    make_staff("ito")
    _require_totp(settings, "ito")
    page = context.new_page()
    page.goto("/staff/console")
    sign_in_attempt(page, "ito")
    expect(page).to_have_url("/staff/totp")
    expect(page.get_by_role("status")).to_contain_text("An administrator requires")
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    assert_accessible(page)

    # Nothing else until it is set up.
    page.goto("/staff/")
    expect(page).to_have_url("/staff/totp")

    key = page.locator("#secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(key)
    page.get_by_label("Then enter the 6-digit code the app shows").fill("000000")
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    assert_accessible(page)
    page.get_by_label("Then enter the 6-digit code the app shows").fill(totp.at(server.clock()))
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.get_by_role("status")).to_contain_text("Done.")
    assert_accessible(page)
    page.get_by_role("link", name="Continue to the staff tools").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("伊藤")
    expect(page.get_by_text("Two-step sign-in is on.")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/staff/signin")
    sign_in_attempt(page, "ito")
    expect(page.get_by_role("heading", level=1)).to_have_text("Authenticator code")
    assert_accessible(page)
    server.clock.offset += 30  # a code works once: wait for the next one
    page.get_by_label("Code").fill(totp.at(server.clock()))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("伊藤")
