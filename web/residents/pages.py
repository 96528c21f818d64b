"""The residents' phone pages: an office's page, taking a ticket, the ticket's live page.

- ``/o/{office}``: the office, open or closed, each service taking tickets with its
  current wait; a form takes a ticket (channel ``web``) and goes to its page. The form
  works without JavaScript; it carries the phone's token (see :mod:`.guard`) and an
  idempotency key of its own, so a double submit gives one ticket.
- ``/o/{office}/poster``: a printable QR poster for the entrance.
- ``/o/{office}/t/{token}``: the ticket by its random token, updated live from
  ``…/events`` (server-sent events, see :mod:`.watch`); cancel it (with a confirm
  step), or ask to be told when so many tickets are ahead (:mod:`..notifications`).
- ``/sw.js``: the service worker that shows Web Push notifications.

Refusals are pages in the resident's language with a 4xx status.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import segno
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...queue.exceptions import NotFound, QueueError, Unavailable
from ...queue.keys import SLUG
from ...queue.model import (
    CancelReason,
    Channel,
    CounterState,
    Estimate,
    Office,
    Service,
    ServiceMode,
    Ticket,
    TicketStatus,
)
from ...queue.tickets import IDEMPOTENCY_KEY, TOKEN, Issued
from ...queue.waits import Board
from .. import notifications
from ..exceptions import HTTPError
from ..forms import Form, read_form
from ..i18n import BY_CODE, N_, Translator, catalogues_of, translator
from ..live import requested_after
from ..pages import STATIC, render
from ..state import now_of, queue_of, waits_of
from . import guard
from .view import TicketView, counter_names, view_of
from .watch import TicketStream, TicketWatch

#: Problems a resident can meet, and the status each answers with.
STATUS = {
    "no_office": 404,
    "no_ticket": 404,
    "no_service": 422,
    "office_closed": 409,
    "service_closed": 409,
    "expired": 403,
    "bad_form": 400,
    "too_many": 429,
    "not_waiting": 409,
    "bad_choice": 422,
    "bad_email": 422,
    "bad_push": 422,
    "no_channel": 422,
}


@dataclass(frozen=True)
class Offer:
    """A service on the office page: whether it takes tickets now, and its wait."""

    service: Service
    taking: bool
    waiting: int
    estimate: Estimate | None


def problem(request: Request, code: str, **context: Any) -> Response:
    """The page that explains ``code`` to the resident, with its 4xx status."""
    return render(
        request,
        "public/ticket_problem.html",
        {"problem": code, **context},
        status=STATUS[code],
    )


async def _read(request: Request) -> Form | str:
    """The posted form, if its token is this phone's; else the problem with it."""
    try:
        form = await read_form(request, request.app.state.settings.max_body_bytes)
    except HTTPError:
        return "bad_form"
    if not guard.form_is_ours(request, form.get("csrf")):
        return "expired"
    return form


def watch_of(request: Request) -> TicketWatch:
    """The process's ticket feeds (made on first use)."""
    state = request.app.state
    watch: TicketWatch | None = getattr(state, "ticket_watch", None)
    if watch is None:
        watch = state.ticket_watch = TicketWatch(state.events, queue_of(request), waits_of(request))
    return watch


def _office_id(request: Request) -> str | None:
    office: str = request.path_params["office"]
    return office if SLUG.fullmatch(office) else None


async def _office(request: Request) -> Office | None:
    office = _office_id(request)
    if office is None:
        return None
    try:
        return await queue_of(request).office(office)
    except NotFound:
        return None


def offers(board: Board) -> list[Offer]:
    """The office's in-person services that are active, in their prefix order."""
    snapshot = board.snapshot
    found = []
    for service in sorted(snapshot.services.values(), key=lambda s: s.prefix):
        if service.mode is not ServiceMode.IN_PERSON or not service.active:
            continue
        serving = [
            c
            for c in snapshot.counters
            if c.state is not CounterState.CLOSED and service.id in c.services
        ]
        lines = snapshot.lines.get(service.id, {})
        found.append(
            Offer(
                service,
                bool(serving),
                sum(len(line) for line in lines.values()),
                board.estimates.new.get(service.id),
            )
        )
    return found


def _with_device(request: Request, response: Response, token: str) -> Response:
    guard.remember_device(response, request, token)
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the office's page ------------------------------------------------------------------


async def office_page(request: Request) -> Response:
    office = await _office(request)
    if office is None:
        return problem(request, "no_office")
    return await _office_form(request, office)


async def _office_form(
    request: Request, office: Office, *, error: str = "", chosen: str = ""
) -> Response:
    board = await waits_of(request).board(office.id)
    found = offers(board)
    token = guard.device_token(request)
    response = render(
        request,
        "public/office.html",
        {
            "office": office,
            "offers": found,
            "open": any(o.taking for o in found),
            "csrf": token,
            "key": secrets.token_urlsafe(16),
            "error": error,
            "chosen": chosen,
        },
        status=STATUS[error] if error else 200,
    )
    return _with_device(request, response, token)


