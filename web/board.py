"""The lobby board: an office's latest calls and current waits, on the office's display.

``/o/{office}/board`` is a full-screen page for a TV in the lobby. It shows the latest
calls (the newest large) with their counters, and the current wait of every service;
it announces each call with a chime and speech, Japanese then English, said twice.
What to say is written here, on the server, and sent with the call: the page's
script only plays it.

``/o/{office}/board/events`` streams the calls as server-sent events whose ids are
stream ids, so a board that reconnects with ``Last-Event-ID`` (or ``?after=``) is sent
the calls it missed; only calls of the last :data:`ANNOUNCE_SECONDS` are announced
again. The office's waits come from the process's congestion :class:`~.congestion.Feed`.
The stream begins with a ``hello`` carrying the server's version, so a board reloads
itself after an upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..queue import keys
from ..queue.model import Counter, Office, ServiceMode, Snapshot
from .congestion import Feed, feed_of, find_office, missing_office, summarise
from .live import Dropped, EventHub, event_stream, resume_after
from .pages import render
from .state import now_of, waits_of

#: Calls the board shows; the page keeps no more than this either.
SHOWN = 6
#: A call older than this (seconds) is shown but not announced (a board catching up).
ANNOUNCE_SECONDS = 60.0
#: Events read back at most to find the latest calls, or to catch up after a reconnect.
LOOK_BACK = 2000
#: Seconds between keep-alive comments.
HEARTBEAT = 15.0
RETRY_MS = 2000
CALLS = ("called", "recalled")


@dataclass(frozen=True)
class Call:
    id: str
    number: str
    counter: str
    service: str
    at: float
    recall: bool
    say: tuple[tuple[str, str], ...]

    def to_live(self, now: float) -> dict[str, Any]:
        return {
            "number": self.number,
            "counter": self.counter,
            "service": self.service,
            "recall": self.recall,
            "say": [{"lang": lang, "text": text} for lang, text in self.say],
            "announce": 0 <= now - self.at < ANNOUNCE_SECONDS,
        }


def spoken_number(number: str) -> str:
    """A ticket number as a voice reads it well: ``A-023`` → ``A 23``."""
    prefix, _, digits = number.partition("-")
    return f"{prefix} {int(digits)}" if digits.isdigit() else number


def announcement(number: str, counter: str) -> tuple[tuple[str, str], ...]:
    """What the board says for a call, as ``(BCP 47 language, text)``: Japanese, then English.

    These are the lobby's fixed announcements, in the two languages the city
    announces in, whatever language the board's labels are shown in.
    """
    spoken = spoken_number(number)
    digits = re.sub(r"\D", "", counter)
    at_ja = f"{counter}番窓口" if counter.isdigit() else counter
    at_en = f"counter {digits or counter}"
    return (
        ("ja-JP", f"{spoken}番の番号札をお持ちの方、{at_ja}へお越しください。"),
        ("en-US", f"Ticket number {spoken}, please come to {at_en}."),
    )


def to_call(entry_id: str, event: dict[str, Any], snapshot: Snapshot) -> Call | None:
    """The call an event is, when it is a call of an in-person service."""
    if event.get("type") not in CALLS:
        return None
    service = snapshot.services.get(str(event.get("service", "")))
    if service is None or service.mode is ServiceMode.REMOTE:
        return None  # a remote consultation is answered on a screen, not at a counter
    counter = counter_name(snapshot.counters, str(event.get("counter", "")))
    number = str(event.get("number", ""))
    try:
        at = float(event.get("t", 0))
    except (TypeError, ValueError):
        at = 0.0
    return Call(
        entry_id,
        number,
        counter,
        service.id,
        at,
        event.get("type") == "recalled",
        announcement(number, counter),
    )


def counter_name(counters: list[Counter], counter: str) -> str:
    return next((c.name for c in counters if c.id == counter), counter)


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


async def latest_calls(redis: Redis, office: str, snapshot: Snapshot) -> list[Call]:
    """The office's latest :data:`SHOWN` calls, newest first (from the last events)."""
    found: list[Call] = []
    top = "+"
    read = 0
    while len(found) < SHOWN and read < LOOK_BACK:
        batch = await redis.xrevrange(keys.events(office), max=top, min="-", count=200) or []
        for entry_id, fields in batch:
            call = _call_of(str(entry_id), fields, snapshot)
            if call is not None:
                found.append(call)
        if len(batch) < 200:
            break
        read += len(batch)
        top = f"({batch[-1][0]!s}"
    return found[:SHOWN]


