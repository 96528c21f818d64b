"""Consultation calls: their state machine, kept in Redis and changed only by Lua scripts.

A consultation is a ticket of a remote service that a kiosk raised; its call lives in
the office's hash ``keys.call(office, ticket)`` and moves through these states::

    waiting ──accept──▶ ringing ──both joined──▶ connected ◀──rejoined── reconnecting
       ▲                  │ │                      │ │                      │ │
       └──unanswered──────┘ │     one end left ────┼─┼──────────────────────┘ │
       └──declined / transferred / specialist lost─┘ │                        │
                          ended ◀── hang-up, kiosk cancelled, kiosk lost ─────┘

Each transition is one script (``queue/scripts/call_*.lua``, with ``_lib.lua`` and
``call_lib.lua`` in front) that checks its preconditions, changes the call and its
ticket together, appends ``consult_<state>`` (and the ticket's own ``called``,
``started``, ``finished``… events) to the office's stream, and publishes the new state
on the call's relay channel, all atomically. When a call ends, a ``consultation`` event
records topic, service, kiosk, specialist, waited, talked, outcome and transfer; the
resident's rating follows as ``consult_rated``. No media, snapshot or chat text is kept.

Timeouts run on the app's clock: :meth:`Calls.expire_due` (run every second by the
:class:`~madoguchi.consult.switchboard.Switchboard`) settles each call whose deadline has
passed: a specialist who never joined (``unanswered``) or did not come back
(``specialist_lost``) puts the resident back at the front of the queue; a kiosk that is
gone ends the call (``kiosk_lost``).
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..queue import keys, lua
from ..queue.codec import mapping
from ..queue.exceptions import InvalidInput, NotFound
from ..queue.model import check_slug
from ..queue.tickets import IDEMPOTENCY_KEY, TICKET_ID, QueueClient, new_token
from .exceptions import ERRORS

#: Scripts of this module, each run with ``_lib.lua`` and ``call_lib.lua`` in front.
SCRIPTS = ("request", "accept", "join", "leave", "expire", "end", "transfer", "invite", "rate")
#: How long an accepted call rings before the resident goes back to the queue, in seconds.
RING_SECONDS = 30.0
#: How long the kiosk or the specialist may be gone before the call gives up on them.
RECONNECT_SECONDS = 30.0
#: A call's id: its office and its ticket's id, e.g. ``kokurakita.00000012``.
CALL_ID = re.compile(r"([a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?)\.(\d{8})")


class CallState(enum.StrEnum):
    WAITING = "waiting"
    RINGING = "ringing"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


class Role(enum.StrEnum):
    """Who a participant is in a call."""

    KIOSK = "kiosk"
    SPECIALIST = "specialist"
    GUEST = "guest"


@cache
def source(name: str) -> str:
    """The full text of call script ``name``, libraries included (``request`` also gets
    ``issue.lua``'s body as ``issue_ticket(A)``, so that it issues exactly as issuing does)."""
    if name not in SCRIPTS:
        raise KeyError(f'no call script named "{name}"')
    return lua.module_source("call", name, issues=name == "request")


def call_id(office: str, ticket: str) -> str:
    return f"{office}.{ticket}"


def parse_call_id(value: str) -> tuple[str, str]:
    """The office and ticket id of a call id; a 404 when it cannot be one."""
    match = CALL_ID.fullmatch(value)
    if match is None:
        raise NotFound(f'consultation "{value[:40]}" does not exist')
    return match.group(1), match.group(2)


def _number(raw: str) -> float | None:
    return float(raw) if raw else None


@dataclass(frozen=True)
class Call:
    """A consultation's call as the scripts keep it."""

    office: str
    ticket: str
    number: str
    #: The remote service the resident chose, and the one it is in now (after transfers).
    topic: str
    service: str
    kiosk: str
    state: CallState
    #: Why it is in its state: requested, accepted, kiosk_joined, kiosk_left, unanswered,
    #: declined, transferred, specialist_lost, completed, cancelled, kiosk_lost.
    reason: str
    since: float
    issued_at: float
    #: The specialist who accepted it (none while waiting) and the person they invited.
    specialist: str
    guest: str
    #: Which participants are joined now.
    present: frozenset[Role]
    deadline: float | None
    accepted_at: float | None
    connected_at: float | None
    ended_at: float | None
    #: Seconds from the ticket's issue until the call first connected (or ended).
    waited: float | None
    #: Seconds connected (reconnecting included), over every specialist.
    talked: float
    #: The service it was last transferred to, and how often it was.
    transfer: str
    transfers: int
    last_specialist: str
    rating: int | None

    @property
    def id(self) -> str:
        return call_id(self.office, self.ticket)

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> Call:
        present = frozenset(r for r in Role if raw.get(f"{r.value}_conn"))
        return cls(
            office=raw["office"],
            ticket=raw["ticket"],
            number=raw["number"],
            topic=raw["topic"],
            service=raw["service"],
            kiosk=raw["kiosk"],
            state=CallState(raw["state"]),
            reason=raw["reason"],
            since=float(raw["since"]),
            issued_at=float(raw["issued_at"]),
            specialist=raw.get("specialist", ""),
            guest=raw.get("guest", ""),
            present=present,
            deadline=_number(raw.get("deadline", "")),
            accepted_at=_number(raw.get("accepted_at", "")),
            connected_at=_number(raw.get("connected_at", "")),
            ended_at=_number(raw.get("ended_at", "")),
            waited=_number(raw.get("waited", "")),
            talked=float(raw.get("talked") or 0),
            transfer=raw.get("transfer", ""),
            transfers=int(raw.get("transfers") or 0),
            last_specialist=raw.get("last_specialist", ""),
            rating=int(raw["rating"]) if raw.get("rating") else None,
        )

    def record(self) -> dict[str, Any]:
        """What is kept of the consultation for the statistics, nothing more."""
        return {
            "call": self.id,
            "topic": self.topic,
            "service": self.service,
            "specialist": self.last_specialist,
            "kiosk": self.kiosk,
            "waited": self.waited,
            "talked": self.talked,
            "outcome": self.reason if self.state is CallState.ENDED else None,
            "transfer": self.transfer or None,
            "rating": self.rating,
        }


@dataclass(frozen=True)
class Joined:
    call: Call
    role: Role


class Calls:
    """The call operations for any office, on a :class:`QueueClient`'s connection."""

    def __init__(
        self,
        queue: QueueClient,
        *,
        ring_seconds: float = RING_SECONDS,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self.queue = queue
        self.redis = queue.redis
        self.ring_seconds = ring_seconds
        self.reconnect_seconds = reconnect_seconds
        for name in SCRIPTS:
            queue.register(f"call_{name}", source(name))

    async def _run(self, name: str, office: str, now: float, actor: str, *args: str) -> Any:
        return await self.queue.run(f"call_{name}", office, now, actor, *args, errors=ERRORS)

    async def _call(self, name: str, office: str, now: float, actor: str, *args: str) -> Call:
        result = await self._run(name, office, now, actor, *args)
        return Call.from_redis(result["call"])

    @property
    def grace(self) -> str:
        return repr(float(self.reconnect_seconds))

    async def get(self, office: str, ticket: str) -> Call:
        check_slug("office", office)
        if not TICKET_ID.fullmatch(ticket):
            raise NotFound(f'consultation "{ticket[:40]}" does not exist')
        raw = mapping(await self.redis.hgetall(keys.call(office, ticket)))
        if "ticket" not in raw:
            raise NotFound(f'consultation "{ticket}" does not exist at office "{office}"')
        return Call.from_redis(raw)

    async def of_kiosk(self, office: str, kiosk: str) -> Call | None:
        """The consultation the kiosk has open, if any."""
        ticket = await self.redis.get(keys.kiosk_call(office, kiosk))
        if not ticket:
            return None
        try:
            return await self.get(office, str(ticket))
        except NotFound:
            return None

    async def request(
        self,
        office: str,
        kiosk: str,
        service: str,
        *,
        now: float,
        idempotency_key: str | None = None,
    ) -> Call:
        """A kiosk raises a consultation about ``service`` (a remote one); it waits in the
        queue. A kiosk with a consultation open gets that one back."""
        check_slug("service", service)
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InvalidInput(
                "idempotency key must be 1-128 letters, digits or _.:- characters, "
                f'not "{idempotency_key[:40]}"'
            )
        fingerprint = hashlib.sha256(f"{service}|kiosk|0|".encode()).hexdigest()[:16]
        return await self._call(
            "request",
            office,
            now,
            f"kiosk:{kiosk}",
            kiosk,
            service,
            idempotency_key or "",
            new_token(),
            fingerprint,
        )

    async def accept(
        self,
        office: str,
        specialist: str,
        services: tuple[str, ...],
        *,
        now: float,
        ticket: str | None = None,
    ) -> Call | None:
        """The specialist accepts consultation ``ticket``, or the longest-waiting one of
        ``services`` (``None`` when none waits). Its call rings until both ends join."""
        for service in services:
            check_slug("service", service)
        if ticket is not None and not TICKET_ID.fullmatch(ticket):
            raise NotFound(f'consultation "{ticket[:40]}" does not exist')
        result = await self._run(
            "accept",
            office,
            now,
            f"staff:{specialist}",
            ticket or "",
            specialist,
            ",".join(services),
            repr(float(self.ring_seconds)),
        )
        raw = result.get("call")
        return Call.from_redis(raw) if raw else None

    async def join(
        self,
        office: str,
        ticket: str,
        *,
        kiosk: str = "",
        staff: str = "",
        connection: str,
        now: float,
    ) -> Joined:
        """A participant's connection joins: the kiosk (by id) or a staff member (by name)."""
        kind, who = ("kiosk", kiosk) if kiosk else ("staff", staff)
        result = await self._run(
            "join", office, now, f"{kind}:{who}", ticket, kind, who, connection
        )
        return Joined(Call.from_redis(result["call"]), Role(result["role"]))

    async def leave(
        self, office: str, ticket: str, role: Role, *, connection: str, now: float
    ) -> Call:
        """A participant's connection closed (a replaced connection changes nothing)."""
        return await self._call(
            "leave", office, now, role.value, ticket, role.value, connection, self.grace
        )

    async def end(self, office: str, ticket: str, role: Role, who: str, *, now: float) -> Call:
        """A participant ends the call (the invited person only leaves it)."""
        actor = f"kiosk:{who}" if role is Role.KIOSK else f"staff:{who}"
        return await self._call("end", office, now, actor, ticket, role.value, who, self.grace)

    async def transfer(
        self, office: str, ticket: str, specialist: str, service: str, *, now: float
    ) -> Call:
        """Send the consultation to another remote service; it keeps its place there."""
        check_slug("service", service)
        return await self._call(
            "transfer", office, now, f"staff:{specialist}", ticket, specialist, service, self.grace
        )

    async def invite(
        self, office: str, ticket: str, specialist: str, guest: str, *, now: float
    ) -> Call:
        """Let ``guest`` (a staff member) join the call as its third participant."""
        return await self._call(
            "invite", office, now, f"staff:{specialist}", ticket, specialist, guest
        )

    async def rate(self, office: str, ticket: str, kiosk: str, rating: int, *, now: float) -> Call:
        """The resident's answer to the satisfaction question, 1 to 5, once per call."""
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise InvalidInput(f"a rating is a whole number from 1 to 5, not {rating!r}")
        return await self._call("rate", office, now, f"kiosk:{kiosk}", ticket, kiosk, str(rating))

    async def waiting(self, office: str, services: tuple[str, ...]) -> list[Call]:
        """The consultations of ``services`` waiting to be accepted, first to be taken first."""
        check_slug("office", office)
        found: list[tuple[float, str]] = []
        for service in services:
            check_slug("service", service)
            for kind, offset in (("priority", -1e12), ("regular", 0.0)):
                line: list[tuple[str, float]] = await self.redis.zrange(
                    keys.line(office, service, kind), 0, -1, withscores=True
                )  # type: ignore[assignment]  # redis-py types every zrange result at once
                found += [(float(score) + offset, str(ticket)) for ticket, score in line]
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, ticket in sorted(found):
                pipe.hgetall(keys.call(office, ticket))
            rows = await pipe.execute()
        calls = [Call.from_redis(mapping(row)) for row in rows if row]
        return [call for call in calls if call.state is CallState.WAITING]

    async def expire(self, office: str, ticket: str, *, now: float) -> bool:
        """Settle the call if its timeout has passed at ``now``; whether anything changed."""
        result = await self._run("expire", office, now, "system", ticket, self.grace)
        return bool(result.get("changed"))

    async def expire_due(self, now: float) -> int:
        """Settle every call of every office whose timeout has passed; how many changed."""
        changed = 0
        for office in await self.queue.office_ids():
            found = await self.redis.zrangebyscore(keys.calls_due(office), "-inf", now)
            due = [str(ticket) for ticket in found]
            for ticket in due:
                if await self.expire(office, ticket, now=now):
                    changed += 1
        return changed


def connection_id() -> str:
    """A random id for one signaling connection."""
    return secrets.token_urlsafe(12)
