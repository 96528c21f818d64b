"""The audit view: an office's event stream, newest first, filtered by actor or type.

Every staff action is an event with its actor (``staff:<username>``), residents'
actions have the actor ``resident``, and jobs their own name. Times are shown in the
office's time zone. Pages go back in time by stream id (``?before=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...queue.model import Office
from ...queue.tickets import STREAM_ID
from ..accounts import Role
from ..pages import render
from ..security import require
from ..state import accounts_of, queue_of
from .common import office_of

#: Events shown per page of the audit view, and read at most to fill one page.
AUDIT_PAGE = 50
AUDIT_BATCH = 500
AUDIT_SCAN = 5_000
#: Event types of the audit view's filter, in the order people think of them.
EVENT_TYPES = (
    "issued",
    "called",
    "recalled",
    "started",
    "finished",
    "no_show",
    "transferred",
    "cancelled",
    "abandoned",
    "counter_opened",
    "counter_changed",
    "counter_paused",
    "counter_closed",
    "counter_created",
    "counter_updated",
    "counter_deleted",
    "office_created",
    "office_updated",
    "service_created",
    "service_updated",
    "service_deleted",
    "staff_created",
    "staff_updated",
    "staff_disabled",
    "staff_enabled",
    "staff_sessions_ended",
    "staff_password_set",
    "staff_totp_removed",
)
#: Fields of an event shown as its details in the audit view (the rest have columns).
AUDIT_COLUMNS = frozenset({"type", "t", "actor", "office", "ticket", "number"})


@dataclass(frozen=True)
class AuditRow:
    id: str
    at: str
    actor: str
    type: str
    number: str
    details: list[tuple[str, str]]


def _audit_row(event_id: str, event: dict[str, Any], office: Office) -> AuditRow:
    try:
        at = datetime.fromtimestamp(float(event.get("t", 0)), office.zone)
        when = at.strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        when = "?"
    details = [(str(k), str(v)) for k, v in event.items() if k not in AUDIT_COLUMNS and v != ""]
    return AuditRow(
        event_id,
        when,
        str(event.get("actor", "")),
        str(event.get("type", "")),
        str(event.get("number", "")),
        sorted(details),
    )


async def audit(request: Request) -> Response:
    staff = await require(request, Role.ADMIN)
    office = await office_of(request)
    actor = request.query_params.get("actor", "").strip()[:80]
    kind = request.query_params.get("type", "")
    before = request.query_params.get("before", "") or None
    if kind and kind not in EVENT_TYPES:
        kind = ""
    if before is not None and not STREAM_ID.fullmatch(before):
        before = None
    queue = queue_of(request)
    rows: list[AuditRow] = []
    cursor = before
    scanned = 0
    exhausted = False
    while len(rows) < AUDIT_PAGE and scanned < AUDIT_SCAN:
        batch = await queue.events(office.id, before=cursor, count=AUDIT_BATCH)
        for event_id, event in batch:
            cursor = event_id
            scanned += 1
            if (not actor or event.get("actor") == actor) and (
                not kind or event.get("type") == kind
            ):
                rows.append(_audit_row(event_id, event, office))
                if len(rows) == AUDIT_PAGE:
                    break
        if len(batch) < AUDIT_BATCH and (not batch or cursor == batch[-1][0]):
            exhausted = True  # read to the stream's first event
            break
    older = None
    if not exhausted and cursor and await queue.events(office.id, before=cursor, count=1):
        older = cursor
    accounts = await accounts_of(request).all()
    context = {
        "staff": staff,
        "office": office,
        "rows": rows,
        "actor": actor,
        "type": kind,
        "types": EVENT_TYPES,
        "actors": [f"staff:{a.username}" for a in accounts],
        "before": before,
        "older": older,
        "partial": len(rows) < AUDIT_PAGE and older is not None,
    }
    return render(request, "admin/audit.html", context)
