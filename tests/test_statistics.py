"""Statistics from the event stream: a replayed day against figures computed here from the
replay's own rows, the rules of what counts where, the roll-up job, the page and the CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import statistics as stdstats
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry
from starlette.applications import Starlette

from madoguchi.consult.calls import Call, Calls, CallState
from madoguchi.consult.calls import Role as CallRole
from madoguchi.queue import keys
from madoguchi.queue.estimator import Estimates, Estimator
from madoguchi.queue.jobs import job_queue, roll_up_day, roll_up_past_days
from madoguchi.queue.model import CancelReason, Estimate, Office, Service, ServiceMode, Snapshot
from madoguchi.queue.replay import Outcome, Row, Trace, load_trace, replay
from madoguchi.queue.statistics import (
    GRACE_SECONDS,
    ConsultFigures,
    DayStats,
    Figures,
    Report,
    Tally,
    compute_days,
    day_start,
    day_stats,
    figures,
    roll_up,
)
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import AccountStore, Role, StaffAccount
from madoguchi.web.stats import CONSULT_CSV_COLUMNS, CSV_COLUMNS

from conftest import OFFICE, SERVICES, T0, run_job

NORMAL = Path(__file__).parent / "data" / "sample-normal.jsonl"
TOKYO = ZoneInfo("Asia/Tokyo")
DAY = 86_400.0
#: The replayed day of ``sample-normal`` and its office.
REPLAY_DAY = date(2026, 11, 4)
REPLAY_OFFICE = "kokuraminami"
TARGET = 15 * 60.0
PASSWORD = "Counter-Clerk-2026!"


class Unused(Estimator):
    """The replay needs an estimate for every ticket; statistics do not look at them."""

    def estimate(self, snapshot: Snapshot) -> Estimates:
        result = Estimates()
        for line in snapshot.lines.values():
            for members in line.values():
                for ticket_id, _ in members:
                    result.tickets[ticket_id] = Estimate(0, 0, 0, 0, 0)
        return result


async def replay_normal(queue: QueueClient) -> tuple[Trace, list[Row], Office]:
    trace = load_trace(NORMAL)
    rows = await replay(trace, queue, Unused(queue.settings))
    return trace, rows, await queue.office(trace.office)


def after_the_day(day: date) -> float:
    """A moment when ``day``'s figures are final (Tokyo offices)."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=TOKYO)
    return end.timestamp() + GRACE_SECONDS + 60


# -- the figures, computed here from the replay's rows and the trace ---------------------------


@dataclass
class Expected:
    issued: int = 0
    served: int = 0
    no_show: int = 0
    abandoned: int = 0
    waits: list[float] = field(default_factory=list)
    service_times: list[float] = field(default_factory=list)


def expected(
    trace: Trace, rows: list[Row], key: Callable[[Row, int], object]
) -> dict[object, Expected]:
    """Per ``key(row, local hour of issue)``, straight from what the replay says happened."""
    truth = {a.ticket: a.truth for a in trace.arrivals}
    found: dict[object, Expected] = {}
    for row in rows:
        hour = datetime.fromtimestamp(trace.opening + row.issued_at, TOKYO).hour
        e = found.setdefault(key(row, hour), Expected())
        e.issued += 1
        if row.outcome in (Outcome.SERVED, Outcome.NO_SHOW):
            assert row.called_at is not None
            e.waits.append(row.called_at - row.issued_at)
        if row.outcome is Outcome.SERVED:
            e.served += 1
            e.service_times.append(truth[row.ticket].service_seconds)
        elif row.outcome is Outcome.NO_SHOW:
            e.no_show += 1
        else:
            # Gave up; or still waiting when the office closed, which a final day counts the same.
            e.abandoned += 1
    return found


