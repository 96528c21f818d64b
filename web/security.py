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

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ..queue import keys
from ..queue.codec import text
from ..queue.exceptions import NotFound
from .accounts import AccountStore, Role, StaffAccount
from .exceptions import Forbidden, SecondFactorRequired, Unauthorized
from .pages import render
from .sessions import Session, SessionStore

log = logging.getLogger(__name__)

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
    """Whether the request came over plain http(s) to this machine by name or loopback."""
    # From the scope and the Host header, without building the request's URL (this runs
    # on every staff request).
    scope = connection.scope
    if scope.get("scheme") not in {"http", "ws"}:
        return False
    host = connection.headers.get("host")
    if host is None:
        server = scope.get("server")
        return server is not None and server[0] in LOCAL_HOSTS
    name = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
    return name in LOCAL_HOSTS


def cookie_name(connection: HTTPConnection) -> str:
    return PLAIN_COOKIE if plain_localhost(connection) else SECURE_COOKIE


def set_cookie(
    response: Response,
    connection: HTTPConnection,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    samesite: Literal["lax", "strict"],
    httponly: bool = True,
) -> None:
    """Set a site-wide cookie: ``Secure``, except on plain ``http://localhost``."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=not plain_localhost(connection),
        httponly=httponly,
        samesite=samesite,
    )


@dataclass(frozen=True)
class TokenCookie:
    """A cookie that holds a random token: ``secure_name`` (a ``__Host-`` name), or
    ``plain_name`` on plain ``http://localhost``. A form that carries the same token
    (field ``csrf``) came from a page of this site in this browser."""

    secure_name: str
    plain_name: str
    max_age: int
    samesite: Literal["lax", "strict"]

    def name(self, connection: HTTPConnection) -> str:
        return self.plain_name if plain_localhost(connection) else self.secure_name

    def token(self, connection: HTTPConnection) -> str:
        """The browser's token: the one its cookie holds, else a new one."""
        given = connection.cookies.get(self.name(connection), "")
        return given if 32 <= len(given) <= 64 else secrets.token_urlsafe(32)

    def set(self, response: Response, connection: HTTPConnection, token: str) -> None:
        name = self.name(connection)
        set_cookie(response, connection, name, token, max_age=self.max_age, samesite=self.samesite)

    def matches(self, connection: HTTPConnection, given: str) -> bool:
        """Whether a form's token is the one in this browser's cookie."""
        expected = connection.cookies.get(self.name(connection), "")
        return bool(expected and given) and secrets.compare_digest(
            given.encode(), expected.encode()
        )


#: The sign-in form's cookie (also the cookie of other forms that come before a session).
SIGNIN = TokenCookie(
    SECURE_COOKIE + SIGNIN_SUFFIX, PLAIN_COOKIE + SIGNIN_SUFFIX, SIGNIN_TOKEN_SECONDS, "strict"
)
signin_cookie_name = SIGNIN.name
signin_token = SIGNIN.token
set_signin_cookie = SIGNIN.set
signin_token_matches = SIGNIN.matches


def signin_form_page(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> Response:
    """A page whose form comes before any session: the form's token, and the cookie that
    pairs with it (check it with :func:`signin_token_matches`); never cached."""
    token = signin_token(request)
    response = render(request, template, {"csrf": token, **context}, status=status)
    response.headers["Cache-Control"] = "no-store"
    set_signin_cookie(response, request, token)
    return response


def session_id(connection: HTTPConnection) -> str:
    """The session id the request's cookie holds, or ``""``."""
    return connection.cookies.get(cookie_name(connection), "")


def set_session_cookie(response: Response, connection: HTTPConnection, session: Session) -> None:
    set_cookie(response, connection, cookie_name(connection), session.id, samesite="lax")


def clear_session_cookie(response: Response, connection: HTTPConnection) -> None:
    response.delete_cookie(
        cookie_name(connection),
        path="/",
        secure=not plain_localhost(connection),
        httponly=True,
        samesite="lax",
    )


#: Sessions a process remembers at most (a bound, far above any office's staff).
MAX_REMEMBERED = 10_000


class StaffCache:
    """Who each session is, remembered by this process for a moment.

    Finding a request's session and account costs two Redis round trips, more than the
    queue operation a busy counter asks for. So a process keeps what it found for at
    most ``seconds`` (by both the monotonic clock and the app's), and uses it only while
    its subscription to :func:`keys.staff_changes` is up: an ended session or a changed
    account is announced there and forgotten at once by every process (and by this one
    before the change returns), so sign-out and revocation still take effect at once.
    """

    def __init__(self, redis: Redis, *, seconds: float = 1.0, retry_seconds: float = 1.0) -> None:
        self.redis = redis
        self.seconds = seconds
        self.retry_seconds = retry_seconds
        self._staff: dict[str, tuple[Staff, float, float]] = {}
        self._sessions_of: dict[str, set[str]] = {}
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.seconds > 0:
            self._task = asyncio.create_task(self._listen(), name="madoguchi-staff-changes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def listening(self) -> bool:
        """Whether changes are being heard (else nothing is remembered)."""
        return self._listening

    def get(self, session: str, now: float) -> Staff | None:
        found = self._staff.get(session) if self._listening else None
        if found is None:
            return None
        staff, at, checked = found
        if time.monotonic() - at < self.seconds and 0 <= now - checked < self.seconds:
            return staff
        # Out of date: gone, so that sessions nobody uses any more do not pile up.
        del self._staff[session]
        self._sessions_of.get(staff.account.username, set()).discard(session)
        return None

    def put(self, staff: Staff, now: float) -> None:
        if not self._listening:
            return
        if len(self._staff) >= MAX_REMEMBERED:
            self._forget_all()
        self._staff[staff.session.id] = (staff, time.monotonic(), now)
        self._sessions_of.setdefault(staff.account.username, set()).add(staff.session.id)

    def forget(self, username: str) -> None:
        for session in self._sessions_of.pop(username, ()):
            self._staff.pop(session, None)

    def _forget_all(self) -> None:
        self._staff.clear()
        self._sessions_of.clear()

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(keys.staff_changes())
                    # Whatever changed while nobody listened is unknown: start afresh.
                    self._forget_all()
                    self._listening = True
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.forget(text(message["data"]))
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("staff changes: subscription lost (%s); retrying", exc)
            finally:
                self._listening = False
                self._forget_all()
            await asyncio.sleep(self.retry_seconds)


async def signed_in(connection: HTTPConnection) -> Staff | None:
    """The staff member whose live session the request carries, if any (cached per request)."""
    if "staff" in connection.scope:
        cached: Staff | None = connection.scope["staff"]
        return cached
    staff = None
    given = session_id(connection)
    state = connection.app.state
    now = state.clock()
    cache: StaffCache = state.staff_cache
    remembered = cache.get(given, now) if given else None
    if remembered is not None and now - remembered.session.created_at <= state.sessions.absolute:
        connection.scope["staff"] = remembered
        return remembered
    sessions: SessionStore = state.sessions
    session = await sessions.get(given, now=now) if given else None
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
            cache.put(staff, now)
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


SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
