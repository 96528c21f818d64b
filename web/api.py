"""The JSON API under ``/api/v1/``: tickets for residents, counter operations for staff."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..queue.exceptions import NotFound
from ..queue.model import CancelReason, Channel, Ticket
from ..queue.tickets import TICKET_ID, Issued
from . import views
from .auth import require_staff, staff_of
from .bodies import get, maybe, need, only, read_json
from .exceptions import Forbidden, TooManyRequests, Unprocessable
from .openapi import document
from .residents.guard import issue_within_limits
from .responses import JSONResponse
from .state import now_of, path_slug, queue_of, waits_of

#: What a resident may take without staff: a ticket on the web. (Kiosks issue through
#: their own screens with their device token; phone and reception tickets are staff's.)
PUBLIC_CHANNELS = {Channel.WEB}
TICKET_ACTIONS = ("recall", "no-show", "start", "finish", "transfer", "cancel")
COUNTER_ACTIONS = ("open", "pause", "close", "call-next")


def _action(request: Request, allowed: tuple[str, ...], kind: str) -> str:
    action: str = request.path_params["action"]
    if action not in allowed:
        raise NotFound(f'no {kind} action "{action[:40]}"; there are {", ".join(allowed)}')
    return action


def _limit(request: Request) -> int:
    limit: int = request.app.state.settings.max_body_bytes
    return limit


def _enum(value: str | None, kind: type[Channel] | type[CancelReason], name: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise Unprocessable(
            f'field "{name}" must be one of {choices}, not "{value[:40]}"'
        ) from None


def _instant(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Unprocessable(
            f'field "{name}" must be an ISO 8601 time such as 2026-11-26T10:30:00+09:00, '
            f'not "{value[:40]}"'
        ) from None
    if parsed.tzinfo is None:
        raise Unprocessable(f'field "{name}" needs a UTC offset, such as +09:00')
    return parsed.timestamp()


async def _ticket_response(
    request: Request,
    office: str,
    ticket: Ticket,
    *,
    status: int = 200,
    with_token: bool,
    last_event: str = "",
) -> JSONResponse:
    known = await queue_of(request).office(office)
    wait = await waits_of(request).for_ticket(office, ticket, last_event)
    body = views.ticket(known, ticket, wait, with_token=with_token)
    return JSONResponse({"ticket": body}, status_code=status)


async def offices(request: Request) -> JSONResponse:
    queue = queue_of(request)
    found = [await queue.office(office) for office in await queue.office_ids()]
    return JSONResponse({"offices": [views.office_summary(o) for o in found]})


async def office_status(request: Request) -> JSONResponse:
    office = path_slug(request, "office", "office")
    board = await waits_of(request).board(office)
    return JSONResponse(views.office_status(board))


async def take_ticket(request: Request) -> JSONResponse:
    office = path_slug(request, "office", "office")
    body = await read_json(request, _limit(request))
    only(body, {"service", "channel", "priority", "appointment_at", "idempotency_key"})
    service = need(body, "service", str)
    channel = _enum(maybe(body, "channel", str), Channel, "channel") or Channel.WEB
    priority = get(body, "priority", bool, False)
    appointment_at = _instant(maybe(body, "appointment_at", str), "appointment_at")
    key = request.headers.get("idempotency-key") or maybe(body, "idempotency_key", str)
    actor = "resident"
    if priority or appointment_at is not None or channel not in PUBLIC_CHANNELS:
        # Priority, appointments and reception tickets are given by staff.
        actor = await require_staff(request, office)
    known = await queue_of(request).office(office)

    def issue() -> Awaitable[Issued]:
        return queue_of(request).issue(
            office,
            service,
            now=now_of(request),
            channel=channel,
            priority=priority,
            appointment_at=appointment_at,
            idempotency_key=key,
            actor=actor,
        )

    if actor == "resident":
        # The same daily limit as the office's web page, by address (an API client has
        # no phone cookie).
        address = request.client.host if request.client else ""
        per_address = request.app.state.settings.web_tickets_per_address
        found = await issue_within_limits(
            request.app.state.redis,
            issue,
            office=office,
            key=key,
            device=f"api:{address}",
            address=address,
            day=known.day(now_of(request)),
            per_device=per_address,
            per_address=per_address,
        )
        if found is None:
            raise TooManyRequests(
                "too many tickets from this address today; please ask at the office"
            )
        issued = found
    else:
        issued = await issue()
    return await _ticket_response(
        request,
        office,
        issued.ticket,
        status=200 if issued.replayed else 201,
        with_token=True,
        last_event=issued.event,
    )


async def read_ticket(request: Request) -> JSONResponse:
    office = path_slug(request, "office", "office")
    ref = request.path_params["ticket"]
    if TICKET_ID.fullmatch(ref):
        # Ticket ids are sequential: only staff may look tickets up by id.
        await require_staff(request, office)
    ticket = await queue_of(request).ticket(office, ref, now=now_of(request))
    return await _ticket_response(request, office, ticket, with_token=True)


async def cancel_ticket(request: Request) -> JSONResponse:
    """A resident cancels their own ticket by its token."""
    office = path_slug(request, "office", "office")
    ref = request.path_params["ticket"]
    if TICKET_ID.fullmatch(ref):
        await require_staff(request, office)
    ticket = await queue_of(request).cancel(office, ref, now=now_of(request), actor="resident")
    return await _ticket_response(request, office, ticket, with_token=False)


async def ticket_action(request: Request) -> JSONResponse:
    office = path_slug(request, "office", "office")
    actor = await require_staff(request, office)
    ref = request.path_params["ticket"]
    action = _action(request, TICKET_ACTIONS, "ticket")
    queue = queue_of(request)
    now = now_of(request)
    body = await read_json(request, _limit(request), required=False)
    if action == "transfer":
        only(body, {"service"})
        service = need(body, "service", str)
        ticket = await queue.transfer(office, ref, service, now=now, actor=actor)
    elif action == "cancel":
        only(body, {"reason"})
        reason = _enum(maybe(body, "reason", str), CancelReason, "reason")
        ticket = await queue.cancel(
            office, ref, now=now, reason=reason or CancelReason.RESIDENT, actor=actor
        )
    else:
        only(body, set())
        operation = {
            "recall": queue.recall,
            "no-show": queue.no_show,
            "start": queue.start,
            "finish": queue.finish,
        }[action]
        ticket = await operation(office, ref, now=now, actor=actor)
    return await _ticket_response(request, office, ticket, with_token=False)


async def counter_action(request: Request) -> JSONResponse:
    office = path_slug(request, "office", "office")
    staff = await staff_of(request, office)
    actor = staff.actor
    counter = path_slug(request, "counter", "counter")
    action = _action(request, COUNTER_ACTIONS, "counter")
    queue = queue_of(request)
    now = now_of(request)
    body = await read_json(request, _limit(request), required=False)
    if action == "call-next":
        only(body, set())
        ticket = await queue.call_next(office, counter, now=now, actor=actor)
        if ticket is None:
            return JSONResponse({"ticket": None, "message": "no one is waiting for this counter"})
        return await _ticket_response(request, office, ticket, with_token=False)
    if action == "open":
        only(body, {"services", "name"})
        services = get(body, "services", list, [])
        name = get(body, "name", str, "")
        if not all(isinstance(s, str) for s in services):
            raise Unprocessable('field "services" must be a list of service ids')
        for service in services:
            if not staff.account.serves(service):
                raise Forbidden(f'you may not serve "{service[:40]}"; ask an administrator')
        result = await queue.open_counter(
            office, counter, services, now=now, name=name, actor=actor
        )
    elif action == "pause":
        only(body, set())
        result = await queue.pause_counter(office, counter, now=now, actor=actor)
    else:
        only(body, set())
        result = await queue.close_counter(office, counter, now=now, actor=actor)
    return JSONResponse({"counter": views.counter(result)})


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(document())


#: The counters' and reception's operations first: routes are tried in order, and these
#: are most of the requests a busy office makes (no two of these paths overlap).
routes = [
    Route(
        "/api/v1/offices/{office}/tickets/{ticket}/{action:str}",
        ticket_action,
        methods=["POST"],
    ),
    Route(
        "/api/v1/offices/{office}/counters/{counter}/{action:str}",
        counter_action,
        methods=["POST"],
    ),
    Route("/api/v1/offices/{office}/tickets", take_ticket, methods=["POST"]),
    Route("/api/v1/offices/{office}/tickets/{ticket}", read_ticket, methods=["GET"]),
    Route("/api/v1/offices/{office}/tickets/{ticket}", cancel_ticket, methods=["DELETE"]),
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    Route("/api/v1/offices", offices, methods=["GET"]),
    Route("/api/v1/offices/{office}", office_status, methods=["GET"]),
]
