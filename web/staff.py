"""Staff sign-in and sign-out, and the staff home page that leads to each tool."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .accounts import AccountStore, Role
from .pages import render
from .security import (
    check_csrf,
    clear_session_cookie,
    require,
    set_session_cookie,
    signed_in,
)
from .sessions import SessionStore

FORM_LIMIT = 4096


def _next(value: str | None) -> str:
    """Only a path on this site may be a redirect target after sign-in."""
    if not value:
        return "/staff/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/staff/"
    return value


async def signin_form(request: Request) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(_next(request.query_params.get("next")), status_code=303)
    return render(request, "staff/signin.html", {"next": _next(request.query_params.get("next"))})


async def signin(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=8, max_part_size=FORM_LIMIT)
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))[:256]
    code = str(form.get("code", "")).strip()[:12] or None
    target = _next(str(form.get("next", "")))
    sessions: SessionStore = request.app.state.sessions
    accounts: AccountStore = request.app.state.accounts
    address = request.client.host if request.client else "unknown"
    if await sessions.throttled(username, address):
        return render(
            request,
            "staff/signin.html",
            {"next": target, "username": username, "error": "throttled"},
            status=429,
        )
    account = await accounts.verify(username, password, code)
    if account is None:
        await sessions.failed(username, address)
        needs_code = await accounts.needs_code(username) if username else False
        return render(
            request,
            "staff/signin.html",
            {"next": target, "username": username, "error": "wrong", "needs_code": needs_code},
            status=401,
        )
    await sessions.succeeded(username)
    if account.totp_required and not account.has_totp:
        target = "/staff/totp"
    session = await sessions.create(account.username, now=request.app.state.clock())
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, session)
    return response


async def signout(request: Request) -> Response:
    staff = await require(request)
    form = await request.form(max_files=0, max_fields=4, max_part_size=FORM_LIMIT)
    check_csrf(request, staff, str(form.get("csrf", "")))
    sessions: SessionStore = request.app.state.sessions
    await sessions.end(staff.session.id)
    response = RedirectResponse("/staff/signin", status_code=303)
    clear_session_cookie(response, request)
    return response


async def home(request: Request) -> Response:
    staff = await require(request)
    return render(request, "staff/home.html", {"staff": staff, "Role": Role})


routes = [
    Route("/staff/signin", signin_form, methods=["GET"]),
    Route("/staff/signin", signin, methods=["POST"]),
    Route("/staff/signout", signout, methods=["POST"]),
    Route("/staff/", home, methods=["GET"]),
]