async def take_ticket(request: Request) -> Response:
    office = await _office(request)
    if office is None:
        return problem(request, "no_office")
    form = await _read(request)
    if isinstance(form, str):
        return await _office_form(request, office, error=form)
    service = form.get("service")[:40]
    key = form.get("key")
    if not SLUG.fullmatch(service) or not IDEMPOTENCY_KEY.fullmatch(key):
        return await _office_form(request, office, error="no_service")
    board = await waits_of(request).board(office.id)
    offer = next((o for o in offers(board) if o.service.id == service), None)
    if offer is None:
        return await _office_form(request, office, error="no_service")
    if not offer.taking:
        closed = not any(o.taking for o in offers(board))
        return await _office_form(
            request, office, error="office_closed" if closed else "service_closed", chosen=service
        )
    return await _issue(request, office, service, key)


async def _issue(request: Request, office: Office, service: str, key: str) -> Response:
    settings = request.app.state.settings
    now = now_of(request)
    device = guard.device_token(request)

    def issue() -> Awaitable[Issued]:
        return queue_of(request).issue(
            office.id, service, now=now, channel=Channel.WEB, idempotency_key=key, actor="resident"
        )

    try:
        issued = await guard.issue_within_limits(
            request.app.state.redis,
            issue,
            office=office.id,
            key=key,
            device=device,
            address=request.client.host if request.client else "",
            day=office.day(now),
            per_device=settings.web_tickets_per_device,
            per_address=settings.web_tickets_per_address,
        )
    except Unavailable:
        return await _office_form(request, office, error="service_closed", chosen=service)
    except QueueError:
        return await _office_form(request, office, error="no_service", chosen=service)
    if issued is None:
        return await _office_form(request, office, error="too_many", chosen=service)
    response = RedirectResponse(f"/o/{office.id}/t/{issued.ticket.token}", status_code=303)
    return _with_device(request, response, device)


# -- the poster ---------------------------------------------------------------------------


async def poster(request: Request) -> Response:
    office = await _office(request)
    if office is None:
        return problem(request, "no_office")
    url = f"{str(request.base_url).rstrip('/')}/o/{office.id}"
    qr = segno.make(url, error="m")
    # segno writes the SVG itself from the URL's bits: no text of ours is in it unescaped.
    svg = Markup(qr.svg_inline(scale=10, border=2, dark="#000000", light="#ffffff", omitsize=True))  # noqa: S704
    # A poster speaks Japanese and English, whatever language the page is in.
    texts = {
        code: {
            "call": _in(request, code, N_("Scan to take a ticket")),
            "note": _in(request, code, N_("No app needed: see your place in line on your phone.")),
        }
        for code in ("ja", "en")
    }
    return render(request, "public/poster.html", {"office": office, "url": url, "qr": svg, **texts})


def _in(request: Request, code: str, message: str) -> str:
    language = BY_CODE[code]
    return Translator(language, catalogues_of(request).translations(language)).gettext(message)


# -- the ticket's page --------------------------------------------------------------------


async def _ticket(request: Request) -> tuple[Office, Ticket] | Response:
    """The office and the ticket the path names, or the page that says there is none."""
    office = await _office(request)
    if office is None:
        return problem(request, "no_office")
    token: str = request.path_params["token"]
    if not TOKEN.fullmatch(token):
        return problem(request, "no_ticket", office=office)
    try:
        ticket = await queue_of(request).ticket(office.id, token, now=now_of(request))
    except NotFound:
        return problem(request, "no_ticket", office=office)
    return office, ticket


async def _view(request: Request, office: Office, ticket: Ticket) -> tuple[TicketView, Board]:
    waits = waits_of(request)
    board = await waits.board(office.id)
    estimate = await waits.for_ticket(office.id, ticket)
    names = counter_names(board.snapshot)
    return view_of(
        ticket, estimate=estimate, counter_name=names.get(ticket.counter or "", "")
    ), board


async def ticket_page(request: Request) -> Response:
    found = await _ticket(request)
    if isinstance(found, Response):
        return found
    office, ticket = found
    version = await queue_of(request).last_event(office.id)
    view, board = await _view(request, office, ticket)
    settings = request.app.state.settings
    contact = await notifications.contact_of(request.app.state.redis, office.id, ticket.id)
    token = guard.device_token(request)
    response = render(
        request,
        "public/ticket.html",
        {
            "office": office,
            "ticket": ticket,
            "service": board.snapshot.services.get(ticket.service),
            "view": view,
            "last_event": version,
            "csrf": token,
            "thresholds": notifications.THRESHOLDS,
            "contact": contact,
            "email_offered": bool(settings.smtp_host),
            "push_key": await notifications.vapid_public_key(request.app.state.redis),
            "saved": request.query_params.get("saved", ""),
        },
    )
    return _with_device(request, response, token)


