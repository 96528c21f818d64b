"""Server-rendered pages: the Jinja2 environment, static files and the page helpers.

Templates live in ``web/templates/`` (and the kiosk's in ``kiosk/templates/``) and
static files in ``web/static/``, found by path (these folders are not Python
packages). Every user-facing string goes through ``_()`` (the Jinja2 i18n extension,
newstyle: ``_("Counter %(n)s", n=3)``), so that catalogues can translate it.

The environment is shared by every request, so the translations are not installed in
it: its ``gettext`` and friends, and ``name_of``, ask the translator that :func:`render`
makes current while it renders the page (a context variable), which also reaches
macros imported without context. A page gets, besides its own context:

- ``lang`` (our code, ``ja-easy``), ``lang_tag`` (BCP 47, for ``lang=``), ``language``;
- ``furigana``: whether the page carries furigana; when it does, :func:`render` puts
  ruby over the kanji of all its Japanese text after rendering
  (:func:`madoguchi.web.furigana.add_furigana`), so templates need not do anything;
- ``name_of(obj)``: an office's or a service's name in the page's language;
- ``language_links``: the language switcher's entries (``public/_language.html``);
- the filters ``furigana`` (ruby when the page has furigana) and ``ruby`` (always).

A caller may fix the language or furigana for a page by passing ``lang`` (a code) or
``furigana`` in the context (the kiosk keeps its own choice). Staff and admin pages
(templates under ``staff/`` and ``admin/``) are in English for now, whatever is asked.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .. import __version__
from . import furigana as readings
from .i18n import BY_CODE, Translator, catalogues_of, remember, source_translator, switcher
from .i18n import translator as translator_of

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: The kiosk screens' templates (``kiosk/...``), beside the web's own.
KIOSK_TEMPLATES = HERE.parent / "kiosk" / "templates"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader([TEMPLATES, KIOSK_TEMPLATES]),
        autoescape=select_autoescape(["html", "xml", "svg"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda message: _active().raw_gettext(message),
        ngettext=lambda singular, plural, n: _active().raw_ngettext(singular, plural, n),
        pgettext=lambda context, message: _active().raw_pgettext(context, message),
        npgettext=lambda context, singular, plural, n: _active().raw_npgettext(
            context, singular, plural, n
        ),
        newstyle=True,
    )
    env.globals["version"] = __version__
    env.globals["name_of"] = name_of
    env.filters["furigana"] = _furigana
    env.filters["ruby"] = readings.ruby
    return env


#: Templates that stay in English (the language the messages are written in) for now.
ENGLISH_ONLY: Final = ("staff/", "admin/")
#: The translator of the page being rendered (English outside :func:`render`).
_current: ContextVar[Translator | None] = ContextVar("translator", default=None)
_ENGLISH: Final = source_translator()


def _active() -> Translator:
    return _current.get() or _ENGLISH


def name_of(obj: object) -> str:
    """``obj``'s name in the page's language (``name_ja``, ``name_en``, …; see i18n)."""
    return _active().raw_name(obj)


def _furigana(text: str) -> Markup | str:
    return readings.ruby(text) if _active().furigana else readings.strip_readings(text)


def translator_for(request: Request, template: str, context: dict[str, Any]) -> Translator:
    """The translator of a page: English for staff, else the request's or the caller's."""
    if template.startswith(ENGLISH_ONLY):
        return source_translator()
    chosen = translator_of(request)
    language = BY_CODE.get(context.get("lang", ""), chosen.language)
    asked = context.get("furigana", chosen.furigana)
    furigana = language.furigana or (language.code == "ja" and bool(asked))
    if language == chosen.language and furigana == chosen.furigana:
        return chosen
    translations = catalogues_of(request).translations(language)
    return Translator(language, translations, furigana=furigana)


def render_string(
    request: Request, template: str, context: dict[str, Any] | None = None
) -> tuple[str, Translator]:
    """A page (or a fragment) in the request's language, and the translator it used."""
    context = context or {}
    env: Environment = request.app.state.templates
    translator = translator_for(request, template, context)
    language = translator.language
    english = template.startswith(ENGLISH_ONLY)
    values = {
        "request": request,
        "lang": language.code,
        "lang_tag": language.tag,
        "language": language,
        "language_links": [] if english else switcher(request, language),
        **context,
        "furigana": translator.furigana,
    }
    token = _current.set(translator)
    try:
        page = env.get_template(template).render(values)
    finally:
        _current.reset(token)
    if translator.furigana:
        page = readings.add_furigana(page)
    return page, translator


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    page, translator = render_string(request, template, context)
    response = HTMLResponse(page, status_code=status)
    response.headers["Content-Language"] = translator.language.tag
    if not template.startswith(ENGLISH_ONLY):
        remember(request, response)
    return response


static = Mount("/static", StaticFiles(directory=STATIC), name="static")
