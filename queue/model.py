"""Value objects of the ticket queue: offices, services, counters, tickets, estimates.

Redis stores every field as a string; ``from_redis`` constructors turn the hashes
the Lua scripts return into these typed objects, and ``__post_init__`` refuses
values that make no sense, quoting them.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .exceptions import InvalidInput
from .keys import SLUG

PREFIX = re.compile(r"[A-Z]{1,2}")
#: Languages a service is named in, as BCP 47 tags; ``ja-easy`` is やさしい日本語.
LANGUAGES = ("ja", "ja-easy", "en", "zh-Hans", "ko", "vi")
#: Congestion bands of a service, in minutes of estimated wait: where "moderate",
#: "long" and "very long" begin (anything shorter is "short").
DEFAULT_BANDS = (15, 30, 60)
NAME_LIMIT = 80


class TicketStatus(enum.StrEnum):
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    DONE = "done"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"

    @property
    def closed(self) -> bool:
        return self in _CLOSED


_CLOSED = frozenset(
    {TicketStatus.DONE, TicketStatus.NO_SHOW, TicketStatus.CANCELLED, TicketStatus.ABANDONED}
)


class Channel(enum.StrEnum):
    """Where the ticket was taken."""

    KIOSK = "kiosk"
    RECEPTION = "reception"
    PHONE = "phone"
    WEB = "web"


class CounterState(enum.StrEnum):
    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"


class ServiceMode(enum.StrEnum):
    IN_PERSON = "in_person"
    REMOTE = "remote"


class CancelReason(enum.StrEnum):
    RESIDENT = "resident"
    ABANDONED = "abandoned"


def check_slug(kind: str, value: str) -> str:
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise InvalidInput(f'{kind} id "{value}" must be 1-40 lowercase letters, digits or hyphens')
    return value


def _float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


@functools.lru_cache(maxsize=1024)
def _local_day(timezone: str, minute: int) -> str:
    # Local midnight falls on a whole minute in every zone in use, so the date
    # is the same all through a minute: one computation per office a minute.
    return datetime.fromtimestamp(minute * 60, ZoneInfo(timezone)).date().isoformat()


@dataclass(frozen=True)
class Office:
    id: str
    name_ja: str
    name_en: str
    timezone: str = "Asia/Tokyo"
    priority_cap: int = 3
    appt_early: int = 300

    def __post_init__(self) -> None:
        check_slug("office", self.id)
        if not self.name_ja.strip() or not self.name_en.strip():
            raise InvalidInput(f'office "{self.id}" needs a Japanese and an English name')
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f'time zone "{self.timezone}" is unknown') from exc
        if self.priority_cap < 1:
            raise InvalidInput(f"priority cap must be at least 1, not {self.priority_cap}")
        if self.appt_early < 0:
            raise InvalidInput(f"appointment lead must not be negative, not {self.appt_early}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def day(self, now: float) -> str:
        """The office's local date at ``now`` (seconds since the epoch)."""
        return _local_day(self.timezone, int(now // 60))

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> Office:
        return cls(
            id=raw["id"],
            name_ja=raw["name_ja"],
            name_en=raw["name_en"],
            timezone=raw["timezone"],
            priority_cap=int(raw["priority_cap"]),
            appt_early=int(raw["appt_early"]),
        )


@dataclass(frozen=True)
class Service:
    id: str
    prefix: str
    name_ja: str
    name_en: str
    mode: ServiceMode = ServiceMode.IN_PERSON
    active: bool = True
    #: The service time assumed before the office has any history of it.
    default_seconds: float = 600.0
    #: Names in the other supported languages; empty means "not given" (see :meth:`name`).
    name_ja_easy: str = ""
    name_zh_hans: str = ""
    name_ko: str = ""
    name_vi: str = ""
    #: Minutes of estimated wait where the "moderate", "long" and "very long" bands begin.
    bands: tuple[int, int, int] = DEFAULT_BANDS

    def __post_init__(self) -> None:
        check_slug("service", self.id)
        if not PREFIX.fullmatch(self.prefix):
            raise InvalidInput(
                f'prefix "{self.prefix}" of service "{self.id}" must be one or two capital letters'
            )
        if not self.name_ja.strip() or not self.name_en.strip():
            raise InvalidInput(f'service "{self.id}" needs a Japanese and an English name')
        for lang in LANGUAGES:
            if len(self.names[lang]) > NAME_LIMIT:
                raise InvalidInput(
                    f'the {lang} name of service "{self.id}" is longer than {NAME_LIMIT} characters'
                )
        if not 10 <= self.default_seconds <= 4 * 3600:
            raise InvalidInput(
                f"default service time of {self.default_seconds} s for "
                f'"{self.id}" is outside 10 s to 4 h'
            )
        bands = self.bands
        if len(bands) != 3 or not 1 <= bands[0] < bands[1] < bands[2] <= 24 * 60:
            shown = ", ".join(str(b) for b in bands)
            raise InvalidInput(
                f'congestion bands of service "{self.id}" must be three increasing numbers '
                f"of minutes from 1 to 1440, not {shown}"
            )

    @property
    def names(self) -> dict[str, str]:
        """The name in every supported language as given (empty where not given)."""
        return {
            "ja": self.name_ja,
            "ja-easy": self.name_ja_easy,
            "en": self.name_en,
            "zh-Hans": self.name_zh_hans,
            "ko": self.name_ko,
            "vi": self.name_vi,
        }

    def name(self, lang: str) -> str:
        """The name in ``lang``; if none, ``ja-easy`` falls back to Japanese, others to English."""
        given = self.names.get(lang, "")
        if given:
            return given
        return self.name_ja if lang.startswith("ja") else self.name_en

    def band(self, minutes: float) -> int:
        """The congestion band of a ``minutes`` wait: 0 short, 1 moderate, 2 long, 3 very long."""
        return sum(1 for start in self.bands if minutes >= start)

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> Service:
        bands = tuple(int(b) for b in raw.get("bands", "").split(",") if b)
        return cls(
            id=raw["id"],
            prefix=raw["prefix"],
            name_ja=raw["name_ja"],
            name_en=raw["name_en"],
            mode=ServiceMode(raw["mode"]),
            active=raw["active"] == "1",
            default_seconds=float(raw["default_seconds"]),
            name_ja_easy=raw.get("name_ja_easy", ""),
            name_zh_hans=raw.get("name_zh_hans", ""),
            name_ko=raw.get("name_ko", ""),
            name_vi=raw.get("name_vi", ""),
            bands=(bands[0], bands[1], bands[2]) if len(bands) == 3 else DEFAULT_BANDS,
        )

    def to_redis(self) -> dict[str, str]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name_ja": self.name_ja,
            "name_en": self.name_en,
            "mode": self.mode.value,
            "active": "1" if self.active else "0",
            "default_seconds": repr(self.default_seconds),
            "name_ja_easy": self.name_ja_easy,
            "name_zh_hans": self.name_zh_hans,
            "name_ko": self.name_ko,
            "name_vi": self.name_vi,
            "bands": ",".join(str(b) for b in self.bands),
        }


@dataclass(frozen=True)
class Counter:
    id: str
    name: str
    state: CounterState
    services: tuple[str, ...]
    current: str | None = None

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> Counter:
        return cls(
            id=raw["id"],
            name=raw.get("name") or raw["id"],
            state=CounterState(raw.get("state", "closed")),
            services=tuple(s for s in raw.get("services", "").split(",") if s),
            current=raw.get("current") or None,
        )


@dataclass(frozen=True)
class Ticket:
    """A ticket. It carries no name: a number, a service and timestamps."""

    id: str
    number: str
    service: str
    channel: Channel
    priority: bool
    status: TicketStatus
    issued_at: float
    token: str
    #: Position in its service's line, 1 for the next to be called; 0 once called.
    position: int = 0
    appointment_at: float | None = None
    counter: str | None = None
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    recalls: int = 0
    transfers: int = 0
    day: str = ""

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> Ticket:
        return cls(
            id=raw["id"],
            number=raw["number"],
            service=raw["service"],
            channel=Channel(raw["channel"]),
            priority=raw["priority"] == "1",
            status=TicketStatus(raw["status"]),
            issued_at=float(raw["issued_at"]),
            token=raw["token"],
            position=int(raw.get("position", 0)),
            appointment_at=_float(raw.get("appt")),
            counter=raw.get("counter") or None,
            called_at=_float(raw.get("called_at")),
            started_at=_float(raw.get("started_at")),
            finished_at=_float(raw.get("finished_at")),
            recalls=int(raw.get("recalls", 0)),
            transfers=int(raw.get("transfers", 0)),
            day=raw.get("day", ""),
        )


@dataclass(frozen=True)
class Estimate:
    """A published wait: a point estimate and an 80 % interval, in seconds from ``at``."""

    wait: float
    low: float
    high: float
    #: Tickets the estimator expects to be called before this one.
    ahead: int
    #: Open counters that can serve the ticket's service.
    servers: int
    at: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.wait <= self.high:
            raise ValueError(
                f"estimate must satisfy 0 <= low <= wait <= high, got "
                f"{self.low} <= {self.wait} <= {self.high}"
            )


@dataclass
class Snapshot:
    """An office's whole queue state at one moment, as ``snapshot.lua`` reads it."""

    office: Office
    services: dict[str, Service]
    #: Per service, per line kind, ``(ticket id, score)`` in calling order.
    lines: dict[str, dict[str, list[tuple[str, float]]]]
    #: Per service, recent service times in seconds, newest first.
    history: dict[str, list[float]]
    counters: list[Counter]
    #: The ticket each counter (or desk) holds, by counter id.
    held: dict[str, Ticket]
    day: dict[str, float]
    last_event: str
    at: float
    #: Specialists present for remote services, as the estimator's servers: each an
    #: open "counter" ``desk:<username>`` serving their remote services, holding the
    #: consultation they are in. Not counters: no view lists them.
    desks: list[Counter] = field(default_factory=list)
