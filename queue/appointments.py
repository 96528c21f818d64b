"""Appointments: a resident books a place in a time slot of a service, then checks in.

Each office sets, per service, its slots (:class:`SlotSettings`): their length, how
many people each takes, the hours of each weekday (office-local time), how many days
ahead they can be booked, and the check-in window around a slot. Booking, changing,
cancelling and checking in are Lua scripts (``scripts/appointment_*.lua``), each
atomic like every queue operation: the capacity check and the count of a place are
one step, so two residents can never over-book a slot, and a change takes the new
place and frees the old one together, or does nothing.

An appointment carries a random token (its page and QR code) and a six-digit check-in
code, unique at its office on its day, for people without a phone. Checking in, inside
the window, issues a ticket whose appointment time is the slot's start: the queue calls
it first once it is due (see ``call_next.lua``). The check-in script runs the body of
``issue.lua`` itself, so the ticket and the checked-in mark are written together, and a
second check-in returns the same ticket.
"""

from __future__ import annotations

import enum
import json
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any

from . import keys, lua
from .codec import mapping
from .exceptions import BY_CODE, InvalidInput, NotFound, QueueError, Unavailable
from .model import Channel, Office, Ticket, check_slug
from .tickets import SYSTEM, QueueClient, new_token

CODE = re.compile(r"\d{6}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
HOURS = re.compile(r"(\d{1,2}):(\d{2})\s*[-–~〜]\s*(\d{1,2}):(\d{2})")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How many fresh check-in codes a booking offers its script, in case some are taken.
CODE_CANDIDATES = 8
EMAIL = re.compile(r"[^@\s<>\"']{1,64}@[^@\s<>\"']{1,190}\.[^@\s<>\"'.]{2,}")
EMAIL_LIMIT = 254


class AppointmentStatus(enum.StrEnum):
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    CANCELLED = "cancelled"


class SlotFull(QueueError):
    """Every place of the slot is taken."""

    status = 409
    code = "full"


class TooEarly(QueueError):
    """Check-in for the appointment has not opened yet."""

    status = 409
    code = "too_early"


class TooLate(QueueError):
    """Check-in for the appointment has closed."""

    status = 410
    code = "too_late"


class Cancelled(QueueError):
    """The appointment was cancelled."""

    status = 410
    code = "cancelled"


ERRORS: dict[str, type[QueueError]] = {
    **BY_CODE,
    **{cls.code: cls for cls in (SlotFull, TooEarly, TooLate, Cancelled)},
}

#: Scripts of this module; each runs with ``_lib.lua`` and ``appointment_lib.lua`` in front.
SCRIPTS = ("settings", "book", "change", "cancel", "view", "check_in")

Range = tuple[int, int]


@cache
def source(name: str) -> str:
    """The full text of appointment script ``name``, libraries included.

    The check-in script also gets ``issue.lua``'s body as a local function
    ``issue_ticket(A)``, ``A`` standing for its arguments, so that it issues the ticket
    exactly as the issue operation does, in the same atomic step.
    """
    if name not in SCRIPTS:
        raise KeyError(f'no appointment script named "{name}"')
    return lua.module_source("appointment", name, issues=name == "check_in")


def parse_hours(text: str) -> tuple[Range, ...]:
    """Opening hours such as ``"09:00-12:00, 13:00-17:00"`` as minutes after midnight."""
    ranges: list[Range] = []
    for part in (p.strip() for p in re.split(r"[,、，]", text)):
        if not part:
            continue
        match = HOURS.fullmatch(part)
        if match is None:
            raise InvalidInput(f'"{part[:40]}" is not a time range such as 09:00-12:00')
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise InvalidInput(f'"{part}" is not a time range such as 09:00-12:00')
        ranges.append((h1 * 60 + m1, h2 * 60 + m2))
    return tuple(sorted(ranges))


def format_hours(ranges: tuple[Range, ...]) -> str:
    return ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in ranges)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def check_email(value: str) -> str:
    """A contact e-mail address, or ``""``; refuses what cannot be one."""
    value = value.strip()
    if value and (len(value) > EMAIL_LIMIT or not EMAIL.fullmatch(value)):
        raise InvalidInput(f'"{value[:60]}" is not an e-mail address')
    return value


