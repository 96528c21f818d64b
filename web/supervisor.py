"""The supervisor's view of an office: counters, waits, today's figures, and counter controls.

``/staff/supervisor/{office}`` shows every counter of the office with its state,
services and current ticket; the waiting count and the estimated wait of each
service (from the process's :class:`~madoguchi.queue.waits.WaitBoard`); the longest
current wait; and today's issued, served, no-show and abandoned counts, tallied
from the office's event stream. Its forms open, pause and close counters and
change which services a counter serves; ``supervisor.js`` keeps the page live by
re-reading ``/staff/supervisor/{office}/board`` whenever the office's live event
stream (``/staff/live/{office}``) announces a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..consult.console import Specialist, remote_services, specialists_at
from ..queue.exceptions import NotFound, QueueError
from ..queue.keys import SLUG
from ..queue.model import Counter, Estimate, Office, Service, Ticket
from ..queue.tickets import QueueClient
from .accounts import Role
from .forms import signed_form
from .pages import render
from .security import Staff, require
from .state import choose_office, now_of, path_slug, queue_of, waits_of

#: Counter actions of the supervisor's forms.
ACTIONS = ("open", "pause", "close", "services")
#: Events of today read at most, newest first, to tally the day (a busy office has ~2,000).
TALLY_LIMIT = 50_000
TALLY_BATCH = 1_000
#: Event types that the day's figures count.
TALLIED = {"issued": "issued", "finished": "served", "no_show": "no_show", "abandoned": "abandoned"}


@dataclass(frozen=True)
class ServiceRow:
    service: Service
    waiting: int
    open_counters: int
    estimate: Estimate | None

    @property
    def minutes(self) -> int | None:
        return None if self.estimate is None else round(self.estimate.wait / 60)

    @property
    def band(self) -> int | None:
        return None if self.estimate is None else self.service.band(self.estimate.wait / 60)


@dataclass(frozen=True)
class Longest:
    number: str
    service: str
    minutes: int


@dataclass(frozen=True)
class Overview:
    office: Office
    services: list[ServiceRow]
    counters: list[Counter]
    held: dict[str, Ticket]
    longest: Longest | None
    today: dict[str, int]
    at: float
    #: Who takes the office's video consultations, and their presence.
    specialists: list[Specialist] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        return sum(row.waiting for row in self.services)

    def counter_name(self, cid: str) -> str:
        return next((c.name for c in self.counters if c.id == cid), cid)

    def service_name(self, sid: str) -> str:
        for row in self.services:
            if row.service.id == sid:
                return row.service.name_en
        return sid


async def day_counts(queue: QueueClient, office: Office, now: float) -> dict[str, int]:
    """Today's (in the office's time zone) issued, served, no-show and abandoned tickets."""
    zone = office.zone
    start = datetime.combine(datetime.fromtimestamp(now, zone).date(), time(), zone).timestamp()
    counts = dict.fromkeys(TALLIED.values(), 0)
    before: str | None = None
    read = 0
    while read < TALLY_LIMIT:
        batch = await queue.events(office.id, before=before, count=TALLY_BATCH)
        for _, event in batch:
            try:
                at = float(event.get("t", 0))
            except (TypeError, ValueError):
                continue
            if at < start:
                return counts
            kind = TALLIED.get(str(event.get("type")))
            if kind is not None:
                counts[kind] += 1
        if len(batch) < TALLY_BATCH:
            break
        read += len(batch)
        before = batch[-1][0]
    return counts


async def overview(request: Request, office_id: str) -> Overview:
    """Everything the supervisor's page shows, as of now."""
    queue = queue_of(request)
    board = await waits_of(request).board(office_id)
    snapshot = board.snapshot
    now = now_of(request)
    rows = []
    for service in sorted(snapshot.services.values(), key=lambda s: s.prefix):
        lines = snapshot.lines.get(service.id, {})
        rows.append(
            ServiceRow(
                service,
                waiting=sum(len(line) for line in lines.values()),
                open_counters=sum(
                    1
                    for c in snapshot.counters
                    if c.state.value == "open" and service.id in c.services
                ),
                estimate=board.estimates.new.get(service.id),
            )
        )
    longest = await _longest(queue, office_id, snapshot.lines, now)
    today = await day_counts(queue, snapshot.office, now)
    return Overview(
        office=snapshot.office,
        services=rows,
        counters=snapshot.counters,
        held=snapshot.held,
        longest=longest,
        today=today,
        at=now,
        specialists=await specialists_at(
            request, office_id, [s.id for s in remote_services(snapshot.services)]
        ),
    )