async def calls_after(
    redis: Redis, office: str, after: str, snapshot: Snapshot
) -> tuple[list[Call], str]:
    """Calls after stream id ``after`` (the last :data:`SHOWN` of them), and the last id read."""
    batch = await redis.xrange(keys.events(office), min=f"({after}", max="+", count=LOOK_BACK)
    calls = []
    last = after
    for entry_id, fields in batch or []:
        last = str(entry_id)
        call = _call_of(last, fields, snapshot)
        if call is not None:
            calls.append(call)
    return calls[-SHOWN:], last


def _call_of(entry_id: str, fields: Any, snapshot: Snapshot) -> Call | None:
    try:
        event = json.loads((fields or {}).get("e", ""))
    except ValueError:
        return None
    return to_call(entry_id, event, snapshot) if isinstance(event, dict) else None


def sse(data: Any, *, event: str = "", id: str = "") -> str:
    head = (f"id: {id}\n" if id else "") + (f"event: {event}\n" if event else "")
    return f"{head}data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def page(request: Request) -> Response:
    office = await find_office(request)
    if office is None:
        return missing_office(request)
    board = await waits_of(request).board(office.id)
    redis: Redis = request.app.state.redis
    calls = await latest_calls(redis, office.id, board.snapshot)
    context = {
        "office": office,
        "calls": calls,
        "waits": summarise(board),
        "last": board.snapshot.last_event or "0-0",
        "version": __version__,
    }
    return render(request, "public/board.html", context)


async def events(request: Request) -> Response:
    office = await find_office(request)
    if office is None:
        return missing_office(request)
    return event_stream(_stream(request, office, resume_after(request)))


async def _stream(request: Request, office: Office, after: str) -> AsyncIterator[str]:
    hub: EventHub = request.app.state.events
    redis: Redis = request.app.state.redis
    feed = feed_of(request)
    waits = waits_of(request)
    # Listen before reading the stream, so that no call falls between the two.
    async with hub.listen(office.id) as listener:
        snapshot = (await waits.board(office.id)).snapshot
        yield f"retry: {RETRY_MS}\n\n"
        yield sse({"version": __version__}, event="hello")
        last = after
        if after:
            missed, last = await calls_after(redis, office.id, after, snapshot)
            now = now_of(request)
            for call in missed:
                yield sse(call.to_live(now), event="call", id=call.id)
            yield sse({}, event="ready", id=last)
        else:
            last = snapshot.last_event or "0-0"
            yield sse({}, event="ready", id=last)
        message = feed.office_messages.get(office.id)
        if message:
            yield message.decode()
        async for chunk in _follow(request, office, listener, feed, last):
            yield chunk


async def _follow(
    request: Request, office: Office, listener: Any, feed: Feed, last: str
) -> AsyncIterator[str]:
    """The stream's body after its start: calls as they come, and the office's waits."""
    waits = waits_of(request)
    seen = feed.version
    incoming: asyncio.Future[Any] = asyncio.ensure_future(listener.next())
    changed: asyncio.Future[Any] = asyncio.ensure_future(feed.next(seen))
    try:
        while not feed.closed:
            done, _ = await asyncio.wait(
                {incoming, changed}, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                yield ": keep-alive\n\n"
                continue
            if changed in done:
                if office.id in feed.changed or feed.version > seen + 1:
                    message = feed.office_messages.get(office.id)
                    if message:
                        yield message.decode()
                seen = feed.version
                changed = asyncio.ensure_future(feed.next(seen))
            if incoming in done:
                try:
                    event = incoming.result()
                except Dropped:
                    return  # fell behind: the board reconnects from the last id it saw
                incoming = asyncio.ensure_future(listener.next())
                if event.type not in CALLS or _order(event.id) <= _order(last):
                    continue
                snapshot = (await waits.board(office.id, event.id)).snapshot
                call = to_call(event.id, event.data, snapshot)
                last = event.id
                if call is not None:
                    yield sse(call.to_live(now_of(request)), event="call", id=call.id)
    finally:
        for future in (incoming, changed):
            future.cancel()
            with contextlib.suppress(asyncio.CancelledError, Dropped):
                await future


routes: list[BaseRoute] = [
    Route("/o/{office}/board", page, methods=["GET"]),
    Route("/o/{office}/board/events", events, methods=["GET"]),
]
