"""Administration in a real browser: a service with every name, a staff account, the audit trail."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Browser, BrowserContext, expect

from madoguchi.web.accounts import Role, StaffAccount

from .conftest import PASSWORD, LiveServer, assert_accessible, sign_in

NAMES = {
    "Name in Japanese": "国民年金",
    "Name in easy Japanese": "ねんきん",
    "Name in English": "National pension",
    "Name in Chinese": "国民年金",
    "Name in Korean": "국민연금",
    "Name in Vietnamese": "Lương hưu quốc dân",
}


def test_admin_sets_up_a_service_and_a_staff_account(
    browser: Browser,
    server: LiveServer,
    context: BrowserContext,
    make_staff: Callable[..., StaffAccount],
) -> None:
    make_staff("root", Role.ADMIN, name="管理 太郎")
    page = context.new_page()
    sign_in(page, "root")
    page.get_by_role("link", name="Administration").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Administration")
    assert_accessible(page)
    page.get_by_role("link", name="Kokurakita Ward Office", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Kokurakita Ward Office")
    assert_accessible(page)

    # a new service: first with problems, each named next to its field
    page.get_by_role("link", name="New service").click()
    assert_accessible(page)
    page.get_by_label("Service ID").fill("Pension!")
    page.get_by_label("Ticket prefix").fill("A")
    page.get_by_role("button", name="Create service").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("can only have lowercase letters")
    expect(summary).to_contain_text("Prefix “A” is already used by the service “Certificates”")
    expect(summary).to_contain_text("Enter “Name in Japanese”.")
    expect(page.get_by_label("Service ID")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    page.get_by_label("Service ID").fill("pension")
    page.get_by_label("Ticket prefix").fill("P")
    for label, name in NAMES.items():
        page.get_by_label(label).fill(name)
    page.get_by_label("Remote consultation").check()
    page.get_by_label("Default service time").fill("12")
    page.get_by_label(re.compile("^Moderate wait from")).fill("10")
    page.get_by_label(re.compile("^Long wait from")).fill("20")
    page.get_by_label(re.compile("^Very long wait from")).fill("40")
    page.get_by_role("button", name="Create service").click()
    expect(page.get_by_role("status")).to_have_text("The service is created.")
    pension = page.get_by_role("row", name="National pension")
    expect(pension).to_contain_text("国民年金")
    expect(pension).to_contain_text("Remote")
    expect(pension).to_contain_text("10 / 20 / 40")
    assert_accessible(page)
    pension.get_by_role("link", name="National pension").click()
    expect(page.get_by_label("Name in Vietnamese")).to_have_value("Lương hưu quốc dân")
    expect(page.get_by_label("Name in Korean")).to_have_attribute("lang", "ko")

    # a staff account, then disabled
    page.get_by_role("link", name="Staff accounts").click()
    assert_accessible(page)
    page.get_by_role("link", name="New staff account").click()
    assert_accessible(page)
    page.get_by_label("User name").fill("sato")
    page.get_by_label("Display name").fill("佐藤 花子")
    page.get_by_label("Password").fill("Window-Three-Tuesday-88")
    page.get_by_label("Staff: works at a counter").check()
    page.get_by_role("group", name="Offices").get_by_label("Kokurakita Ward Office").check()
    services = page.get_by_role("group", name="Services this person may serve")
    services.get_by_label("National pension").check()
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("status")).to_contain_text("The account is created.")
    expect(services.get_by_label("National pension")).to_be_checked()
    assert_accessible(page)
    page.get_by_role("button", name="Disable account").click()
    expect(page.get_by_role("status")).to_contain_text("The account is disabled")
    expect(page.get_by_role("button", name="Enable account")).to_be_visible()
    assert_accessible(page)

    # the disabled person cannot sign in
    other = browser.new_context(base_url=server.url)
    try:
        theirs = other.new_page()
        theirs.goto("/staff/signin")
        theirs.get_by_label("User name").fill("sato")
        theirs.get_by_label("Password").fill("Window-Three-Tuesday-88")
        theirs.get_by_role("button", name="Sign in").click()
        expect(theirs.get_by_role("alert")).to_contain_text("not right")
    finally:
        other.close()

    # the audit trail shows each action, newest first, with who did it
    page.goto("/admin/offices/kokurakita/audit")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Audit trail")
    rows = page.locator("table.audit tbody tr")
    expect(rows.nth(0)).to_contain_text("Staff account disabled")
    expect(rows.nth(0)).to_contain_text("staff:root")
    expect(rows.nth(0)).to_contain_text("staff: sato")
    expect(rows.nth(1)).to_contain_text("Staff account created")
    expect(rows.nth(2)).to_contain_text("Service created")
    expect(rows.nth(2)).to_contain_text("service: pension")
    expect(rows.nth(2)).to_contain_text("staff:root")
    assert_accessible(page)
    page.get_by_label("What happened").select_option(label="Service created")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(4)  # the three of the seed, and ours
    expect(rows.nth(0)).to_contain_text("pension")
    assert_accessible(page)
    assert PASSWORD not in page.content()