def p90(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return stdstats.quantiles(values, n=10, method="inclusive")[-1]


def check(got: Figures, want: Expected) -> None:
    assert (got.issued, got.served, got.no_show, got.abandoned) == (
        want.issued,
        want.served,
        want.no_show,
        want.abandoned,
    )
    assert got.called == len(want.waits)
    if want.waits:
        assert got.mean_wait == pytest.approx(stdstats.fmean(want.waits), abs=2e-3)
        assert got.p90_wait == pytest.approx(p90(want.waits), abs=2e-3)
        within = sum(1 for w in want.waits if w <= TARGET)
        assert got.within == within
        assert got.share_within == pytest.approx(within / (len(want.waits) + want.abandoned))
    else:
        assert got.mean_wait is None
        assert got.p90_wait is None
    if want.service_times:
        assert got.mean_service == pytest.approx(stdstats.fmean(want.service_times), abs=2e-3)
    else:
        assert got.mean_service is None


async def test_replayed_day_matches_the_trace(queue: QueueClient) -> None:
    trace, rows, office = await replay_normal(queue)
    days = await day_stats(queue.redis, office, REPLAY_DAY, REPLAY_DAY, after_the_day(REPLAY_DAY))
    report = Report(office, days, {})
    assert days[0].final

    total = expected(trace, rows, lambda row, hour: "all")["all"]
    assert total.issued == len(trace.arrivals) == 238
    check(report.total(), total)

    by_hour = expected(trace, rows, lambda row, hour: hour)
    assert [hour for hour, _ in report.by_hour()] == list(range(8, 17))
    for hour, got in report.by_hour():
        check(got, by_hour[hour])

    by_service = expected(trace, rows, lambda row, hour: row.service)
    assert report.services() == sorted(by_service)
    for service, got in report.by_service():
        check(got, by_service[service])

    by_both = expected(trace, rows, lambda row, hour: (row.service, hour))
    assert {(s, h) for _, h, s, _ in report.rows()} == set(by_both)
    for _, hour, service, got in report.rows():
        check(got, by_both[service, hour])

    one = Report(office, days, {}, service="certs")
    check(one.total(), by_service["certs"])


async def test_a_service_target_is_its_first_band(queue: QueueClient) -> None:
    trace, rows, office = await replay_normal(queue)
    days = await day_stats(queue.redis, office, REPLAY_DAY, REPLAY_DAY, after_the_day(REPLAY_DAY))
    waits = expected(trace, rows, lambda row, hour: row.service)["moving"].waits
    report = Report(office, days, {"moving": 5 * 60.0}, service="moving")
    assert report.total().within == sum(1 for w in waits if w <= 300)
    assert report.total().within < sum(1 for w in waits if w <= TARGET)


# -- what counts where, worked by hand --------------------------------------------------------


#: An in-person service of the hand-worked day (the fixtures' ``care`` is remote).
TAX = Service("tax", "E", "税", "Local tax", default_seconds=300)


async def hand_day(queue: QueueClient) -> None:
    """A day at ``kokurakita`` (T0 is 09:00 in Tokyo), in time order."""
    o = OFFICE.id
    await queue.put_service(o, TAX, now=T0)
    await queue.open_counter(o, "c1", ["certs", "moving", "tax"], now=T0)
    a = (await queue.issue(o, "certs", now=T0)).ticket
    b = (await queue.issue(o, "certs", now=T0 + 60)).ticket
    await queue.issue(o, "tax", now=T0 + 100, appointment_at=T0 + 7200)  # f
    await queue.issue(o, "certs", now=T0 + 120, appointment_at=T0 + 3 * DAY)  # g, booked ahead
    assert (await queue.call_next(o, "c1", now=T0 + 300)).id == a.id  # type: ignore[union-attr]
    await queue.start(o, a.id, now=T0 + 310)
    await queue.finish(o, a.id, now=T0 + 610)
    assert (await queue.call_next(o, "c1", now=T0 + 700)).id == b.id  # type: ignore[union-attr]
    await queue.no_show(o, b.id, now=T0 + 760)
    c = (await queue.issue(o, "moving", now=T0 + 3600)).ticket
    d = (await queue.issue(o, "moving", now=T0 + 3660)).ticket
    await queue.cancel(o, c.id, now=T0 + 3700)
    e = (await queue.issue(o, "certs", now=T0 + 3720)).ticket
    await queue.transfer(o, e.id, "moving", now=T0 + 3800)
    await queue.cancel(o, d.id, now=T0 + 4000, reason=CancelReason.ABANDONED)
    called = await queue.call_next(o, "c1", now=T0 + 7500)  # f: its appointment is due
    assert called is not None
    assert called.service == "tax"


def tally(issued: int, **fields: object) -> Tally:
    return Tally(issued=issued, **fields)  # type: ignore[arg-type]


async def test_what_counts_where(queue: QueueClient, office: Office) -> None:
    await hand_day(queue)
    day = date(2026, 11, 26)
    live = (await compute_days(queue.redis, office, [day], T0 + 8000))[day]
    cells = {
        # a served (waited 300 s, served 300 s), b a no-show (waited 640 s), g booked ahead
        ("certs", 9): tally(3, served=1, no_show=1, waits=[300.0, 640.0], service_times=[300.0]),
        # f: called 300 s after its appointment, still at the counter
        ("tax", 9): tally(1, waits=[300.0]),
        # c cancelled, d gave up
        ("moving", 10): tally(2, cancelled=1, abandoned=1),
        # e, transferred to moving, stays with certs; still waiting
        ("certs", 10): tally(1),
    }
    assert not live.final
    assert live.cells == cells

    final = after_the_day(day)
    done = (await compute_days(queue.redis, office, [day], final))[day]
    assert done.final
    # e still waits when the day is final: abandoned. g's appointment is another day.
    cells["certs", 10] = tally(1, abandoned=1)
    assert done.cells == cells

    # What happens after the day is final changes nothing.
    await queue.open_counter(OFFICE.id, "c2", ["moving"], now=final + 5)
    assert await queue.call_next(OFFICE.id, "c2", now=final + 10) is not None  # e
    assert (await compute_days(queue.redis, office, [day], final + 20))[day] == done

    # Two days in one read are the two days read one by one.
    await queue.issue(OFFICE.id, "certs", now=T0 + DAY)
    later = T0 + DAY + 60
    both = await day_stats(queue.redis, office, day, day + timedelta(days=1), later)
    assert both[0] == done
    next_day = day + timedelta(days=1)
    assert both[1] == (await compute_days(queue.redis, office, [next_day], later))[next_day]
    assert both[1].cells == {("certs", 9): tally(1)}


async def test_days_without_events(queue: QueueClient, office: Office) -> None:
    empty = await day_stats(queue.redis, office, date(2026, 11, 1), date(2026, 11, 3), T0)
    assert [d.cells for d in empty] == [{}, {}, {}]
    await hand_day(queue)
    before = await day_stats(queue.redis, office, date(2026, 11, 1), date(2026, 11, 3), T0 + DAY)
    assert [d.cells for d in before] == [{}, {}, {}]
    nothing = figures([], {})
    assert (nothing.issued, nothing.mean_wait, nothing.p90_wait, nothing.share_within) == (
        0,
        None,
        None,
        None,
    )


def test_day_start_follows_the_office_zone() -> None:
    lisbon = Office("lisboa", "リスボン", "Lisbon", timezone="Europe/Lisbon")
    # The last Sunday of October 2026 is 25 hours long in Lisbon.
    start = day_start(lisbon, date(2026, 10, 25))
    assert day_start(lisbon, date(2026, 10, 26)) - start == 25 * 3600
    assert datetime.fromtimestamp(start, ZoneInfo("Europe/Lisbon")).hour == 0


# -- the roll-up job --------------------------------------------------------------------------


async def _with_queue(settings: Settings, action: Callable[[QueueClient], object]) -> object:
    client = AsyncRedis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        result = action(QueueClient(client, settings))
        return await result if asyncio.iscoroutine(result) else result
    finally:
        await client.aclose()


def live_day(settings: Settings, day: date, now: float) -> DayStats:
    async def compute(queue: QueueClient) -> DayStats:
        office = await queue.office(REPLAY_OFFICE)
        return (await compute_days(queue.redis, office, [day], now))[day]

    found = asyncio.run(_with_queue(settings, compute))
    assert isinstance(found, DayStats)
    return found


def test_roll_up_equals_the_live_figures_and_is_idempotent(
    connection: redis.Redis, settings: Settings
) -> None:
    asyncio.run(_with_queue(settings, replay_normal))
    now = after_the_day(REPLAY_DAY)
    live = live_day(settings, REPLAY_DAY, now)

    job = run_job(connection, roll_up_day, REPLAY_OFFICE, REPLAY_DAY.isoformat(), now)

    assert job.get_status() == JobStatus.FINISHED
    total = figures(((s, t) for (s, _), t in live.cells.items()), {})
    assert job.return_value() == {
        "issued": 238,
        "called": total.called,
        "served": total.served,
        "no_show": total.no_show,
        "cancelled": 0,
        "abandoned": total.abandoned,
    }
    stored = connection.hget(keys.stats_days(REPLAY_OFFICE), REPLAY_DAY.isoformat())
    assert stored is not None
    assert DayStats.from_json(stored.decode()) == live

    again = run_job(connection, roll_up_day, REPLAY_OFFICE, REPLAY_DAY.isoformat(), now + 3600)
    assert again.return_value() == job.return_value()
    assert connection.hgetall(keys.stats_days(REPLAY_OFFICE)) == {
        REPLAY_DAY.isoformat().encode(): stored
    }

    # Months of figures read the roll-ups, not the stream.
    connection.delete(keys.events(REPLAY_OFFICE))
    assert live_day(settings, REPLAY_DAY, now).cells == {}

    async def read(queue: QueueClient) -> list[DayStats]:
        office = await queue.office(REPLAY_OFFICE)
        return await day_stats(queue.redis, office, REPLAY_DAY, REPLAY_DAY, now)

    assert asyncio.run(_with_queue(settings, read)) == [live]


async def kokurakita_day(queue: QueueClient) -> None:
    await queue.put_office(OFFICE, now=T0)
    for service in SERVICES:
        await queue.put_service(OFFICE.id, service, now=T0)
    await hand_day(queue)


def test_a_day_not_final_is_not_rolled_up(connection: redis.Redis, settings: Settings) -> None:
    asyncio.run(_with_queue(settings, kokurakita_day))
    day = date(2026, 11, 26)
    job = run_job(connection, roll_up_day, OFFICE.id, day.isoformat(), after_the_day(day) - 120)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() is None
    assert connection.exists(keys.stats_days(OFFICE.id)) == 0
    job = run_job(connection, roll_up_day, OFFICE.id, day.isoformat(), after_the_day(day))
    assert job.return_value() == {
        "issued": 7,
        "called": 3,
        "served": 1,
        "no_show": 1,
        "cancelled": 1,
        "abandoned": 2,
    }


@pytest.mark.parametrize(
    ("office", "day", "status"),
    [("nowhere", "2026-11-26", JobStatus.FINISHED), (OFFICE.id, "26 Nov", JobStatus.FAILED)],
)
def test_roll_up_of_nothing(
    connection: redis.Redis, settings: Settings, office: str, day: str, status: JobStatus
) -> None:
    asyncio.run(_with_queue(settings, kokurakita_day))
    job = run_job(connection, roll_up_day, office, day, T0 + 10 * DAY)
    assert job.get_status() == status
    assert job.return_value() is None
    assert connection.keys("*stats*") == []


def test_roll_up_past_days_rolls_each_day_once_and_schedules_itself(
    connection: redis.Redis, settings: Settings
) -> None:
    asyncio.run(_with_queue(settings, replay_normal))
    now = datetime(2026, 11, 6, 12, 0, tzinfo=TOKYO).timestamp()  # 03:00 UTC

    job = run_job(connection, roll_up_past_days, now)

    # From the stream's first day to the last final one; the 6th is today.
    assert job.return_value() == {REPLAY_OFFICE: ["2026-11-04", "2026-11-05"]}
    registry = ScheduledJobRegistry(queue=job_queue(connection))
    assert registry.get_job_ids() == ["madoguchi-roll-up-past-days-20261106T04"]
    assert run_job(connection, roll_up_past_days, now).return_value() == {REPLAY_OFFICE: []}
    assert registry.get_job_ids() == ["madoguchi-roll-up-past-days-20261106T04"]
    stored = connection.hgetall(keys.stats_days(REPLAY_OFFICE))
    assert DayStats.from_json(stored[b"2026-11-05"].decode()).cells == {}
    assert DayStats.from_json(stored[b"2026-11-04"].decode()) == live_day(settings, REPLAY_DAY, now)


# -- the page and the CSV ---------------------------------------------------------------------


async def signed_in(
    app: Starlette, username: str, role: Role, offices: tuple[str, ...] = (REPLAY_OFFICE,)
) -> dict[str, str]:
    """Request headers carrying a live session of a new account."""
    account = StaffAccount(username, username.title(), role, offices)
    await AccountStore(app.state.redis).create(account, PASSWORD)
    session = await app.state.sessions.create(username, now=app.state.clock())
    return {"Cookie": f"__Host-madoguchi={session.id}"}


REPLAY_RANGE = {"office": REPLAY_OFFICE, "from": "2026-11-04", "to": "2026-11-04"}


async def test_page_shows_charts_and_tables(
    app: Starlette, client: httpx.AsyncClient, queue: QueueClient
) -> None:
    await replay_normal(queue)
    headers = await signed_in(app, "mori", Role.SUPERVISOR)
    response = await client.get("/staff/stats", params=REPLAY_RANGE, headers=headers)
    assert response.status_code == 200
    page = response.text
    assert page.count('role="img"') == 3
    for chart in ("chart-hourly", "chart-waits", "chart-services"):
        assert f'<title id="{chart}-title">' in page
        assert f'<desc id="{chart}-desc">' in page
    assert '<dd id="kpi-issued">238</dd>' in page
    assert re.search(r'<th scope="row">2026-11-04</th>\s*<td>238</td>', page)
    assert 'class="target"' in page  # every service has the default target: one line
    assert "figures are live" not in page
    assert (
        'href="/staff/stats.csv?office=kokuraminami&amp;from=2026-11-04&amp;to=2026-11-04"' in page
    )


async def test_today_is_live(app: Starlette, client: httpx.AsyncClient, queue: QueueClient) -> None:
    headers = await signed_in(app, "mori", Role.SUPERVISOR, (OFFICE.id,))
    await queue.issue(OFFICE.id, "certs", now=T0 - 600)
    await queue.issue(OFFICE.id, "moving", now=T0 - 300)
    response = await client.get("/staff/stats", headers=headers)
    assert response.status_code == 200
    assert "2026-11-20 to 2026-11-26" in response.text  # the last 7 days
    assert '<dd id="kpi-issued">2</dd>' in response.text
    assert "figures are live" in response.text


async def test_csv(app: Starlette, client: httpx.AsyncClient, queue: QueueClient) -> None:
    _, _, office = await replay_normal(queue)
    headers = await signed_in(app, "mori", Role.SUPERVISOR)
    response = await client.get("/staff/stats.csv", params=REPLAY_RANGE, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="madoguchi-kokuraminami-2026-11-04-2026-11-04.csv"'
    )
    assert response.content.startswith(b"\xef\xbb\xbf")
    text = response.content.decode("utf-8-sig")
    assert "\r\n" in text
    lines = list(csv.DictReader(io.StringIO(text)))
    assert list(lines[0]) == list(CSV_COLUMNS)
    days = await day_stats(queue.redis, office, REPLAY_DAY, REPLAY_DAY, app.state.clock())
    rows = Report(office, days, {}).rows()
    assert len(lines) == len(rows)
    for line, (day, hour, service, f) in zip(lines, rows, strict=True):
        assert (line["date"], int(line["hour"]), line["service"]) == (str(day), hour, service)
        assert int(line["issued"]) == f.issued
        assert int(line["served"]) == f.served
        assert int(line["abandoned"]) == f.abandoned
        if f.mean_wait is None:
            assert line["mean_wait_min"] == ""
        else:
            assert float(line["mean_wait_min"]) == pytest.approx(f.mean_wait / 60, abs=0.005)
        assert float(line["target_min"]) == 15
    assert sum(int(line["issued"]) for line in lines) == 238
    assert {line["service_name_ja"] for line in lines} >= {"証明書", "転入・転出"}

    one = await client.get(
        "/staff/stats.csv", params=REPLAY_RANGE | {"service": "certs"}, headers=headers
    )
    assert (
        'filename="madoguchi-kokuraminami-2026-11-04-2026-11-04-certs.csv"'
        in (one.headers["content-disposition"])
    )
    assert {line["service"] for line in csv.DictReader(io.StringIO(one.text.lstrip("\ufeff")))} == {
        "certs"
    }


BAD = [
    ({"from": "2026-13-01"}, 400, '"from" must be a date written YYYY-MM-DD'),
    ({"to": "yesterday"}, 400, '"to" must be a date written YYYY-MM-DD'),
    ({"from": "20261104"}, 400, '"from" must be a date'),
    ({"from": "2026-11-05", "to": "2026-11-04"}, 400, "starts on 2026-11-05 after it ends"),
    ({"from": "2026-11-04", "to": "2026-11-04"}, 200, ""),
    ({"from": "2025-11-26", "to": "2026-11-26"}, 200, ""),
    ({"from": "2025-01-01", "to": "2026-11-04"}, 400, "covers 673 days; choose at most 366"),
    ({"to": "2026-12-31"}, 400, "after today (2026-11-26)"),
    ({"office": "nowhere"}, 404, 'office "nowhere" does not exist'),
    ({"office": "Bad Office!"}, 400, "is not an office id"),
    ({"service": "passport"}, 404, 'service "passport" does not exist'),
    ({"service": "../x"}, 400, "is not a service id"),
]


@pytest.mark.parametrize(("change", "status", "message"), BAD)
async def test_bad_parameters(
    app: Starlette,
    client: httpx.AsyncClient,
    change: dict[str, str],
    status: int,
    message: str,
) -> None:
    headers = await signed_in(app, "abe", Role.ADMIN)
    params = {"office": OFFICE.id} | change
    page = await client.get("/staff/stats", params=params, headers=headers)
    export = await client.get("/staff/stats.csv", params=params, headers=headers)
    assert (page.status_code, export.status_code) == (status, status)
    if status == 200:
        return
    assert 'role="alert"' in page.text
    assert message.replace('"', "&#34;") in page.text
    assert message in export.json()["error"]["message"]


async def test_who_may_see_what(
    app: Starlette, client: httpx.AsyncClient, queue: QueueClient
) -> None:
    await replay_normal(queue)
    anonymous = await client.get("/staff/stats", params=REPLAY_RANGE)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/staff/signin?next=")
    assert (await client.get("/staff/stats.csv", params=REPLAY_RANGE)).status_code == 303

    clerk = await signed_in(app, "ito", Role.STAFF)
    for path in ("/staff/stats", "/staff/stats.csv"):
        assert (await client.get(path, params=REPLAY_RANGE, headers=clerk)).status_code == 403

    elsewhere = await signed_in(app, "sato", Role.SUPERVISOR, (OFFICE.id,))
    page = await client.get("/staff/stats", params=REPLAY_RANGE, headers=elsewhere)
    assert page.status_code == 403
    assert "you do not work at office" in page.text
    assert '<option value="kokuraminami"' not in page.text  # only their own offices to pick
    export = await client.get("/staff/stats.csv", params=REPLAY_RANGE, headers=elsewhere)
    assert export.status_code == 403
    own = await client.get("/staff/stats", headers=elsewhere)
    assert own.status_code == 200

    admin = await signed_in(app, "abe", Role.ADMIN, ())
    page = await client.get("/staff/stats", params=REPLAY_RANGE, headers=admin)
    assert page.status_code == 200
    assert '<option value="kokurakita"' in page.text
    assert '<option value="kokuraminami" selected' in page.text


async def test_a_supervisor_of_no_office(app: Starlette, client: httpx.AsyncClient) -> None:
    headers = await signed_in(app, "ueda", Role.SUPERVISOR, ())
    page = await client.get("/staff/stats", headers=headers)
    assert page.status_code == 200
    assert "You are not assigned to any office yet" in page.text
    export = await client.get("/staff/stats.csv", headers=headers)
    assert export.status_code == 404
    assert "you do not work at any office yet" in export.json()["error"]["message"]


def test_one_wait_is_its_own_percentile() -> None:
    one = figures([("certs", Tally(issued=1, abandoned=1, waits=[120.0]))], {})
    assert (one.mean_wait, one.p90_wait, one.within, one.share_within) == (120.0, 120.0, 1, 0.5)


# -- video consultations ----------------------------------------------------------------------


PENSION = Service("pension", "P", "国保・年金", "Insurance and pension", mode=ServiceMode.REMOTE)
CONSULT_DAY = date(2026, 11, 26)


async def consult_day(queue: QueueClient) -> list[Call]:
    """Four consultations at ``kokurakita`` on the day of T0, ended; two rated.

    care: completed (rated 5); completed after a transfer to pension (rated 2); cancelled
    by the resident before anyone answered. pension: the kiosk lost while connected.
    """
    o = OFFICE.id
    await queue.put_service(o, PENSION, now=T0)
    calls = Calls(queue, ring_seconds=30, reconnect_seconds=20)

    a = await calls.request(o, "k1", "care", now=T0)
    await calls.join(o, a.ticket, kiosk="k1", connection="a-k", now=T0 + 1)
    await calls.accept(o, "clerk", ("care",), now=T0 + 60)
    await calls.join(o, a.ticket, staff="clerk", connection="a-s", now=T0 + 62)
    await calls.end(o, a.ticket, CallRole.SPECIALIST, "clerk", now=T0 + 362)
    await calls.rate(o, a.ticket, "k1", 5, now=T0 + 370)

    b = await calls.request(o, "k2", "care", now=T0 + 400)
    await calls.join(o, b.ticket, kiosk="k2", connection="b-k", now=T0 + 401)
    await calls.accept(o, "clerk", ("care",), now=T0 + 460)
    await calls.join(o, b.ticket, staff="clerk", connection="b-s", now=T0 + 470)
    await calls.transfer(o, b.ticket, "clerk", "pension", now=T0 + 530)
    await calls.accept(o, "pensions", ("pension",), now=T0 + 600)
    await calls.join(o, b.ticket, staff="pensions", connection="b-p", now=T0 + 610)
    await calls.end(o, b.ticket, CallRole.KIOSK, "k2", now=T0 + 910)
    await calls.rate(o, b.ticket, "k2", 2, now=T0 + 920)

    c = await calls.request(o, "k3", "care", now=T0 + 1000)
    await calls.join(o, c.ticket, kiosk="k3", connection="c-k", now=T0 + 1001)
    await calls.end(o, c.ticket, CallRole.KIOSK, "k3", now=T0 + 1100)

    d = await calls.request(o, "k4", "pension", now=T0 + 1200)
    await calls.join(o, d.ticket, kiosk="k4", connection="d-k", now=T0 + 1201)
    await calls.accept(o, "pensions", ("pension",), now=T0 + 1230)
    await calls.join(o, d.ticket, staff="pensions", connection="d-s", now=T0 + 1240)
    await calls.leave(o, d.ticket, CallRole.KIOSK, connection="d-k", now=T0 + 1300)
    assert await calls.expire_due(T0 + 1320) == 1

    ended = [await calls.get(o, call.ticket) for call in (a, b, c, d)]
    assert [call.state for call in ended] == [CallState.ENDED] * 4
    return ended


def expected_consultations(ended: list[Call]) -> dict[str, ConsultFigures]:
    """Per topic, straight from the calls' own records."""
    topics: dict[str, list[Call]] = {}
    for call in ended:
        topics.setdefault(call.topic, []).append(call)
    found = {}
    for topic, group in topics.items():
        waits = [float(call.waited or 0) for call in group]
        talks = [call.talked for call in group if call.talked > 0]
        found[topic] = ConsultFigures(
            ended=len(group),
            completed=sum(call.reason == "completed" for call in group),
            cancelled=sum(call.reason == "cancelled" for call in group),
            kiosk_lost=sum(call.reason == "kiosk_lost" for call in group),
            transferred=sum(call.transfers > 0 for call in group),
            mean_wait=stdstats.fmean(waits),
            p90_wait=p90(waits),
            mean_talk=stdstats.fmean(talks) if talks else None,
            faces=tuple(sum(call.rating == face for call in group) for face in range(1, 6)),
        )
    return found


def consult_close(got: ConsultFigures, want: ConsultFigures) -> None:
    assert (got.ended, got.completed, got.cancelled, got.kiosk_lost, got.transferred) == (
        want.ended,
        want.completed,
        want.cancelled,
        want.kiosk_lost,
        want.transferred,
    )
    assert got.faces == want.faces
    for name in ("mean_wait", "p90_wait", "mean_talk"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), abs=2e-3), name


