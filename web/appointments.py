"""The resident's appointment pages: book a slot, see the booking, change, cancel, check in.

``/o/{office}/appointments`` lists the services that take appointments; a service's
page lists the days that have slots and, for the chosen day, every slot with the
places left (a full one is shown as full). Booking leads to the booking's own page,
``/o/{office}/a/{token}``, reached by its random token: the time, a QR code of the
page, the six-digit check-in code in large type, and forms to change, cancel and,
within the check-in window, check in, which sends the resident to their ticket's page.

Forms work without JavaScript. Residents have no session: each form carries a token
that must match a cookie of its own, as the staff sign-in form does (see
:mod:`.security`), so that no other site can book or cancel for someone.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime

import segno
from babel.dates import format_skeleton
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..queue.appointments import (
    Appointment,
    AppointmentClient,
    AppointmentStatus,
    Cancelled,
    Slot,
    SlotFull,
    TooEarly,
    TooLate,
)
from ..queue.exceptions import InvalidInput, NotFound, QueueError, Unavailable
from ..queue.model import Channel, Office, Service
from .forms import Form, read_form
from .i18n import Translator, translator
from .pages import render
from .security import signin_form_page, signin_token_matches
from .state import now_of, path_slug, queue_of

#: Largest resident form accepted, in bytes.
FORM_LIMIT = 2048


def appointments_of(request: Request) -> AppointmentClient:
    """The app's appointment client, made on first use from its queue client."""
    state = request.app.state
    queue = queue_of(request)
    client: AppointmentClient | None = getattr(state, "appointments", None)
    if client is None or client.queue is not queue:
        client = state.appointments = AppointmentClient(queue)
    return client


@dataclass(frozen=True)
class Place:
    """An office and one of its services, with their names in the page's language."""

    office: Office
    office_name: str
    service: Service | None = None
    service_name: str = ""


async def _place(
    request: Request, with_service: str | None = None, *, bookable: bool = True
) -> Place:
    """The office of the path (and ``with_service``: one taking tickets, if ``bookable``)."""
    office_id = path_slug(request, "office", "office")
    queue = queue_of(request)
    office = await queue.office(office_id)
    tr = translator(request)
    if with_service is None:
        return Place(office, tr.name(office))
    services = (await queue.snapshot(office.id, now=now_of(request))).services
    service = services.get(with_service)
    if service is None and not bookable:
        return Place(office, tr.name(office), None, with_service)
    if service is None or (bookable and not service.active):
        raise NotFound(f'service "{with_service}" does not exist at office "{office.id}"')
    return Place(office, tr.name(office), service, tr.name(service))


def _local(office: Office, at: float) -> datetime:
    return datetime.fromtimestamp(at, office.zone)


def _day_text(tr: Translator, day: date, skeleton: str = "MMMMEd") -> str:
    return format_skeleton(skeleton, day, locale=tr.language.locale)


def _time_text(tr: Translator, office: Office, at: float) -> str:
    return format_skeleton("Hm", _local(office, at), locale=tr.language.locale)


def _error_page(request: Request, exc: QueueError, place: Place | None = None) -> Response:
    tr = translator(request)
    if isinstance(exc, NotFound):
        message = tr.gettext("There is no such page. Check the address, or start again.")
    elif isinstance(exc, Unavailable):
        message = tr.gettext("This service takes no appointments now.")
    else:
        message = exc.message
    return render(
        request,
        "public/appointment_error.html",
        {"message": message, "place": place},
        status=exc.status,
    )


async def _signed_form(request: Request) -> Form | None:
    """The posted form, or ``None`` when its token does not match this browser's cookie."""
    form = await read_form(request, FORM_LIMIT)
    return form if signin_token_matches(request, form.get("csrf")) else None


# -- choosing a service, a day, a slot ------------------------------------------------------


async def services_page(request: Request) -> Response:
    try:
        place = await _place(request)
        bookable = await appointments_of(request).bookable(place.office.id, now=now_of(request))
        services = (await queue_of(request).snapshot(place.office.id, now=now_of(request))).services
    except QueueError as exc:
        return _error_page(request, exc)
    tr = translator(request)
    choices = sorted(
        ((services[sid], tr.name(services[sid])) for sid in bookable),
        key=lambda pair: pair[0].prefix,
    )
    context = {"place": place, "choices": choices}
    return render(request, "public/appointment_services.html", context)


