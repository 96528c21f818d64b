"""Checking in for an appointment at the kiosk, with the six-digit code and the number pad.

A resident who booked a time (see :mod:`madoguchi.queue.appointments`) and has no
phone with them enters the booking's check-in code; within the check-in window the
kiosk issues their ticket (channel ``kiosk``, with the appointment's time, so it is
called first once due) and shows it as any kiosk ticket. Outside the window, or with a
code no appointment of today has, the screen says so in plain words and lets them try
again. Everything acts for the kiosk's own office only, as on the other screens.
"""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..queue.appointments import CheckIn, TooEarly, TooLate
from ..queue.exceptions import InvalidInput, NotFound, QueueError
from ..queue.model import Channel, Office
from ..web.appointments import appointments_of
from ..web.forms import read_form
from ..web.state import now_of, queue_of
from .devices import Kiosk, kiosk_for, kiosk_of
from .screens import FORM_LIMIT, render_screen, screen


def _form(
    request: Request,
    kiosk: Kiosk,
    office: Office,
    *,
    error: str = "",
    at: str = "",
    done: CheckIn | None = None,
    status: int = 200,
) -> Response:
    context = {"error": error, "at": at, "done": done}
    return render_screen(
        request, "kiosk/checkin.html", kiosk, context, status=status, office=office
    )


@screen
async def checkin_page(request: Request) -> Response:
    """The number pad for the check-in code."""
    kiosk = await kiosk_of(request)
    return _form(request, kiosk, await queue_of(request).office(kiosk.office))


@screen
async def check_in(request: Request) -> Response:
    """Check in with the code: the ticket's screen, or why not."""
    form = await read_form(request, FORM_LIMIT)
    kiosk = await kiosk_for(request, form.get("office", ""))
    office = await queue_of(request).office(kiosk.office)
    code = "".join(form.get("code").split())
    client = appointments_of(request)
    now = now_of(request)
    try:
        done = await client.check_in_by_code(
            kiosk.office, code, now=now, channel=Channel.KIOSK, actor=f"kiosk:{kiosk.id}"
        )
    except InvalidInput as exc:
        return _form(request, kiosk, office, error="digits", status=exc.status)
    except NotFound as exc:
        return _form(request, kiosk, office, error="unknown", status=exc.status)
    except (TooEarly, TooLate) as exc:
        booked = await client.by_code(kiosk.office, code, now=now)
        early = isinstance(exc, TooEarly)
        at = datetime.fromtimestamp(booked.opens if early else booked.closes, office.zone)
        error = "early" if early else "late"
        return _form(
            request, kiosk, office, error=error, at=at.strftime("%H:%M"), status=exc.status
        )
    except QueueError as exc:
        return _form(request, kiosk, office, error="other", status=exc.status)
    if done.ticket.channel is not Channel.KIOSK:
        # Checked in on the phone already: the ticket lives there; say its number.
        return _form(request, kiosk, office, done=done)
    print_now = not done.replayed and kiosk.printer.kind == "browser"
    target = f"/kiosk/tickets/{done.ticket.token}{'?print=1' if print_now else ''}"
    return RedirectResponse(target, status_code=303)


routes: list[BaseRoute] = [
    Route("/kiosk/check-in", checkin_page, methods=["GET"]),
    Route("/kiosk/check-in", check_in, methods=["POST"]),
]
