"""Statistics for supervisors: ``/staff/stats`` (tables and charts) and ``/staff/stats.csv``.

Both take ``office``, ``from`` and ``to`` (``YYYY-MM-DD``, office time zone; by
default the last 7 days up to today) and an optional ``service``; the CSV with
``table=consultations`` has the video consultations per day and topic instead of the
tickets per day, hour and service. Supervisors see
the offices they work at, admins every office. The figures come from
:mod:`madoguchi.queue.statistics`: roll-ups for past days, the event stream for today.

The charts are SVG drawn on the server (this module computes the geometry, the
template ``staff/stats_charts.html`` the markup): no script, no chart library.
Each is an image with a title and a description, and its numbers are in a table
beside it. The CSV is UTF-8 with a byte-order mark, so that Excel (in Japan too)
opens it with the right encoding.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..queue import statistics
from ..queue.exceptions import NotFound, QueueError
from ..queue.keys import SLUG
from ..queue.model import Office, Service
from ..queue.statistics import FACES, ConsultFigures, Figures, Report
from .accounts import Role
from .exceptions import BadRequest, Forbidden, HTTPError
from .pages import render
from .security import Staff, require
from .state import now_of, queue_of

#: Days shown when no range is given: the last week, today included.
DEFAULT_DAYS = 7
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CSV_COLUMNS = (
    "date",
    "hour",
    "service",
    "service_name_ja",
    "service_name_en",
    "issued",
    "called",
    "served",
    "no_show",
    "cancelled",
    "abandoned",
    "mean_wait_min",
    "p90_wait_min",
    "mean_service_min",
    "target_min",
    "within_target",
    "within_target_share",
)
CONSULT_CSV_COLUMNS = (
    "date",
    "service",
    "service_name_ja",
    "service_name_en",
    "ended",
    "completed",
    "cancelled",
    "kiosk_lost",
    "transferred",
    "mean_wait_min",
    "p90_wait_min",
    "mean_talk_min",
    "ratings",
    "mean_rating",
    *(f"rating_{face}" for face in FACES),
)
#: The CSV's tables: ``table=`` in its query.
CSV_TABLES = ("tickets", "consultations")


# -- the request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What the statistics are asked for, checked."""

    office: Office
    first: date
    last: date
    service: str | None
    today: date

    def params(self, **changes: str) -> str:
        """The query string that asks for this again (with ``changes``)."""
        values = {
            "office": self.office.id,
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "service": self.service or "",
        } | changes
        return urlencode({k: v for k, v in values.items() if v})


async def visible_offices(request: Request, staff: Staff) -> list[str]:
    """The offices whose statistics ``staff`` may see: admins all, others their own."""
    queue = queue_of(request)
    known = await queue.office_ids()
    if staff.account.role is Role.ADMIN:
        return known
    return [office for office in known if office in staff.account.offices]


def _date(name: str, value: str) -> date:
    try:
        if not DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f'"{name}" must be a date written YYYY-MM-DD, such as 2026-11-04, not "{value[:20]}"'
        ) from None


async def read_query(request: Request, staff: Staff, offices: Sequence[str]) -> Query:
    """The checked parameters; a 400, 403 or 404 with a clear message when they are not right."""
    params = request.query_params
    office_id = params.get("office", "").strip()
    if not office_id:
        if not offices:
            raise NotFound("you do not work at any office yet: ask an administrator to add you")
        office_id = offices[0]
    if not SLUG.fullmatch(office_id):
        raise BadRequest(f'"{office_id[:40]}" is not an office id')
    if not staff.account.works_at(office_id):
        raise Forbidden(f'you do not work at office "{office_id}"')
    queue = queue_of(request)
    office = await queue.office(office_id)  # NotFound (404) for an office that does not exist
    today = date.fromisoformat(office.day(now_of(request)))
    last = _date("to", params["to"].strip()) if params.get("to", "").strip() else today
    if params.get("from", "").strip():
        first = _date("from", params["from"].strip())
    else:
        first = min(last, today) - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise BadRequest(f"the range starts on {first} after it ends on {last}")
    if last > today:
        raise BadRequest(
            f"the range ends on {last}, after today ({today}): there are no figures yet"
        )
    days = (last - first).days + 1
    if days > statistics.MAX_DAYS:
        raise BadRequest(
            f"the range covers {days} days; choose at most {statistics.MAX_DAYS} days at once"
        )
    service = params.get("service", "").strip() or None
    if service is not None and not SLUG.fullmatch(service):
        raise BadRequest(f'"{service[:40]}" is not a service id')
    return Query(office, first, last, service, today)


