"""The kiosk's enrollment page: ``/kiosk/enroll``.

A kiosk has no keyboard, so the one-time code an administrator issued (eight digits,
good for 15 minutes) is entered on a large on-screen number pad. A right code sets
the device cookie (``HttpOnly``, ``SameSite=Strict``, 400 days, renewed by every
health report) and shows which branch the kiosk now serves. The form carries a token
that must match a cookie of its own (as the staff sign-in form does), so no other
site can enroll a kiosk; wrong codes are counted per address and, past
:data:`~.devices.MAX_GUESSES` within 15 minutes, refused for a while.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..web.exceptions import Forbidden
from ..web.forms import read_form
from ..web.i18n import BY_CODE, DEFAULT, LANG_COOKIE
from ..web.security import signin_form_page, signin_token_matches
from ..web.state import kiosks_of, now_of
from .devices import CODE_DIGITS, CodeRefused, device_token, set_kiosk_cookie

STATIC = Path(__file__).parent / "static"
#: Largest enrollment form, in bytes.
FORM_LIMIT = 1024
STATUS = {"wrong": 400, "expired": 410, "used": 410, "throttled": 429}


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _language(request: Request) -> str:
    """As on every kiosk screen: the language chosen (``?lang=``, its cookie), else Japanese;
    never the browser's ``Accept-Language``."""
    chosen = BY_CODE.get(request.query_params.get("lang", "")) or BY_CODE.get(
        request.cookies.get(LANG_COOKIE, "")
    )
    return (chosen or DEFAULT).code


def _page(request: Request, context: dict[str, Any], *, status: int = 200) -> Response:
    context = {"digits": CODE_DIGITS, "lang": _language(request), **context}
    return signin_form_page(request, "kiosk/enroll.html", context, status=status)


async def enroll_page(request: Request) -> Response:
    """The number pad; for a kiosk already enrolled, also which branch it serves."""
    kiosk = await kiosks_of(request).by_token(device_token(request))
    done = request.query_params.get("done") == "1" and kiosk is not None
    return _page(request, {"kiosk": kiosk, "done": done})


async def enroll(request: Request) -> Response:
    form = await read_form(request, FORM_LIMIT)
    if not signin_token_matches(request, form.get("csrf")):
        raise Forbidden("the form has expired or did not come from this site; reload and retry")
    kiosks, address = kiosks_of(request), _address(request)
    if await kiosks.throttled(address):
        return _page(request, {"error": "throttled"}, status=STATUS["throttled"])
    try:
        _, token = await kiosks.enroll(form.get("code"), now_of(request))
    except CodeRefused as refused:
        if refused.reason == "wrong":
            await kiosks.guessed_wrong(address)
        return _page(request, {"error": refused.reason}, status=STATUS[refused.reason])
    response = RedirectResponse("/kiosk/enroll?done=1", status_code=303)
    set_kiosk_cookie(response, request, token)
    return response


#: The kiosk screens' static files (``kiosk/static/``), found by path.
static = Mount("/kiosk/static", StaticFiles(directory=STATIC), name="kiosk-static")

routes = [
    Route("/kiosk/enroll", enroll_page, methods=["GET"]),
    Route("/kiosk/enroll", enroll, methods=["POST"]),
]
