"""The forms library: PDFs an admin uploads per office, shown and printed at the kiosk.

During a call the specialist sends a form (the signaling ``form`` message names it by
id); the kiosk shows its pages and prints them. Chromium's own PDF viewer does not run
in a kiosk or headless browser, and a kiosk must print the form as it is, so each page
is rendered once, at upload, to a PNG with PDFium (``pypdfium2``), at :data:`PAGE_WIDTH`
pixels across (A4 at 150 dpi): large enough to read on the screen and to print.

Everything lives under the office's hash tag (``keys.forms``, ``keys.form_pdf``,
``keys.form_pages``), base64 in Redis: at most :data:`MAX_BYTES` of PDF and
:data:`MAX_PAGES` pages a form.

- ``GET /consult/forms/{office}`` (staff of the office):
  ``{"forms": [{"id", "title", "pages"}]}``;
- ``GET /consult/forms/{office}/{form}/pages/{n}.png`` (staff of the office, and its
  kiosks): page ``n`` (from 1);
- ``GET /consult/forms/{office}/{form}.pdf`` (staff of the office): the PDF as uploaded.

The admin pages that upload, retitle and delete forms are in ``web/admin/forms.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass

import pypdfium2 as pdfium
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..kiosk.devices import device_token, kiosk_for
from ..queue import keys
from ..queue.codec import fields
from ..queue.exceptions import NotFound
from ..queue.model import check_slug
from ..web.accounts import Role
from ..web.responses import JSONResponse
from ..web.security import require
from ..web.state import path_slug

#: Largest PDF accepted, in bytes.
MAX_BYTES = 5 * 1024 * 1024
#: Most pages a form may have.
MAX_PAGES = 20
#: Width of a rendered page, in pixels (A4 at 150 dpi).
PAGE_WIDTH = 1240
#: Tallest rendered page, in pixels (a page three times as tall as it is wide).
MAX_HEIGHT = 3 * PAGE_WIDTH
#: Longest title.
TITLE_LIMIT = 200
#: A form's id: the signaling ``form`` message's rule.
FORM_ID = re.compile(r"[a-z0-9_-]{1,80}")

#: PDFium is not thread-safe: one rendering at a time in a process.
_PDFIUM = threading.Lock()


class FormProblem(Exception):
    """An upload that cannot be a form: ``code`` is what the admin page turns into words."""

    def __init__(self, code: str, found: int = 0) -> None:
        super().__init__(f"{code} ({found})" if found else code)
        self.code = code
        self.found = found


@dataclass(frozen=True)
class FormInfo:
    """A form in an office's library."""

    id: str
    title: str
    pages: int
    bytes: int
    uploaded_at: float
    by: str

    def public(self) -> dict[str, object]:
        return {"id": self.id, "title": self.title, "pages": self.pages}


def render(data: bytes) -> list[bytes]:
    """Each page of the PDF ``data`` as a PNG, or a :class:`FormProblem`.

    Runs PDFium: call it in a thread (:meth:`FormsLibrary.add` does)."""
    if len(data) > MAX_BYTES:
        raise FormProblem("too_large", len(data))
    if not data.lstrip(b"\x00\t\n\r ").startswith(b"%PDF-"):
        raise FormProblem("not_pdf")
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise FormProblem("not_pdf") from exc
        try:
            count = len(document)
            if count == 0:
                raise FormProblem("no_pages")
            if count > MAX_PAGES:
                raise FormProblem("too_many_pages", count)
            pages = []
            for index in range(count):
                page = document[index]
                try:
                    width, height = page.get_size()
                    if width <= 0 or height <= 0:
                        raise FormProblem("not_pdf")
                    scale = min(PAGE_WIDTH / width, MAX_HEIGHT / height)
                    image = page.render(scale=scale).to_pil()
                finally:
                    page.close()
                out = io.BytesIO()
                image.convert("RGB").save(out, format="PNG", optimize=True)
                pages.append(out.getvalue())
            return pages
        finally:
            document.close()


def sample_pdf(heading: str, fields: list[str], *, pages: int = 1) -> bytes:
    """A simple A4 form drawn in code (a heading, then a box per field): the demo's forms
    and the tests' PDFs."""
    from PIL import Image, ImageDraw, ImageFont  # only here: rendering needs no drawing

    from ..kiosk.printing import FontMissing, font_path

    try:
        japanese: str | None = str(font_path())
    except FontMissing:
        japanese = None  # Latin text still draws; Japanese would not

    def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.truetype(japanese, size) if japanese else ImageFont.load_default(size)

    width, height = 595, 842
    with _PDFIUM:
        document = pdfium.PdfDocument.new()
        try:
            for number in range(1, pages + 1):
                picture = Image.new("RGB", (width * 2, height * 2), "white")
                draw = ImageDraw.Draw(picture)
                draw.text((100, 90), f"{heading} ({number}/{pages})", fill="black", font=font(40))
                for row, name in enumerate(fields):
                    top = 220 + row * 150
                    draw.text((100, top), name, fill="black", font=font(28))
                    draw.rectangle(
                        (100, top + 40, width * 2 - 100, top + 120), outline="black", width=3
                    )
                page = document.new_page(width, height)
                image = pdfium.PdfImage.new(document)
                image.set_bitmap(pdfium.PdfBitmap.from_pil(picture))
                image.set_matrix(pdfium.PdfMatrix().scale(width, height))
                page.insert_obj(image)
                page.gen_content()
                page.close()
            out = io.BytesIO()
            document.save(out)
            return out.getvalue()
        finally:
            document.close()


