"""An office's forms library: upload PDFs, retitle and delete them.

The PDFs are the forms a specialist sends to the kiosk during a call, shown on its
screen and printed beside it (see :mod:`madoguchi.consult.forms`, which checks and
renders them). The upload is the one ``multipart/form-data`` form of the admin pages:
its body is read within :data:`BODY_LIMIT` before anything is parsed, and its CSRF
token checked like every other form's.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from ...consult.forms import MAX_BYTES, MAX_PAGES, TITLE_LIMIT, FormProblem, FormsLibrary
from ...queue.model import Office
from ..accounts import Role
from ..bodies import read_limited
from ..exceptions import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ..forms import signed_form
from ..security import Staff, check_csrf, require
from ..state import now_of
from .common import Checker, Invalid, Problem, form_page, office_of, see_other

#: The largest upload read: the PDF and the form's few other fields.
BODY_LIMIT = MAX_BYTES + 64 * 1024
MULTIPART = "multipart/form-data"


async def _page(
    request: Request,
    staff: Staff,
    office: Office,
    values: dict[str, Any] | None = None,
    problems: dict[str, Problem] | None = None,
    *,
    status: int = 200,
) -> Response:
    context = {
        "staff": staff,
        "office": office,
        "forms": await FormsLibrary(request.app.state.redis).all(office.id),
        "values": values or {},
        "max_mb": MAX_BYTES // (1024 * 1024),
        "max_pages": MAX_PAGES,
        "title_limit": TITLE_LIMIT,
    }
    return form_page(request, "admin/forms.html", context, problems, status=status)


async def forms_page(request: Request) -> Response:
    """``GET /admin/offices/{office}/forms``: the office's forms, and the upload form."""
    staff = await require(request, Role.ADMIN)
    return await _page(request, staff, await office_of(request))


async def _read_upload(request: Request) -> tuple[str, str, str, bytes]:
    """The csrf token, title, file name and bytes of an upload, read within the limit."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != MULTIPART:
        raise UnsupportedMediaType(f'send the form as {MULTIPART}, not "{media[:60]}"')
    try:
        body = await read_limited(request, BODY_LIMIT, "the upload")
    except PayloadTooLarge:
        # The limit that matters to the admin is the PDF's, not the whole body's.
        raise PayloadTooLarge(f"the upload is too large: a form may be {MAX_BYTES} bytes") from None
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            data, name = b"", ""
            if isinstance(upload, UploadFile):
                data, name = await upload.read(), upload.filename or ""
            csrf, title = form.get("csrf"), form.get("title")
            return (
                csrf if isinstance(csrf, str) else "",
                title.strip() if isinstance(title, str) else "",
                name,
                data,
            )
    except (ValueError, KeyError) as exc:  # a malformed multipart body
        raise BadRequest(f"the upload is not a readable form: {exc}") from exc


async def upload(request: Request) -> Response:
    """``POST /admin/offices/{office}/forms``: a new form (title and PDF)."""
    staff = await require(request, Role.ADMIN)
    office = await office_of(request)
    csrf, title, name, data = await _read_upload(request)
    check_csrf(request, staff, csrf)
    problems: dict[str, Problem] = {}
    if not title:
        problems["title"] = Problem("required")
    elif len(title) > TITLE_LIMIT:
        problems["title"] = Problem("too_long", high=TITLE_LIMIT)
    if not data:
        problems["file"] = Problem("no_file")
    if not problems:
        library = FormsLibrary(request.app.state.redis)
        try:
            info = await library.add(
                office.id, title, name, data, now=now_of(request), by=staff.actor
            )
        except FormProblem as exc:
            problems["file"] = Problem(exc.code, value=str(exc.found))
        else:
            return see_other(f"/admin/offices/{office.id}/forms?done=uploaded#form-{info.id}")
    return await _page(request, staff, office, {"title": title}, problems, status=422)


def _form_id(request: Request) -> str:
    form_id: str = request.path_params["form"]
    return form_id


async def retitle(request: Request) -> Response:
    """``POST /admin/offices/{office}/forms/{form}``: a form's new title."""
    staff, form = await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    library = FormsLibrary(request.app.state.redis)
    info = await library.get(office.id, _form_id(request))
    check = Checker(form)
    title = check.text("title", limit=TITLE_LIMIT)
    try:
        check.done()
    except Invalid as exc:
        problems = {f"title-{info.id}": exc.problems["title"]}
        return await _page(request, staff, office, None, problems, status=422)
    await library.retitle(office.id, info.id, title)
    return see_other(f"/admin/offices/{office.id}/forms?done=saved#form-{info.id}")


async def delete(request: Request) -> Response:
    """``POST /admin/offices/{office}/forms/{form}/delete``."""
    await signed_form(request, Role.ADMIN)
    office = await office_of(request)
    await FormsLibrary(request.app.state.redis).delete(office.id, _form_id(request))
    return see_other(f"/admin/offices/{office.id}/forms?done=deleted")


routes = [
    Route("/admin/offices/{office}/forms", forms_page, methods=["GET"]),
    Route("/admin/offices/{office}/forms", upload, methods=["POST"]),
    Route("/admin/offices/{office}/forms/{form}", retitle, methods=["POST"]),
    Route("/admin/offices/{office}/forms/{form}/delete", delete, methods=["POST"]),
]
