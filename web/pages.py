"""Server-rendered pages: the Jinja2 environment, static files and the page helpers.

Templates live in ``web/templates/`` and static files in ``web/static/``, found by
path (these folders are not Python packages). Every user-facing string goes
through ``_()`` (the Jinja2 i18n extension), so that catalogues can translate it.
"""

from __future__ import annotations

import gettext
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .. import __version__

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml", "svg"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(gettext.NullTranslations(), newstyle=True)  # type: ignore[attr-defined]
    env.globals["version"] = __version__
    return env


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    env: Environment = request.app.state.templates
    page = env.get_template(template).render({"request": request, "lang": "en", **(context or {})})
    return HTMLResponse(page, status_code=status)


static = Mount("/static", StaticFiles(directory=STATIC), name="static")
