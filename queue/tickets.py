"""The ticket queue's operations, each one atomic Lua script run against Redis.

:class:`QueueClient` is the only way Madoguchi changes queue state. Every method
takes ``now`` (seconds since the epoch) from its caller: the server clock in
production, a virtual clock in replays and tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..settings import Settings
from . import keys, lua
from .codec import text
from .exceptions import BY_CODE, InvalidInput, NotFound, QueueError
from .model import (
    CancelReason,
    Channel,
    Counter,
    Office,
    Service,
    Snapshot,
    Ticket,
    check_slug,
)
from .pipeline import ScriptPipe

TICKET_ID = re.compile(r"\d{8}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
SYSTEM = "system"
#: Longest a queue script may take, round trip included, before the request gets a 503.
SCRIPT_TIMEOUT = 2.0
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
#: Administrative actions that change no queue state but belong in the audit trail.
NOTE_TYPES = frozenset(
    {
        "staff_created",
        "staff_updated",
        "staff_disabled",
        "staff_enabled",
        "staff_sessions_ended",
        "staff_password_set",
        "staff_totp_removed",
    }
)


@dataclass(frozen=True)
class Issued:
    ticket: Ticket
    #: True when the idempotency key had already issued this ticket.
    replayed: bool
    #: Id of the "issued" event this call appended ("" when replayed).
    event: str = ""


def new_token() -> str:
    """A random 128-bit token for the resident's ticket page."""
    return secrets.token_urlsafe(16)


def ticket_ref(ticket: str) -> str:
    """The script reference of a ticket given by its id or its resident token."""
    if TICKET_ID.fullmatch(ticket):
        return f"id:{ticket}"
    if TOKEN.fullmatch(ticket):
        return f"token:{ticket}"
    raise NotFound(f'"{ticket[:40]}" is not a ticket id or token')


def _lists(value: Any) -> list[Any]:
    # cjson encodes an empty Lua table as {}, whether it was meant as a list or not.
    return value if isinstance(value, list) else []


def _pairs(flat: Any) -> list[tuple[str, float]]:
    items = _lists(flat)
    return [(items[i], float(items[i + 1])) for i in range(0, len(items), 2)]


