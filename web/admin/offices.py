"""Offices, their services and their counters.

Every change goes through the queue's Lua scripts, which check it against the live
queue and record it as an event with its actor: a service with waiting tickets, or
one that a counter serves, cannot be deleted (it can be deactivated, and then takes
no new tickets); only a closed counter can be removed.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import Response

from ...queue.exceptions import Conflict, NotFound, QueueError
from ...queue.model import PREFIX, Office, Service, ServiceMode
from ..accounts import Role
from ..forms import Form, signed_form
from ..pages import render
from ..security import Staff, require
from ..state import now_of, path_slug, queue_of
from .common import (
    Checker,
    Invalid,
    Problem,
    all_offices,
    form_page,
    form_values,
    office_of,
    see_other,
    services_of,
)


async def index(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    return render(
        request, "admin/index.html", {"staff": staff, "offices": await all_offices(request)}
    )


# -- offices ---------------------------------------------------------------------------

OFFICE_FIELDS = ("id", "name_ja", "name_en", "timezone", "priority_cap")


def _office_values(office: Office) -> dict[str, Any]:
    return {
        "id": office.id,
        "name_ja": office.name_ja,
        "name_en": office.name_en,
        "timezone": office.timezone,
        "priority_cap": str(office.priority_cap),
    }


def _read_office(
    form: Form, existing: Office | None, taken: list[str], appt_early: int = 300
) -> Office:
    check = Checker(form)
    if existing is None:
        office_id = check.slug("id")
        if office_id in taken:
            check.fail("id", Problem("taken", value=office_id))
    else:
        office_id = existing.id
    name_ja = check.text("name_ja")
    name_en = check.text("name_en")
    zone = check.text("timezone", limit=60)
    if zone and "timezone" not in check.problems:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            check.fail("timezone", Problem("zone", value=zone))
    cap = check.whole("priority_cap", 1, 20)
    check.done()
    return Office(
        office_id,
        name_ja,
        name_en,
        timezone=zone,
        priority_cap=cap,
        appt_early=existing.appt_early if existing is not None else appt_early,
    )


async def new_office(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    settings = request.app.state.settings
    values = {"timezone": settings.timezone, "priority_cap": str(settings.priority_cap)}
    return render(request, "admin/office_new.html", {"staff": staff, "values": values})


async def create_office(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    queue = queue_of(request)
    try:
        early = request.app.state.settings.appointment_early_seconds
        office = _read_office(form, None, await queue.office_ids(), early)
        office = await queue.put_office(office, now=now_of(request), actor=staff.actor)
    except Invalid as exc:
        context = {"staff": staff, "values": form_values(form, *OFFICE_FIELDS)}
        return render(
            request, "admin/office_new.html", context | {"problems": exc.problems}, status=422
        )
    return see_other(f"/admin/offices/{office.id}?done=created")


async def _office_page(
    request: Request,
    staff: Staff,
    office: Office,
    *,
    values: dict[str, Any] | None = None,
    problems: dict[str, Problem] | None = None,
    status: int = 200,
) -> Response:
    snapshot = await queue_of(request).snapshot(office.id, now=now_of(request))
    context = {
        "staff": staff,
        "office": office,
        "services": sorted(snapshot.services.values(), key=lambda s: s.prefix),
        "counters": snapshot.counters,
        "waiting": {
            sid: sum(len(x) for x in line.values()) for sid, line in snapshot.lines.items()
        },
        "values": values or _office_values(office),
    }
    return form_page(request, "admin/office.html", context, problems, status=status)


async def office_page(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    return await _office_page(request, staff, await office_of(request))


async def update_office(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    existing = await office_of(request)
    try:
        office = _read_office(form, existing, [])
    except Invalid as exc:
        values = form_values(form, *OFFICE_FIELDS) | {"id": existing.id}
        return await _office_page(
            request, staff, existing, values=values, problems=exc.problems, status=422
        )
    await queue_of(request).put_office(office, now=now_of(request), actor=staff.actor)
    return see_other(f"/admin/offices/{office.id}?done=saved")


# -- services --------------------------------------------------------------------------

NAME_FIELDS = ("name_ja", "name_ja_easy", "name_en", "name_zh_hans", "name_ko", "name_vi")
SERVICE_FIELDS = (
    "id",
    "prefix",
    *NAME_FIELDS,
    "mode",
    "default_minutes",
    "band_moderate",
    "band_long",
    "band_very_long",
)


def _service_values(service: Service) -> dict[str, Any]:
    minutes = service.default_seconds / 60
    return {
        "id": service.id,
        "prefix": service.prefix,
        **{name: getattr(service, name) for name in NAME_FIELDS},
        "mode": service.mode.value,
        "default_minutes": f"{minutes:g}",
        "band_moderate": str(service.bands[0]),
        "band_long": str(service.bands[1]),
        "band_very_long": str(service.bands[2]),
        "active": service.active,
    }


def _new_service_values() -> dict[str, Any]:
    return {
        "mode": ServiceMode.IN_PERSON.value,
        "default_minutes": "10",
        "band_moderate": "15",
        "band_long": "30",
        "band_very_long": "60",
        "active": True,
    }


def _read_service(form: Form, existing: Service | None, taken: dict[str, Service]) -> Service:
    check = Checker(form)
    if existing is None:
        service_id = check.slug("id")
        if service_id in taken:
            check.fail("id", Problem("taken", value=service_id))
    else:
        service_id = existing.id
    prefix = form.get("prefix").upper()
    if not prefix:
        check.fail("prefix", Problem("required"))
    elif not PREFIX.fullmatch(prefix):
        check.fail("prefix", Problem("prefix"))
    else:
        clash = next((s for s in taken.values() if s.prefix == prefix and s.id != service_id), None)
        if clash is not None:
            check.fail("prefix", Problem("prefix_taken", value=prefix, text=clash.name_en))
    names = {
        name: check.text(name, required=name in ("name_ja", "name_en")) for name in NAME_FIELDS
    }
    mode = check.choice("mode", tuple(m.value for m in ServiceMode))
    minutes = check.number("default_minutes", 0.5, 240)
    bands = (
        check.whole("band_moderate", 1, 1440),
        check.whole("band_long", 1, 1440),
        check.whole("band_very_long", 1, 1440),
    )
    if not ({"band_moderate", "band_long", "band_very_long"} & set(check.problems)) and not (
        bands[0] < bands[1] < bands[2]
    ):
        check.fail("band_long", Problem("bands"))
    check.done()
    return Service(
        service_id,
        prefix,
        names["name_ja"],
        names["name_en"],
        mode=ServiceMode(mode),
        active=form.flag("active"),
        default_seconds=round(minutes * 60, 1),
        name_ja_easy=names["name_ja_easy"],
        name_zh_hans=names["name_zh_hans"],
        name_ko=names["name_ko"],
        name_vi=names["name_vi"],
        bands=bands,
    )


async def _service(request: Request, office: str) -> Service:
    sid = path_slug(request, "service", "service")
    found = (await services_of(request, office)).get(sid)
    if found is None:
        raise NotFound(f'service "{sid}" does not exist at office "{office}"')
    return found


def _service_form(
    request: Request,
    staff: Staff,
    office: Office,
    service: Service | None,
    values: dict[str, Any],
    *,
    problems: dict[str, Problem] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    context = {
        "staff": staff,
        "office": office,
        "service": service,
        "values": values,
        "error": error,
    }
    return form_page(request, "admin/service.html", context, problems, status=status)


async def new_service(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    office = await office_of(request)
    return _service_form(request, staff, office, None, _new_service_values())


async def create_service(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    values = form_values(form, *SERVICE_FIELDS) | {"active": form.flag("active")}
    try:
        service = _read_service(form, None, await services_of(request, office.id))
        await queue_of(request).put_service(
            office.id, service, now=now_of(request), actor=staff.actor
        )
    except Invalid as exc:
        return _service_form(
            request, staff, office, None, values, problems=exc.problems, status=422
        )
    except QueueError as exc:  # another admin took the prefix a moment ago
        return _service_form(
            request, staff, office, None, values, error=exc.message, status=exc.status
        )
    return see_other(f"/admin/offices/{office.id}?done=service_created")


async def service_page(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    office = await office_of(request)
    service = await _service(request, office.id)
    return _service_form(request, staff, office, service, _service_values(service))


async def update_service(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    existing = await _service(request, office.id)
    values = form_values(form, *SERVICE_FIELDS) | {"id": existing.id, "active": form.flag("active")}
    try:
        service = _read_service(form, existing, await services_of(request, office.id))
        await queue_of(request).put_service(
            office.id, service, now=now_of(request), actor=staff.actor
        )
    except Invalid as exc:
        return _service_form(
            request, staff, office, existing, values, problems=exc.problems, status=422
        )
    except QueueError as exc:
        return _service_form(
            request, staff, office, existing, values, error=exc.message, status=exc.status
        )
    return see_other(f"/admin/offices/{office.id}/services/{service.id}?done=saved")


async def deactivate_service(request: Request) -> Response:
    staff, _ = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    existing = await _service(request, office.id)
    service = dataclasses.replace(existing, active=False)
    await queue_of(request).put_service(office.id, service, now=now_of(request), actor=staff.actor)
    return see_other(f"/admin/offices/{office.id}/services/{service.id}?done=deactivated")


async def delete_service(request: Request) -> Response:
    staff, _ = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    existing = await _service(request, office.id)
    try:
        await queue_of(request).delete_service(
            office.id, existing.id, now=now_of(request), actor=staff.actor
        )
    except QueueError as exc:
        return _service_form(
            request,
            staff,
            office,
            existing,
            _service_values(existing),
            error=exc.message,
            status=exc.status,
        )
    return see_other(f"/admin/offices/{office.id}?done=service_deleted")


# -- counters --------------------------------------------------------------------------


async def _counter_form(
    request: Request,
    staff: Staff,
    office: Office,
    counter_id: str | None,
    values: dict[str, Any] | None = None,
    *,
    problems: dict[str, Problem] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    snapshot = await queue_of(request).snapshot(office.id, now=now_of(request))
    counter = next((c for c in snapshot.counters if c.id == counter_id), None)
    if counter_id is not None and counter is None:
        raise NotFound(f'counter "{counter_id}" does not exist at office "{office.id}"')
    if values is None:
        values = (
            {"id": counter.id, "name": counter.name, "services": list(counter.services)}
            if counter is not None
            else {"services": []}
        )
    context = {
        "staff": staff,
        "office": office,
        "counter": counter,
        # A counter serves in-person services; specialists take remote ones.
        "choices": [
            (s.id, f"{s.prefix} {s.name_en}")
            for s in sorted(snapshot.services.values(), key=lambda s: s.prefix)
            if s.mode is ServiceMode.IN_PERSON
        ],
        "values": values,
        "error": error,
    }
    return form_page(request, "admin/counter.html", context, problems, status=status)


def _read_counter(form: Form, new: bool, services: list[str]) -> tuple[str, str, tuple[str, ...]]:
    check = Checker(form)
    counter_id = check.slug("id") if new else ""
    name = check.text("name", limit=40)
    chosen = check.subset("services", services)
    if not chosen and "services" not in check.problems:
        check.fail("services", Problem("pick_one"))
    check.done()
    return counter_id, name, chosen


async def new_counter(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    return await _counter_form(request, staff, await office_of(request), None)


async def create_counter(request: Request) -> Response:
    return await _save_counter(request, creating=True)


async def update_counter(request: Request) -> Response:
    return await _save_counter(request, creating=False)


async def _save_counter(request: Request, *, creating: bool) -> Response:
    """Create a counter (its id from the form) or update one (its id from the path)."""
    staff, form = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    if creating:
        counter_id = None
        values = form_values(form, "id", "name") | {"services": form.all("services")}
    else:
        counter_id = path_slug(request, "counter", "counter")
        values = form_values(form, "name") | {"id": counter_id, "services": form.all("services")}
    services = [
        s.id
        for s in (await services_of(request, office.id)).values()
        if s.mode is ServiceMode.IN_PERSON
    ]
    try:
        read_id, name, chosen = _read_counter(form, creating, services)
        await queue_of(request).put_counter(
            office.id,
            counter_id or read_id,
            chosen,
            name=name,
            exists=not creating,
            now=now_of(request),
            actor=staff.actor,
        )
    except Invalid as exc:
        return await _counter_form(
            request, staff, office, counter_id, values, problems=exc.problems, status=422
        )
    except Conflict:
        problems = {"id": Problem("taken", value=values["id"])}
        return await _counter_form(
            request, staff, office, counter_id, values, problems=problems, status=409
        )
    except QueueError as exc:
        return await _counter_form(
            request, staff, office, counter_id, values, error=exc.message, status=exc.status
        )
    if creating:
        return see_other(f"/admin/offices/{office.id}?done=counter_created")
    return see_other(f"/admin/offices/{office.id}/counters/{counter_id}?done=saved")


async def counter_page(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    office = await office_of(request)
    return await _counter_form(request, staff, office, path_slug(request, "counter", "counter"))


async def delete_counter(request: Request) -> Response:
    staff, _ = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    counter_id = path_slug(request, "counter", "counter")
    try:
        await queue_of(request).delete_counter(
            office.id, counter_id, now=now_of(request), actor=staff.actor
        )
    except QueueError as exc:
        return await _counter_form(
            request, staff, office, counter_id, error=exc.message, status=exc.status
        )
    return see_other(f"/admin/offices/{office.id}?done=counter_deleted")
