"""Staff accounts: create, edit, set a password, disable, end sessions.

Accounts are not office data, but every change to one is recorded in the event
stream of each office it concerns (every office, for an admin who belongs to none
in particular), so that an office's audit view shows who did what there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...queue.exceptions import Conflict, InvalidInput
from ...queue.model import Office
from ..accounts import USERNAME, Role, StaffAccount, check_password
from ..forms import Form, signed_form
from ..pages import render
from ..security import Staff, require
from ..state import accounts_of, now_of, queue_of, sessions_of
from .common import (
    RESERVED,
    Checker,
    Invalid,
    Problem,
    all_offices,
    form_values,
    see_other,
    services_of,
)

ROLES = tuple(r.value for r in Role)


async def _service_choices(request: Request, offices: list[Office]) -> list[tuple[str, str]]:
    """Every service id of every office, once, labelled with the offices that have it."""
    seen: dict[str, tuple[str, list[str]]] = {}
    for office in offices:
        for service in (await services_of(request, office.id)).values():
            where = seen.setdefault(service.id, (service.name_en, []))[1]
            where.append(office.name_en)
    return [(sid, f"{name} ({', '.join(where)})") for sid, (name, where) in sorted(seen.items())]


async def _staff_form(
    request: Request,
    staff: Staff,
    account: StaffAccount | None,
    values: dict[str, Any] | None = None,
    *,
    problems: dict[str, Problem] | None = None,
    refusal: str = "",
    status: int = 200,
) -> Response:
    """The account's form; ``refusal`` names an action refused, for the page to explain."""
    offices = await all_offices(request)
    if values is None:
        values = (
            _account_values(account)
            if account is not None
            else {"role": Role.STAFF.value, "offices": [], "services": []}
        )
    context = {
        "staff": staff,
        "account": account,
        "offices": offices,
        "office_choices": [(o.id, f"{o.name_en} {o.name_ja}") for o in offices],
        "service_choices": await _service_choices(request, offices),
        "roles_order": ROLES,
        "values": values,
        "problems": problems or {},
        "refusal": refusal,
        "done": request.query_params.get("done", ""),
    }
    return render(request, "admin/staff_form.html", context, status=status)


def _account_values(account: StaffAccount) -> dict[str, Any]:
    return {
        "username": account.username,
        "name": account.name,
        "role": account.role.value,
        "offices": list(account.offices),
        "services": list(account.services),
        "totp_required": account.totp_required,
    }


def _form_account_values(form: Form) -> dict[str, Any]:
    return form_values(form, "username", "name", "role") | {
        "offices": form.all("offices"),
        "services": form.all("services"),
        "totp_required": form.flag("totp_required"),
    }


async def _read_account(
    request: Request, form: Form, existing: StaffAccount | None
) -> tuple[StaffAccount, str]:
    """The account the form describes, and (for a new one) its password."""
    check = Checker(form)
    if existing is None:
        username = form.get("username").lower()
        if not username:
            check.fail("username", Problem("required"))
        elif not USERNAME.fullmatch(username) or username in RESERVED:
            check.fail("username", Problem("username", value=username[:40]))
    else:
        username = existing.username
    name = check.text("name", limit=60)
    role = Role(check.choice("role", ROLES))
    offices = await all_offices(request)
    chosen = check.subset("offices", [o.id for o in offices])
    if role is not Role.ADMIN and not chosen and "offices" not in check.problems:
        check.fail("offices", Problem("pick_one"))
    # An admin who belongs to no office in particular may serve at any of them.
    if role is Role.ADMIN and not chosen:
        reachable = offices
    else:
        reachable = [o for o in offices if o.id in chosen]
    known: set[str] = set()
    for office in reachable:
        known |= set(await services_of(request, office.id))
    services = check.subset("services", known)
    password = ""
    if existing is None:
        password = form.fields.get("password", [""])[0]
        try:
            check_password(password, username)
        except InvalidInput as exc:
            check.fail("password", Problem("message", text=exc.message))
    check.done()
    account = StaffAccount(
        username,
        name,
        role,
        offices=chosen,
        services=services,
        disabled=existing.disabled if existing is not None else False,
        totp_required=form.flag("totp_required"),
        has_totp=existing.has_totp if existing is not None else False,
    )
    return account, password


