"""Kiosk health: the report every kiosk sends each 30 s, and the state of the fleet.

``POST /kiosk/api/health`` (device token; JSON) carries what the kiosk sees of itself::

    {"cameras": 2, "microphones": 1, "printer": "ok", "round_trip_ms": 42, "version": "0.1.0"}

``cameras`` and ``microphones`` count the devices the browser lists (0–16);
``printer`` is ``ok``, ``no_paper``, ``offline`` or ``unknown`` (a browser cannot see
its printer's paper: it sends ``unknown``; for a kiosk with an ESC/POS printer the
server asks the printer itself and keeps that instead); ``round_trip_ms`` is the last network round
trip to the server (0–60000, or null when not measured); ``version`` is the kiosk
app's version (at most 40 characters). Every field is required but ``round_trip_ms``;
an unknown field, a wrong type or a value out of range gets a 422 naming the field.

The latest report and the moment it came are kept (by the app's clock); the fleet
page judges each kiosk from them: **offline** after :data:`OFFLINE_AFTER` seconds
without a report, **problem** when the report shows one (a camera or the microphone
missing, the printer out of paper or offline, a slow network, an old app), else
**online**; a revoked kiosk is **revoked** and one that never enrolled **not enrolled**.
Remote consultation adds the results of its pre-call check and camera probe with
:meth:`KioskHealth.record_check`; the fleet page shows them beside the rest. The
answer to a report says ``"probe": true`` while the kiosk is asked to run the camera
probe (:meth:`KioskHealth.request_probe`; see ``consult/probe.py``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..queue import keys
from ..queue.codec import mapping
from ..web.bodies import maybe, need, only, read_json
from ..web.exceptions import Unprocessable
from ..web.responses import JSONResponse
from ..web.state import now_of
from .devices import Kiosk, KioskStore, device_token, kiosk_of, set_kiosk_cookie
from .printing import PrinterState, printer_state

#: A kiosk reports every 30 s; after this long without a report it is offline.
OFFLINE_AFTER = 120.0
#: How often the kiosk reports, in seconds (the screens' JavaScript uses this too).
REPORT_EVERY = 30
#: A round trip above this, in milliseconds, is a problem worth showing.
SLOW_ROUND_TRIP_MS = 1000.0
MAX_DEVICES = 16
MAX_ROUND_TRIP_MS = 60_000.0
MAX_VERSION = 40
BODY_LIMIT = 1024
#: How long a kiosk's health is kept after its last report (a retired kiosk's goes away).
HEALTH_KEPT_SECONDS = 30 * 24 * 3600

PRINTER_STATES: tuple[PrinterState, ...] = ("ok", "no_paper", "offline", "unknown")
CheckKind = Literal["precall", "probe"]
FIELDS = {"cameras", "microphones", "printer", "round_trip_ms", "version"}


class State(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    PROBLEM = "problem"
    REVOKED = "revoked"
    NOT_ENROLLED = "not enrolled"


@dataclass(frozen=True)
class Report:
    cameras: int
    microphones: int
    printer: PrinterState
    round_trip_ms: float | None
    version: str


@dataclass(frozen=True)
class Check:
    """The result of a pre-call check or a camera probe, as remote consultation reports it."""

    ok: bool
    summary: str
    at: float


@dataclass(frozen=True)
class Problem:
    """Something wrong with a kiosk: a code the fleet page turns into words, and numbers."""

    code: str
    expected: int | None = None
    found: int | float | str | None = None


@dataclass(frozen=True)
class Status:
    """One kiosk as the fleet page shows it."""

    kiosk: Kiosk
    state: State
    problems: tuple[Problem, ...]
    seen: float | None
    report: Report | None
    precall: Check | None
    probe: Check | None


def _count(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DEVICES:
        raise Unprocessable(f'field "{name}" must be a whole number from 0 to {MAX_DEVICES}')
    return value


def parse_report(body: dict[str, Any]) -> Report:
    """A health report from its JSON, or a 422 that names the field at fault."""
    only(body, FIELDS)
    printer = need(body, "printer", str)
    if printer not in PRINTER_STATES:
        raise Unprocessable(f'field "printer" must be one of {", ".join(PRINTER_STATES)}')
    trip = maybe(body, "round_trip_ms", float)
    if trip is not None and not 0 <= trip <= MAX_ROUND_TRIP_MS:
        raise Unprocessable(f'field "round_trip_ms" must be from 0 to {MAX_ROUND_TRIP_MS:.0f}')
    version = need(body, "version", str)
    if not 0 < len(version) <= MAX_VERSION or not version.isprintable():
        raise Unprocessable(f'field "version" must be 1 to {MAX_VERSION} printable characters')
    return Report(_count(body, "cameras"), _count(body, "microphones"), printer, trip, version)


def problems_of(kiosk: Kiosk, report: Report) -> tuple[Problem, ...]:
    found: list[Problem] = []
    if report.cameras < len(kiosk.cameras):
        found.append(Problem("cameras", len(kiosk.cameras), report.cameras))
    if report.microphones < 1:
        found.append(Problem("microphone", 1, report.microphones))
    if report.printer in ("no_paper", "offline"):
        found.append(Problem(f"printer_{report.printer}"))
    if report.round_trip_ms is not None and report.round_trip_ms > SLOW_ROUND_TRIP_MS:
        found.append(Problem("slow_network", found=round(report.round_trip_ms)))
    if report.version != __version__:
        found.append(Problem("version", found=report.version))
    return tuple(found)


def _check(raw: str | None) -> Check | None:
    return Check(**json.loads(raw)) if raw else None


class KioskHealth:
    """The kiosks' latest reports and check results, in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def record(self, kiosk_id: str, report: Report, now: float) -> None:
        key = keys.kiosk_health(kiosk_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"seen": repr(now), "report": json.dumps(asdict(report))})
            pipe.expire(key, HEALTH_KEPT_SECONDS)
            await pipe.execute()

    async def latest(self, kiosk_id: str) -> Report | None:
        """The kiosk's latest report, if it sent one."""
        raw = await self.redis.hget(keys.kiosk_health(kiosk_id), "report")
        return Report(**json.loads(raw)) if raw else None

    async def record_check(
        self, kiosk_id: str, kind: CheckKind, ok: bool, summary: str, now: float
    ) -> None:
        """Keep the latest result of a pre-call check or a camera probe of the kiosk."""
        value = json.dumps(asdict(Check(ok, summary[:200], now)), ensure_ascii=False)
        await self.redis.hset(keys.kiosk_health(kiosk_id), kind, value)

    async def request_probe(self, kiosk_id: str, now: float) -> None:
        """Ask the kiosk to run the camera probe (its next report's answer tells it)."""
        await self.redis.set(keys.kiosk_probe(kiosk_id), repr(now), ex=HEALTH_KEPT_SECONDS)

    async def probe_requested(self, kiosk_id: str) -> bool:
        return bool(await self.redis.exists(keys.kiosk_probe(kiosk_id)))

    async def probe_done(self, kiosk_id: str) -> None:
        await self.redis.delete(keys.kiosk_probe(kiosk_id))

    async def fleet(self, kiosks: KioskStore, now: float) -> list[Status]:
        """Every kiosk with its state, judged at ``now``."""
        every = await kiosks.all()
        async with self.redis.pipeline(transaction=False) as pipe:
            for kiosk in every:
                pipe.hgetall(keys.kiosk_health(kiosk.id))
                pipe.hget(keys.kiosk(kiosk.id), "token_hash")
            rows = await pipe.execute()
        statuses = []
        for index, kiosk in enumerate(every):
            raw, token_hash = mapping(rows[2 * index]), rows[2 * index + 1]
            statuses.append(_status(kiosk, raw, enrolled=bool(token_hash), now=now))
        return statuses