async def _longest(
    queue: QueueClient,
    office: str,
    lines: dict[str, dict[str, list[tuple[str, float]]]],
    now: float,
) -> Longest | None:
    """The ticket that has waited longest: by issue time, or since its appointment fell due."""
    best: tuple[float, str, str] | None = None
    for sid, line in lines.items():
        for kind, entries in line.items():
            if not entries:
                continue
            # Each line is in calling order; its oldest entry has the lowest score.
            ticket_id, score = min(entries, key=lambda entry: entry[1])
            waited = now - score
            if kind == "appt" and waited <= 0:
                continue
            if best is None or waited > best[0]:
                best = (waited, ticket_id, sid)
    if best is None:
        return None
    waited, ticket_id, sid = best
    try:
        ticket = await queue.ticket(office, ticket_id, now=now)
    except QueueError:
        return None  # called or cancelled in the meantime: the next refresh shows the new one
    return Longest(ticket.number, sid, max(0, round(waited / 60)))


def _context(staff: Staff, view: Overview, **extra: Any) -> dict[str, Any]:
    clock = datetime.fromtimestamp(view.at, view.office.zone).strftime("%H:%M:%S")
    return {"staff": staff, "view": view, "updated": clock, **extra}


async def pick_office(request: Request) -> Response:
    staff = await require(request, Role.SUPERVISOR)
    return await choose_office(request, staff, "/staff/supervisor", "staff/supervisor_pick.html")


async def page(request: Request) -> Response:
    office = path_slug(request, "office", "office")
    staff = await require(request, Role.SUPERVISOR, office=office)
    view = await overview(request, office)
    done = request.query_params.get("done", "")
    counter = request.query_params.get("counter", "")
    context = _context(
        staff,
        view,
        done=done if done in ACTIONS else "",
        done_counter=counter if SLUG.fullmatch(counter) else "",
    )
    return render(request, "staff/supervisor.html", context)


async def board(request: Request) -> Response:
    """The live parts of the page alone, for ``supervisor.js`` to swap in."""
    office = path_slug(request, "office", "office")
    staff = await require(request, Role.SUPERVISOR, office=office)
    view = await overview(request, office)
    return render(request, "staff/supervisor_board.html", _context(staff, view))


async def counter_action(request: Request) -> Response:
    office = path_slug(request, "office", "office")
    counter = request.path_params["counter"]
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise NotFound(f'no counter action "{action[:40]}"; there are {", ".join(ACTIONS)}')
    if not SLUG.fullmatch(counter):
        raise NotFound(f'counter "{counter[:40]}" does not exist')
    staff, form = await signed_form(request, Role.SUPERVISOR, office=office)
    queue = queue_of(request)
    now = now_of(request)
    await queue.office(office)  # a missing office is a 404, not a message on its page
    try:
        if action == "open":
            await queue.open_counter(office, counter, now=now, actor=staff.actor)
        elif action == "pause":
            await queue.pause_counter(office, counter, now=now, actor=staff.actor)
        elif action == "close":
            await queue.close_counter(office, counter, now=now, actor=staff.actor)
        else:
            await queue.put_counter(
                office, counter, form.all("services"), now=now, exists=True, actor=staff.actor
            )
    except QueueError as exc:
        view = await overview(request, office)
        context = _context(staff, view, error=exc.message, error_counter=counter)
        return render(request, "staff/supervisor.html", context, status=exc.status)
    target = f"/staff/supervisor/{office}?done={action}&counter={counter}#counter-{counter}"
    return RedirectResponse(target, status_code=303)


routes = [
    Route("/staff/supervisor", pick_office, methods=["GET"]),
    Route("/staff/supervisor/{office}", page, methods=["GET"]),
    Route("/staff/supervisor/{office}/board", board, methods=["GET"]),
    Route(
        "/staff/supervisor/{office}/counters/{counter}/{action}",
        counter_action,
        methods=["POST"],
    ),
]