def form_id_from(filename: str, title: str) -> str:
    """A form id made from the uploaded file's name (or the title): ``a-z 0-9 - _``."""
    stem = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem = stem[:-4] if stem.lower().endswith(".pdf") else stem
    for source in (stem, title):
        plain = unicodedata.normalize("NFKD", source).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9_]+", "-", plain.lower()).strip("-_")[:60]
        if slug:
            return slug
    return "form"


class FormsLibrary:
    """The offices' forms, in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def all(self, office: str) -> list[FormInfo]:
        """The office's forms, by title."""
        check_slug("office", office)
        raw = await self.redis.hgetall(keys.forms(office))
        found = [FormInfo(**json.loads(value)) for value in raw.values()]
        return sorted(found, key=lambda f: (f.title.casefold(), f.id))

    async def get(self, office: str, form_id: str) -> FormInfo:
        check_slug("office", office)
        raw = None
        if FORM_ID.fullmatch(form_id):
            raw = await self.redis.hget(keys.forms(office), form_id)
        if raw is None:
            raise NotFound(f'form "{form_id[:80]}" does not exist at office "{office}"')
        return FormInfo(**json.loads(raw))

    async def add(
        self,
        office: str,
        title: str,
        filename: str,
        data: bytes,
        *,
        now: float,
        by: str,
        pages: list[bytes] | None = None,
    ) -> FormInfo:
        """Render and keep a new form; a :class:`FormProblem` when it cannot be one.

        ``pages``: what :func:`render` made of ``data`` already (the same form for many
        offices is rendered once).
        """
        check_slug("office", office)
        if pages is None:
            pages = await asyncio.to_thread(render, data)
        base = form_id_from(filename, title)
        taken = set(await self.redis.hkeys(keys.forms(office)))
        form_id, n = base, 1
        while form_id in taken:
            n += 1
            form_id = f"{base}-{n}"
        info = FormInfo(form_id, title[:TITLE_LIMIT], len(pages), len(data), now, by)
        encoded = {str(n): base64.b64encode(png).decode() for n, png in enumerate(pages, 1)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.form_pdf(office, form_id), base64.b64encode(data).decode())
            pipe.delete(keys.form_pages(office, form_id))
            pipe.hset(keys.form_pages(office, form_id), mapping=fields(encoded))
            pipe.hset(keys.forms(office), form_id, json.dumps(asdict(info), ensure_ascii=False))
            await pipe.execute()
        return info

    async def retitle(self, office: str, form_id: str, title: str) -> FormInfo:
        info = await self.get(office, form_id)
        changed = FormInfo(**{**asdict(info), "title": title[:TITLE_LIMIT]})
        value = json.dumps(asdict(changed), ensure_ascii=False)
        await self.redis.hset(keys.forms(office), form_id, value)
        return changed

    async def delete(self, office: str, form_id: str) -> None:
        await self.get(office, form_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.forms(office), form_id)
            pipe.delete(keys.form_pdf(office, form_id), keys.form_pages(office, form_id))
            await pipe.execute()

    async def pdf(self, office: str, form_id: str) -> bytes:
        await self.get(office, form_id)
        raw = await self.redis.get(keys.form_pdf(office, form_id))
        if raw is None:
            raise NotFound(f'form "{form_id}" has no PDF')
        return base64.b64decode(raw)

    async def page(self, office: str, form_id: str, number: int) -> bytes:
        info = await self.get(office, form_id)
        raw = await self.redis.hget(keys.form_pages(office, form_id), str(number))
        if raw is None:
            raise NotFound(f'form "{form_id}" has pages 1 to {info.pages}, not {number}')
        return base64.b64decode(raw)


def library_of(request: Request) -> FormsLibrary:
    return FormsLibrary(request.app.state.redis)


async def _allowed(request: Request, office: str, *, kiosk: bool) -> None:
    """Staff of the office may; so may a kiosk of the office when ``kiosk``."""
    if kiosk and device_token(request):
        await kiosk_for(request, office)
    else:
        await require(request, Role.STAFF, office=office)


def _form(request: Request) -> str:
    form_id: str = request.path_params["form"]
    if not FORM_ID.fullmatch(form_id):
        raise NotFound(f'form "{form_id[:80]}" does not exist')
    return form_id


async def form_list(request: Request) -> Response:
    """``GET /consult/forms/{office}``: the office's forms, for its staff."""
    office = path_slug(request, "office", "office")
    await _allowed(request, office, kiosk=False)
    forms = await library_of(request).all(office)
    return JSONResponse({"forms": [f.public() for f in forms]})


async def form_page(request: Request) -> Response:
    """``GET /consult/forms/{office}/{form}/pages/{n}.png``: one page, for the screen and
    the printer."""
    office = path_slug(request, "office", "office")
    await _allowed(request, office, kiosk=True)
    png = await library_of(request).page(office, _form(request), request.path_params["page"])
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


async def form_pdf(request: Request) -> Response:
    """``GET /consult/forms/{office}/{form}.pdf``: the form as uploaded, for its staff."""
    office = path_slug(request, "office", "office")
    await _allowed(request, office, kiosk=False)
    form_id = _form(request)
    data = await library_of(request).pdf(office, form_id)
    headers = {
        "Cache-Control": "private, no-cache",
        "Content-Disposition": f'inline; filename="{form_id}.pdf"',
    }
    return Response(data, media_type="application/pdf", headers=headers)


routes: list[BaseRoute] = [
    Route("/consult/forms/{office}", form_list, methods=["GET"]),
    Route("/consult/forms/{office}/{form}/pages/{page:int}.png", form_page, methods=["GET"]),
    Route("/consult/forms/{office}/{form}.pdf", form_pdf, methods=["GET"]),
]
