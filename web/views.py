"""JSON shapes of tickets, estimates, counters and office status, as the API returns them."""

from __future__ import annotations

import functools
import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..queue.model import Counter, Estimate, Office, Service, Ticket
from ..queue.waits import Board


def moment(seconds: float | None, zone: ZoneInfo) -> str | None:
    """An ISO 8601 time in the office's zone, to the second."""
    if seconds is None:
        return None
    return _second(math.floor(seconds), zone)


@functools.lru_cache(maxsize=4096)
def _second(second: int, zone: ZoneInfo) -> str:
    # Every response carries a few of these, mostly the same recent seconds: a time zone
    # conversion each was a couple of per cent of a busy web process.
    return datetime.fromtimestamp(second, zone).isoformat(timespec="seconds")


def estimate(value: Estimate | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "wait_seconds": round(value.wait),
        "low_seconds": round(value.low),
        "high_seconds": round(value.high),
        "wait_minutes": round(value.wait / 60),
        "low_minutes": round(value.low / 60),
        "high_minutes": round(value.high / 60),
        "ahead": value.ahead,
        "servers": value.servers,
    }


def ticket(
    office: Office, value: Ticket, wait: Estimate | None, *, with_token: bool
) -> dict[str, Any]:
    zone = office.zone
    shown: dict[str, Any] = {
        "id": value.id,
        "number": value.number,
        "office": office.id,
        "service": value.service,
        "channel": value.channel.value,
        "priority": value.priority,
        "status": value.status.value,
        "position": value.position,
        "issued_at": moment(value.issued_at, zone),
        "appointment_at": moment(value.appointment_at, zone),
        "called_at": moment(value.called_at, zone),
        "started_at": moment(value.started_at, zone),
        "counter": value.counter,
        "recalls": value.recalls,
        "estimate": estimate(wait),
    }
    if with_token:
        shown["token"] = value.token
        shown["url"] = f"/api/v1/offices/{office.id}/tickets/{value.token}"
    return shown


def counter(value: Counter) -> dict[str, Any]:
    return {
        "id": value.id,
        "name": value.name,
        "state": value.state.value,
        "services": list(value.services),
        "ticket": value.current,
    }


def office_summary(value: Office) -> dict[str, Any]:
    return {
        "id": value.id,
        "name_ja": value.name_ja,
        "name_en": value.name_en,
        "timezone": value.timezone,
        "url": f"/api/v1/offices/{value.id}",
    }


def service(value: Service, board: Board) -> dict[str, Any]:
    lines = board.snapshot.lines.get(value.id, {})
    return {
        "id": value.id,
        "prefix": value.prefix,
        "name_ja": value.name_ja,
        "name_en": value.name_en,
        "mode": value.mode.value,
        "active": value.active,
        "waiting": sum(len(line) for line in lines.values()),
        "open_counters": sum(
            1 for c in board.snapshot.counters if c.state.value == "open" and value.id in c.services
        ),
        "estimate_for_new_ticket": estimate(board.estimates.new.get(value.id)),
    }


def office_status(board: Board) -> dict[str, Any]:
    snapshot = board.snapshot
    office = snapshot.office
    return {
        "office": office_summary(office),
        "as_of": moment(board.computed_at, office.zone),
        "last_event": snapshot.last_event,
        "services": [
            service(s, board) for s in sorted(snapshot.services.values(), key=lambda s: s.prefix)
        ],
        "counters": [counter(c) for c in snapshot.counters],
    }