async def ticket_events(request: Request) -> Response:
    """The ticket's view as server-sent events; resumes after ``Last-Event-ID``."""
    office_id = _office_id(request)
    # The office's latest event before the ticket is read: the view's id.
    version = await queue_of(request).last_event(office_id) if office_id else ""
    found = await _ticket(request)
    if isinstance(found, Response):
        return found
    office, ticket = found
    after = requested_after(request)
    if after and not _stream_id(after):
        after = ""
    return TicketStream(watch_of(request), office.id, ticket, version, after)


def _stream_id(value: str) -> bool:
    ms, dash, seq = value.partition("-")
    return bool(dash) and ms.isdigit() and seq.isdigit() and len(value) <= 41


# -- cancelling ------------------------------------------------------------------------------


async def cancel_page(request: Request) -> Response:
    found = await _ticket(request)
    if isinstance(found, Response):
        return found
    office, ticket = found
    token = guard.device_token(request)
    if ticket.status not in (TicketStatus.WAITING, TicketStatus.CALLED):
        return problem(request, "not_waiting", office=office, ticket=ticket)
    response = render(
        request,
        "public/ticket_cancel.html",
        {"office": office, "ticket": ticket, "csrf": token},
    )
    return _with_device(request, response, token)


async def cancel(request: Request) -> Response:
    found = await _ticket(request)
    if isinstance(found, Response):
        return found
    office, ticket = found
    form = await _read(request)
    if isinstance(form, str):
        return problem(request, form, office=office, ticket=ticket)
    try:
        await queue_of(request).cancel(
            office.id,
            ticket.token,
            now=now_of(request),
            reason=CancelReason.RESIDENT,
            actor="resident",
        )
    except QueueError:
        return problem(request, "not_waiting", office=office, ticket=ticket)
    return RedirectResponse(f"/o/{office.id}/t/{ticket.token}", status_code=303)


# -- "tell me when" ----------------------------------------------------------------------------


async def notify(request: Request) -> Response:
    found = await _ticket(request)
    if isinstance(found, Response):
        return found
    office, ticket = found
    settings = request.app.state.settings
    form = await _read(request)
    if isinstance(form, str):
        return problem(request, form, office=office, ticket=ticket)
    contact = _contact(form, settings.push_services, bool(settings.smtp_host), request)
    if isinstance(contact, str):
        return problem(request, contact, office=office, ticket=ticket)
    redis = request.app.state.redis
    if not await notifications.save_contact(redis, office.id, ticket.id, contact):
        return problem(request, "not_waiting", office=office, ticket=ticket)
    # The ticket may be at its threshold already: look now, not at the next call.
    last = await queue_of(request).last_event(office.id)
    notifier: notifications.Notifier | None = getattr(request.app.state, "notifier", None)
    if notifier is not None:
        await notifier.check(office.id, f"{last}-{ticket.id}")
    return RedirectResponse(f"/o/{office.id}/t/{ticket.token}?saved=1", status_code=303)


def _contact(
    form: Form, services: tuple[str, ...], email_offered: bool, request: Request
) -> notifications.Contact | str:
    """The contact details the form gives, or the problem with them."""
    ahead = form.get("ahead")
    if not ahead.isdigit() or int(ahead) not in notifications.THRESHOLDS:
        return "bad_choice"
    email = form.get("email")
    if email and (not email_offered or not notifications.valid_email(email)):
        return "bad_email"
    push: dict[str, Any] | None = None
    if form.get("push"):
        try:
            push = json.loads(form.get("push"))
        except ValueError:
            return "bad_push"
        if not notifications.valid_subscription(push, services):
            return "bad_push"
    if not email and push is None:
        return "no_channel"
    return notifications.Contact(int(ahead), email, push, translator(request).language.code)


# -- the service worker --------------------------------------------------------------------------


async def service_worker(request: Request) -> Response:
    """``/sw.js``: served from the root, so that its scope is the whole site."""
    response = FileResponse(STATIC / "sw.js", media_type="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = "/"
    return response


routes: list[BaseRoute] = [
    Route("/sw.js", service_worker, methods=["GET"]),
    Route("/o/{office}", office_page, methods=["GET"]),
    Route("/o/{office}", take_ticket, methods=["POST"]),
    Route("/o/{office}/poster", poster, methods=["GET"]),
    Route("/o/{office}/t/{token}", ticket_page, methods=["GET"]),
    Route("/o/{office}/t/{token}/events", ticket_events, methods=["GET"]),
    Route("/o/{office}/t/{token}/cancel", cancel_page, methods=["GET"]),
    Route("/o/{office}/t/{token}/cancel", cancel, methods=["POST"]),
    Route("/o/{office}/t/{token}/notify", notify, methods=["POST"]),
]