async def test_consultations_per_topic(queue: QueueClient, office: Office) -> None:
    ended = await consult_day(queue)
    want = expected_consultations(ended)
    # The day as worked out by hand agrees with the calls' records.
    care, pension = want["care"], want["pension"]
    assert (care.ended, care.completed, care.cancelled, care.transferred) == (3, 2, 1, 1)
    assert care.mean_wait == pytest.approx((62 + 70 + 100) / 3)
    assert care.p90_wait == pytest.approx(70 + 0.8 * 30)
    assert care.mean_talk == pytest.approx((300 + 60 + 300) / 2)
    assert (care.faces, care.rated, care.mean_rating) == ((0, 1, 0, 0, 1), 2, 3.5)
    assert (pension.ended, pension.kiosk_lost, pension.mean_talk) == (1, 1, 80)
    assert (pension.rated, pension.mean_rating) == (0, None)

    live = (await compute_days(queue.redis, office, [CONSULT_DAY], T0 + 2000))[CONSULT_DAY]
    report = Report(office, [live], {})
    got = dict(report.consultations())
    assert set(got) == {"care", "pension"}
    for topic in got:
        consult_close(got[topic], want[topic])
    total = report.consult_total()
    assert (total.ended, total.completed, total.cancelled, total.kiosk_lost) == (4, 2, 1, 1)
    assert total.faces == (0, 1, 0, 0, 1)
    only = Report(office, [live], {}, "pension").consultations()
    assert [topic for topic, _ in only] == ["pension"]
    # The tickets count as ever: a consultation is a ticket of its topic.
    assert sum(t.issued for (s, _), t in live.cells.items() if s == "care") == 3

    # Final, stored and read back: the same figures; a rating after the day is final is not.
    final = after_the_day(CONSULT_DAY)
    done = (await compute_days(queue.redis, office, [CONSULT_DAY], final))[CONSULT_DAY]
    assert done.consults == live.consults
    calls = Calls(queue, ring_seconds=30, reconnect_seconds=20)
    await calls.rate(OFFICE.id, ended[2].ticket, "k3", 1, now=final + 10)
    later = (await compute_days(queue.redis, office, [CONSULT_DAY], final + 20))[CONSULT_DAY]
    assert later == done
    assert DayStats.from_json(done.to_json()) == done
    await roll_up(queue.redis, office, [CONSULT_DAY], final)
    await queue.redis.delete(keys.events(OFFICE.id))
    (stored,) = await day_stats(queue.redis, office, CONSULT_DAY, CONSULT_DAY, final)
    assert stored == done