class QueueClient:
    """Runs the queue scripts for any office on one Redis connection pool."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(lua.source(name)) for name in lua.NAMES
        }
        self._offices: dict[str, Office] = {}
        self._pipe = (
            None if redis.single_connection_client else ScriptPipe(redis, deadline=SCRIPT_TIMEOUT)
        )

    def register(self, name: str, source: str) -> None:
        """Load one more script, an operation of another queue module, to :meth:`run`."""
        self._scripts[name] = self.redis.register_script(source)

    async def run(
        self,
        name: str,
        office: str,
        now: float,
        actor: str,
        *args: str,
        errors: Mapping[str, type[QueueError]] = BY_CODE,
    ) -> Any:
        """Run a registered script; an error it reports is raised as ``errors[code]``."""
        check_slug("office", office)
        known = await self.office(office) if name != "office_put" else None
        day = known.day(now) if known is not None else ""
        script = self._scripts[name]
        key = keys.office(office)
        arguments = [repr(float(now)), actor, day, *args]
        try:
            raw = await self._evalsha(script, key, arguments)
        except (TimeoutError, RedisTimeoutError):
            raise RedisTimeoutError(
                f"redis did not run {name} for office {office} within {SCRIPT_TIMEOUT} s"
            ) from None
        result = orjson.loads(raw)
        if "error" in result:
            error = result["error"]
            raise errors.get(error["code"], QueueError)(error["message"])
        return result

    async def _evalsha(self, script: AsyncScript, key: str, arguments: list[str]) -> Any:
        """Run ``script``; past ``SCRIPT_TIMEOUT`` without a reply, a timeout error.

        Every operation goes through the process's :class:`~.pipeline.ScriptPipe`, which
        keeps the deadline for all of them; a client with a single connection (which
        redis-py serialises) sends it itself.
        """
        try:
            if self._pipe is not None:
                return await self._pipe.evalsha(script.sha, key, arguments)
            async with asyncio.timeout(SCRIPT_TIMEOUT):
                return await self.redis.evalsha(script.sha, 1, key, *arguments)
        except NoScriptError:
            # Redis restarted, or its script cache was flushed: load and run.
            async with asyncio.timeout(SCRIPT_TIMEOUT):
                return await script(keys=[key], args=arguments)

    # -- offices and services ---------------------------------------------------------

    async def put_office(self, office: Office, *, now: float, actor: str = SYSTEM) -> Office:
        fields = {
            "id": office.id,
            "name_ja": office.name_ja,
            "name_en": office.name_en,
            "timezone": office.timezone,
            "priority_cap": office.priority_cap,
            "appt_early": office.appt_early,
            "stream_maxlen": self.settings.event_stream_maxlen,
            "ticket_ttl": self.settings.ticket_ttl_seconds,
            "idem_ttl": self.settings.idempotency_ttl_seconds,
        }
        result = await self.run("office_put", office.id, now, actor, json.dumps(fields))
        await self.redis.sadd(keys.OFFICES, office.id)
        self._offices[office.id] = stored = Office.from_redis(result["office"])
        return stored

    async def office(self, office: str) -> Office:
        """The office's settings; cached, since they change rarely."""
        known = self._offices.get(office)
        if known is not None:
            return known
        raw = await self.redis.hgetall(keys.office(office))
        if not raw:
            raise NotFound(f'office "{office}" does not exist')
        self._offices[office] = found = Office.from_redis(_decode(raw))
        return found

    async def office_ids(self) -> list[str]:
        return sorted(_decode_set(await self.redis.smembers(keys.OFFICES)))

    async def put_service(
        self, office: str, service: Service, *, now: float, actor: str = SYSTEM
    ) -> Service:
        result = await self.run("service_put", office, now, actor, json.dumps(service.to_redis()))
        return Service.from_redis(result["service"])

    async def delete_service(
        self, office: str, service: str, *, now: float, actor: str = SYSTEM
    ) -> Service:
        """Remove a service; refused while tickets wait in it or a counter serves it."""
        check_slug("service", service)
        result = await self.run("service_delete", office, now, actor, service)
        return Service.from_redis(result["service"])

    # -- tickets --------------------------------------------------------------------------

    async def issue(
        self,
        office: str,
        service: str,
        *,
        now: float,
        channel: Channel = Channel.WEB,
        priority: bool = False,
        appointment_at: float | None = None,
        idempotency_key: str | None = None,
        actor: str = SYSTEM,
    ) -> Issued:
        check_slug("service", service)
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InvalidInput(
                "idempotency key must be 1-128 letters, digits or _.:- characters, "
                f'not "{idempotency_key[:40]}"'
            )
        appt = "" if appointment_at is None else repr(float(appointment_at))
        request = f"{service}|{Channel(channel).value}|{int(priority)}|{appt}"
        fingerprint = hashlib.sha256(request.encode()).hexdigest()[:16]
        result = await self.run(
            "issue",
            office,
            now,
            actor,
            service,
            Channel(channel).value,
            "1" if priority else "0",
            appt,
            idempotency_key or "",
            new_token(),
            fingerprint,
        )
        return Issued(
            Ticket.from_redis(result["ticket"]),
            bool(result["replayed"]),
            result.get("event") or "",
        )

    async def ticket(self, office: str, ticket: str, *, now: float) -> Ticket:
        """A ticket by its id or resident token, with its current position."""
        result = await self.run("ticket_view", office, now, SYSTEM, ticket_ref(ticket))
        return Ticket.from_redis(result["ticket"])

    async def call_next(
        self, office: str, counter: str, *, now: float, actor: str = SYSTEM
    ) -> Ticket | None:
        """The counter's next ticket under the routing rules, or ``None`` when no one waits."""
        check_slug("counter", counter)
        result = await self.run("call_next", office, now, actor, counter)
        raw = result.get("ticket")
        return Ticket.from_redis(raw) if raw else None

    async def _ticket_op(
        self, name: str, office: str, ticket: str, now: float, actor: str, *args: str
    ) -> Ticket:
        result = await self.run(name, office, now, actor, ticket_ref(ticket), *args)
        return Ticket.from_redis(result["ticket"])

    async def recall(self, office: str, ticket: str, *, now: float, actor: str = SYSTEM) -> Ticket:
        return await self._ticket_op("recall", office, ticket, now, actor)

    async def no_show(self, office: str, ticket: str, *, now: float, actor: str = SYSTEM) -> Ticket:
        return await self._ticket_op("no_show", office, ticket, now, actor)

    async def start(self, office: str, ticket: str, *, now: float, actor: str = SYSTEM) -> Ticket:
        return await self._ticket_op("start", office, ticket, now, actor)

    async def finish(self, office: str, ticket: str, *, now: float, actor: str = SYSTEM) -> Ticket:
        return await self._ticket_op("finish", office, ticket, now, actor)

    async def transfer(
        self, office: str, ticket: str, service: str, *, now: float, actor: str = SYSTEM
    ) -> Ticket:
        """Move a ticket to ``service``; it keeps its place by its original issue time."""
        check_slug("service", service)
        return await self._ticket_op("transfer", office, ticket, now, actor, service)

    async def cancel(
        self,
        office: str,
        ticket: str,
        *,
        now: float,
        reason: CancelReason = CancelReason.RESIDENT,
        actor: str = SYSTEM,
    ) -> Ticket:
        return await self._ticket_op(
            "cancel", office, ticket, now, actor, CancelReason(reason).value
        )

    # -- counters -------------------------------------------------------------------------

    async def open_counter(
        self,
        office: str,
        counter: str,
        services: Sequence[str] = (),
        *,
        now: float,
        name: str = "",
        actor: str = SYSTEM,
    ) -> Counter:
        """Open (or resume) a counter; with ``services``, also set what it serves."""
        for service in services:
            check_slug("service", service)
        if len(name) > 40:
            raise InvalidInput(f'counter name "{name[:40]}…" is longer than 40 characters')
        csv = ",".join(dict.fromkeys(services))
        return await self._counter_op("counter_open", office, counter, now, actor, csv, name)

    async def pause_counter(
        self, office: str, counter: str, *, now: float, actor: str = SYSTEM
    ) -> Counter:
        """Stop calling tickets at an open counter until it is opened again."""
        return await self._counter_op("counter_pause", office, counter, now, actor)

    async def close_counter(
        self, office: str, counter: str, *, now: float, actor: str = SYSTEM
    ) -> Counter:
        """Close a counter; refused while it holds a ticket."""
        return await self._counter_op("counter_close", office, counter, now, actor)

    async def put_counter(
        self,
        office: str,
        counter: str,
        services: Sequence[str],
        *,
        now: float,
        name: str = "",
        exists: bool | None = None,
        actor: str = SYSTEM,
    ) -> Counter:
        """Create a counter (closed), or change its name and services, keeping its state.

        ``exists=False`` refuses a counter that already exists, ``exists=True`` one that
        does not; ``None`` creates or updates.
        """
        for service in services:
            check_slug("service", service)
        if len(name) > 40:
            raise InvalidInput(f'counter name "{name[:40]}…" is longer than 40 characters')
        csv = ",".join(dict.fromkeys(services))
        must = {None: "", True: "existing", False: "new"}[exists]
        return await self._counter_op("counter_put", office, counter, now, actor, csv, name, must)

    async def delete_counter(
        self, office: str, counter: str, *, now: float, actor: str = SYSTEM
    ) -> Counter:
        """Remove a counter; only a closed one can go."""
        return await self._counter_op("counter_delete", office, counter, now, actor)

    async def _counter_op(
        self, name: str, office: str, counter: str, now: float, actor: str, *args: str
    ) -> Counter:
        check_slug("counter", counter)
        result = await self.run(name, office, now, actor, counter, *args)
        return Counter.from_redis(result["counter"])

    # -- reading ----------------------------------------------------------------------------

    async def last_event(self, office: str) -> str:
        """The id of the office's latest event ("" when it has none): a cheap change check."""
        check_slug("office", office)
        latest = await self.redis.xrevrange(keys.events(office), count=1)
        return str(latest[0][0]) if latest else ""

    async def events(
        self, office: str, *, before: str | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` of the office's events, newest first, older than stream id ``before``."""
        check_slug("office", office)
        if before is not None and not STREAM_ID.fullmatch(before):
            raise InvalidInput(f'"{before[:40]}" is not an event id')
        top = f"({before}" if before else "+"
        found = await self.redis.xrevrange(keys.events(office), max=top, min="-", count=count)
        out: list[tuple[str, dict[str, Any]]] = []
        for event_id, fields in found or []:
            if event_id is None or not fields:
                continue
            try:
                data = json.loads(fields.get("e", ""))
            except ValueError:
                continue
            if isinstance(data, dict):
                out.append((text(event_id), data))
        return out

    async def note(
        self,
        office: str,
        kind: str,
        fields: dict[str, str],
        *,
        now: float,
        actor: str = SYSTEM,
    ) -> str:
        """Record an administrative action in the office's event stream; the event's id."""
        if kind not in NOTE_TYPES:
            raise InvalidInput(f'"{kind[:40]}" is not an administrative event type')
        reserved = {"type", "t", "actor", "office"} & set(fields)
        if reserved:
            raise InvalidInput(f'event field "{sorted(reserved)[0]}" is set by the queue')
        result = await self.run("note", office, now, actor, kind, json.dumps(fields))
        return str(result["event"])

    async def snapshot(self, office: str, *, now: float) -> Snapshot:
        """The office's whole queue state, read atomically."""
        raw = await self.run("snapshot", office, now, SYSTEM)
        # Sorted, so that the same state always reads the same (Redis sets have no order).
        services = {
            s["id"]: Service.from_redis(s)
            for s in sorted(_lists(raw["services"]), key=lambda s: str(s["id"]))
        }
        counters = [Counter.from_redis(c) for c in _lists(raw["counters"])]
        desks = [Counter.from_redis(d) for d in _lists(raw.get("desks"))]
        held = {
            c["id"]: Ticket.from_redis(c["ticket"])
            for c in (*_lists(raw["counters"]), *_lists(raw.get("desks")))
            if isinstance(c.get("ticket"), dict)
        }
        lines = {
            sid: {kind: _pairs(flat) for kind, flat in line.items()}
            for sid, line in sorted((raw["lines"] or {}).items())
        }
        history = {
            sid: [float(x) for x in _lists(times)] for sid, times in (raw["history"] or {}).items()
        }
        day = {k: float(v) for k, v in (raw["day"] or {}).items()}
        return Snapshot(
            office=Office.from_redis(raw["office"]),
            services=services,
            lines=lines,
            history=history,
            counters=sorted(counters, key=lambda c: c.id),
            held=held,
            day=day,
            last_event=raw["last_event"],
            at=now,
            desks=sorted(desks, key=lambda d: d.id),
        )


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def _decode_set(raw: set[Any]) -> set[str]:
    return {v.decode() if isinstance(v, bytes) else v for v in raw}