@dataclass(frozen=True)
class SlotSettings:
    """How a service's appointment slots are laid out at one office."""

    service: str
    #: Length of each slot, in minutes.
    minutes: int = 15
    #: How many people one slot takes.
    capacity: int = 2
    #: Per weekday, Monday first, the hours (minutes after local midnight) slots fill.
    hours: tuple[tuple[Range, ...], ...] = ((),) * 7
    #: How many days after today can be booked (0: only today).
    days_ahead: int = 14
    #: The check-in window: from ``before`` minutes before a slot to ``after`` minutes after.
    before: int = 30
    after: int = 15
    enabled: bool = True
    #: Bumped at every change, so that a booking made from older settings is refused.
    version: int = 0

    def __post_init__(self) -> None:
        check_slug("service", self.service)
        for name, value, low, high in (
            ("slot length", self.minutes, 5, 240),
            ("capacity", self.capacity, 1, 100),
            ("days ahead", self.days_ahead, 0, 90),
            ("check-in before", self.before, 0, 240),
            ("check-in after", self.after, 0, 240),
        ):
            if not low <= value <= high:
                raise InvalidInput(f"{name} must be from {low} to {high}, not {value}")
        if len(self.hours) != 7:
            raise InvalidInput(f"hours must be given for 7 weekdays, not {len(self.hours)}")
        for day, ranges in zip(WEEKDAYS, self.hours, strict=True):
            end = 0
            for start, stop in ranges:
                if not 0 <= start < stop <= 24 * 60 or start < end:
                    raise InvalidInput(
                        f"the hours of {day} ({format_hours(ranges)}) must be increasing, "
                        "non-overlapping ranges within the day"
                    )
                end = stop

    def starts(self, weekday: int) -> list[int]:
        """Start minutes of the slots on ``weekday`` (0 is Monday)."""
        out: list[int] = []
        for start, stop in self.hours[weekday]:
            out.extend(range(start, stop - self.minutes + 1, self.minutes))
        return out

    def to_redis(self) -> dict[str, str]:
        return {
            "minutes": str(self.minutes),
            "capacity": str(self.capacity),
            "hours": json.dumps([list(map(list, r)) for r in self.hours]),
            "days_ahead": str(self.days_ahead),
            "before": str(self.before),
            "after": str(self.after),
            "enabled": "1" if self.enabled else "0",
        }

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> SlotSettings:
        hours = tuple(tuple((int(a), int(b)) for a, b in day) for day in json.loads(raw["hours"]))
        return cls(
            service=raw["service"],
            minutes=int(raw["minutes"]),
            capacity=int(raw["capacity"]),
            hours=hours,
            days_ahead=int(raw["days_ahead"]),
            before=int(raw["before"]),
            after=int(raw["after"]),
            enabled=raw["enabled"] == "1",
            version=int(raw.get("version", 0)),
        )


@dataclass(frozen=True)
class Slot:
    """One slot of one day, and how many of its places are taken."""

    start: float
    ends: float
    capacity: int
    taken: int
    #: Whether it can still be booked (it has not begun).
    open: bool

    @property
    def remaining(self) -> int:
        return max(0, self.capacity - self.taken)

    @property
    def full(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True)
class Appointment:
    id: str
    service: str
    start: float
    ends: float
    day: str
    token: str
    code: str
    status: AppointmentStatus
    created_at: float
    #: The check-in window.
    opens: float
    closes: float
    ticket: str = ""
    ticket_token: str = ""
    checked_in_at: float | None = None
    changes: int = 0

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> Appointment:
        return cls(
            id=raw["id"],
            service=raw["service"],
            start=float(raw["start"]),
            ends=float(raw["ends"]),
            day=raw["day"],
            token=raw["token"],
            code=raw["code"],
            status=AppointmentStatus(raw["status"]),
            created_at=float(raw["created_at"]),
            opens=float(raw["opens"]),
            closes=float(raw["closes"]),
            ticket=raw.get("ticket", ""),
            ticket_token=raw.get("ticket_token", ""),
            checked_in_at=float(raw["checked_in_at"]) if raw.get("checked_in_at") else None,
            changes=int(raw.get("changes", 0)),
        )

    def window(self, now: float) -> str:
        """Where ``now`` falls: ``early``, ``open`` or ``late`` (of the check-in window)."""
        if now < self.opens:
            return "early"
        return "open" if now <= self.closes else "late"


@dataclass(frozen=True)
class CheckIn:
    appointment: Appointment
    ticket: Ticket
    #: True when the appointment was already checked in: the same ticket again.
    replayed: bool = False


