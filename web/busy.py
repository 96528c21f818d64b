"""Usual busy hours: how many residents an office usually gets per weekday and hour.

Learned from the office's history: the statistics of the last :data:`WEEKS` weeks of
final days (nightly roll-ups where they exist, the event stream for the others; see
:mod:`madoguchi.queue.statistics`). A weekday's figures average over the days it
was open (had any ticket), so a holiday does not make a Monday look quiet.

``/o/{office}/busy`` draws them as a heat map (an SVG drawn here, on the server) with
a table beside it saying the same; ``/open/busy-hours.json`` and ``.csv`` give them as
open data. Results are cached per process for :data:`CACHE_SECONDS`: they change once a
day.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..queue.model import Office
from ..queue.statistics import day_stats, last_final_day
from .congestion import find_office, iso, missing_office, open_response, to_csv
from .pages import render
from .state import now_of, queue_of

#: Weeks of history the busy hours are learned from.
WEEKS = 8
#: Seconds a computed office is reused.
CACHE_SECONDS = 600.0
#: Seconds open data of busy hours may be cached.
BUSY_MAX_AGE = 3600
#: Heat-map shades: 0 for no tickets, then up to :data:`LEVELS` by share of the busiest hour.
LEVELS = 4
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Hour:
    weekday: int
    hour: int
    #: Mean tickets issued in this hour on the weekday's open days.
    tickets: float
    #: Mean minutes from issue to call of the tickets called, ``None`` with none.
    wait: float | None
    #: Open days of the weekday the mean is over.
    days: int
    level: int


@dataclass(frozen=True)
class BusyHours:
    office: Office
    first: date
    last: date
    #: Every weekday and hour that had tickets, by ``(weekday, hour)``.
    hours: dict[tuple[int, int], Hour]

    @property
    def weekdays(self) -> list[int]:
        """The weekdays the office was open on, Monday first."""
        return sorted({wd for wd, _ in self.hours})

    @property
    def span(self) -> list[int]:
        """The hours from the earliest to the latest that had tickets."""
        if not self.hours:
            return []
        hours = [h for _, h in self.hours]
        return list(range(min(hours), max(hours) + 1))

    def at(self, weekday: int, hour: int) -> Hour:
        return self.hours.get((weekday, hour)) or Hour(weekday, hour, 0.0, None, 0, 0)


async def compute(redis: Redis, office: Office, now: float, weeks: int = WEEKS) -> BusyHours:
    last = last_final_day(office, now)
    first = last - timedelta(days=7 * weeks - 1)
    days = await day_stats(redis, office, first, last, now)
    open_days = [0] * 7
    issued: dict[tuple[int, int], int] = {}
    waits: dict[tuple[int, int], list[float]] = {}
    for day in days:
        if not day.cells:
            continue
        weekday = day.day.weekday()
        open_days[weekday] += 1
        for (_, hour), tally in day.cells.items():
            key = (weekday, hour)
            issued[key] = issued.get(key, 0) + tally.issued
            waits.setdefault(key, []).extend(tally.waits)
    means = {key: count / open_days[key[0]] for key, count in issued.items()}
    busiest = max(means.values(), default=0.0)
    hours = {}
    for key, mean in means.items():
        called = waits.get(key) or []
        hours[key] = Hour(
            key[0],
            key[1],
            round(mean, 1),
            round(sum(called) / len(called) / 60, 1) if called else None,
            open_days[key[0]],
            max(1, math.ceil(LEVELS * mean / busiest)) if mean > 0 else 0,
        )
    return BusyHours(office, first, last, hours)


class BusyCache:
    """Computed busy hours per office, reused for a while (they change once a day)."""

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._known: dict[str, tuple[float, date, BusyHours]] = {}
        self._lock = asyncio.Lock()

    async def get(self, redis: Redis, office: Office, now: float) -> BusyHours:
        known = self._known.get(office.id)
        last = last_final_day(office, now)
        if known is not None and known[1] == last and time.monotonic() - known[0] < self.seconds:
            return known[2]
        async with self._lock:  # one computation at a time: a cold start reads much history
            busy = await compute(redis, office, now)
        self._known[office.id] = (time.monotonic(), last, busy)
        return busy


def cache_of(request: Request) -> BusyCache:
    cache: BusyCache = request.app.state.busy
    return cache


async def busy_of(request: Request, office: Office) -> BusyHours:
    return await cache_of(request).get(request.app.state.redis, office, now_of(request))


# -- the heat map -------------------------------------------------------------------------

CELL_W = 44
CELL_H = 36
LEFT = 56
TOP = 28


@dataclass(frozen=True)
class Cell:
    x: int
    y: int
    hour: Hour


def heat_map(busy: BusyHours) -> dict[str, Any]:
    """What the SVG template draws: cells placed on a grid, and where the labels go."""
    span = busy.span
    rows = busy.weekdays
    cells = [
        Cell(LEFT + i * CELL_W, TOP + j * CELL_H, busy.at(wd, hour))
        for j, wd in enumerate(rows)
        for i, hour in enumerate(span)
    ]
    return {
        "width": LEFT + CELL_W * len(span) + 4,
        "height": TOP + CELL_H * len(rows) + 4,
        "cells": cells,
        "columns": [(LEFT + i * CELL_W + CELL_W // 2, hour) for i, hour in enumerate(span)],
        "rows": [(TOP + j * CELL_H + CELL_H // 2, wd) for j, wd in enumerate(rows)],
        "cell_w": CELL_W - 2,
        "cell_h": CELL_H - 2,
    }


async def page(request: Request) -> Response:
    office = await find_office(request)
    if office is None:
        return missing_office(request)
    busy = await busy_of(request, office)
    return render(
        request,
        "public/busy.html",
        {"office": office, "busy": busy, "map": heat_map(busy)},
    )


# -- open data ----------------------------------------------------------------------------

#: Columns of ``/open/busy-hours.csv``: one row per office, weekday and hour with tickets.
BUSY_FIELDS = (
    "office",
    "weekday",
    "weekday_name",
    "hour",
    "tickets_per_hour",
    "mean_wait_minutes",
    "days",
    "level",
    "from",
    "to",
)


def busy_rows(busy: BusyHours) -> list[dict[str, Any]]:
    return [
        {
            "office": busy.office.id,
            "weekday": h.weekday,
            "weekday_name": WEEKDAYS[h.weekday],
            "hour": h.hour,
            "tickets_per_hour": h.tickets,
            "mean_wait_minutes": h.wait,
            "days": h.days,
            "level": h.level,
            "from": busy.first.isoformat(),
            "to": busy.last.isoformat(),
        }
        for _, h in sorted(busy.hours.items())
    ]


async def _every_office(request: Request) -> list[BusyHours]:
    queue = queue_of(request)
    offices = [await queue.office(o) for o in sorted(await queue.office_ids())]
    return [await busy_of(request, office) for office in offices]


async def busy_json(request: Request) -> Response:
    everything = await _every_office(request)
    body = {
        "generated_at": iso(now_of(request)),
        "weeks": WEEKS,
        "offices": [
            {
                "office": busy.office.id,
                "office_name_ja": busy.office.name_ja,
                "office_name_en": busy.office.name_en,
                "timezone": busy.office.timezone,
                "from": busy.first.isoformat(),
                "to": busy.last.isoformat(),
                "hours": [
                    {k: v for k, v in row.items() if k not in ("office", "from", "to")}
                    for row in busy_rows(busy)
                ],
            }
            for busy in everything
        ],
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return open_response(text, "application/json", BUSY_MAX_AGE)


async def busy_csv(request: Request) -> Response:
    rows = [row for busy in await _every_office(request) for row in busy_rows(busy)]
    return open_response(
        to_csv(BUSY_FIELDS, rows), "text/csv; charset=utf-8", BUSY_MAX_AGE, "busy-hours.csv"
    )


routes: list[BaseRoute] = [
    Route("/o/{office}/busy", page, methods=["GET"]),
    Route("/open/busy-hours.json", busy_json, methods=["GET"]),
    Route("/open/busy-hours.csv", busy_csv, methods=["GET"]),
]
