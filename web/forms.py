"""HTML form posts of the staff pages: read within a size limit, CSRF-checked, as text.

The staff pages post ordinary ``application/x-www-form-urlencoded`` forms (they
work without JavaScript). :func:`signed_form` is the one way a page handler reads
one: it checks who is asking and the form's CSRF token before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request

from .accounts import Role
from .bodies import read_limited
from .exceptions import BadRequest, UnsupportedMediaType
from .security import Staff, check_csrf, require

#: Most fields a staff form may have (the staff account form has one per service).
MAX_FIELDS = 400
URLENCODED = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Form:
    """A posted form's fields, each name with all its values in order."""

    fields: dict[str, list[str]]

    def get(self, name: str, default: str = "") -> str:
        """The field's first value, stripped; ``default`` when absent."""
        values = self.fields.get(name)
        return values[0].strip() if values else default

    def all(self, name: str) -> list[str]:
        """Every value of the field (checkboxes sharing a name), stripped, empty ones dropped."""
        return [v.strip() for v in self.fields.get(name, []) if v.strip()]

    def flag(self, name: str) -> bool:
        """Whether a checkbox of this name was ticked."""
        return bool(self.fields.get(name))


async def read_form(request: Request, limit: int) -> Form:
    """The posted form, refusing more than ``limit`` bytes before reading it all."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared_empty = request.headers.get("content-length", "0") == "0"
    if media != URLENCODED and not (media == "" and declared_empty):
        # (A post with no body at all is an empty form: its CSRF check then refuses it.)
        raise UnsupportedMediaType(f'send a form ({URLENCODED}), not "{media[:60]}"')
    body = await read_limited(request, limit, "the form")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise BadRequest("the form is not valid UTF-8") from exc
    except ValueError as exc:
        raise BadRequest(f"the form has more than {MAX_FIELDS} fields") from exc
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return Form(fields)


async def signed_form(
    request: Request, role: Role, *, office: str | None = None
) -> tuple[Staff, Form]:
    """The signed-in staff member (with ``role``, at ``office``) and their CSRF-checked form."""
    staff = await require(request, role, office=office)
    limit: int = request.app.state.settings.max_body_bytes
    form = await read_form(request, limit)
    check_csrf(request, staff, form.get("csrf"))
    return staff, form
