"""The statistics page in a real browser: charts and tables of a replayed day, the filters,
the CSV download, a bad range, the video consultations table, and zero axe-core violations
throughout."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import BrowserContext, expect
from redis.asyncio import Redis
from test_statistics import consult_day

from madoguchi.queue.estimator import Estimates, Estimator
from madoguchi.queue.model import Estimate, Snapshot
from madoguchi.queue.replay import load_trace, replay
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import Role, StaffAccount

from .conftest import LiveServer, assert_accessible, run_async, sign_in
from conftest import T0

NORMAL = Path(__file__).parent.parent / "data" / "sample-normal.jsonl"
#: The server's "today": the day after the replayed one (2026-11-04, at kokuraminami).
TODAY = datetime(2026, 11, 5, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()


class Unused(Estimator):
    """The replay needs an estimate for every ticket; statistics do not look at them."""

    def estimate(self, snapshot: Snapshot) -> Estimates:
        result = Estimates()
        for line in snapshot.lines.values():
            for members in line.values():
                for ticket_id, _ in members:
                    result.tickets[ticket_id] = Estimate(0, 0, 0, 0, 0)
        return result


async def _replay(settings: Settings) -> None:
    """The sample day at kokuraminami, then one ticket called this morning (today, live)."""
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    queue = QueueClient(redis, settings)
    try:
        trace = load_trace(NORMAL)
        await replay(trace, queue, Unused(settings))
        this_morning = TODAY - 3600
        await queue.open_counter(trace.office, "c9", ["certs"], now=this_morning)
        await queue.issue(trace.office, "certs", now=this_morning)
        await queue.call_next(trace.office, "c9", now=this_morning + 25 * 60)
    finally:
        await redis.aclose()


def test_stats_page(
    context: BrowserContext,
    server: LiveServer,
    settings: Settings,
    make_staff: Callable[..., StaffAccount],
) -> None:
    run_async(_replay(settings))
    server.clock.offset = TODAY - T0  # type: ignore[attr-defined]
    make_staff("abe", Role.ADMIN, name="阿部 健")
    page = context.new_page()
    sign_in(page, "abe")

    page.goto("/staff/stats?office=kokuraminami")
    expect(page.get_by_role("heading", level=1)).to_contain_text("kokuraminami")
    # The last 7 days by default: the replayed day is one of them.
    expect(page.get_by_label("From", exact=True)).to_have_value("2026-10-30")
    expect(page.get_by_label("To", exact=True)).to_have_value("2026-11-05")
    expect(page.locator("#kpi-issued")).to_have_text("239")
    expect(page.locator("svg[role=img]")).to_have_count(3)
    hourly = page.get_by_role("img", name="Tickets issued by hour of the day")
    expect(hourly).to_be_visible()
    expect(hourly.locator("rect.bar")).to_have_count(9)  # 8:00 to 16:00
    waits = page.get_by_role("img", name="Mean and 90th percentile wait per day")
    expect(waits.locator("circle.dot")).to_have_count(4)  # two days with waits, two lines
    expect(waits.locator("polyline")).to_have_count(2)
    expect(waits.locator("line.target")).to_have_count(1)
    days = page.get_by_role("table", name="Figures per day")
    expect(days.get_by_role("row")).to_have_count(8)  # a header and 7 days
    expect(days.get_by_role("row", name="2026-11-04")).to_contain_text("238")
    expect(days.get_by_role("row", name="2026-11-05")).to_contain_text("25.0")  # today's one wait
    expect(
        page.get_by_role("table", name="Figures by hour of the day").get_by_role("row")
    ).to_have_count(10)
    expect(page.get_by_text("figures are live")).to_be_visible()  # today is in the range
    assert_accessible(page)

    # One service, one day.
    page.get_by_label("Service", exact=True).select_option("certs")
    page.get_by_label("From", exact=True).fill("2026-11-04")
    page.get_by_label("To", exact=True).fill("2026-11-04")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(
        "/staff/stats?office=kokuraminami&from=2026-11-04&to=2026-11-04&service=certs"
    )
    services = page.get_by_role("table", name="Figures per service")
    expect(services.get_by_role("row")).to_have_count(2)
    expect(services).to_contain_text("certs")  # the replay names services by id in English
    expect(page.get_by_text("figures are live")).to_have_count(0)
    assert_accessible(page)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    got = download.value
    assert got.suggested_filename == "madoguchi-kokuraminami-2026-11-04-2026-11-04-certs.csv"
    raw = Path(got.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {line["service_name_ja"] for line in lines} == {"証明書"}
    shown = page.locator("#kpi-issued").inner_text()
    assert sum(int(line["issued"]) for line in lines) == int(shown)

    # A range the wrong way round: a clear message, the form to fix it.
    page.get_by_label("From", exact=True).fill("2026-11-05")
    page.get_by_label("To", exact=True).fill("2026-11-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "starts on 2026-11-05 after it ends on 2026-11-01"
    )
    assert_accessible(page)


def test_an_office_without_tickets(
    context: BrowserContext, make_staff: Callable[..., StaffAccount]
) -> None:
    make_staff("mori", Role.SUPERVISOR)
    page = context.new_page()
    sign_in(page, "mori")
    page.goto("/staff/")
    page.get_by_role("link", name="Statistics").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Kokurakita")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("svg[role=img]")).to_have_count(0)
    expect(page.get_by_label("To", exact=True)).to_have_value(date(2026, 11, 26).isoformat())
    assert_accessible(page)


async def _consultations(settings: Settings) -> None:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        await consult_day(QueueClient(redis, settings))
    finally:
        await redis.aclose()


def test_video_consultations(
    context: BrowserContext,
    server: LiveServer,
    settings: Settings,
    make_staff: Callable[..., StaffAccount],
) -> None:
    run_async(_consultations(settings))
    server.clock.offset = 2000.0  # type: ignore[attr-defined]
    make_staff("mori", Role.SUPERVISOR)
    page = context.new_page()
    sign_in(page, "mori")
    page.goto("/staff/stats?office=kokurakita")
    expect(page.get_by_role("heading", name="Video consultations")).to_be_visible()
    table = page.get_by_role("table", name="Video consultations per topic")
    expect(table.get_by_role("row")).to_have_count(4)  # a header, two topics, all topics
    care = table.get_by_role("row", name="Long-term care")
    expect(care.get_by_role("cell")).to_have_count(15)
    expect(care.get_by_role("cell").nth(0)).to_have_text("3")  # ended
    expect(care.get_by_role("cell").nth(9)).to_have_text("3.50")  # mean rating of 5 and 2
    expect(table.get_by_role("row", name="All topics").get_by_role("cell").nth(0)).to_have_text("4")
    assert_accessible(page)
