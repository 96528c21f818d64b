"""The kiosk's screens, for elderly residents at a touch screen.

One decision per screen, reached from a start screen of at most four huge choices:
consult a specialist (a topic raises a consultation: ``kiosk/calls.py``), take a ticket
(printed as a receipt), see the waits, and the language. Every screen has the way back
to the start; the screen's main instruction is its heading, which voice guidance reads
out (``kiosk.js``).

Everything acts for the kiosk's own ward office only: a ticket is issued with the
channel ``kiosk`` for the office the device token belongs to, and a form that names
another office is refused. Anything that goes wrong is a kiosk page in the chosen
language that says what to do next (``kiosk/error.html``), never JSON or a 500.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from gettext import NullTranslations
from typing import Any

import segno
from markupsafe import Markup
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..queue import keys
from ..queue.exceptions import NotFound, QueueError
from ..queue.model import Channel, Estimate, Office, Service, ServiceMode, Ticket
from ..queue.waits import Board
from ..web import i18n, views
from ..web.exceptions import Forbidden, HTTPError, Unprocessable
from ..web.forms import read_form
from ..web.i18n import Language
from ..web.pages import render
from ..web.state import now_of, queue_of, waits_of
from . import printing
from .devices import Kiosk, KioskUnenrolled, kiosk_for, kiosk_of

log = logging.getLogger(__name__)

#: The key a page carries so that a double tap, or a retried form, issues one ticket.
PAGE_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
FORM_LIMIT = 1024
NO_STORE = {"Cache-Control": "no-store"}

Handler = Callable[[Request], Awaitable[Response]]


# -- language and furigana ------------------------------------------------------------


def _language(request: Request) -> Language:
    """The kiosk's language: the one chosen (``?lang=``, then its cookie), else Japanese.

    Unlike a phone, a kiosk does not follow its browser's ``Accept-Language``: it starts
    in Japanese for everyone, and the idle reset brings it back there.
    """
    chosen = i18n.BY_CODE.get(request.query_params.get("lang", ""))
    if chosen is None:
        chosen = i18n.BY_CODE.get(request.cookies.get(i18n.LANG_COOKIE, ""))
    return chosen or i18n.DEFAULT


# -- rendering --------------------------------------------------------------------------


def render_screen(
    request: Request,
    template: str,
    kiosk: Kiosk | None,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    office: Office | None = None,
) -> Response:
    language = _language(request)
    furigana = i18n.furigana_of(request, language)
    here = request.url.path
    values = {
        "lang": language.code,
        "furigana": furigana,
        "kiosk": kiosk,
        "office": office,
        # Furigana can be asked for in Japanese; easy Japanese always has it.
        "furigana_url": f"{here}?furigana={0 if furigana else 1}" if language.code == "ja" else "",
        "pristine": here == "/kiosk/" and language == i18n.DEFAULT and not furigana,
        "languages": i18n.LANGUAGES,
        **(context or {}),
    }
    response = render(request, template, values, status=status)
    response.headers.update(NO_STORE)
    return response


@dataclass(frozen=True)
class Wait:
    """A service's line as the kiosk shows it: how many wait, and about how long."""

    service: Service
    waiting: int
    open_counters: int
    minutes: int | None
    low: int | None
    high: int | None


def _waits(board: Board, services: list[Service]) -> list[Wait]:
    shown = []
    for service in services:
        line = views.service(service, board)  # as the API and the staff pages count it
        estimate = line["estimate_for_new_ticket"] or {}
        shown.append(
            Wait(
                service,
                line["waiting"],
                line["open_counters"],
                estimate.get("wait_minutes"),
                estimate.get("low_minutes"),
                estimate.get("high_minutes"),
            )
        )
    return shown


def _minutes(estimate: Estimate | None) -> tuple[int | None, int | None, int | None]:
    if estimate is None:
        return None, None, None
    return round(estimate.wait / 60), round(estimate.low / 60), round(estimate.high / 60)


def _offered(board: Board, ids: tuple[str, ...], mode: ServiceMode) -> list[Service]:
    """The services among ``ids`` that the office has, active and of ``mode``, in order."""
    services = board.snapshot.services
    return [
        services[i]
        for i in ids
        if i in services and services[i].active and services[i].mode is mode
    ]


# -- errors -----------------------------------------------------------------------------


def _reason(exc: Exception) -> str:
    """Which plain-words explanation the error page gives (see ``kiosk/error.html``)."""
    if isinstance(exc, KioskUnenrolled):
        return "unenrolled"
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return "busy"
    status = getattr(exc, "status", getattr(exc, "status_code", 400))
    code = getattr(exc, "code", "")
    if status == 403:
        return "elsewhere"
    if status == 404:
        return "missing"
    if code == "unavailable":
        return "closed"
    if status == 503:
        return "busy"
    return "choice"


