"""Who is asking: staff sessions, roles, CSRF tokens, cookies and the security headers.

The session cookie is ``__Host-madoguchi`` (``Secure``, ``HttpOnly``,
``SameSite=Lax``, ``Path=/``); on plain ``http://localhost`` during development
browsers refuse ``Secure`` cookies, so there it is ``madoguchi`` without ``Secure``.
Every state-changing staff request carries the session's CSRF token, in the form
field ``csrf`` or the header ``X-CSRF-Token``. The sign-in form, which comes before
any session, carries a token that must match a cookie of its own
(``__Host-madoguchi-signin``), so that no other site can sign someone in.

An account whose admin requires a second factor that it has not set up yet may only
set it up (``/staff/totp``) or sign out: :func:`require` refuses everything else.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..queue.exceptions import NotFound
from .accounts import AccountStore, Role, StaffAccount
from .exceptions import Forbidden, SecondFactorRequired, Unauthorized
from .sessions import Session, SessionStore

SECURE_COOKIE = "__Host-madoguchi"
PLAIN_COOKIE = "madoguchi"
SIGNIN_SUFFIX = "-signin"
#: How long a sign-in form's token lasts, in seconds.
SIGNIN_TOKEN_SECONDS = 3600
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
#: Where a person sets up the authenticator an admin requires.
ENROL_PATH = "/staff/totp"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)


@dataclass(frozen=True)
class Staff:
    """The signed-in staff member behind a request."""

    account: StaffAccount
    session: Session

    @property
    def actor(self) -> str:
        return f"staff:{self.account.username}"


def plain_localhost(connection: HTTPConnection) -> bool:
    return connection.url.scheme in {"http", "ws"} and connection.url.hostname in LOCAL_HOSTS


def cookie_name(connection: HTTPConnection) -> str:
    return PLAIN_COOKIE if plain_localhost(connection) else SECURE_COOKIE


def signin_cookie_name(connection: HTTPConnection) -> str:
    return cookie_name(connection) + SIGNIN_SUFFIX


def signin_token(connection: HTTPConnection) -> str:
    """The sign-in form's token: the browser's own if it has one, else a new one."""
    given = connection.cookies.get(signin_cookie_name(connection), "")
    return given if 32 <= len(given) <= 64 else secrets.token_urlsafe(32)


def set_signin_cookie(response: Response, connection: HTTPConnection, token: str) -> None:
    response.set_cookie(
        signin_cookie_name(connection),
        token,
        max_age=SIGNIN_TOKEN_SECONDS,
        path="/",
        secure=not plain_localhost(connection),
        httponly=True,
        samesite="strict",
    )


def signin_token_matches(connection: HTTPConnection, given: str) -> bool:
    """Whether the sign-in form's token is the one in this browser's sign-in cookie."""
    expected = connection.cookies.get(signin_cookie_name(connection), "")
    return bool(expected and given) and secrets.compare_digest(given.encode(), expected.encode())


def session_id(connection: HTTPConnection) -> str:
    """The session id the request's cookie holds, or ``""``."""
    return connection.cookies.get(cookie_name(connection), "")


def set_session_cookie(response: Response, connection: HTTPConnection, session: Session) -> None:
    response.set_cookie(
        cookie_name(connection),
        session.id,
        path="/",
        secure=not plain_localhost(connection),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, connection: HTTPConnection) -> None:
    response.delete_cookie(
        cookie_name(connection),
        path="/",
        secure=not plain_localhost(connection),
        httponly=True,
        samesite="lax",
    )


async def signed_in(connection: HTTPConnection) -> Staff | None:
    """The staff member whose live session the request carries, if any (cached per request)."""
    if "staff" in connection.scope:
        cached: Staff | None = connection.scope["staff"]
        return cached
    staff = None
    given = session_id(connection)
    state = connection.app.state
    sessions: SessionStore = state.sessions
    session = await sessions.get(given, now=state.clock()) if given else None
    if session is not None:
        accounts: AccountStore = state.accounts
        try:
            account = await accounts.get(session.username)
        except NotFound:
            account = None
        if account is None or account.disabled:
            await sessions.end(session.id)
        else:
            staff = Staff(account, session)
    connection.scope["staff"] = staff
    return staff


async def require(
    connection: HTTPConnection,
    role: Role = Role.STAFF,
    *,
    office: str | None = None,
    enrolling: bool = False,
) -> Staff:
    """The signed-in staff member with at least ``role`` (at ``office``), or a 401/403.

    Only the handlers of enrolment and sign-out pass ``enrolling``: for an account that
    must still set up its authenticator, every other handler answers 403 (and a page
    sends the person to :data:`ENROL_PATH`).
    """
    staff = await signed_in(connection)
    if staff is None:
        raise Unauthorized("sign in first")
    if staff.account.must_enroll and not enrolling:
        raise SecondFactorRequired(
            f"set up your authenticator app first, at {ENROL_PATH}: an administrator requires it"
        )
    if not staff.account.role.at_least(role):
        raise Forbidden(f"this needs the {role.value} role")
    if office is not None and not staff.account.works_at(office):
        raise Forbidden(f'you do not work at office "{office}"')
    return staff


def check_csrf(request: Request, staff: Staff, token: str | None = None) -> None:
    """Refuse a state-changing request that does not carry the session's CSRF token."""
    given = token if token is not None else request.headers.get("x-csrf-token", "")
    if not given or not secrets.compare_digest(given.encode(), staff.session.csrf.encode()):
        raise Forbidden("the form has expired or did not come from this site; reload and retry")


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)
