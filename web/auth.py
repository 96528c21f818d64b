"""Who may run staff operations of the API: a signed-in staff member of the office.

A browser (the counter console) sends its session cookie and, on every state-changing
request, the session's CSRF token in ``X-CSRF-Token``. The temporary bearer token of
the foundation (``MADOGUCHI_STAFF_TOKEN``) is still accepted while the tools that use
it move to sessions.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request

from .exceptions import Unauthorized
from .security import check_csrf, require

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


async def require_staff(request: Request, office: str | None = None) -> str:
    """Refuse the request unless it comes from staff (of ``office``); return the actor."""
    header = request.headers.get("authorization", "")
    if header:
        expected = str(request.app.state.settings.staff_token)
        scheme, _, given = header.partition(" ")
        if (
            not expected
            or scheme.lower() != "bearer"
            or not secrets.compare_digest(given.strip().encode(), expected.encode())
        ):
            raise Unauthorized("the staff token is not valid")
        return "staff-token"
    staff = await require(request, office=office)
    if request.method not in SAFE_METHODS:
        check_csrf(request, staff)
    return staff.actor
