"""The staff bearer token that guards counter operations until staff sign-in exists."""

from __future__ import annotations

import secrets

from starlette.requests import Request

from .exceptions import Forbidden, Unauthorized


def require_staff(request: Request) -> str:
    """Refuse the request unless it carries the staff token; return the actor name."""
    expected = str(request.app.state.settings.staff_token)
    if not expected:
        raise Forbidden("staff operations are disabled: set MADOGUCHI_STAFF_TOKEN to enable them")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized('send the staff token as "Authorization: Bearer <token>"')
    if not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("the staff token is not valid")
    return "staff-token"
