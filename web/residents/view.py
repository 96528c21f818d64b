"""What a resident sees of their ticket: its state, its place in line and its wait.

:class:`TicketView` is the whole of it, small enough to send in full on every change
(the page never applies deltas, so a reconnecting phone cannot miss one).
:func:`positions` reads every waiting ticket's position out of an office snapshot,
by the same rule as the queue scripts (``position()`` in ``queue/scripts/_lib.lua``),
so that one snapshot serves every ticket of an office instead of one script call each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...queue.model import Estimate, Snapshot, Ticket, TicketStatus


@dataclass(frozen=True)
class TicketView:
    status: str
    number: str
    service: str
    #: Place in line, 1 for the next to be called; 0 once not waiting.
    position: int = 0
    #: Estimated wait and its 80 % interval, in whole minutes (waiting tickets only).
    wait: int | None = None
    low: int | None = None
    high: int | None = None
    #: The counter's name, once called.
    counter: str = ""
    #: Times the ticket was called again; a new call is a new alert.
    recalls: int = 0

    @property
    def ahead(self) -> int:
        return max(self.position - 1, 0)

    @property
    def closed(self) -> bool:
        return TicketStatus(self.status).closed

    @property
    def state(self) -> tuple[str | int | None, ...]:
        """The fields as a plain tuple: kept to compare with the next view, it holds no
        reference the garbage collector has to follow."""
        return (
            self.status,
            self.number,
            self.service,
            self.position,
            self.wait,
            self.low,
            self.high,
            self.counter,
            self.recalls,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "number": self.number,
            "service": self.service,
            "position": self.position,
            "ahead": self.ahead,
            "wait": self.wait,
            "low": self.low,
            "high": self.high,
            "counter": self.counter,
            "recalls": self.recalls,
        }

    def encode(self) -> str:
        """Compact JSON on one line (an SSE ``data`` field)."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))


def only_the_wait_moved(
    old: tuple[str | int | None, ...], new: tuple[str | int | None, ...]
) -> bool:
    """Whether two states (:attr:`TicketView.state`) of a ticket differ only in its wait,
    and by little: less than five minutes (or than a fifth of the wait, if that is more)."""
    if old[:4] != new[:4] or old[7:] != new[7:]:
        return False
    was, now = old[4], new[4]
    if not isinstance(was, int) or not isinstance(now, int):
        return False
    return abs(now - was) < max(5, was // 5)


def minutes(seconds: float) -> int:
    return round(seconds / 60)


def view_of(
    ticket: Ticket,
    *,
    position: int | None = None,
    estimate: Estimate | None = None,
    counter_name: str = "",
) -> TicketView:
    """The resident's view of ``ticket``; ``position`` overrides the one it carries."""
    waiting = ticket.status is TicketStatus.WAITING
    place = ticket.position if position is None else position
    shown = estimate if waiting else None
    return TicketView(
        status=ticket.status.value,
        number=ticket.number,
        service=ticket.service,
        position=place if waiting else 0,
        wait=minutes(shown.wait) if shown else None,
        low=minutes(shown.low) if shown else None,
        high=minutes(shown.high) if shown else None,
        counter=(counter_name or ticket.counter or "")
        if ticket.status in (TicketStatus.CALLED, TicketStatus.SERVING)
        else "",
        recalls=ticket.recalls,
    )


def positions(snapshot: Snapshot) -> dict[str, int]:
    """Every waiting ticket's position in its service's line, by ticket id.

    Due appointments come first, then priority tickets, then the regular line; an
    appointment not yet due counts only in the appointment line (as in the scripts).
    """
    found: dict[str, int] = {}
    due_until = snapshot.at + snapshot.office.appt_early
    for line in snapshot.lines.values():
        appointments = line.get("appt", [])
        priority = line.get("priority", [])
        due = sum(1 for _, score in appointments if score <= due_until)
        for rank, (ticket_id, _) in enumerate(appointments):
            found[ticket_id] = rank + 1
        for rank, (ticket_id, _) in enumerate(priority):
            found[ticket_id] = due + rank + 1
        for rank, (ticket_id, _) in enumerate(line.get("regular", [])):
            found[ticket_id] = due + len(priority) + rank + 1
    return found


def counter_names(snapshot: Snapshot) -> dict[str, str]:
    return {c.id: c.name for c in snapshot.counters}