def screen(handler: Handler) -> Handler:
    """Wrap a kiosk handler: whatever goes wrong becomes the kiosk's error page.

    A ``GET`` from a kiosk that is not (or no longer) enrolled goes to the enrollment
    page, as every kiosk page does; anything else answers with a page in the chosen
    language that says, in plain words, what to do next.
    """

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except KioskUnenrolled as exc:
            if request.method == "GET":
                return RedirectResponse("/kiosk/enroll", status_code=303)
            return error_page(request, exc, 401)
        except (QueueError, HTTPError) as exc:
            log.info("kiosk %s %s refused: %s", request.method, request.url.path, exc)
            return error_page(request, exc, exc.status)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("kiosk %s %s: redis unreachable: %s", request.method, request.url.path, exc)
            response = error_page(request, exc, 503)
            response.headers["Retry-After"] = "5"
            return response

    return wrapped


def is_screen(request: Request) -> bool:
    """Whether a person at a kiosk asked for this (a screen, not its API or a file)."""
    path = request.url.path
    return path.startswith("/kiosk/") and not path.startswith(("/kiosk/api/", "/kiosk/static/"))


def error_page(request: Request, exc: Exception, status: int) -> Response:
    """The kiosk's error page for ``exc``, with ``status``."""
    kiosk: Kiosk | None = request.scope.get("kiosk")
    return render_screen(
        request, "kiosk/error.html", kiosk, {"reason": _reason(exc)}, status=status
    )


# -- the screens ------------------------------------------------------------------------


@screen
async def home(request: Request) -> Response:
    """The start: consult, take a ticket, see waits, language."""
    kiosk = await kiosk_of(request)
    board = await waits_of(request).board(kiosk.office)
    topics = _offered(board, kiosk.topics, ServiceMode.REMOTE)
    services = _offered(board, kiosk.services, ServiceMode.IN_PERSON)
    context = {"home": True, "consult": bool(topics), "tickets": bool(services)}
    return render_screen(request, "kiosk/home.html", kiosk, context, office=board.snapshot.office)


@screen
async def consult(request: Request) -> Response:
    """Pick the topic of a consultation: the kiosk's remote services."""
    kiosk = await kiosk_of(request)
    return await _choose(request, kiosk, kiosk.topics, ServiceMode.REMOTE, "kiosk/consult.html")


@screen
async def services(request: Request) -> Response:
    """Pick the service to take a ticket for, each with its current wait."""
    kiosk = await kiosk_of(request)
    return await _choose(
        request, kiosk, kiosk.services, ServiceMode.IN_PERSON, "kiosk/services.html"
    )


async def _choose(
    request: Request, kiosk: Kiosk, ids: tuple[str, ...], mode: ServiceMode, template: str
) -> Response:
    board = await waits_of(request).board(kiosk.office)
    context = {
        "waits": _waits(board, _offered(board, ids, mode)),
        # One key per page shown: every tap on this page asks for the same ticket.
        "key": secrets.token_urlsafe(18),
    }
    return render_screen(request, template, kiosk, context, office=board.snapshot.office)


@screen
async def take(request: Request) -> Response:
    """Issue a ticket (channel ``kiosk``) for the kiosk's own office; then show it."""
    form = await read_form(request, FORM_LIMIT)
    office = form.get("office", "")
    kiosk = await kiosk_for(request, office)
    service, key = form.get("service", ""), form.get("key", "")
    if service not in kiosk.services:
        # A topic is raised as a consultation (``kiosk/calls.py``), not taken as a ticket.
        raise Unprocessable(f'service "{service[:40]}" is not offered at this kiosk')
    if not PAGE_KEY.fullmatch(key):
        raise Unprocessable("the form has no valid key; go back to the start and try again")
    issued = await queue_of(request).issue(
        kiosk.office,
        service,
        now=now_of(request),
        channel=Channel.KIOSK,
        idempotency_key=f"kiosk:{kiosk.id}:{key}",
        actor=f"kiosk:{kiosk.id}",
    )
    ticket = issued.ticket
    target = f"/kiosk/tickets/{ticket.token}"
    if service in kiosk.topics and service not in kiosk.services:
        return RedirectResponse(target, status_code=303)
    if issued.replayed:
        # The same tap again: the ticket was printed the first time.
        return RedirectResponse(target, status_code=303)
    if kiosk.printer.kind == "escpos":
        printed = await _print_escpos(request, kiosk, ticket)
        return RedirectResponse(f"{target}?printed={'1' if printed else '0'}", status_code=303)
    if await _out_of_paper(request, kiosk):
        return RedirectResponse(f"{target}?printed=0", status_code=303)
    return RedirectResponse(f"{target}?print=1", status_code=303)


async def _print_escpos(request: Request, kiosk: Kiosk, ticket: Ticket) -> bool:
    """Print on the branch's ESC/POS printer; ``False`` when it could not."""
    view = await view_ticket(request, kiosk, ticket)
    try:
        await printing.print_ticket(kiosk, view, str(request.base_url))
    except (printing.PrintFailed, printing.FontMissing) as exc:
        log.warning("kiosk %s could not print ticket %s: %s", kiosk.id, ticket.number, exc)
        return False
    return True


