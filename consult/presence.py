"""Specialists' presence: available, busy or away, per office.

A specialist sets their presence on the consultation console; it is kept in
``keys.presence(office, username)`` as ``"<state> <until>"`` and holds until ``until``
(the app's clock), which the console pushes forward every little while. A closed
browser stops refreshing it, so its specialist falls back to ``away`` by themselves
(the key also expires in Redis a little later, so nothing piles up).

While a specialist is in a call (it rings, runs or is reconnecting), as its
specialist or as the invited person, they are ``busy`` whatever they set: that is read
from the call itself (``keys.specialist_call`` and ``keys.guest_call``, written by the
accept and invite scripts), so it can never be left behind when the call ends.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ..queue import keys
from ..queue.codec import mapping
from ..queue.exceptions import InvalidInput
from ..queue.model import check_slug
from .calls import Call, CallState, Role

#: How long a presence holds without being refreshed, in seconds.
PRESENCE_SECONDS = 60.0
#: States in which a call holds its specialist and its invited person.
LIVE = frozenset({CallState.RINGING, CallState.CONNECTED, CallState.RECONNECTING})


class PresenceState(enum.StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"


def parse_state(value: object) -> PresenceState:
    """A presence state from a request; a 422 naming the allowed ones otherwise."""
    try:
        return PresenceState(str(value))
    except ValueError:
        allowed = ", ".join(s.value for s in PresenceState)
        raise InvalidInput(f'presence must be one of {allowed}, not "{str(value)[:40]}"') from None


@dataclass(frozen=True)
class Presence:
    """A staff member's presence at an office, as it stands."""

    username: str
    #: What they set (``away`` once it lapsed, or when they never set one).
    chosen: PresenceState
    #: Until when what they set holds (``None``: it lapsed, or was never set).
    until: float | None
    #: The call they are in now, and as whom.
    call: Call | None = None
    role: Role | None = None

    @property
    def state(self) -> PresenceState:
        """What others see: ``busy`` while in a call, else what they set."""
        return PresenceState.BUSY if self.call is not None else self.chosen

    def view(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "state": self.state.value,
            "chosen": self.chosen.value,
            "until": self.until,
            "call": None if self.call is None else self.call.id,
            "role": None if self.role is None else self.role.value,
        }


def _parse(raw: str | None, now: float) -> tuple[PresenceState, float | None]:
    state, _, until = (raw or "").partition(" ")
    try:
        chosen, expires = PresenceState(state), float(until)
    except ValueError:
        return PresenceState.AWAY, None
    if not math.isfinite(expires) or expires <= now:
        return PresenceState.AWAY, None
    return chosen, expires


class PresenceBoard:
    """Presence of the staff of any office, on one Redis connection."""

    def __init__(self, redis: Redis, *, seconds: float = PRESENCE_SECONDS) -> None:
        self.redis = redis
        self.seconds = seconds

    async def choose(
        self,
        office: str,
        username: str,
        state: PresenceState,
        *,
        now: float,
        takes: Iterable[str] = (),
    ) -> Presence:
        """Set (or refresh) ``username``'s presence at ``office`` for :attr:`seconds`.

        ``takes``: the office's remote services they take consultations of. While they
        are available or busy they are the estimator's servers for those services (a
        "desk" in ``keys.desks``, which the queue's snapshot reads), until the presence
        lapses; away, they are not.
        """
        check_slug("office", office)
        until = now + self.seconds
        services = ",".join(sorted(set(takes)))
        async with self.redis.pipeline(transaction=True) as pipe:
            # Expires in Redis too, later than by the app's clock, only to tidy up.
            pipe.set(
                keys.presence(office, username),
                f"{state.value} {until!r}",
                ex=math.ceil(self.seconds * 2),
            )
            if services and state is not PresenceState.AWAY:
                pipe.hset(keys.desks(office), username, f"{services} {until!r}")
            else:
                pipe.hdel(keys.desks(office), username)
            await pipe.execute()
        return (await self.of(office, (username,), now=now))[username]

    async def of(self, office: str, usernames: Iterable[str], *, now: float) -> dict[str, Presence]:
        """The presence of each of ``usernames`` at ``office``, calls included."""
        check_slug("office", office)
        names = list(dict.fromkeys(usernames))
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(keys.presence(office, name))
                pipe.get(keys.specialist_call(office, name))
                pipe.get(keys.guest_call(office, name))
            found = await pipe.execute()
        tickets = {str(value) for i, value in enumerate(found) if i % 3 and value}
        calls = await self._calls(office, tickets)
        result = {}
        for i, name in enumerate(names):
            raw, as_specialist, as_guest = found[3 * i : 3 * i + 3]
            chosen, until = _parse(raw, now)
            call, role = None, None
            for ticket, held_as in ((as_specialist, Role.SPECIALIST), (as_guest, Role.GUEST)):
                candidate = calls.get(str(ticket)) if ticket else None
                if candidate is not None and _holds(candidate, name, held_as):
                    call, role = candidate, held_as
                    break
            result[name] = Presence(name, chosen, until, call, role)
        return result

    async def _calls(self, office: str, tickets: set[str]) -> dict[str, Call]:
        ordered = sorted(tickets)
        async with self.redis.pipeline(transaction=False) as pipe:
            for ticket in ordered:
                pipe.hgetall(keys.call(office, ticket))
            rows = await pipe.execute()
        return {
            ticket: Call.from_redis(mapping(row))
            for ticket, row in zip(ordered, rows, strict=True)
            if row
        }


def _holds(call: Call, username: str, role: Role) -> bool:
    """Whether ``call`` still holds ``username`` as ``role``."""
    if call.state not in LIVE:
        return False
    return (call.specialist if role is Role.SPECIALIST else call.guest) == username