def _status(kiosk: Kiosk, raw: dict[str, str], *, enrolled: bool, now: float) -> Status:
    seen = float(raw["seen"]) if "seen" in raw else None
    report = Report(**json.loads(raw["report"])) if "report" in raw else None
    problems = problems_of(kiosk, report) if report is not None else ()
    if kiosk.revoked:
        state = State.REVOKED
    elif not enrolled:
        state = State.NOT_ENROLLED
    elif seen is None or now - seen >= OFFLINE_AFTER:
        state = State.OFFLINE
    elif problems:
        state = State.PROBLEM
    else:
        state = State.ONLINE
    return Status(
        kiosk, state, problems, seen, report, _check(raw.get("precall")), _check(raw.get("probe"))
    )


async def report(request: Request) -> Response:
    """``POST /kiosk/api/health``: the kiosk's report; renews its device cookie."""
    kiosk = await kiosk_of(request)
    body = await read_json(request, BODY_LIMIT)
    parsed = parse_report(body)
    if kiosk.printer.kind == "escpos":
        # A browser cannot see an ESC/POS printer; the server, which prints on it, asks it.
        parsed = replace(parsed, printer=await printer_state(kiosk.printer))
    health = KioskHealth(request.app.state.redis)
    await health.record(kiosk.id, parsed, now_of(request))
    problems = [asdict(p) for p in problems_of(kiosk, parsed)]
    answer: dict[str, Any] = {"kiosk": kiosk.id, "problems": problems, "every": REPORT_EVERY}
    if await health.probe_requested(kiosk.id):
        answer["probe"] = True  # run remote consultation's camera probe when next idle
    response = JSONResponse(answer)
    set_kiosk_cookie(response, request, device_token(request))
    return response


routes = [Route("/kiosk/api/health", report, methods=["POST"])]
