"""The consultation flow over HTTP (JSON): what the kiosk and the staff console call.

Kiosk (device token; JSON bodies only, the device cookie is ``SameSite=Strict``):

- ``POST /consult/api/calls`` ``{"topic": service, "key"?: idempotency key}`` → 201
  ``{"call": …}``: raise a consultation (a topic the kiosk offers); a kiosk with one open
  gets that one back. The kiosk then joins ``call.ws`` and waits there.
- ``GET /consult/api/calls/current`` → ``{"call": … | null}``: its open consultation.
- ``POST /consult/api/calls/{call}/rate`` ``{"rating": 1-5}``: the five-face question.

Staff (session; ``X-CSRF-Token`` on every POST):

- ``GET /consult/api/offices/{office}/queue`` → ``{"calls": […]}``: consultations waiting
  in the services the staff member serves, first to be taken first.
- ``POST /consult/api/offices/{office}/accept`` ``{"call"?: id}`` → ``{"call": … | null}``:
  accept that one, or the longest-waiting one; then join ``call.ws``.
- ``POST /consult/api/calls/{call}/transfer`` ``{"service": remote service}``
- ``POST /consult/api/calls/{call}/invite`` ``{"username": staff member of the office}``

Ending a call is the ``bye`` message on its WebSocket.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..kiosk.devices import kiosk_of
from ..queue import keys
from ..queue.codec import texts
from ..queue.exceptions import NotFound
from ..web.accounts import Role
from ..web.auth import staff_of
from ..web.bodies import get, maybe, need, only, read_json
from ..web.exceptions import Forbidden, Unprocessable
from ..web.responses import JSONResponse
from ..web.security import Staff
from ..web.state import accounts_of, now_of, path_slug
from .calls import Call, Calls, parse_call_id
from .switchboard import switchboard_of

BODY_LIMIT = 1024


def view(call: Call, now: float) -> dict[str, Any]:
    """A call as the API shows it (the kiosk's and the staff's screens both use this)."""
    return {
        "id": call.id,
        "ws": f"/consult/ws/{call.id}",
        "number": call.number,
        "topic": call.topic,
        "service": call.service,
        "kiosk": call.kiosk,
        "state": call.state.value,
        "reason": call.reason,
        "specialist": call.specialist or None,
        "guest": call.guest or None,
        "present": sorted(role.value for role in call.present),
        "waiting_for": round(now - call.issued_at, 1),
        "since": call.since,
        "deadline": call.deadline,
        "record": call.record(),
    }


def _calls(request: Request) -> Calls:
    return switchboard_of(request).calls


def _answer(call: Call | None, request: Request, status: int = 200) -> Response:
    body = None if call is None else view(call, now_of(request))
    return JSONResponse({"call": body}, status_code=status)


async def _services(request: Request, staff: Staff, office: str) -> tuple[str, ...]:
    """The services the staff member may take consultations of (an admin: every one)."""
    if staff.account.role is not Role.ADMIN:
        return staff.account.services
    every = await request.app.state.redis.smembers(keys.services(office))
    return tuple(sorted(texts(every)))


async def _staff_call(request: Request) -> tuple[Staff, str, str]:
    office, ticket = parse_call_id(request.path_params["call"])
    return await staff_of(request, office), office, ticket


# -- the kiosk ---------------------------------------------------------------------------


async def raise_call(request: Request) -> Response:
    kiosk = await kiosk_of(request)
    body = await read_json(request, BODY_LIMIT)
    only(body, {"topic", "key"})
    topic = need(body, "topic", str)
    if topic not in kiosk.topics:
        raise Unprocessable(f'this kiosk does not offer consultations about "{topic[:40]}"')
    call = await _calls(request).request(
        kiosk.office, kiosk.id, topic, now=now_of(request), idempotency_key=maybe(body, "key", str)
    )
    return _answer(call, request, 201)


async def current(request: Request) -> Response:
    kiosk = await kiosk_of(request)
    return _answer(await _calls(request).of_kiosk(kiosk.office, kiosk.id), request)


async def rate(request: Request) -> Response:
    kiosk = await kiosk_of(request)
    office, ticket = parse_call_id(request.path_params["call"])
    if office != kiosk.office:
        raise NotFound(f'consultation "{request.path_params["call"][:40]}" does not exist')
    body = await read_json(request, BODY_LIMIT)
    only(body, {"rating"})
    rating = need(body, "rating", float)
    if not rating.is_integer():
        raise Unprocessable('field "rating" must be a whole number from 1 to 5')
    call = await _calls(request).rate(office, ticket, kiosk.id, int(rating), now=now_of(request))
    return _answer(call, request)


# -- the staff ---------------------------------------------------------------------------


async def queue(request: Request) -> Response:
    office = path_slug(request, "office", "office")
    staff = await staff_of(request, office)
    waiting = await _calls(request).waiting(office, await _services(request, staff, office))
    now = now_of(request)
    return JSONResponse({"calls": [view(call, now) for call in waiting]})


async def accept(request: Request) -> Response:
    office = path_slug(request, "office", "office")
    staff = await staff_of(request, office)
    body = await read_json(request, BODY_LIMIT, required=False)
    only(body, {"call"})
    ticket = None
    named = maybe(body, "call", str)
    if named is not None:
        at, ticket = parse_call_id(named)
        if at != office:
            raise NotFound(f'consultation "{named[:40]}" is not at office "{office}"')
    call = await _calls(request).accept(
        office,
        staff.account.username,
        await _services(request, staff, office),
        now=now_of(request),
        ticket=ticket,
    )
    return _answer(call, request)


async def transfer(request: Request) -> Response:
    staff, office, ticket = await _staff_call(request)
    body = await read_json(request, BODY_LIMIT)
    only(body, {"service"})
    service = need(body, "service", str)
    call = await _calls(request).transfer(
        office, ticket, staff.account.username, service, now=now_of(request)
    )
    return _answer(call, request)


async def invite(request: Request) -> Response:
    staff, office, ticket = await _staff_call(request)
    body = await read_json(request, BODY_LIMIT)
    only(body, {"username"})
    username = get(body, "username", str, "")
    try:
        guest = await accounts_of(request).get(username)
    except NotFound:
        raise Unprocessable(f'there is no staff member "{username[:40]}"') from None
    if guest.disabled or not guest.works_at(office):
        raise Forbidden(f'"{username}" cannot join consultations at office "{office}"')
    call = await _calls(request).invite(
        office, ticket, staff.account.username, guest.username, now=now_of(request)
    )
    return _answer(call, request)


routes: list[BaseRoute] = [
    Route("/consult/api/calls", raise_call, methods=["POST"]),
    Route("/consult/api/calls/current", current, methods=["GET"]),
    Route("/consult/api/calls/{call}/rate", rate, methods=["POST"]),
    Route("/consult/api/calls/{call}/transfer", transfer, methods=["POST"]),
    Route("/consult/api/calls/{call}/invite", invite, methods=["POST"]),
    Route("/consult/api/offices/{office}/queue", queue, methods=["GET"]),
    Route("/consult/api/offices/{office}/accept", accept, methods=["POST"]),
]
