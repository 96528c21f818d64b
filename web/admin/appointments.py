"""A service's appointment slots: length, places per slot, hours, days ahead, check-in window.

``/admin/offices/{office}/services/{service}/slots``, for admins. Saving goes through
the queue's ``appointment_settings`` script, which records who changed what; bookings
already made keep their places (a smaller capacity only stops new ones).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...queue.appointments import WEEKDAYS, SlotSettings, format_hours, parse_hours
from ...queue.exceptions import InvalidInput
from ...queue.model import Office, Service
from ..accounts import Role
from ..appointments import appointments_of
from ..forms import Form, signed_form
from ..security import Staff, require
from ..state import now_of
from .common import Checker, Invalid, Problem, form_page, form_values, office_of, see_other
from .offices import _service

HOUR_FIELDS = tuple(f"hours_{day}" for day in WEEKDAYS)
FIELDS = ("minutes", "capacity", "days_ahead", "before", "after", *HOUR_FIELDS)
#: Office hours of a new service's slots: weekdays, morning and afternoon.
NEW_HOURS = (((540, 720), (780, 1020)),) * 5 + ((), ())


def _values(settings: SlotSettings) -> dict[str, Any]:
    return {
        "minutes": str(settings.minutes),
        "capacity": str(settings.capacity),
        "days_ahead": str(settings.days_ahead),
        "before": str(settings.before),
        "after": str(settings.after),
        "enabled": settings.enabled,
        **{
            name: format_hours(hours)
            for name, hours in zip(HOUR_FIELDS, settings.hours, strict=True)
        },
    }


def _read(form: Form, service: str) -> SlotSettings:
    check = Checker(form)
    minutes = check.whole("minutes", 5, 240)
    capacity = check.whole("capacity", 1, 100)
    days_ahead = check.whole("days_ahead", 0, 90)
    before = check.whole("before", 0, 240)
    after = check.whole("after", 0, 240)
    hours: list[tuple[tuple[int, int], ...]] = []
    for name in HOUR_FIELDS:
        raw = check.text(name, required=False, limit=200)
        try:
            hours.append(parse_hours(raw))
        except InvalidInput as exc:
            check.fail(
                name,
                Problem(
                    "hours", text=f"{exc.message}; write ranges such as 09:00-12:00, 13:00-17:00"
                ),
            )
            hours.append(())
    check.done()
    try:
        return SlotSettings(
            service,
            minutes=minutes,
            capacity=capacity,
            hours=tuple(hours),
            days_ahead=days_ahead,
            before=before,
            after=after,
            enabled=form.flag("enabled"),
        )
    except InvalidInput as exc:  # overlapping hours
        raise Invalid({"hours_mon": Problem("hours", text=exc.message)}) from exc


def _page(
    request: Request,
    staff: Staff,
    office: Office,
    service: Service,
    values: dict[str, Any],
    *,
    problems: dict[str, Problem] | None = None,
    status: int = 200,
) -> Response:
    context = {
        "staff": staff,
        "office": office,
        "service": service,
        "values": values,
        "weekdays": HOUR_FIELDS,
    }
    return form_page(request, "admin/slots.html", context, problems, status=status)


async def slots_page(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    office = await office_of(request)
    service = await _service(request, office.id)
    settings = await appointments_of(request).settings(office.id, service.id)
    if settings is None:
        settings = SlotSettings(service.id, hours=NEW_HOURS, enabled=False)
    return _page(request, staff, office, service, _values(settings))


async def save_slots(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    service = await _service(request, office.id)
    try:
        settings = _read(form, service.id)
    except Invalid as exc:
        values = form_values(form, *FIELDS) | {"enabled": form.flag("enabled")}
        return _page(request, staff, office, service, values, problems=exc.problems, status=422)
    await appointments_of(request).put_settings(
        office.id, settings, now=now_of(request), actor=staff.actor
    )
    return see_other(f"/admin/offices/{office.id}/services/{service.id}/slots?done=saved")


routes = [
    Route("/admin/offices/{office}/services/{service}/slots", slots_page, methods=["GET"]),
    Route("/admin/offices/{office}/services/{service}/slots", save_slots, methods=["POST"]),
]