async def _note(
    request: Request,
    staff: Staff,
    kind: str,
    account: StaffAccount,
    *,
    before: StaffAccount | None = None,
) -> None:
    """Record a change to ``account`` in every office it concerns (all, for an office-less one)."""
    queue = queue_of(request)
    known = await queue.office_ids()
    concerned = set(account.offices) | set(before.offices if before else ())
    offices = [o for o in known if o in concerned] or known
    fields = {
        "staff": account.username,
        "role": account.role.value,
        "offices": ",".join(account.offices),
    }
    for office in offices:
        await queue.note(office, kind, fields, now=now_of(request), actor=staff.actor)


async def _account(request: Request) -> StaffAccount:
    username: str = request.path_params["username"]
    return await accounts_of(request).get(username)


async def staff_list(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    accounts = await accounts_of(request).all()
    offices = {o.id: o for o in await all_offices(request)}
    context = {
        "staff": staff,
        "accounts": accounts,
        "offices": offices,
        "done": request.query_params.get("done", ""),
    }
    return render(request, "admin/staff_list.html", context)


async def new_staff(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    return await _staff_form(request, staff, None)


async def create_staff(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    values = _form_account_values(form)
    try:
        account, password = await _read_account(request, form, None)
        await accounts_of(request).create(account, password)
    except Invalid as exc:
        return await _staff_form(request, staff, None, values, problems=exc.problems, status=422)
    except Conflict:
        problems = {"username": Problem("taken", value=values["username"])}
        return await _staff_form(request, staff, None, values, problems=problems, status=409)
    await _note(request, staff, "staff_created", account)
    return see_other(f"/admin/staff/{account.username}?done=created")


async def staff_page(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    return await _staff_form(request, staff, await _account(request))


async def update_staff(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    existing = await _account(request)
    values = _form_account_values(form) | {"username": existing.username}
    try:
        account, _ = await _read_account(request, form, existing)
    except Invalid as exc:
        return await _staff_form(
            request, staff, existing, values, problems=exc.problems, status=422
        )
    if account.username == staff.account.username and account.role is not Role.ADMIN:
        problems = {"role": Problem("own_role")}
        return await _staff_form(request, staff, existing, values, problems=problems, status=409)
    await accounts_of(request).update(account)
    await _note(request, staff, "staff_updated", account, before=existing)
    return see_other(f"/admin/staff/{account.username}?done=saved")


async def set_staff_password(request: Request) -> Response:
    staff, form = await signed_form(request, Role.ADMIN)
    account = await _account(request)
    password = form.fields.get("password", [""])[0]
    try:
        await accounts_of(request).set_password(account.username, password)
    except InvalidInput as exc:
        problems = {"password": Problem("message", text=exc.message)}
        return await _staff_form(request, staff, account, problems=problems, status=422)
    await _note(request, staff, "staff_password_set", account)
    return see_other(f"/admin/staff/{account.username}?done=password")


async def _set_disabled(request: Request, disabled: bool) -> Response:
    staff, _ = await signed_form(request, Role.ADMIN)
    existing = await _account(request)
    if disabled and existing.username == staff.account.username:
        return await _staff_form(request, staff, existing, refusal="own_account", status=409)
    account = dataclasses.replace(existing, disabled=disabled)
    await accounts_of(request).update(account)
    if disabled:
        await sessions_of(request).end_all(account.username)
    kind = "staff_disabled" if disabled else "staff_enabled"
    await _note(request, staff, kind, account)
    return see_other(
        f"/admin/staff/{account.username}?done={'disabled' if disabled else 'enabled'}"
    )


async def disable_staff(request: Request) -> Response:
    return await _set_disabled(request, True)


async def enable_staff(request: Request) -> Response:
    return await _set_disabled(request, False)


async def remove_staff_totp(request: Request) -> Response:
    """Forget the account's authenticator (a lost phone): the person sets up a new one."""
    staff, _ = await signed_form(request, Role.ADMIN)
    account = await _account(request)
    await accounts_of(request).remove_totp(account.username)
    await _note(request, staff, "staff_totp_removed", account)
    return see_other(f"/admin/staff/{account.username}?done=totp")


async def end_staff_sessions(request: Request) -> Response:
    staff, _ = await signed_form(request, Role.ADMIN)
    account = await _account(request)
    await sessions_of(request).end_all(account.username)
    await _note(request, staff, "staff_sessions_ended", account)
    if account.username == staff.account.username:
        return see_other("/staff/signin")  # their own session has ended too
    return see_other(f"/admin/staff/{account.username}?done=sessions")
