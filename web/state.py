"""Typed access to what the app's lifespan keeps on ``app.state``, path ids, staff offices.

Handlers reach the long-lived objects (queue client, wait board, account and session
stores, the clock) through these, so each is declared, and typed, in one place.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from ..kiosk.devices import KioskStore
from ..queue.exceptions import NotFound
from ..queue.keys import SLUG
from ..queue.model import Office
from ..queue.tickets import QueueClient
from ..queue.waits import WaitBoard
from .accounts import AccountStore, Role, StaffAccount
from .pages import render
from .security import Staff
from .sessions import SessionStore


def queue_of(connection: HTTPConnection) -> QueueClient:
    queue: QueueClient = connection.app.state.queue
    return queue


def waits_of(connection: HTTPConnection) -> WaitBoard:
    waits: WaitBoard = connection.app.state.waits
    return waits


async def offices_of(connection: HTTPConnection, account: StaffAccount) -> list[Office]:
    """The offices ``account`` works at that exist (every office, for an admin)."""
    queue = queue_of(connection)
    known = await queue.office_ids()
    ids = known if account.role is Role.ADMIN else [o for o in account.offices if o in known]
    return [await queue.office(o) for o in ids]


async def choose_office(request: Request, staff: Staff, base: str, template: str) -> Response:
    """Straight to ``base``/{office} for someone of one office; else ``template``, which lists
    their offices (with ``staff/_offices.html``)."""
    offices = await offices_of(request, staff.account)
    if len(offices) == 1:
        return RedirectResponse(f"{base}/{offices[0].id}", status_code=303)
    return render(request, template, {"staff": staff, "offices": offices})


def accounts_of(connection: HTTPConnection) -> AccountStore:
    accounts: AccountStore = connection.app.state.accounts
    return accounts


def sessions_of(connection: HTTPConnection) -> SessionStore:
    sessions: SessionStore = connection.app.state.sessions
    return sessions


def kiosks_of(connection: HTTPConnection) -> KioskStore:
    kiosks: KioskStore = connection.app.state.kiosks
    return kiosks


def now_of(connection: HTTPConnection) -> float:
    """ "Now" for queue operations: the app's clock (a test clock in tests)."""
    now: float = connection.app.state.clock()
    return now


def path_slug(connection: HTTPConnection, name: str, kind: str) -> str:
    """The id in path parameter ``name``; a 404 naming ``kind`` when it cannot be one."""
    value: str = connection.path_params[name]
    if not SLUG.fullmatch(value):
        raise NotFound(f'{kind} "{value[:40]}" does not exist')
    return value
