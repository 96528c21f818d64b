"""The trace: one ward-office day read from JSON Lines, checked line by line.

The format is the project's ``traces/FORMAT.md``; samples are in ``tests/data/``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..exceptions import QueueError
from ..model import check_slug

#: Every trace is a day at an office in Japan, opening at 08:30 local time.
ZONE = ZoneInfo("Asia/Tokyo")
OPENING = time(8, 30)


def _letters() -> Iterable[str]:
    alphabet = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    yield from alphabet
    for first, second in itertools.product(alphabet, alphabet):
        yield first + second


#: Ticket-number prefixes given to a trace's services, in trace order.
PREFIXES = tuple(_letters())


class TraceError(ValueError):
    """A trace line is not what the format allows; the message names the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True)
class TraceService:
    id: str
    name: str


@dataclass(frozen=True)
class Truth:
    """What really happened to a resident: known to the harness, never to the system."""

    service_seconds: float
    patience_seconds: float
    no_show: bool


@dataclass(frozen=True)
class Staff:
    line: int
    t: float
    counter: str
    #: The services the counter serves on ``open``; empty on ``close``.
    services: tuple[str, ...]

    @property
    def opens(self) -> bool:
        return bool(self.services)


@dataclass(frozen=True)
class Arrival:
    line: int
    t: float
    ticket: str
    service: str
    priority: bool
    truth: Truth


@dataclass(frozen=True)
class End:
    line: int
    t: float


@dataclass(frozen=True)
class Trace:
    office: str
    date: date
    open_seconds: float
    services: tuple[TraceService, ...]
    #: Staff and arrival lines in time order; the trace's ``end`` is :attr:`end`.
    events: tuple[Staff | Arrival, ...]
    end: End

    @property
    def arrivals(self) -> list[Arrival]:
        return [e for e in self.events if isinstance(e, Arrival)]

    @property
    def opening(self) -> float:
        """The moment the office opens (``t = 0``), in seconds since the epoch."""
        return datetime.combine(self.date, OPENING, tzinfo=ZONE).timestamp()


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required fields, optional fields)
    "office": (_names("office date open_seconds services"), frozenset()),
    "staff": (_names("t counter action"), _names("services")),
    "arrival": (
        _names("t ticket service priority service_seconds patience_seconds no_show"),
        frozenset(),
    ),
    "end": (_names("t"), frozenset()),
}


@dataclass
class _Line:
    """One parsed JSON line, with checked accessors whose errors name the line."""

    number: int
    data: dict[str, Any]

    def fail(self, message: str) -> TraceError:
        return TraceError(self.number, message)

    def text(self, name: str) -> str:
        value = self.data[name]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f'"{name}" must be a non-empty string, not {json.dumps(value)}')
        return value

    def slug(self, name: str, kind: str) -> str:
        value = self.text(name)
        try:
            return check_slug(kind, value)
        except QueueError as exc:
            raise self.fail(exc.message) from exc

    def flag(self, name: str) -> bool:
        value = self.data[name]
        if not isinstance(value, bool):
            raise self.fail(f'"{name}" must be true or false, not {json.dumps(value)}')
        return value

    def seconds(self, name: str, *, positive: bool = False) -> float:
        value = self.data[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (positive and value == 0)
        ):
            wanted = "a positive number" if positive else "a number, at least 0"
            raise self.fail(f'"{name}" must be {wanted} of seconds, not {json.dumps(value)}')
        return float(value)


def _read_line(number: int, raw: str) -> _Line:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TraceError(number, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise TraceError(number, f"must be a JSON object, not {type(data).__name__}")
    kind = data.get("kind")
    if kind not in _FIELDS:
        known = ", ".join(_FIELDS)
        raise TraceError(number, f"unknown kind {json.dumps(kind)} (expected one of {known})")
    required, optional = _FIELDS[kind]
    missing = sorted(required - data.keys())
    if missing:
        raise TraceError(number, f"{kind} line lacks {', '.join(missing)}")
    unexpected = sorted(data.keys() - required - optional - {"kind"})
    if unexpected:
        raise TraceError(number, f"{kind} line has unexpected {', '.join(unexpected)}")
    return _Line(number, data)


def _office_line(line: _Line) -> tuple[str, date, float, tuple[TraceService, ...]]:
    office = line.slug("office", "office")
    try:
        day = date.fromisoformat(line.text("date"))
    except ValueError as exc:
        raise line.fail(f'"date" must be YYYY-MM-DD, not {json.dumps(line.data["date"])}') from exc
    open_seconds = line.seconds("open_seconds", positive=True)
    raw = line.data["services"]
    if not isinstance(raw, list) or not raw:
        raise line.fail('"services" must be a non-empty list of {"id": …, "name": …}')
    services: list[TraceService] = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) != {"id", "name"}:
            raise line.fail(f'each service must be {{"id": …, "name": …}}, not {json.dumps(entry)}')
        item = _Line(line.number, entry)
        service = TraceService(item.slug("id", "service"), item.text("name"))
        if any(s.id == service.id for s in services):
            raise line.fail(f'service "{service.id}" is listed twice')
        services.append(service)
    if len(services) > len(PREFIXES):
        raise line.fail(f"a trace may offer at most {len(PREFIXES)} services")
    return office, day, open_seconds, tuple(services)


