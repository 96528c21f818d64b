"""The kiosk's side of a consultation: raise it, wait, talk, rate it, and back to the start.

Touching a topic on ``/kiosk/consult`` raises a consultation (the same
:meth:`~madoguchi.consult.calls.Calls.request` as ``POST /consult/api/calls``) and
shows ``/kiosk/call/{call}``: the waiting screen, with the place in line refreshed in
place, and the call screen, one page, so that the kiosk joins the call by itself when a
specialist accepts (``call.js`` waits on the call's socket with ``peer.js``). When the
call ends, ``/kiosk/call/{call}/survey`` asks the five-face question, then the kiosk
goes back to the start with nothing of the call left.

Ending is a plain form post (``/kiosk/call/{call}/end``: "stop waiting" and "end"), so
that it works whatever the socket is doing; the idle reset of the waiting screen goes
through ``/kiosk/call/{call}/reset``, which ends the consultation before the usual reset.
"""

from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..consult.calls import Call, CallState, Role, parse_call_id
from ..consult.switchboard import switchboard_of
from ..queue.exceptions import NotFound, QueueError
from ..web.exceptions import Forbidden, HTTPError, Unprocessable
from ..web.forms import read_form
from ..web.state import now_of, queue_of, waits_of
from .devices import Kiosk, kiosk_for, kiosk_of
from .screens import FORM_LIMIT, PAGE_KEY, render_screen, screen, view_ticket

#: Seconds without a touch after which the waiting screen gives up and goes to the start
#: (a resident waiting for a specialist does not touch the screen for minutes).
WAITING_IDLE_SECONDS = 15 * 60
#: Pages of a form the kiosk looks for (it stops at the first that is not there).
FORM_PAGES = 20


async def _own_call(request: Request) -> tuple[Kiosk, Call]:
    """The kiosk behind the request and its call named in the path (403 for another's)."""
    kiosk = await kiosk_of(request)
    office, ticket = parse_call_id(request.path_params["call"])
    if office != kiosk.office:
        raise Forbidden(f'this kiosk belongs to office "{kiosk.office}", not "{office}"')
    call = await switchboard_of(request).calls.get(office, ticket)
    if call.kiosk != kiosk.id:
        raise Forbidden(f"consultation {call.number} was raised at another kiosk")
    return kiosk, call


async def _end(request: Request, kiosk: Kiosk, call: Call) -> Call:
    """End the kiosk's consultation unless it has ended already; the call as it is now."""
    if call.state is CallState.ENDED:
        return call
    with contextlib.suppress(NotFound):
        call = await switchboard_of(request).calls.end(
            call.office, call.ticket, Role.KIOSK, kiosk.id, now=now_of(request)
        )
    return call


def _talked(call: Call) -> bool:
    """Whether the resident talked with someone (then the five faces are asked)."""
    return call.connected_at is not None


@screen
async def raise_call(request: Request) -> Response:
    """A topic was touched: raise the consultation (or get the open one back) and wait."""
    form = await read_form(request, FORM_LIMIT)
    kiosk = await kiosk_for(request, form.get("office", ""))
    topic, key = form.get("topic", ""), form.get("key", "")
    if topic not in kiosk.topics:
        raise Unprocessable(f'this kiosk does not offer consultations about "{topic[:40]}"')
    if not PAGE_KEY.fullmatch(key):
        raise Unprocessable("the form has no valid key; go back to the start and try again")
    call = await switchboard_of(request).calls.request(
        kiosk.office,
        kiosk.id,
        topic,
        now=now_of(request),
        idempotency_key=f"kiosk:{kiosk.id}:{key}",
    )
    return RedirectResponse(f"/kiosk/call/{call.id}", status_code=303)


@screen
async def call_page(request: Request) -> Response:
    """The waiting screen and, once a specialist accepts, the call screen."""
    kiosk, call = await _own_call(request)
    if call.state is CallState.ENDED:
        target = f"/kiosk/call/{call.id}/survey" if _talked(call) else "/kiosk/"
        return RedirectResponse(target, status_code=303)
    ticket = await queue_of(request).ticket(call.office, call.ticket, now=now_of(request))
    view = await view_ticket(request, kiosk, ticket)
    context = {
        "call": call,
        "view": view,
        "waiting_idle": WAITING_IDLE_SECONDS,
        "form_pages": FORM_PAGES,
        "face_only": "document" not in kiosk.cameras,
    }
    board = await waits_of(request).board(kiosk.office)
    return render_screen(request, "kiosk/call.html", kiosk, context, office=board.snapshot.office)


@screen
async def end_call(request: Request) -> Response:
    """The kiosk ends its consultation ("stop waiting", "end"); then the five faces (after
    a talk) or the start."""
    await read_form(request, FORM_LIMIT)
    kiosk, call = await _own_call(request)
    call = await _end(request, kiosk, call)
    target = f"/kiosk/call/{call.id}/survey" if _talked(call) else "/kiosk/"
    return RedirectResponse(target, status_code=303)


@screen
async def survey(request: Request) -> Response:
    """The five-face question, once, after a call that connected."""
    kiosk, call = await _own_call(request)
    if call.state is not CallState.ENDED or not _talked(call) or call.rating is not None:
        return RedirectResponse("/kiosk/reset", status_code=303)
    office = await queue_of(request).office(kiosk.office)
    return render_screen(request, "kiosk/call_survey.html", kiosk, {"call": call}, office=office)


@screen
async def reset(request: Request) -> Response:
    """The idle reset from the waiting screen: end the consultation, then the usual reset."""
    kiosk = await kiosk_of(request)  # an unenrolled kiosk is sent to enroll, not reset
    with contextlib.suppress(QueueError, HTTPError):
        _, call = await _own_call(request)
        await _end(request, kiosk, call)
    return RedirectResponse("/kiosk/reset", status_code=303)


routes: list[BaseRoute] = [
    Route("/kiosk/consult", raise_call, methods=["POST"]),
    Route("/kiosk/call/{call}", call_page, methods=["GET"]),
    Route("/kiosk/call/{call}/end", end_call, methods=["POST"]),
    Route("/kiosk/call/{call}/survey", survey, methods=["GET"]),
    Route("/kiosk/call/{call}/reset", reset, methods=["GET"]),
]