async def office_services(request: Request, office: Office) -> dict[str, Service]:
    queue = queue_of(request)
    snapshot = await queue.snapshot(office.id, now=now_of(request))
    return snapshot.services


def target_seconds(service: Service) -> float:
    """A service's target wait: where its "moderate" congestion band begins."""
    return service.bands[0] * 60.0


async def build_report(request: Request, query: Query, services: dict[str, Service]) -> Report:
    if query.service is not None and query.service not in services:
        raise NotFound(f'service "{query.service}" does not exist at office "{query.office.id}"')
    days = await statistics.day_stats(
        request.app.state.redis, query.office, query.first, query.last, now_of(request)
    )
    targets = {sid: target_seconds(service) for sid, service in services.items()}
    return Report(query.office, days, targets, query.service)


# -- numbers as people read them ------------------------------------------------------------


def minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f}"


def percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"


def rating(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


# -- charts -----------------------------------------------------------------------------------

WIDTH = 720.0
HEIGHT = 280.0
LEFT, RIGHT, TOP, BOTTOM = 56.0, 16.0, 16.0, 40.0


@dataclass(frozen=True)
class Tick:
    #: Where the tick is along its axis, in chart units.
    at: float
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


@dataclass(frozen=True)
class Series:
    #: A CSS class: ``mean`` or ``p90``.
    kind: str
    #: The line, one SVG ``points`` string per run of days that have a value.
    segments: list[str]
    #: The marker of every point that has a value: ``(x, y, label)``.
    points: list[tuple[float, float, str]]


@dataclass(frozen=True)
class Chart:
    """The geometry of one chart, in a ``width`` × ``height`` view box."""

    width: float
    height: float
    left: float
    top: float
    right: float
    bottom: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    bars: list[Bar]
    series: list[Series]
    #: The y of the target line, if one is drawn.
    target: float | None = None


def nice_scale(highest: float, ticks: int = 5) -> tuple[float, float]:
    """A round step (1, 2 or 5 × 10ⁿ) and the axis top it reaches, for values up to ``highest``."""
    if highest <= 0:
        return 1.0, 1.0
    rough = highest / ticks
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    return step, step * math.ceil(highest / step)


def _y_ticks(step: float, top: float, scale: Callable[[float], float]) -> list[Tick]:
    count = round(top / step)
    return [Tick(scale(i * step), f"{i * step:g}") for i in range(count + 1)]


def column_chart(values: Sequence[tuple[str, float]]) -> Chart:
    """Vertical bars, one per ``(label, value)``."""
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    step, peak = nice_scale(max((v for _, v in values), default=0))

    def y(value: float) -> float:
        return bottom - (bottom - top) * value / peak

    slot = (right - left) / max(len(values), 1)
    bars = [
        Bar(
            x=left + i * slot + slot * 0.15,
            y=y(value),
            width=slot * 0.7,
            height=bottom - y(value),
            label=label,
            value=f"{value:g}",
        )
        for i, (label, value) in enumerate(values)
    ]
    x_ticks = [Tick(left + (i + 0.5) * slot, label) for i, (label, _) in enumerate(values)]
    return Chart(
        WIDTH, HEIGHT, left, top, right, bottom, _y_ticks(step, peak, y), x_ticks, bars, []
    )


def line_chart(
    labels: Sequence[str], series: dict[str, Sequence[float | None]], target: float | None
) -> Chart:
    """Lines over ``labels`` (a gap where a value is ``None``), and a horizontal target line."""
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    values = [v for line in series.values() for v in line if v is not None]
    step, peak = nice_scale(max([*values, target or 0.0], default=0))

    def y(value: float) -> float:
        return bottom - (bottom - top) * value / peak

    slot = (right - left) / max(len(labels), 1)

    def x(i: int) -> float:
        return left + (i + 0.5) * slot

    lines = []
    for kind, line in series.items():
        segments: list[list[str]] = [[]]
        points = []
        for i, value in enumerate(line):
            if value is None:
                segments.append([])
                continue
            segments[-1].append(f"{x(i):.1f},{y(value):.1f}")
            points.append((round(x(i), 1), round(y(value), 1), f"{labels[i]}: {value:.1f}"))
        lines.append(Series(kind, [" ".join(s) for s in segments if len(s) > 1], points))
    every = math.ceil(len(labels) / 12)
    x_ticks = [Tick(x(i), label) for i, label in enumerate(labels) if i % every == 0]
    return Chart(
        WIDTH,
        HEIGHT,
        left,
        top,
        right,
        bottom,
        _y_ticks(step, peak, y),
        x_ticks,
        [],
        lines,
        None if target is None else y(target),
    )


def row_chart(values: Sequence[tuple[str, float, str]]) -> Chart:
    """Horizontal bars from 0 to 100 %, one per ``(label, share, value text)``."""
    row = 36.0
    left, right, top = 180.0, WIDTH - 96.0, 8.0
    bottom = top + row * max(len(values), 1)
    height = bottom + 28.0

    def x(share: float) -> float:
        return left + (right - left) * share

    bars = [
        Bar(
            x=left,
            y=top + i * row + 6,
            width=x(share) - left,
            height=row - 12,
            label=label if len(label) <= 22 else label[:21] + "…",
            value=text,
        )
        for i, (label, share, text) in enumerate(values)
    ]
    ticks = [Tick(x(q / 4), f"{q * 25} %") for q in range(5)]
    return Chart(WIDTH, height, left, top, right, bottom, [], ticks, bars, [])


@dataclass(frozen=True)
class Charts:
    """The page's charts, and the figures behind them (the tables show the same)."""

    hours: list[tuple[int, Figures]]
    days: list[tuple[date, Figures]]
    per_service: list[tuple[str, Figures]]
    hourly: Chart | None
    waits: Chart | None
    services: Chart | None
    #: The one target wait drawn on the waits chart, in minutes; ``None`` when they differ.
    target_minutes: float | None
    #: The rows of the tables: ``(label, figures)``.
    hour_rows: list[tuple[str, Figures]]
    day_rows: list[tuple[str, Figures]]
    service_rows: list[tuple[str, Figures]]

    @property
    def busiest(self) -> tuple[int, Figures] | None:
        return max(self.hours, key=lambda hf: hf[1].issued, default=None)

    @property
    def slowest(self) -> tuple[date, Figures] | None:
        waited = [(d, f) for d, f in self.days if f.mean_wait is not None]
        return max(waited, key=lambda df: df[1].mean_wait or 0.0, default=None)


def charts(report: Report, names: Callable[[str], str]) -> Charts:
    hours = report.by_hour()
    days = report.by_day()
    per_service = report.by_service()
    shown = [report.service] if report.service else report.services()
    targets = {report.targets.get(s, statistics.DEFAULT_TARGET_SECONDS) for s in shown}
    target = targets.pop() / 60 if len(targets) == 1 else None
    waits = None
    if any(f.called for _, f in days):
        waits = line_chart(
            [f"{d.month}/{d.day}" for d, _ in days],
            {
                "mean": [None if f.mean_wait is None else f.mean_wait / 60 for _, f in days],
                "p90": [None if f.p90_wait is None else f.p90_wait / 60 for _, f in days],
            },
            target,
        )
    rows = [
        (names(sid), f.share_within or 0.0, f"{percent(f.share_within)} ({f.issued})")
        for sid, f in per_service
    ]
    return Charts(
        hours=hours,
        days=days,
        per_service=per_service,
        hourly=column_chart([(f"{h}:00", f.issued) for h, f in hours]) if hours else None,
        waits=waits,
        services=row_chart(rows) if rows else None,
        target_minutes=target,
        hour_rows=[(f"{h}:00", f) for h, f in hours],
        day_rows=[(d.isoformat(), f) for d, f in days],
        service_rows=[(names(sid), f) for sid, f in per_service],
    )


# -- the page and the CSV ---------------------------------------------------------------------


def _name(services: dict[str, Service]) -> Callable[[str], str]:
    def name(sid: str) -> str:
        service = services.get(sid)
        return service.name_en if service is not None else sid

    return name


async def page(request: Request) -> Response:
    staff = await require(request, Role.SUPERVISOR)
    offices = await visible_offices(request, staff)
    queue = queue_of(request)
    context: dict[str, Any] = {
        "staff": staff,
        "offices": [await queue.office(office) for office in offices],
        "params": request.query_params,
        "minutes": minutes,
        "percent": percent,
        "cells": figures_row,
        "consult_cells": consult_row,
        "faces": FACES,
    }
    if not offices and not request.query_params.get("office"):
        return render(request, "staff/stats.html", context)  # says to ask for an office
    try:
        query = context["query"] = await read_query(request, staff, offices)
        services = context["services"] = await office_services(request, query.office)
        report = await build_report(request, query, services)
    except (HTTPError, QueueError) as exc:
        context["error"] = exc.message
        return render(request, "staff/stats.html", context, status=exc.status)
    name = _name(services)
    context |= {
        "name": name,
        "report": report,
        "total": report.total(),
        "charts": charts(report, name),
        "consultations": [(name(topic), f) for topic, f in report.consultations()],
        "consult_total": report.consult_total(),
    }
    return render(request, "staff/stats.html", context)


def _csv_text(value: object) -> str:
    """A cell Excel will not run as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def csv_rows(report: Report, services: dict[str, Service]) -> list[list[str]]:
    rows = []
    for day, hour, sid, f in report.rows():
        service = services.get(sid)
        target = report.targets.get(sid, statistics.DEFAULT_TARGET_SECONDS)
        rows.append(
            [
                day.isoformat(),
                str(hour),
                sid,
                _csv_text(service.name_ja if service else ""),
                _csv_text(service.name_en if service else ""),
                str(f.issued),
                str(f.called),
                str(f.served),
                str(f.no_show),
                str(f.cancelled),
                str(f.abandoned),
                _number(None if f.mean_wait is None else f.mean_wait / 60, 2),
                _number(None if f.p90_wait is None else f.p90_wait / 60, 2),
                _number(None if f.mean_service is None else f.mean_service / 60, 2),
                _number(target / 60, 2),
                str(f.within),
                _number(f.share_within, 3),
            ]
        )
    return rows


def consult_csv_rows(report: Report, services: dict[str, Service]) -> list[list[str]]:
    rows = []
    for day, sid, f in report.consult_rows():
        service = services.get(sid)
        rows.append(
            [
                day.isoformat(),
                sid,
                _csv_text(service.name_ja if service else ""),
                _csv_text(service.name_en if service else ""),
                str(f.ended),
                str(f.completed),
                str(f.cancelled),
                str(f.kiosk_lost),
                str(f.transferred),
                _number(None if f.mean_wait is None else f.mean_wait / 60, 2),
                _number(None if f.p90_wait is None else f.p90_wait / 60, 2),
                _number(None if f.mean_talk is None else f.mean_talk / 60, 2),
                str(f.rated),
                _number(f.mean_rating, 2),
                *(str(n) for n in f.faces),
            ]
        )
    return rows


async def export(request: Request) -> Response:
    staff = await require(request, Role.SUPERVISOR)
    table = request.query_params.get("table", "").strip() or "tickets"
    if table not in CSV_TABLES:
        raise BadRequest(f'"table" is "tickets" or "consultations", not "{table[:20]}"')
    query = await read_query(request, staff, await visible_offices(request, staff))
    services = await office_services(request, query.office)
    report = await build_report(request, query, services)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if table == "consultations":
        writer.writerow(CONSULT_CSV_COLUMNS)
        writer.writerows(consult_csv_rows(report, services))
    else:
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_rows(report, services))
    name = f"madoguchi-{query.office.id}-{query.first}-{query.last}"
    if query.service:
        name += f"-{query.service}"
    if table == "consultations":
        name += "-consultations"
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"',
            "Cache-Control": "no-store",
        },
    )


def figures_row(f: Figures) -> list[str]:
    """The cells of a table row, in the order of the tables' columns."""
    return [
        str(f.issued),
        str(f.served),
        str(f.no_show),
        str(f.abandoned),
        minutes(f.mean_wait),
        minutes(f.p90_wait),
        percent(f.share_within),
        minutes(f.mean_service),
    ]


def consult_row(f: ConsultFigures) -> list[str]:
    """The cells of a row of the consultations table, in the order of its columns."""
    return [
        str(f.ended),
        str(f.completed),
        str(f.cancelled),
        str(f.kiosk_lost),
        str(f.transferred),
        minutes(f.mean_wait),
        minutes(f.p90_wait),
        minutes(f.mean_talk),
        str(f.rated),
        rating(f.mean_rating),
        *(str(n) for n in f.faces),
    ]


routes: list[BaseRoute] = [
    Route("/staff/stats", page, methods=["GET"]),
    Route("/staff/stats.csv", export, methods=["GET"]),
]
