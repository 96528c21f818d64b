"""Live events: one Redis subscription per web process, fanned out to in-process listeners.

Every queue script publishes its event on the office's channel as
``"<stream id> <event JSON>"``. :class:`EventHub` holds the process's single pattern
subscription to every office's channel and hands each event to the listeners of
that office (SSE streams, WebSockets). A listener that falls too far behind is
dropped rather than allowed to grow without bound: it reconnects and catches up
from the stream by the last id it saw, so it misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..queue import keys

log = logging.getLogger(__name__)

#: Events a listener may have waiting before it is dropped.
BACKLOG = 256


@dataclass(frozen=True)
class Event:
    """One queue event: its stream id (usable as an SSE id) and its fields."""

    id: str
    office: str
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type", ""))


class Dropped(Exception):
    """The listener fell behind and was dropped; catch up from the stream."""


class Listener:
    def __init__(self, office: str) -> None:
        self.office = office
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(BACKLOG)

    def offer(self, event: Event) -> bool:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    async def next(self) -> Event:
        event = await self.queue.get()
        if event is None:
            raise Dropped(self.office)
        return event


class EventHub:
    """The process's one subscription to every office's live channel."""

    def __init__(self, redis: Redis, *, retry_seconds: float = 1.0) -> None:
        self.redis = redis
        self.retry_seconds = retry_seconds
        self._listeners: dict[str, set[Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="madoguchi-event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for listeners in self._listeners.values():
            for listener in listeners:
                _drop(listener)

    @contextlib.asynccontextmanager
    async def listen(self, office: str) -> AsyncIterator[Listener]:
        listener = Listener(office)
        self._listeners.setdefault(office, set()).add(listener)
        try:
            yield listener
        finally:
            self._listeners.get(office, set()).discard(listener)

    def publish_locally(self, event: Event) -> None:
        """Hand ``event`` to this process's listeners of its office."""
        for listener in list(self._listeners.get(event.office, ())):
            if not listener.offer(event):
                log.warning("listener of %s dropped: %d events behind", event.office, BACKLOG)
                self._listeners[event.office].discard(listener)
                _drop(listener)

    async def _run(self) -> None:
        while True:
            try:
                await self._tail()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.connected.clear()
                log.warning("event hub lost redis (%s); retrying in %s s", exc, self.retry_seconds)
                await asyncio.sleep(self.retry_seconds)

    async def _tail(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(keys.live_pattern())
            self.connected.set()
            while True:
                message = await pubsub.get_message(timeout=30.0)
                if message is None or message.get("type") != "pmessage":
                    continue
                event = parse(str(message["channel"]), str(message["data"]))
                if event is not None:
                    self.publish_locally(event)
        finally:
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py


def _drop(listener: Listener) -> None:
    """Tell ``listener`` it was dropped, making room for the marker if need be."""
    with contextlib.suppress(asyncio.QueueEmpty):
        if listener.queue.full():
            listener.queue.get_nowait()
    listener.queue.put_nowait(None)


def parse(channel: str, payload: str) -> Event | None:
    """The event in a live-channel message, or ``None`` (logged) when it is malformed."""
    stream_id, _, body = payload.partition(" ")
    try:
        office = keys.office_from_channel(channel)
        data = json.loads(body)
    except ValueError:
        log.warning("malformed live message on %s: %.80s", channel, payload)
        return None
    if not isinstance(data, dict):
        return None
    return Event(stream_id, office, data)
