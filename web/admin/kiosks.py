"""Kiosks: register and edit them, issue enrollment codes, revoke them, and the fleet page.

A kiosk belongs to one ward office and offers some of its services: in-person ones
(for which it prints tickets) and remote ones (the topics of a video consultation).
An enrollment code is shown once, on the page that issued it, with its expiry; only
its hash is kept. Revoking ends the kiosk's device token at once. The fleet page
(``/admin/kiosks``) shows every kiosk's state from its health reports, judged on the
app's clock: see :mod:`madoguchi.kiosk.health`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...kiosk.devices import CAMERAS, CODE_SECONDS, PAPER_WIDTHS, PRINTER_KINDS, Kiosk, Printer
from ...kiosk.health import OFFLINE_AFTER, KioskHealth
from ...queue.model import Office, ServiceMode
from ..accounts import Role
from ..forms import Form, signed_form
from ..pages import render
from ..security import Staff, require
from ..state import kiosks_of, now_of, path_slug
from .common import Checker, Invalid, Problem, all_offices, form_values, see_other, services_of

TEXT_FIELDS = ("id", "office", "branch", "place", "printer_kind", "printer_host")
HOST_LIMIT = 253


def _when(moment: float | None, zone: str) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def _zone(request: Request) -> str:
    zone: str = request.app.state.settings.timezone
    return zone


async def fleet(request: Request) -> Response:
    """Every kiosk: state, last seen, problems, app version, round trip and check results."""
    staff = await require(request, Role.ADMIN)
    now = now_of(request)
    statuses = await KioskHealth(request.app.state.redis).fleet(kiosks_of(request), now)
    offices = {o.id: o for o in await all_offices(request)}
    context = {
        "staff": staff,
        "statuses": statuses,
        "offices": offices,
        "when": lambda moment: _when(moment, _zone(request)),
        "ago": lambda moment: None if moment is None else max(0, round(now - moment)),
        "offline_minutes": round(OFFLINE_AFTER / 60),
        "done": request.query_params.get("done", ""),
    }
    return render(request, "admin/kiosks.html", context)


# -- the registration form ---------------------------------------------------------------


async def _choices(request: Request, offices: list[Office]) -> dict[str, list[tuple[str, str]]]:
    """Every service of every office, once, split into in-person services and topics."""
    seen: dict[str, tuple[ServiceMode, str, list[str]]] = {}
    for office in offices:
        for service in (await services_of(request, office.id)).values():
            entry = seen.setdefault(service.id, (service.mode, service.name_en, []))
            entry[2].append(office.name_en)
    choices: dict[str, list[tuple[str, str]]] = {"services": [], "topics": []}
    for sid, (mode, name, where) in sorted(seen.items()):
        group = "topics" if mode is ServiceMode.REMOTE else "services"
        choices[group].append((sid, f"{name} ({', '.join(where)})"))
    return choices


def _kiosk_values(kiosk: Kiosk) -> dict[str, Any]:
    return {
        "id": kiosk.id,
        "office": kiosk.office,
        "branch": kiosk.branch,
        "place": kiosk.place,
        "services": list(kiosk.services),
        "topics": list(kiosk.topics),
        "cameras": list(kiosk.cameras),
        "printer_kind": kiosk.printer.kind,
        "printer_host": kiosk.printer.host,
        "printer_port": str(kiosk.printer.port),
        "printer_width": str(kiosk.printer.width_mm),
    }


def _form_kiosk_values(form: Form) -> dict[str, Any]:
    return form_values(form, *TEXT_FIELDS, "printer_port", "printer_width") | {
        "services": form.all("services"),
        "topics": form.all("topics"),
        "cameras": form.all("cameras"),
    }


async def _read_kiosk(request: Request, form: Form, existing: Kiosk | None) -> Kiosk:
    check = Checker(form)
    if existing is None:
        kiosk_id = check.slug("id")
        if "id" not in check.problems and await kiosks_of(request).get(kiosk_id) is not None:
            check.fail("id", Problem("taken", value=kiosk_id))
    else:
        kiosk_id = existing.id
    offices = await all_offices(request)
    office = check.choice("office", tuple(o.id for o in offices) or ("",))
    services = await services_of(request, office) if office else {}
    in_person = {s for s, v in services.items() if v.mode is not ServiceMode.REMOTE}
    remote = {s for s, v in services.items() if v.mode is ServiceMode.REMOTE}
    branch = check.text("branch")
    place = check.text("place")
    chosen_services = check.subset("services", in_person)
    topics = check.subset("topics", remote)
    cameras = check.subset("cameras", set(CAMERAS))
    kind = check.choice("printer_kind", PRINTER_KINDS)
    host = check.text("printer_host", required=kind == "escpos", limit=HOST_LIMIT)
    if host and not all(c.isalnum() or c in ".-:[]" for c in host):
        check.fail("printer_host", Problem("host", value=host[:40]))
    port = check.whole("printer_port", 1, 65535)
    width = check.choice("printer_width", tuple(str(w) for w in PAPER_WIDTHS))
    check.done()
    printer = Printer(kind, host, port, 58 if width == "58" else 80)  # type: ignore[arg-type]
    revoked = existing.revoked if existing is not None else False
    return Kiosk(
        kiosk_id,
        office,
        branch,
        place,
        chosen_services,
        topics,
        tuple(c for c in CAMERAS if c in cameras),
        printer,
        revoked,
    )


async def _kiosk_page(
    request: Request,
    staff: Staff,
    kiosk: Kiosk | None,
    values: dict[str, Any] | None = None,
    *,
    problems: dict[str, Problem] | None = None,
    code: str = "",
    status: int = 200,
) -> Response:
    offices = await all_offices(request)
    now = now_of(request)
    if values is None:
        values = (
            _kiosk_values(kiosk)
            if kiosk is not None
            else {
                "cameras": list(CAMERAS),
                "printer_kind": "browser",
                "printer_port": "9100",
                "printer_width": "80",
                "office": request.query_params.get("office", ""),
            }
        )
    enrollment = await kiosks_of(request).enrollment(kiosk.id, now) if kiosk else None
    context = {
        "staff": staff,
        "kiosk": kiosk,
        "enrollment": enrollment,
        "offices": offices,
        "office_choices": [(o.id, f"{o.name_en} {o.name_ja}") for o in offices],
        **await _choices(request, offices),
        "values": values,
        "problems": problems or {},
        "code": code,
        "code_expires": _when(now + CODE_SECONDS, _zone(request)) if code else "",
        "code_minutes": CODE_SECONDS // 60,
        "when": lambda moment: _when(moment, _zone(request)),
        "done": request.query_params.get("done", ""),
    }
    return render(request, "admin/kiosk.html", context, status=status)


async def _existing(request: Request) -> Kiosk:
    return await kiosks_of(request).require(path_slug(request, "kiosk", "kiosk"))


async def new_kiosk(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    return await _kiosk_page(request, staff, None)


async def create_kiosk(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    try:
        kiosk = await _read_kiosk(request, form, None)
    except Invalid as exc:
        values = _form_kiosk_values(form)
        return await _kiosk_page(request, staff, None, values, problems=exc.problems, status=422)
    await kiosks_of(request).put(kiosk)
    return see_other(f"/admin/kiosks/{kiosk.id}?done=created")


async def kiosk_page(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    return await _kiosk_page(request, staff, await _existing(request))


async def update_kiosk(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    existing = await _existing(request)
    try:
        kiosk = await _read_kiosk(request, form, existing)
    except Invalid as exc:
        values = _form_kiosk_values(form) | {"id": existing.id}
        return await _kiosk_page(
            request, staff, existing, values, problems=exc.problems, status=422
        )
    await kiosks_of(request).put(kiosk)
    return see_other(f"/admin/kiosks/{kiosk.id}?done=saved")


async def issue_code(request: Request) -> Response:
    """A new enrollment code, shown once on the page that answers (never stored in clear)."""
    staff, _ = await signed_form(request, Role.ADMIN)
    kiosk = await _existing(request)
    code = await kiosks_of(request).issue_code(kiosk.id, now_of(request))
    response = await _kiosk_page(request, staff, kiosk, code=code)
    response.headers["Cache-Control"] = "no-store"
    return response


async def revoke_kiosk(request: Request) -> Response:
    await signed_form(request, Role.ADMIN)
    kiosk = await _existing(request)
    await kiosks_of(request).revoke(kiosk.id)
    return see_other(f"/admin/kiosks/{kiosk.id}?done=revoked")


routes = [
    Route("/admin/kiosks", fleet, methods=["GET"]),
    Route("/admin/kiosks/new", new_kiosk, methods=["GET"]),
    Route("/admin/kiosks", create_kiosk, methods=["POST"]),
    Route("/admin/kiosks/{kiosk}", kiosk_page, methods=["GET"]),
    Route("/admin/kiosks/{kiosk}", update_kiosk, methods=["POST"]),
    Route("/admin/kiosks/{kiosk}/code", issue_code, methods=["POST"]),
    Route("/admin/kiosks/{kiosk}/revoke", revoke_kiosk, methods=["POST"]),
]
