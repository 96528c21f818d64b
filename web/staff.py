"""Staff sign-in and sign-out, the authenticator set-up, and the staff home page.

People sign in with the form at ``/staff/signin``; an account with an authenticator
is then asked for its code on a second page. API clients (and the benchmark) sign in
with ``POST /api/v1/session`` and sign out with ``DELETE /api/v1/session``. Both ways
share the throttling: five failures for a user name, or from an address, refuse
further attempts for 15 minutes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import segno
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..queue.exceptions import NotFound
from .accounts import Role, StaffAccount, provisioning_uri
from .bodies import maybe, need, only, read_json
from .exceptions import TooManyRequests, Unauthorized
from .forms import read_form
from .pages import render
from .responses import JSONResponse
from .security import (
    ENROL_PATH,
    Staff,
    check_csrf,
    clear_session_cookie,
    require,
    session_id,
    set_session_cookie,
    signed_in,
    signin_form_page,
    signin_token_matches,
)
from .sessions import FAILURE_WINDOW, Session
from .state import accounts_of, now_of, sessions_of

#: Largest sign-in or set-up form, in bytes.
FORM_LIMIT = 4096
HOME = "/staff/"
THROTTLED = (
    "too many failed sign-ins for this user name or from this address; "
    f"wait {FAILURE_WINDOW // 60} minutes, or ask an administrator"
)
NO_STORE = {"Cache-Control": "no-store"}


class Outcome(enum.Enum):
    SIGNED_IN = "signed in"
    NEEDS_CODE = "needs code"
    WRONG = "wrong"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    account: StaffAccount | None = None


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _next(value: str | None) -> str:
    """Only a path on this site may be a redirect target after sign-in."""
    if not value or len(value) > 1000:
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith(("//", "/\\")):
        return HOME
    return value


async def _attempt(request: Request, username: str, password: str, code: str) -> Attempt:
    """Check a sign-in, counting failures per user name and per address."""
    sessions, accounts = sessions_of(request), accounts_of(request)
    address = _address(request)
    if await sessions.throttled(username, address):
        return Attempt(Outcome.THROTTLED)
    account = await accounts.authenticate(username, password)
    if account is None:
        await sessions.failed(username, address)
        return Attempt(Outcome.WRONG)
    if account.has_totp:
        if not code:
            return Attempt(Outcome.NEEDS_CODE, account)
        if not await accounts.check_code(username, code, now=now_of(request)):
            await sessions.failed(username, address)
            return Attempt(Outcome.WRONG)
    await sessions.succeeded(username)
    return Attempt(Outcome.SIGNED_IN, account)


async def _new_session(request: Request, account: StaffAccount) -> Session:
    """A new session for ``account``, ending the one the request came with."""
    sessions = sessions_of(request)
    previous = session_id(request)
    if previous:
        # A new id at every sign-in: a session id planted before it is worth nothing.
        await sessions.end(previous)
    return await sessions.create(account.username, now=now_of(request))


def _signin_page(request: Request, context: dict[str, Any], *, status: int = 200) -> Response:
    return signin_form_page(request, "staff/signin.html", context, status=status)


def _code(value: str) -> str:
    return "".join(value.split())[:12]


# -- the sign-in pages ------------------------------------------------------------------


async def signin_form(request: Request) -> Response:
    target = _next(request.query_params.get("next"))
    if await signed_in(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _signin_page(request, {"next": target})


async def signin(request: Request) -> Response:
    form = await read_form(request, FORM_LIMIT)
    username = form.get("username").lower()[:64]
    target = _next(form.get("next"))
    context = {"next": target, "username": username}
    if not signin_token_matches(request, form.get("csrf")):
        return _signin_page(request, {**context, "error": "expired"}, status=403)
    password = form.fields.get("password", [""])[0]
    attempt = await _attempt(request, username, password, _code(form.get("code")))
    if attempt.outcome is Outcome.THROTTLED:
        return _signin_page(request, {**context, "error": "throttled"}, status=429)
    if attempt.outcome is Outcome.WRONG:
        return _signin_page(request, {**context, "error": "wrong"}, status=401)
    assert attempt.account is not None
    if attempt.outcome is Outcome.NEEDS_CODE:
        pending = await sessions_of(request).await_code(username, target, now=now_of(request))
        return signin_form_page(request, "staff/totp_code.html", {"pending": pending.token})
    return await _signed_in_redirect(request, attempt.account, target)


async def _signed_in_redirect(request: Request, account: StaffAccount, target: str) -> Response:
    session = await _new_session(request, account)
    response = RedirectResponse(ENROL_PATH if account.must_enroll else target, status_code=303)
    set_session_cookie(response, request, session)
    return response


async def signin_code(request: Request) -> Response:
    """The second step: the code from the authenticator app."""
    form = await read_form(request, FORM_LIMIT)
    sessions, accounts = sessions_of(request), accounts_of(request)
    token = form.get("pending")
    if not signin_token_matches(request, form.get("csrf")):
        return _signin_page(request, {"next": HOME, "error": "expired"}, status=403)
    pending = await sessions.pending(token, now=now_of(request))
    if pending is None:
        return _signin_page(request, {"next": HOME, "error": "expired"}, status=400)
    address = _address(request)
    context = {"next": pending.next, "username": pending.username}
    if await sessions.throttled(pending.username, address):
        await sessions.end_pending(token)
        return _signin_page(request, {**context, "error": "throttled"}, status=429)
    if not await accounts.check_code(
        pending.username, _code(form.get("code")), now=now_of(request)
    ):
        await sessions.failed(pending.username, address)
        return signin_form_page(
            request, "staff/totp_code.html", {"pending": token, "error": "wrong"}, status=401
        )
    await sessions.end_pending(token)
    await sessions.succeeded(pending.username)
    try:
        account = await accounts.get(pending.username)
    except NotFound:  # deleted meanwhile
        return _signin_page(request, {**context, "error": "wrong"}, status=401)
    if account.disabled:
        return _signin_page(request, {**context, "error": "wrong"}, status=401)
    return await _signed_in_redirect(request, account, pending.next)


async def signout(request: Request) -> Response:
    staff = await signed_in(request)
    if staff is not None:
        form = await read_form(request, FORM_LIMIT)
        check_csrf(request, staff, form.get("csrf"))
        await sessions_of(request).end(staff.session.id)
    response = RedirectResponse("/staff/signin", status_code=303)
    clear_session_cookie(response, request)
    return response


async def home(request: Request) -> Response:
    staff = await require(request)
    return render(request, "staff/home.html", {"staff": staff, "Role": Role})


# -- the authenticator ------------------------------------------------------------------


def qr_code(data: str) -> str:
    """``data`` as a QR code: an SVG ``data:`` URI for an ``<img>`` (CSP allows ``data:``)."""
    return segno.make(data, error="m").svg_data_uri(scale=5, border=4)


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


async def _totp_page(
    request: Request, staff: Staff, *, error: str | None = None, status: int = 200
) -> Response:
    accounts = accounts_of(request)
    username = staff.account.username
    context: dict[str, Any] = {"staff": staff, "error": error}
    if staff.account.has_totp and not await accounts.has_pending_totp(username):
        context["state"] = "on"
        context["done"] = request.query_params.get("done") == "1"
    else:
        secret = await accounts.pending_totp(username)
        uri = provisioning_uri(secret, username)
        context |= {"state": "setup", "secret": grouped(secret), "uri": uri, "qr": qr_code(uri)}
    response = render(request, "staff/totp.html", context, status=status)
    response.headers.update(NO_STORE)
    return response


async def totp_page(request: Request) -> Response:
    staff = await require(request, enrolling=True)
    return await _totp_page(request, staff)


async def totp_confirm(request: Request) -> Response:
    staff = await require(request, enrolling=True)
    form = await read_form(request, FORM_LIMIT)
    check_csrf(request, staff, form.get("csrf"))
    accounts = accounts_of(request)
    username = staff.account.username
    if not await accounts.has_pending_totp(username):
        return RedirectResponse(ENROL_PATH, status_code=303)
    if not await accounts.confirm_totp(username, _code(form.get("code")), now=now_of(request)):
        return await _totp_page(request, staff, error="wrong", status=400)
    return RedirectResponse(f"{ENROL_PATH}?done=1", status_code=303)


async def totp_new(request: Request) -> Response:
    """Start over with a new secret (a new phone); the old one works until it is confirmed."""
    staff = await require(request, enrolling=True)
    form = await read_form(request, FORM_LIMIT)
    check_csrf(request, staff, form.get("csrf"))
    await accounts_of(request).pending_totp(staff.account.username, fresh=True)
    return RedirectResponse(ENROL_PATH, status_code=303)


# -- the API's sign-in ------------------------------------------------------------------


async def api_signin(request: Request) -> Response:
    limit: int = request.app.state.settings.max_body_bytes
    body = await read_json(request, limit)
    only(body, {"username", "password", "code"})
    username = need(body, "username", str).strip().lower()[:64]
    password = need(body, "password", str)
    attempt = await _attempt(request, username, password, _code(maybe(body, "code", str) or ""))
    if attempt.outcome is Outcome.THROTTLED:
        raise TooManyRequests(THROTTLED)
    if attempt.outcome is Outcome.WRONG:
        raise Unauthorized("the user name, password or code is not right")
    if attempt.outcome is Outcome.NEEDS_CODE:
        error = {
            "code": "code_required",
            "message": 'this account signs in with an authenticator code: send it as "code"',
        }
        return JSONResponse({"error": error}, status_code=401)
    account = attempt.account
    assert account is not None
    session = await _new_session(request, account)
    response = JSONResponse(
        {
            "csrf": session.csrf,
            "username": account.username,
            "name": account.name,
            "role": account.role.value,
            "offices": list(account.offices),
            "services": list(account.services),
            "second_factor_required": account.must_enroll,
        },
        headers=NO_STORE,
    )
    set_session_cookie(response, request, session)
    return response


async def api_signout(request: Request) -> Response:
    staff = await require(request, enrolling=True)
    check_csrf(request, staff)
    await sessions_of(request).end(staff.session.id)
    response = JSONResponse({"signed_out": True})
    clear_session_cookie(response, request)
    return response


routes = [
    Route("/staff/signin", signin_form, methods=["GET"]),
    Route("/staff/signin", signin, methods=["POST"]),
    Route("/staff/signin/code", signin_code, methods=["POST"]),
    Route("/staff/signout", signout, methods=["POST"]),
    Route("/staff/", home, methods=["GET"]),
    Route(ENROL_PATH, totp_page, methods=["GET"]),
    Route(ENROL_PATH, totp_confirm, methods=["POST"]),
    Route(f"{ENROL_PATH}/new", totp_new, methods=["POST"]),
    Route("/api/v1/session", api_signin, methods=["POST"]),
    Route("/api/v1/session", api_signout, methods=["DELETE"]),
]