def parse_trace(lines: Iterable[str]) -> Trace:
    """Read and check a trace given as its lines; blank lines are skipped.

    Raises :class:`TraceError` naming the first line that breaks the format.
    """
    header: tuple[str, date, float, tuple[TraceService, ...]] | None = None
    events: list[Staff | Arrival] = []
    end: End | None = None
    known: set[str] = set()
    tickets: set[str] = set()
    open_counters: set[str] = set()
    clock = 0.0
    number = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        line = _read_line(number, raw)
        kind = line.data["kind"]
        if header is None:
            if kind != "office":
                raise line.fail(f"the first line must be the office line, not a {kind} line")
            header = _office_line(line)
            known = {s.id for s in header[3]}
            continue
        if kind == "office":
            raise line.fail("a trace has one office line, and it is the first")
        if end is not None:
            raise line.fail(f"nothing may follow the end line (line {end.line})")
        t = line.seconds("t")
        if t < clock:
            raise line.fail(f"time goes backwards: t = {t} after t = {clock}")
        clock = t
        if kind == "end":
            end = End(number, t)
        elif kind == "staff":
            events.append(_staff_line(line, t, known, open_counters))
        else:
            arrival = _arrival_line(line, t, known)
            if arrival.ticket in tickets:
                raise line.fail(f'ticket "{arrival.ticket}" arrives twice')
            tickets.add(arrival.ticket)
            events.append(arrival)
    if header is None:
        raise TraceError(max(number, 1), "the trace is empty: it needs an office line first")
    if end is None:
        raise TraceError(number + 1, "the trace has no end line")
    office, day, open_seconds, services = header
    return Trace(office, day, open_seconds, services, tuple(events), end)


def _staff_line(line: _Line, t: float, known: set[str], open_counters: set[str]) -> Staff:
    counter = line.slug("counter", "counter")
    action = line.data["action"]
    if action == "close":
        if "services" in line.data:
            raise line.fail('a close line takes no "services"')
        if counter not in open_counters:
            raise line.fail(f'counter "{counter}" closes but is not open')
        open_counters.discard(counter)
        return Staff(line.number, t, counter, ())
    if action != "open":
        raise line.fail(f'"action" must be "open" or "close", not {json.dumps(action)}')
    raw = line.data.get("services")
    if not isinstance(raw, list) or not raw:
        raise line.fail(f'counter "{counter}" opens without a non-empty "services" list')
    services: list[str] = []
    for sid in raw:
        if sid not in known:
            raise line.fail(
                f"counter {json.dumps(counter)} serves unknown service {json.dumps(sid)}"
            )
        services.append(sid)
    open_counters.add(counter)
    return Staff(line.number, t, counter, tuple(dict.fromkeys(services)))


def _arrival_line(line: _Line, t: float, known: set[str]) -> Arrival:
    ticket = line.text("ticket")
    service = line.data["service"]
    if service not in known:
        raise line.fail(f"ticket {json.dumps(ticket)} is for unknown service {json.dumps(service)}")
    truth = Truth(
        service_seconds=line.seconds("service_seconds", positive=True),
        patience_seconds=line.seconds("patience_seconds"),
        no_show=line.flag("no_show"),
    )
    return Arrival(line.number, t, ticket, service, line.flag("priority"), truth)


def load_trace(path: Path) -> Trace:
    """Read and check the trace in ``path`` (UTF-8 JSON Lines)."""
    with path.open(encoding="utf-8") as lines:
        return parse_trace(lines)
