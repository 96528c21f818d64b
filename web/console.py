"""The counter console, and the staff's live event stream.

``/staff/console`` picks an office, a counter and the services to serve, opens the
counter and sends the clerk to ``/staff/console/{office}/{counter}``: one URL per
counter, so two tabs can run two counters. The page itself is static; its ES module
(``static/console.js``) drives the JSON API and listens to ``/staff/live/{office}``.

``/staff/live/{office}`` streams an office's queue events as ``text/event-stream``,
to staff who work at that office. Each event's SSE ``id`` is its Redis stream id, so
a browser that reconnects with ``Last-Event-ID`` is first sent every event it missed,
read back from the office's stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..queue import keys
from ..queue.exceptions import NotFound
from ..queue.keys import SLUG
from ..queue.model import Counter, CounterState, Office, Service, ServiceMode
from ..queue.tickets import QueueClient
from ..queue.waits import WaitBoard
from .accounts import Role, StaffAccount
from .exceptions import Unauthorized
from .forms import signed_form
from .live import Dropped, EventHub, event_stream, resume_after
from .pages import render
from .responses import JSONResponse
from .security import Staff, plain_localhost, require
from .sessions import SessionStore
from .state import now_of, queue_of, waits_of

#: Remembers the last counter a browser opened, as ``office/counter``.
REMEMBER_COOKIE = "madoguchi_console"
#: Seconds between keep-alive comments on an idle stream; the session is rechecked then too.
HEARTBEAT = 15.0
#: A reconnecting stream that missed more events than this is told to reload instead.
REPLAY_LIMIT = 1000
REPLAY_BATCH = 200
#: How long a browser waits before reconnecting a dropped stream, in milliseconds.
RETRY_MS = 2000


# -- who may serve what ---------------------------------------------------------------------


def may_serve(account: StaffAccount, service: Service) -> bool:
    """Whether ``account`` may serve ``service`` at a counter: in person, active, and theirs."""
    if service.mode is not ServiceMode.IN_PERSON or not service.active:
        return False
    return account.role is Role.ADMIN or service.id in account.services


async def _offices(queue: QueueClient, account: StaffAccount) -> list[Office]:
    """The offices ``account`` works at that exist (admins: every office)."""
    ids = await queue.office_ids()
    return [await queue.office(o) for o in ids if account.works_at(o)]


def _slug(value: str, kind: str) -> str:
    if not SLUG.fullmatch(value):
        raise NotFound(f'{kind} "{value[:40]}" does not exist')
    return value


# -- picking a counter ----------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """What the picker shows and what it was given."""

    offices: list[Office]
    office: Office | None = None
    counters: Sequence[Counter] = ()
    services: Sequence[Service] = ()
    counter: str = ""
    chosen: frozenset[str] = frozenset()
    #: Every service of the office, by id (to name what the counters serve).
    names: Mapping[str, str] = field(default_factory=dict)


async def _choice(
    request: Request, staff: Staff, office: str, counter: str, chosen: Sequence[str] = ()
) -> Choice:
    queue = queue_of(request)
    offices = await _offices(queue, staff.account)
    if not office and len(offices) == 1:
        office = offices[0].id
    found = next((o for o in offices if o.id == office), None)
    if found is None:
        return Choice(offices)
    board = await _waits(request).board(found.id)
    snapshot = board.snapshot
    services = [s for s in snapshot.services.values() if may_serve(staff.account, s)]
    services.sort(key=lambda s: s.prefix)
    existing = next((c for c in snapshot.counters if c.id == counter), None)
    if not chosen:
        # A counter that exists keeps what it served; a new one starts with everything allowed.
        chosen = existing.services if existing is not None else [s.id for s in services]
    names = {s.id: s.name_en for s in snapshot.services.values()}
    return Choice(offices, found, snapshot.counters, services, counter, frozenset(chosen), names)


def _picker(
    request: Request,
    staff: Staff,
    choice: Choice,
    *,
    error: str = "",
    status: int = 200,
) -> Response:
    return render(
        request,
        "staff/console_pick.html",
        {"staff": staff, "choice": choice, "error": error},
        status=status,
    )


def _remembered(request: Request) -> tuple[str, str] | None:
    office, _, counter = request.cookies.get(REMEMBER_COOKIE, "").partition("/")
    if SLUG.fullmatch(office) and SLUG.fullmatch(counter):
        return office, counter
    return None


async def pick(request: Request) -> Response:
    """The picker; without a query, a browser goes back to the counter it last opened."""
    staff = await require(request)
    remembered = _remembered(request)
    if not request.query_params and remembered is not None:
        office, counter = remembered
        if staff.account.works_at(office) and await _is_open(request, office, counter):
            return RedirectResponse(f"/staff/console/{office}/{counter}", status_code=303)
    office = request.query_params.get("office", "")[:40]
    counter = request.query_params.get("counter", "")[:40]
    return _picker(request, staff, await _choice(request, staff, office, counter))


async def _is_open(request: Request, office: str, counter: str) -> bool:
    """Whether ``counter`` exists at ``office`` and is not closed."""
    queue = queue_of(request)
    if office not in await queue.office_ids():
        return False
    snapshot = (await _waits(request).board(office)).snapshot
    found = next((c for c in snapshot.counters if c.id == counter), None)
    return found is not None and found.state is not CounterState.CLOSED


async def open_counter(request: Request) -> Response:
    """Open the chosen counter with the chosen services, and go to its console."""
    staff, form = await signed_form(request, Role.STAFF)
    office = form.get("office")[:40]
    counter = form.get("counter").lower()[:41]
    wanted = [s[:40] for s in form.all("services")]
    choice = await _choice(request, staff, office, counter, wanted)
    if choice.office is None:
        return _picker(request, staff, choice, error="office", status=422)
    if not SLUG.fullmatch(counter):
        return _picker(request, staff, choice, error="counter", status=422)
    allowed = {s.id for s in choice.services}
    if not wanted or not set(wanted) <= allowed:
        return _picker(request, staff, choice, error="services", status=422)
    queue = queue_of(request)
    await queue.open_counter(
        choice.office.id, counter, wanted, now=now_of(request), actor=staff.actor
    )
    response = RedirectResponse(f"/staff/console/{choice.office.id}/{counter}", status_code=303)
    response.set_cookie(
        REMEMBER_COOKIE,
        f"{choice.office.id}/{counter}",
        max_age=30 * 86400,
        path="/staff/console",
        secure=not plain_localhost(request),
        httponly=True,
        samesite="lax",
    )
    return response


# -- the console ----------------------------------------------------------------------------


async def console(request: Request) -> Response:
    office = _slug(request.path_params["office"], "office")
    staff = await require(request, office=office)
    counter = request.path_params["counter"]
    choice = await _choice(request, staff, office, counter if SLUG.fullmatch(counter) else "")
    found = next((c for c in choice.counters if c.id == counter), None)
    if choice.office is None:
        raise NotFound(f'office "{office}" does not exist')
    if found is None:
        return _picker(request, staff, choice, error="no_counter", status=404)
    return render(
        request,
        "staff/console.html",
        {
            "staff": staff,
            "office": choice.office,
            "counter": found,
            "now": now_of(request),
        },
    )


# -- the live stream ------------------------------------------------------------------------


def _waits(request: Request) -> WaitBoard:
    board = waits_of(request)
    return board


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def sse(data: str, *, id: str = "", event: str = "") -> str:
    """One server-sent event; ``data`` must be a single line (compact JSON is)."""
    lines = []
    if id:
        lines.append(f"id: {id}")
    if event:
        lines.append(f"event: {event}")
    lines.append(f"data: {data}")
    return "\n".join(lines) + "\n\n"


async def _missed(redis: Redis, office: str, after: str) -> tuple[list[str], str]:
    """Server-sent events for the office's events after ``after`` (exclusive), and the
    id of the last one; a single ``reset`` when there are more than :data:`REPLAY_LIMIT`."""
    events: list[str] = []
    last = after
    start = f"({after}"
    while True:
        batch = (
            await redis.xrange(keys.events(office), min=start, max="+", count=REPLAY_BATCH) or []
        )
        for entry_id, fields in batch:
            last = str(entry_id)
            events.append(sse(str((fields or {}).get("e", "{}")), id=last))
        if len(events) > REPLAY_LIMIT:
            last = await _latest(redis, office)
            return [sse(json.dumps({"type": "reset"}), id=last, event="reset")], last
        if len(batch) < REPLAY_BATCH:
            return events, last
        start = f"({last}"


async def _latest(redis: Redis, office: str) -> str:
    latest = await redis.xrevrange(keys.events(office), count=1)
    return str(latest[0][0]) if latest else "0-0"


async def live(request: Request) -> Response:
    """The office's events as server-sent events, for staff of that office.

    The events after ``Last-Event-ID`` (or, for a page that opens a new stream after
    the old one was refused, the query's ``after``) are sent first.
    """
    office = _slug(request.path_params["office"], "office")
    try:
        staff = await require(request, office=office)
    except Unauthorized as exc:
        # An event stream is read by a script, not a person: no redirect to sign in.
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=401)
    queue = queue_of(request)
    await queue.office(office)
    return event_stream(_stream(request, office, staff, resume_after(request)))


async def _stream(
    connection: HTTPConnection, office: str, staff: Staff, after: str
) -> AsyncIterator[str]:
    state = connection.app.state
    hub: EventHub = state.events
    redis: Redis = state.redis
    sessions: SessionStore = state.sessions
    # Listen before reading the stream, so that nothing falls between the two; an event
    # seen both ways is sent once, since stream ids only grow.
    async with hub.listen(office) as listener:
        yield f"retry: {RETRY_MS}\n\n"
        if after:
            missed, last = await _missed(redis, office, after)
            for chunk in missed:
                yield chunk
        else:
            last = await _latest(redis, office)
        # "ready": the page reads the state now, knowing that every later change is sent.
        yield sse(json.dumps({"type": "ready"}), id=last, event="ready")
        while True:
            try:
                event = await asyncio.wait_for(listener.next(), HEARTBEAT)
            except TimeoutError:
                if not await sessions.alive(staff.session.id, now=state.clock()):
                    yield sse(json.dumps({"type": "signed_out"}), event="signed-out")
                    return
                # Events the hub missed while it had lost Redis are still in the stream.
                missed, last = await _missed(redis, office, last)
                for chunk in missed:
                    yield chunk
                yield ": keep-alive\n\n"
                continue
            except Dropped:
                # Fell behind: end, and the browser reconnects from the last id it saw.
                return
            if _order(event.id) <= _order(last):
                continue
            last = event.id
            yield sse(json.dumps(event.data, ensure_ascii=False), id=event.id)


routes: list[BaseRoute] = [
    Route("/staff/console", pick, methods=["GET"]),
    Route("/staff/console", open_counter, methods=["POST"]),
    Route("/staff/console/{office}/{counter}", console, methods=["GET"]),
    Route("/staff/live/{office}", live, methods=["GET"]),
]
