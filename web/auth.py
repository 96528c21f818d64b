"""Who may run staff operations of the API: a signed-in staff member of the office.

A client signs in with ``POST /api/v1/session`` (or the sign-in page), which sets the
session cookie and gives the session's CSRF token; every state-changing request then
sends the cookie and the token in ``X-CSRF-Token``. There is no other credential.
"""

from __future__ import annotations

from starlette.requests import Request

from .security import Staff, check_csrf, require

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


async def staff_of(request: Request, office: str | None = None) -> Staff:
    """The staff member (of ``office``) behind the request, CSRF-checked when it changes state."""
    staff = await require(request, office=office)
    if request.method not in SAFE_METHODS:
        check_csrf(request, staff)
    return staff


async def require_staff(request: Request, office: str | None = None) -> str:
    """Refuse the request unless it comes from staff (of ``office``); return the actor."""
    return (await staff_of(request, office)).actor
