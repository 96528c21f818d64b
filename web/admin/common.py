"""What the admin pages share: form checking, and the app's stores and clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...queue.keys import SLUG
from ...queue.model import Office, Service
from ..forms import Form
from ..pages import render
from ..state import now_of, path_slug, queue_of

#: Path segments that name pages, so no office, service, counter or user may take them.
RESERVED = frozenset({"new", "delete", "audit", "staff", "offices"})
NAME_LIMIT = 80


@dataclass(frozen=True)
class Problem:
    """What is wrong with one field: a code the templates turn into a sentence."""

    code: str
    low: float | int | None = None
    high: float | int | None = None
    value: str = ""
    text: str = ""


class Invalid(Exception):
    """A form has problems; ``problems`` maps field names to them."""

    def __init__(self, problems: dict[str, Problem]) -> None:
        super().__init__(", ".join(problems))
        self.problems = problems


class Checker:
    """Reads a form's fields, noting each one's problem instead of stopping at the first."""

    def __init__(self, form: Form) -> None:
        self.form = form
        self.problems: dict[str, Problem] = {}

    def fail(self, name: str, problem: Problem) -> None:
        self.problems.setdefault(name, problem)

    def done(self) -> None:
        if self.problems:
            raise Invalid(self.problems)

    def text(self, name: str, *, required: bool = True, limit: int = NAME_LIMIT) -> str:
        value = self.form.get(name)
        if not value and required:
            self.fail(name, Problem("required"))
        elif len(value) > limit:
            self.fail(name, Problem("too_long", high=limit))
        return value[:limit]

    def slug(self, name: str) -> str:
        value = self.form.get(name).lower()
        if not value:
            self.fail(name, Problem("required"))
        elif not SLUG.fullmatch(value):
            self.fail(name, Problem("slug", value=value[:40]))
        elif value in RESERVED:
            self.fail(name, Problem("reserved", value=value))
        return value

    def whole(self, name: str, low: int, high: int) -> int:
        raw = self.form.get(name)
        try:
            value = int(raw)
        except ValueError:
            value = low
            self.fail(name, Problem("required" if not raw else "whole", low, high))
        else:
            if not low <= value <= high:
                self.fail(name, Problem("whole", low, high))
        return value

    def number(self, name: str, low: float, high: float) -> float:
        raw = self.form.get(name)
        try:
            value = float(raw)
        except ValueError:
            value = low
            self.fail(name, Problem("required" if not raw else "number", low, high))
        else:
            if not math.isfinite(value) or not low <= value <= high:
                value = low
                self.fail(name, Problem("number", low, high))
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.form.get(name)
        if value not in choices:
            self.fail(name, Problem("choice"))
            return choices[0]
        return value

    def subset(self, name: str, choices: list[str] | set[str]) -> tuple[str, ...]:
        picked = tuple(dict.fromkeys(self.form.all(name)))
        unknown = [v for v in picked if v not in choices]
        if unknown:
            self.fail(name, Problem("unknown", value=unknown[0][:40]))
        return tuple(v for v in picked if v in choices)


async def office_of(request: Request) -> Office:
    return await queue_of(request).office(path_slug(request, "office", "office"))


async def all_offices(request: Request) -> list[Office]:
    queue = queue_of(request)
    return [await queue.office(o) for o in await queue.office_ids()]


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def form_values(form: Form, *names: str) -> dict[str, Any]:
    return {name: form.get(name) for name in names}


async def services_of(request: Request, office: str) -> dict[str, Service]:
    return (await queue_of(request).snapshot(office, now=now_of(request))).services


def form_page(
    request: Request,
    template: str,
    context: dict[str, Any],
    problems: dict[str, Problem] | None = None,
    *,
    status: int = 200,
) -> Response:
    """An admin page with a form: ``context``, each field's problem, and the ``done`` note
    a redirect after a change leaves in the query."""
    full = {**context, "problems": problems or {}, "done": request.query_params.get("done", "")}
    return render(request, template, full, status=status)