def _codes() -> str:
    return ",".join(f"{secrets.randbelow(10**6):06d}" for _ in range(CODE_CANDIDATES))


class AppointmentClient:
    """Appointment operations for any office, on a :class:`QueueClient`'s connection."""

    def __init__(self, queue: QueueClient) -> None:
        self.queue = queue
        for name in SCRIPTS:
            queue.register(f"appointment_{name}", source(name))

    async def _run(self, name: str, office: str, now: float, actor: str, *args: str) -> Any:
        return await self.queue.run(f"appointment_{name}", office, now, actor, *args, errors=ERRORS)

    # -- settings -------------------------------------------------------------------------

    async def settings(self, office: str, service: str) -> SlotSettings | None:
        """The service's slot settings, or ``None`` when it never had any."""
        check_slug("office", office)
        check_slug("service", service)
        raw = mapping(await self.queue.redis.hgetall(keys.slot_settings(office, service)))
        return SlotSettings.from_redis(raw) if raw else None

    async def put_settings(
        self, office: str, settings: SlotSettings, *, now: float, actor: str = SYSTEM
    ) -> SlotSettings:
        result = await self._run(
            "settings", office, now, actor, settings.service, json.dumps(settings.to_redis())
        )
        return SlotSettings.from_redis(result["settings"])

    async def bookable(self, office: str, *, now: float) -> dict[str, SlotSettings]:
        """Every active service of the office that takes appointments, by id."""
        found: dict[str, SlotSettings] = {}
        for sid, service in (await self.queue.snapshot(office, now=now)).services.items():
            settings = await self.settings(office, sid)
            if service.active and settings is not None and settings.enabled:
                found[sid] = settings
        return found

    # -- slots ----------------------------------------------------------------------------

    async def days(self, office: str, service: str, *, now: float) -> list[str]:
        """The local days (ISO dates) from today on that have slots of ``service``."""
        known = await self.queue.office(office)
        settings = await self._open_settings(office, service)
        today = date.fromisoformat(known.day(now))
        out = []
        for ahead in range(settings.days_ahead + 1):
            day = today + timedelta(days=ahead)
            if any(s.open for s in self._grid(known, settings, day, {}, now)):
                out.append(day.isoformat())
        return out

    async def slots(self, office: str, service: str, day: str, *, now: float) -> list[Slot]:
        """The slots of ``service`` on local ``day`` (ISO date), with places taken."""
        known = await self.queue.office(office)
        settings = await self._open_settings(office, service)
        wanted = self._day(known, settings, day, now)
        taken = mapping(await self.queue.redis.hgetall(keys.slot_counts(office, service, day)))
        return self._grid(known, settings, wanted, taken, now)

    def _day(self, office: Office, settings: SlotSettings, day: str, now: float) -> date:
        try:
            wanted = date.fromisoformat(day)
        except ValueError as exc:
            raise InvalidInput(f'"{day[:20]}" is not a date such as 2026-12-01') from exc
        today = date.fromisoformat(office.day(now))
        last = today + timedelta(days=settings.days_ahead)
        if not today <= wanted <= last:
            raise InvalidInput(
                f"{wanted.isoformat()} cannot be booked: choose a day from "
                f"{today.isoformat()} to {last.isoformat()}"
            )
        return wanted

    def _grid(
        self,
        office: Office,
        settings: SlotSettings,
        day: date,
        taken: dict[str, str],
        now: float,
    ) -> list[Slot]:
        out = []
        for minute in settings.starts(day.weekday()):
            local = datetime.combine(day, time(minute // 60, minute % 60), office.zone)
            start = local.timestamp()
            out.append(
                Slot(
                    start=start,
                    ends=start + settings.minutes * 60,
                    capacity=settings.capacity,
                    taken=int(taken.get(str(int(start)), 0)),
                    open=start > now,
                )
            )
        return out

    async def _open_settings(self, office: str, service: str) -> SlotSettings:
        settings = await self.settings(office, service)
        if settings is None or not settings.enabled:
            raise Unavailable(f'service "{service}" takes no appointments')
        return settings

    async def _slot(
        self, office: str, service: str, start: str, now: float
    ) -> tuple[Slot, str, SlotSettings]:
        """The slot beginning at ``start`` (epoch seconds, as the pages send it)."""
        known = await self.queue.office(office)
        settings = await self._open_settings(office, service)
        try:
            at = int(start)
        except ValueError as exc:
            raise InvalidInput(f'"{start[:20]}" is not a slot') from exc
        if not 0 < at < 2**40:
            raise InvalidInput(f'"{start[:20]}" is not a slot')
        day = known.day(at)
        wanted = self._day(known, settings, day, now)
        for slot in self._grid(known, settings, wanted, {}, now):
            if int(slot.start) == at:
                return slot, day, settings
        raise InvalidInput(f'there is no slot of service "{service}" at "{start[:20]}"')

    # -- bookings -------------------------------------------------------------------------

    async def book(
        self,
        office: str,
        service: str,
        start: str,
        *,
        now: float,
        contact: str = "",
        actor: str = SYSTEM,
    ) -> Appointment:
        """Book a place in the slot of ``service`` that begins at ``start``."""
        contact = check_email(contact)
        slot, day, settings = await self._slot(office, service, start, now)
        result = await self._run(
            "book",
            office,
            now,
            actor,
            service,
            str(int(slot.start)),
            str(int(slot.ends)),
            day,
            str(settings.version),
            new_token(),
            _codes(),
            contact,
        )
        return Appointment.from_redis(result["appointment"])

    async def appointment(self, office: str, token: str, *, now: float) -> Appointment:
        """The appointment behind a page token."""
        result = await self._run("view", office, now, SYSTEM, self._ref(token))
        return Appointment.from_redis(result["appointment"])

    async def by_code(self, office: str, code: str, *, now: float) -> Appointment:
        """Today's appointment with the six-digit check-in ``code``."""
        result = await self._run("view", office, now, SYSTEM, self._code_ref(code))
        return Appointment.from_redis(result["appointment"])

    async def change(
        self, office: str, token: str, start: str, *, now: float, actor: str = SYSTEM
    ) -> Appointment:
        """Move a booked appointment to the slot of its service that begins at ``start``."""
        ref = self._ref(token)
        current = await self.appointment(office, token, now=now)
        slot, day, settings = await self._slot(office, current.service, start, now)
        result = await self._run(
            "change",
            office,
            now,
            actor,
            ref,
            str(int(slot.start)),
            str(int(slot.ends)),
            day,
            str(settings.version),
            _codes(),
        )
        return Appointment.from_redis(result["appointment"])

    async def cancel(
        self, office: str, token: str, *, now: float, actor: str = SYSTEM
    ) -> Appointment:
        result = await self._run("cancel", office, now, actor, self._ref(token))
        return Appointment.from_redis(result["appointment"])

    async def check_in(
        self,
        office: str,
        token: str,
        *,
        now: float,
        channel: Channel = Channel.PHONE,
        actor: str = SYSTEM,
    ) -> CheckIn:
        """Check in by the appointment's page token: its ticket (the same one if again)."""
        return await self._check_in(office, self._ref(token), now, channel, actor)

    async def check_in_by_code(
        self,
        office: str,
        code: str,
        *,
        now: float,
        channel: Channel = Channel.KIOSK,
        actor: str = SYSTEM,
    ) -> CheckIn:
        """Check in by today's six-digit code, as at a kiosk or the reception."""
        return await self._check_in(office, self._code_ref(code), now, channel, actor)

    async def _check_in(
        self, office: str, ref: str, now: float, channel: Channel, actor: str
    ) -> CheckIn:
        result = await self._run(
            "check_in", office, now, actor, ref, new_token(), Channel(channel).value
        )
        return CheckIn(
            Appointment.from_redis(result["appointment"]),
            Ticket.from_redis(result["ticket"]),
            bool(result["replayed"]),
        )

    async def contact(self, office: str, appointment_id: str) -> str:
        """The contact e-mail given with a booking ("" when none, or no longer kept)."""
        found = await self.queue.redis.get(keys.appointment_contact(office, appointment_id))
        return str(found or "")

    @staticmethod
    def _code_ref(code: str) -> str:
        code = "".join(code.split())
        if not CODE.fullmatch(code):
            raise InvalidInput(f'a check-in code has 6 digits, not "{code[:20]}"')
        return f"code:{code}"

    @staticmethod
    def _ref(token: str) -> str:
        if not TOKEN.fullmatch(token):
            raise NotFound(f'appointment "{token[:40]}" does not exist')
        return f"token:{token}"