async def _slots_page(
    request: Request,
    place: Place,
    *,
    action: str,
    current: Appointment | None = None,
    day: str | None = None,
    error: str = "",
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """Days with slots, and the chosen day's slots, as a form posting to ``action``."""
    assert place.service is not None
    client = appointments_of(request)
    now = now_of(request)
    tr = translator(request)
    days = await client.days(place.office.id, place.service.id, now=now)
    if day is None:
        asked = request.query_params.get("day")
        if asked is not None:
            day = asked[:20]
        elif current is not None and current.day in days:
            day = current.day
        else:
            day = days[0] if days else ""
    slots: list[Slot] = []
    if day:
        try:
            slots = await client.slots(place.office.id, place.service.id, day, now=now)
        except InvalidInput:
            message = tr.gettext("“%(day)s” is not a day you can choose.", day=day)
            return await _slots_page(
                request, place, action=action, current=current, day="", error=message, status=422
            )
    context = {
        "place": place,
        "action": action,
        "current": current,
        "day": day,
        "days": [(d, _day_text(tr, date.fromisoformat(d), "MMMEd")) for d in days],
        "day_text": _day_text(tr, date.fromisoformat(day)) if day else "",
        "slots": [(s, _time_text(tr, place.office, s.start)) for s in slots if s.open],
        "current_text": (
            f"{_day_text(tr, date.fromisoformat(current.day))} "
            f"{_time_text(tr, place.office, current.start)}"
            if current is not None
            else ""
        ),
        "error": error,
        "values": values or {},
    }
    return signin_form_page(request, "public/appointment_slots.html", context, status=status)


async def service_page(request: Request) -> Response:
    try:
        place = await _place(request, path_slug(request, "service", "service"))
        assert place.service is not None
        return await _slots_page(
            request, place, action=f"/o/{place.office.id}/appointments/{place.service.id}"
        )
    except QueueError as exc:
        return _error_page(request, exc)


async def book(request: Request) -> Response:
    try:
        place = await _place(request, path_slug(request, "service", "service"))
    except QueueError as exc:
        return _error_page(request, exc)
    assert place.service is not None
    action = f"/o/{place.office.id}/appointments/{place.service.id}"
    form = await _signed_form(request)
    if form is None:
        expired = translator(request).gettext("The form has expired. Please try again.")
        return await _slots_page(request, place, action=action, error=expired, status=403)
    values = {"slot": form.get("slot"), "email": form.get("email")}
    try:
        booked = await appointments_of(request).book(
            place.office.id,
            place.service.id,
            _slot_of(form),
            now=now_of(request),
            contact=form.get("email"),
        )
    except QueueError as exc:
        return await _refused(request, place, exc, action=action, values=values)
    return RedirectResponse(f"/o/{place.office.id}/a/{booked.token}?done=booked", status_code=303)


class _NoSlot(InvalidInput):
    """The form named no slot at all."""


def _slot_of(form: Form) -> str:
    slot = form.get("slot")
    if not slot:
        raise _NoSlot("choose a slot")
    return slot


async def _refused(
    request: Request,
    place: Place,
    exc: QueueError,
    *,
    action: str,
    values: dict[str, str],
    current: Appointment | None = None,
) -> Response:
    """The slots page again, saying why a booking or a change was refused."""
    tr = translator(request)
    if isinstance(exc, _NoSlot):
        message = tr.gettext("Choose a time.")
    elif isinstance(exc, InvalidInput) and "e-mail" in exc.message:
        message = tr.gettext("“%(email)s” is not an e-mail address.", email=values["email"][:60])
    elif isinstance(exc, InvalidInput):
        message = tr.gettext(
            "That time is not one of the slots. Please choose a time from the list."
        )
    elif isinstance(exc, SlotFull):
        message = tr.gettext("That time is full now. Please choose another time.")
    elif isinstance(exc, Unavailable):
        message = tr.gettext("That time can no longer be booked. Please choose another time.")
    else:
        message = tr.gettext("The times changed a moment ago. Please choose again.")
    return await _slots_page(
        request,
        place,
        action=action,
        current=current,
        day=_day_of(place.office, values["slot"]),
        error=message,
        values=values,
        status=exc.status,
    )


def _day_of(office: Office, slot: str) -> str | None:
    """The local day of a slot the form named, to show that day again; ``None`` if none."""
    try:
        return office.day(float(int(slot)))
    except (ValueError, OverflowError, OSError):
        return None


# -- the booking's page --------------------------------------------------------------------


async def _booking(request: Request) -> tuple[Place, Appointment]:
    token: str = request.path_params["token"]
    office = path_slug(request, "office", "office")
    booked = await appointments_of(request).appointment(office, token, now=now_of(request))
    return await _place(request, booked.service, bookable=False), booked


def _qr(url: str, title: str) -> str:
    svg = segno.make(url, error="m").svg_inline(scale=5, border=2, title=title, unit="")
    return str(svg).replace("<svg ", '<svg role="img" ', 1)


def _booking_page(
    request: Request,
    place: Place,
    booked: Appointment,
    *,
    error: str = "",
    status: int = 200,
) -> Response:
    tr = translator(request)
    office = place.office
    base = f"/o/{office.id}/a/{booked.token}"
    url = str(request.base_url).rstrip("/") + base
    context = {
        "place": place,
        "booked": booked,
        "status": booked.status.value,
        "window": booked.window(now_of(request)),
        "day_text": _day_text(tr, date.fromisoformat(booked.day)),
        "start_text": _time_text(tr, office, booked.start),
        "end_text": _time_text(tr, office, booked.ends),
        "opens_text": _time_text(tr, office, booked.opens),
        "closes_text": _time_text(tr, office, booked.closes),
        "code": f"{booked.code[:3]} {booked.code[3:]}",
        "qr": _qr(url, tr.gettext("QR code of this page")),
        "base": base,
        "ticket_url": f"/o/{office.id}/t/{booked.ticket_token}" if booked.ticket_token else "",
        "done": request.query_params.get("done", ""),
        "error": error,
    }
    return signin_form_page(request, "public/appointment.html", context, status=status)


async def booking_page(request: Request) -> Response:
    try:
        place, booked = await _booking(request)
    except QueueError as exc:
        return _error_page(request, exc)
    return _booking_page(request, place, booked)


async def change_page(request: Request) -> Response:
    try:
        place, booked = await _booking(request)
        if booked.status is not AppointmentStatus.BOOKED or place.service is None:
            return _booking_page(request, place, booked)
        return await _slots_page(
            request, place, action=f"/o/{place.office.id}/a/{booked.token}/change", current=booked
        )
    except QueueError as exc:
        return _error_page(request, exc)


BookingForm = Callable[[Request, Place, Appointment, Form], Awaitable[Response]]


def booking_form(handler: BookingForm) -> Callable[[Request], Awaitable[Response]]:
    """A form posted on a booking's page: find the booking, check the form's token, then
    let ``handler`` act; a booking that is not there, or a stale form, is a page too."""

    @functools.wraps(handler)
    async def handle(request: Request) -> Response:
        try:
            place, booked = await _booking(request)
        except QueueError as exc:
            return _error_page(request, exc)
        form = await _signed_form(request)
        if form is None:
            expired = translator(request).gettext("The form has expired. Please try again.")
            return _booking_page(request, place, booked, error=expired, status=403)
        return await handler(request, place, booked, form)

    return handle


@booking_form
async def change(request: Request, place: Place, booked: Appointment, form: Form) -> Response:
    base = f"/o/{place.office.id}/a/{booked.token}"
    if booked.status is not AppointmentStatus.BOOKED:
        error = _state_text(translator(request), booked)
        return _booking_page(request, place, booked, error=error, status=409)
    try:
        await appointments_of(request).change(
            place.office.id, booked.token, _slot_of(form), now=now_of(request)
        )
    except QueueError as exc:
        values = {"slot": form.get("slot")}
        action = f"{base}/change"
        return await _refused(request, place, exc, action=action, values=values, current=booked)
    return RedirectResponse(f"{base}?done=changed", status_code=303)


def _state_text(tr: Translator, booked: Appointment) -> str:
    if booked.status is AppointmentStatus.CANCELLED:
        return tr.gettext("This appointment was cancelled.")
    return tr.gettext("You have already checked in: your ticket is waiting.")


@booking_form
async def cancel(request: Request, place: Place, booked: Appointment, form: Form) -> Response:
    try:
        await appointments_of(request).cancel(place.office.id, booked.token, now=now_of(request))
    except QueueError as exc:
        error = _state_text(translator(request), booked)
        return _booking_page(request, place, booked, error=error, status=exc.status)
    target = f"/o/{place.office.id}/a/{booked.token}?done=cancelled"
    return RedirectResponse(target, status_code=303)


@booking_form
async def check_in(request: Request, place: Place, booked: Appointment, form: Form) -> Response:
    try:
        done = await appointments_of(request).check_in(
            place.office.id, booked.token, now=now_of(request), channel=Channel.PHONE
        )
    except QueueError as exc:
        error = check_in_refusal(translator(request), place.office, booked, exc)
        return _booking_page(request, place, booked, error=error, status=exc.status)
    return RedirectResponse(f"/o/{place.office.id}/t/{done.ticket.token}", status_code=303)


def check_in_refusal(tr: Translator, office: Office, booked: Appointment, exc: QueueError) -> str:
    """Why a check-in was refused, in the resident's language."""
    if isinstance(exc, TooEarly):
        return tr.gettext(
            "Check-in opens at %(time)s. Please check in then.",
            time=_time_text(tr, office, booked.opens),
        )
    if isinstance(exc, TooLate):
        return tr.gettext(
            "Check-in closed at %(time)s. Please take a ticket, or book another time.",
            time=_time_text(tr, office, booked.closes),
        )
    if isinstance(exc, Cancelled):
        return tr.gettext("This appointment was cancelled.")
    if isinstance(exc, Unavailable):
        return tr.gettext("This service is not taking tickets now. Please ask at the reception.")
    return tr.gettext("Check-in did not work. Please ask at the reception.")


routes = [
    Route("/o/{office}/appointments", services_page, methods=["GET"]),
    Route("/o/{office}/appointments/{service}", service_page, methods=["GET"]),
    Route("/o/{office}/appointments/{service}", book, methods=["POST"]),
    Route("/o/{office}/a/{token}", booking_page, methods=["GET"]),
    Route("/o/{office}/a/{token}/change", change_page, methods=["GET"]),
    Route("/o/{office}/a/{token}/change", change, methods=["POST"]),
    Route("/o/{office}/a/{token}/cancel", cancel, methods=["POST"]),
    Route("/o/{office}/a/{token}/check-in", check_in, methods=["POST"]),
]
