"""Staff sign-in and sign-out in a real browser."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, expect

from madoguchi.web.accounts import StaffAccount

from .conftest import assert_accessible, sign_in


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