def test_a_roll_up_without_consultations_reads_as_none() -> None:
    before = '{"v":1,"day":"2026-11-04","cells":[["certs",9,1,1,0,0,0,[60.0],[120.0]]]}'
    stats = DayStats.from_json(before)
    assert stats.consults == {}
    assert stats.cells == {("certs", 9): tally(1, served=1, waits=[60.0], service_times=[120.0])}
    # A day without consultations stores what it did before they were counted.
    assert stats.to_json() == before
    nothing = Report(OFFICE, [stats], {})
    assert nothing.consultations() == []
    assert (nothing.consult_total().ended, nothing.consult_total().mean_wait) == (0, None)


CONSULT_RANGE = {"office": OFFICE.id, "from": "2026-11-26", "to": "2026-11-26"}


async def test_page_and_csv_show_consultations(
    app: Starlette, client: httpx.AsyncClient, queue: QueueClient
) -> None:
    headers = await signed_in(app, "mori", Role.SUPERVISOR, (OFFICE.id,))
    quiet = await client.get("/staff/stats", params=CONSULT_RANGE, headers=headers)
    assert 'id="table-consultations"' not in quiet.text
    ended = await consult_day(queue)
    app.state.offset = 2000.0
    headers = await signed_in(app, "kudo", Role.SUPERVISOR, (OFFICE.id,))
    want = expected_consultations(ended)

    page = (await client.get("/staff/stats", params=CONSULT_RANGE, headers=headers)).text
    assert '<h2 id="consultations-heading">Video consultations</h2>' in page
    assert '<caption id="table-consultations-caption">Video consultations per topic' in page
    table = page[page.index('id="table-consultations"') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<th scope="row">([^<]+)</th>\s*((?:<td>[^<]*</td>)+)', table)
    cells = {label: re.findall(r"<td>([^<]*)</td>", tds) for label, tds in rows}
    care = want["care"]
    wait, p90_wait, talk = care.mean_wait, care.p90_wait, care.mean_talk
    assert wait is not None
    assert p90_wait is not None
    assert talk is not None
    assert cells["Long-term care"] == [
        "3",
        "2",
        "1",
        "0",
        "1",
        f"{wait / 60:.1f}",
        f"{p90_wait / 60:.1f}",
        f"{talk / 60:.1f}",
        "2",
        "3.50",
        "0",
        "1",
        "0",
        "0",
        "1",
    ]
    assert cells["Insurance and pension"][:5] == ["1", "0", "0", "1", "0"]
    assert cells["Insurance and pension"][8:10] == ["0", "–"]
    assert cells["All topics"][:5] == ["4", "2", "1", "1", "1"]
    link = "office=kokurakita&amp;from=2026-11-26&amp;to=2026-11-26&amp;table=consultations"
    assert f'href="/staff/stats.csv?{link}"' in page

    export = await client.get(
        "/staff/stats.csv", params=CONSULT_RANGE | {"table": "consultations"}, headers=headers
    )
    assert export.status_code == 200
    assert export.headers["content-disposition"] == (
        'attachment; filename="madoguchi-kokurakita-2026-11-26-2026-11-26-consultations.csv"'
    )
    lines = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert list(lines[0]) == list(CONSULT_CSV_COLUMNS)
    by_topic = {line["service"]: line for line in lines}
    assert set(by_topic) == {"care", "pension"}
    line = by_topic["care"]
    assert (line["date"], line["service_name_ja"], line["ended"], line["transferred"]) == (
        "2026-11-26",
        "介護",
        "3",
        "1",
    )
    assert float(line["p90_wait_min"]) == pytest.approx(p90_wait / 60, abs=0.005)
    assert float(line["mean_talk_min"]) == pytest.approx(talk / 60, abs=0.005)
    assert [line[f"rating_{face}"] for face in range(1, 6)] == ["0", "1", "0", "0", "1"]
    assert (line["ratings"], line["mean_rating"]) == ("2", "3.50")
    assert by_topic["pension"]["mean_rating"] == ""

    bad = await client.get(
        "/staff/stats.csv", params=CONSULT_RANGE | {"table": "calls"}, headers=headers
    )
    assert bad.status_code == 400
    assert '"table" is "tickets" or "consultations"' in bad.json()["error"]["message"]