async def _out_of_paper(request: Request, kiosk: Kiosk) -> bool:
    """Whether the kiosk's latest health report said its printer cannot print."""
    raw = await request.app.state.redis.hget(keys.kiosk_health(kiosk.id), "report")
    if not raw:
        return False
    try:
        printer = json.loads(raw).get("printer")
    except (ValueError, AttributeError):
        return False
    return printer in ("no_paper", "offline")


@dataclass(frozen=True)
class TicketView:
    """A ticket as the kiosk shows and prints it (and as ``printing`` prints it)."""

    ticket: Ticket
    #: The office's slug, and its name in the kiosk's language.
    office: str
    office_name: str
    service: Service
    service_name: str
    #: When it was taken, in the office's time zone.
    issued: str
    #: The ticket's phone page, absolute: what the QR code holds.
    url: str
    minutes: int | None
    low: int | None
    high: int | None

    @property
    def number(self) -> str:
        return self.ticket.number

    @property
    def token(self) -> str:
        return self.ticket.token

    @property
    def remote(self) -> bool:
        return self.service.mode is ServiceMode.REMOTE

    def qr_svg(self, scale: int = 4) -> Markup:
        """The QR code to the ticket's phone page, as inline SVG (made here, not in the page)."""
        code = segno.make(self.url, error="m")
        return Markup(code.svg_inline(scale=scale, svgclass="qr-code"))  # noqa: S704


async def view_ticket(request: Request, kiosk: Kiosk, ticket: Ticket) -> TicketView:
    board = await waits_of(request).board(kiosk.office)
    office = board.snapshot.office
    service = board.snapshot.services.get(ticket.service)
    if service is None:
        raise NotFound(f'service "{ticket.service}" no longer exists')
    names = i18n.Translator(_language(request), NullTranslations())
    estimate = await waits_of(request).for_ticket(kiosk.office, ticket)
    issued = datetime.fromtimestamp(ticket.issued_at, office.zone)
    base = str(request.base_url).rstrip("/")
    return TicketView(
        ticket,
        office.id,
        names.name(office),
        service,
        names.name(service),
        issued.strftime("%Y-%m-%d %H:%M"),
        f"{base}/o/{office.id}/t/{ticket.token}",
        *_minutes(estimate),
    )


@screen
async def ticket(request: Request) -> Response:
    """A ticket taken at this kiosk: the number, the place in line, and the receipt."""
    kiosk = await kiosk_of(request)
    found = await queue_of(request).ticket(
        kiosk.office, request.path_params["token"], now=now_of(request)
    )
    if found.channel is not Channel.KIOSK:
        raise Forbidden("this ticket was not taken at a kiosk")
    view = await view_ticket(request, kiosk, found)
    context = {
        "view": view,
        "print": request.query_params.get("print") == "1"
        and kiosk.printer.kind == "browser"
        and not view.remote,
        "printed": request.query_params.get("printed", ""),
        "width": kiosk.printer.width_mm,
    }
    office = await queue_of(request).office(kiosk.office)
    return render_screen(request, "kiosk/ticket.html", kiosk, context, office=office)


@screen
async def waits(request: Request) -> Response:
    """Every service of the kiosk's office: how many wait, and about how long."""
    kiosk = await kiosk_of(request)
    board = await waits_of(request).board(kiosk.office)
    every = sorted(board.snapshot.services.values(), key=lambda s: s.prefix)
    shown = _waits(board, [s for s in every if s.active])
    return render_screen(
        request, "kiosk/waits.html", kiosk, {"waits": shown}, office=board.snapshot.office
    )


@screen
async def language(request: Request) -> Response:
    """The six languages, each named in itself; choosing one goes back to the start."""
    kiosk = await kiosk_of(request)
    office = await queue_of(request).office(kiosk.office)
    return render_screen(request, "kiosk/language.html", kiosk, office=office)


@screen
async def reset(request: Request) -> Response:
    """Back to the start with everything cleared: Japanese, no furigana (the idle reset)."""
    await kiosk_of(request)
    response = RedirectResponse("/kiosk/", status_code=303)
    response.delete_cookie(i18n.LANG_COOKIE)
    response.delete_cookie(i18n.FURIGANA_COOKIE)
    return response


routes: list[BaseRoute] = [
    Route("/kiosk/", home, methods=["GET"]),
    Route("/kiosk/consult", consult, methods=["GET"]),
    Route("/kiosk/tickets", services, methods=["GET"]),
    Route("/kiosk/tickets", take, methods=["POST"]),
    Route("/kiosk/tickets/{token}", ticket, methods=["GET"]),
    Route("/kiosk/waits", waits, methods=["GET"]),
    Route("/kiosk/language", language, methods=["GET"]),
    Route("/kiosk/reset", reset, methods=["GET"]),
]
# The static files under /kiosk/static are mounted once, by ``enrollment.static``.
