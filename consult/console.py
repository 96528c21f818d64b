"""The specialist's side of remote consultation: presence and the video-call console.

- ``GET /staff/consult`` sends a staff member to the console of their office (or lets
  them pick one); ``GET /staff/consult/{office}`` is the console itself. The page is
  static; its ES modules (``static/consult.js``, ``static/consult-call.js``) follow the
  office's live event stream (``/staff/live/{office}``) to keep the remote queue and
  the presence current, accept a consultation through :mod:`~madoguchi.consult.api`,
  and run the call with the shared ``/consult/static/peer.js``.
- ``GET /consult/api/offices/{office}/presence`` → ``{"me": …, "staff": […]}``: the
  asker's presence (with the call they are in, or were invited into, as the API shows a
  call) and that of everyone working at the office (for the invitation picker and for
  supervisors).
- ``POST /consult/api/offices/{office}/presence`` ``{"state": "available" | "busy" |
  "away"}`` sets or refreshes the asker's presence (see
  :mod:`~madoguchi.consult.presence`); the console repeats it while it is open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..queue.exceptions import NotFound
from ..queue.model import Service, ServiceMode
from ..web.accounts import Role as StaffRole
from ..web.auth import staff_of
from ..web.bodies import need, only, read_json
from ..web.pages import render
from ..web.responses import JSONResponse
from ..web.security import Staff, require
from ..web.state import accounts_of, choose_office, now_of, path_slug, queue_of, waits_of
from .api import view
from .presence import Presence, PresenceBoard, PresenceState, parse_state

BODY_LIMIT = 256

#: Quick phrases for the chat, Japanese first (what most residents read) and English.
PHRASES: tuple[tuple[str, str], ...] = (
    ("少々お待ちください。", "One moment, please."),
    ("聞こえますか。", "Can you hear me?"),
    ("書類を下のカメラの台に置いてください。", "Please put the document under the camera."),
    ("ここに書いてください。", "Please write here."),
    ("印刷した用紙をお取りください。", "Please take the printed form."),
    ("もう一度お願いします。", "Could you say that again, please?"),
    ("ほかにご質問はありますか。", "Do you have any other questions?"),
    ("ありがとうございました。", "Thank you very much."),
)


def _board(request: Request) -> PresenceBoard:
    board: PresenceBoard = request.app.state.presence
    return board


def remote_services(services: dict[str, Service]) -> list[Service]:
    """The office's remote services that take consultations, in prefix order."""
    found = [s for s in services.values() if s.mode is ServiceMode.REMOTE and s.active]
    return sorted(found, key=lambda s: s.prefix)


# -- the pages ------------------------------------------------------------------------------


async def pick(request: Request) -> Response:
    """The console of the staff member's office; a list when they work at several."""
    staff = await require(request)
    return await choose_office(request, staff, "/staff/consult", "staff/consult_pick.html")


async def page(request: Request) -> Response:
    office_id = path_slug(request, "office", "office")
    staff = await require(request, office=office_id)
    await _exists(request, office_id)
    office = await queue_of(request).office(office_id)
    snapshot = (await waits_of(request).board(office_id)).snapshot
    services = [
        {"id": s.id, "prefix": s.prefix, "name_en": s.name_en, "name_ja": s.name_ja}
        for s in remote_services(snapshot.services)
    ]
    data = {
        "services": services,
        "phrases": [{"ja": ja, "en": en} for ja, en in PHRASES],
        "refresh": max(5.0, _board(request).seconds / 3),
    }
    return render(
        request,
        "staff/consult.html",
        {"staff": staff, "office": office, "data": data, "now": now_of(request)},
    )


# -- presence -------------------------------------------------------------------------------


async def _exists(request: Request, office: str) -> None:
    if office not in await queue_of(request).office_ids():
        raise NotFound(f'office "{office}" does not exist')


def _me(presence: Presence, now: float) -> dict[str, Any]:
    return {**presence.view(), "call": None if presence.call is None else view(presence.call, now)}


async def presence(request: Request) -> Response:
    """The asker's presence and call, and everyone's at the office."""
    office = path_slug(request, "office", "office")
    staff = await staff_of(request, office)
    await _exists(request, office)
    now = now_of(request)
    me = staff.account.username
    people = [
        a
        for a in await accounts_of(request).all()
        if a.username == me or (a.works_at(office) and not a.disabled)
    ]
    found = await _board(request).of(office, [a.username for a in people], now=now)
    everyone = [
        {
            "username": a.username,
            "name": a.name,
            "role": a.role.value,
            "state": found[a.username].state.value,
            "in_call": found[a.username].call is not None,
        }
        for a in people
    ]
    return JSONResponse({"me": _me(found[me], now), "staff": everyone})


async def set_presence(request: Request) -> Response:
    office = path_slug(request, "office", "office")
    staff: Staff = await staff_of(request, office)
    body = await read_json(request, BODY_LIMIT)
    only(body, {"state"})
    state = parse_state(need(body, "state", str))
    await _exists(request, office)
    now = now_of(request)
    remote = remote_services((await waits_of(request).board(office)).snapshot.services)
    takes = [s.id for s in remote if s.id in staff.account.services]
    found = await _board(request).choose(
        office, staff.account.username, state, now=now, takes=takes
    )
    return JSONResponse({"presence": _me(found, now)})


@dataclass(frozen=True)
class Specialist:
    """A line of the supervisor's board: who, their presence, the call they are in."""

    username: str
    name: str
    state: PresenceState
    call: str | None


async def specialists_at(request: Request, office: str, remote: Iterable[str]) -> list[Specialist]:
    """Staff of ``office`` who take its consultations (they serve one of its ``remote``
    services), or who set a presence there or are in a call, by name."""
    serving = set(remote)
    people = [a for a in await accounts_of(request).all() if a.works_at(office) and not a.disabled]
    found = await _board(request).of(office, [a.username for a in people], now=now_of(request))
    rows = []
    for account in people:
        presence = found[account.username]
        takes = account.role is not StaffRole.ADMIN and bool(serving & set(account.services))
        if takes or presence.call is not None or presence.until is not None:
            number = presence.call.number if presence.call is not None else None
            rows.append(Specialist(account.username, account.name, presence.state, number))
    return sorted(rows, key=lambda row: (row.name, row.username))


routes: list[BaseRoute] = [
    Route("/staff/consult", pick, methods=["GET"]),
    Route("/staff/consult/{office}", page, methods=["GET"]),
    Route("/consult/api/offices/{office}/presence", presence, methods=["GET"]),
    Route("/consult/api/offices/{office}/presence", set_presence, methods=["POST"]),
]
