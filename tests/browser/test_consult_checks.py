"""The kiosk's own checks in real Chromium (fake cameras and microphone), and the admin
pages around remote consultation: the forms library and the fleet page's check results.

The start screen runs the pre-call check (through the server's aiortc echo peer) and,
asked by the answer to its health report, the camera probe; the fleet page then shows
both. Waiting is only for them to happen (the kiosk starts them after 20 s idle)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import Browser, BrowserContext, expect
from redis.asyncio import Redis

from madoguchi.consult.forms import sample_pdf
from madoguchi.kiosk.devices import PLAIN_KIOSK_COOKIE, KioskStore
from madoguchi.kiosk.health import KioskHealth
from madoguchi.queue import keys
from madoguchi.settings import Settings
from madoguchi.web.accounts import Role, StaffAccount

from .conftest import LiveServer, assert_accessible, run_async, sign_in
from kiosks import ASAHARA as REGISTERED
from kiosks import enrolled

#: Chromium's second fake camera (``device-count=2``) gets no frame encoded, here: the
#: kiosk is registered with its face camera only (the probe judges registered cameras).
ASAHARA = replace(REGISTERED, cameras=("face",))
T = TypeVar("T")
#: Long enough for the kiosk's idle wait, both checks and a health report or two.
CHECKS_SECONDS = 100.0


def in_redis(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    async def run() -> T:
        redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    result: T = run_async(run())
    return result


def test_the_admin_keeps_the_forms_library(
    context: BrowserContext,
    make_staff: Callable[..., StaffAccount],
    tmp_path: Path,
) -> None:
    make_staff("root", Role.ADMIN, name="管理 太郎")
    page = context.new_page()
    sign_in(page, "root")
    page.goto("/admin/offices/kokurakita")
    page.get_by_role("link", name="Forms for video consultations").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Forms of")
    assert_accessible(page)

    # Not a PDF: refused, said next to the field, nothing listed.
    fake = tmp_path / "notes.pdf"
    fake.write_bytes(b"just some notes")
    page.get_by_label("Title").fill("介護保険 申請書")
    page.get_by_label("PDF file").set_input_files(fake)
    page.get_by_role("button", name="Upload form").click()
    expect(page.get_by_role("alert")).to_contain_text("This file is not a PDF document")
    expect(page.get_by_text("This office has no forms yet.")).to_be_visible()
    assert_accessible(page)

    real = tmp_path / "kaigo.pdf"
    real.write_bytes(sample_pdf("Long-term care application", ["Name", "Address"], pages=2))
    page.get_by_label("Title").fill("介護保険 申請書")
    page.get_by_label("PDF file").set_input_files(real)
    page.get_by_role("button", name="Upload form").click()
    expect(page.get_by_role("status")).to_have_text("The form is uploaded.")
    row = page.locator("#form-kaigo")
    expect(row).to_contain_text("介護保険 申請書")
    expect(row.get_by_role("cell").nth(1)).to_have_text("2")
    assert_accessible(page)
    png = page.request.get("/consult/forms/kokurakita/kaigo/pages/1.png")
    assert png.ok
    assert png.headers["content-type"] == "image/png"

    row.get_by_label("New title for 介護保険 申請書").fill("要介護認定 申請書")
    row.get_by_role("button", name="Save title").click()
    expect(page.get_by_role("status")).to_have_text("The title is saved.")
    expect(page.locator("#form-kaigo")).to_contain_text("要介護認定 申請書")
    page.get_by_role("button", name="Delete 要介護認定 申請書").click()
    expect(page.get_by_role("status")).to_have_text("The form is deleted.")
    expect(page.get_by_text("This office has no forms yet.")).to_be_visible()
    assert_accessible(page)


def _check(settings: Settings, kind: str) -> dict[str, Any] | None:
    raw = in_redis(settings, lambda r: r.hget(keys.kiosk_health(ASAHARA.id), kind))  # type: ignore[arg-type, return-value]
    return json.loads(raw) if raw else None


def test_the_start_screen_checks_itself_and_the_fleet_page_shows_it(
    browser: Browser,
    server: LiveServer,
    settings: Settings,
    make_staff: Callable[..., StaffAccount],
) -> None:
    token = in_redis(settings, lambda redis: enrolled(KioskStore(redis), ASAHARA))
    in_redis(settings, lambda redis: KioskHealth(redis).request_probe(ASAHARA.id, 0))
    kiosk = browser.new_context(base_url=server.url, viewport={"width": 1080, "height": 1920})
    kiosk.add_cookies([{"name": PLAIN_KIOSK_COOKIE, "value": token, "url": server.url}])
    try:
        screen = kiosk.new_page()
        screen.goto("/kiosk/")
        deadline = time.monotonic() + CHECKS_SECONDS
        while (_check(settings, "precall") is None or _check(settings, "probe") is None) and (
            time.monotonic() < deadline
        ):
            screen.wait_for_timeout(1000)
        precall, probe = _check(settings, "precall"), _check(settings, "probe")
        assert precall is not None, "the start screen ran no pre-call check"
        assert probe is not None, "the start screen ran no camera probe"
        assert precall["ok"], precall
        assert probe["ok"], probe
        assert "face camera ok" in probe["summary"]
        assert not in_redis(settings, lambda r: KioskHealth(r).probe_requested(ASAHARA.id))
        # Nothing of it shows on the start screen.
        expect(screen.locator("video, audio")).to_have_count(0)
    finally:
        kiosk.close()

    make_staff("root", Role.ADMIN, name="管理 太郎")
    admin = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    try:
        page = admin.new_page()
        sign_in(page, "root")
        page.goto("/admin/kiosks")
        row = page.locator(f"tr[data-kiosk='{ASAHARA.id}']")
        expect(row.locator("td.precall")).to_contain_text("Passed: round trip")
        expect(row.locator("td.probe")).to_contain_text("Passed: face camera ok")
        assert_accessible(page)
        row.get_by_role("button", name="Check cameras now").click()
        expect(page.get_by_role("status")).to_contain_text("check its cameras and microphone")
        assert in_redis(settings, lambda r: KioskHealth(r).probe_requested(ASAHARA.id))
        assert_accessible(page)
    finally:
        admin.close()


def test_a_touch_stops_a_check_at_once(
    browser: Browser, server: LiveServer, settings: Settings
) -> None:
    token = in_redis(settings, lambda redis: enrolled(KioskStore(redis), ASAHARA))
    kiosk = browser.new_context(base_url=server.url, viewport={"width": 1080, "height": 1920})
    kiosk.add_cookies([{"name": PLAIN_KIOSK_COOKIE, "value": token, "url": server.url}])
    try:
        screen = kiosk.new_page()
        screen.goto("/kiosk/")
        # After 20 s without a touch the pre-call check starts; a resident then touches.
        expect(screen.locator("body[data-checking='echo']")).to_be_attached(timeout=60_000)
        screen.get_by_role("heading", level=1).click()
        expect(screen.locator("body[data-checking]")).to_have_count(0, timeout=2000)
        screen.wait_for_timeout(8000)  # longer than a whole check
        assert _check(settings, "precall") is None
        assert screen.evaluate("document.body.dataset.echoed") is None
    finally:
        kiosk.close()
