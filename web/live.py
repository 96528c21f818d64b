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
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import HTTPConnection
from starlette.responses import StreamingResponse
from starlette.types import Message, Send

from ..queue import keys
from ..queue.pipeline import Adopted, adopt, give_back, pack
from ..queue.tickets import STREAM_ID
from .exceptions import BadRequest

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
        self._watchers: list[Callable[[Event], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        #: Subscriptions made so far: a change means events may have been missed meanwhile.
        self.generation = 0

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

    @contextlib.contextmanager
    def watch(self, callback: Callable[[Event], None]) -> Iterator[None]:
        """Call ``callback`` with every event of every office as it arrives.

        For process-wide consumers that coalesce (the congestion feed): the callback
        runs on the hub's task, so it must only take note and return.
        """
        self._watchers.append(callback)
        try:
            yield
        finally:
            self._watchers.remove(callback)

    def publish_locally(self, event: Event) -> None:
        """Hand ``event`` to this process's watchers, and to the listeners of its office."""
        for watcher in self._watchers:
            try:
                watcher(event)
            except Exception:
                # One watcher's bug must not keep the event from the others.
                log.exception("event %s of %s not handed to %r", event.id, event.office, watcher)
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
        connection, transport = await adopt(self.redis)
        try:
            subscription = _Subscription(transport, self._deliver)
            transport.write(pack("PSUBSCRIBE", keys.live_pattern()))
            async with asyncio.timeout(HEALTH_SECONDS):
                await subscription.subscribed
            self.generation += 1
            self.connected.set()
            while True:
                # A ping every while: a connection that went silent is found out.
                subscription.heard = False
                transport.write(PING)
                await asyncio.wait([subscription.closed], timeout=HEALTH_SECONDS)
                if subscription.lost:
                    raise RedisConnectionError("the event subscription's connection was lost")
                if not subscription.heard:
                    raise RedisTimeoutError(f"redis did not answer a ping in {HEALTH_SECONDS} s")
        finally:
            transport.abort()
            await give_back(self.redis, connection)

    def _deliver(self, channel: str, payload: str) -> None:
        event = parse(channel, payload)
        if event is not None:
            self.publish_locally(event)


#: Seconds between the subscription's pings; one unanswered for as long ends it.
HEALTH_SECONDS = 15.0
PING = pack("PING")


class _Subscription(Adopted):
    """The hub's pattern subscription, each message handed on as it is read.

    (redis-py's ``PubSub`` reads one message per call, each under a timeout of its own:
    on a busy office that cost the web process about a tenth of its CPU.)
    """

    def __init__(self, transport: asyncio.Transport, deliver: Callable[[str, str], None]) -> None:
        super().__init__(transport, encoding="utf-8")
        self.deliver = deliver
        self.subscribed: asyncio.Future[None] = self.loop.create_future()
        #: Something came since the last ping.
        self.heard = True

    def reply(self, reply: Any) -> None:
        self.heard = True
        if not isinstance(reply, list) or not reply:
            return
        if reply[0] == "pmessage" and len(reply) == 4:
            self.deliver(reply[2], reply[3])
        elif reply[0] == "psubscribe" and not self.subscribed.done():
            self.subscribed.set_result(None)

    def fail(self, error: Exception) -> None:
        super().fail(error)
        if not self.subscribed.done():
            self.subscribed.set_exception(error)
            self.subscribed.exception()  # marked as seen: whoever waited may have timed out


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
        data = orjson.loads(body)
    except ValueError:  # orjson.JSONDecodeError is one
        log.warning("malformed live message on %s: %.80s", channel, payload)
        return None
    if not isinstance(data, dict):
        return None
    return Event(stream_id, office, data)


class Sink:
    """One server-sent event response that a :class:`Broadcast` writes to."""

    __slots__ = ("busy", "seen", "send")

    def __init__(self, send: Send, seen: int) -> None:
        self.send = send
        #: The broadcast's version last written here.
        self.seen = seen
        #: A write is waiting for the client to read (its buffer was full).
        self.busy = False


class Broadcast:
    """One encoded message written to thousands of streaming responses, cheaply.

    Waking one task per connection for every message costs more than the write itself
    (measured with ten thousand: the wake-ups took as long as the socket writes). So the
    publishing task writes to every response itself: an ASGI ``send`` of a body
    completes without suspending unless the connection's write buffer is full (the
    server's flow control), and only such a write is finished by a task of its own. A
    connection that is still busy when the next message comes skips it, and is sent
    the whole state (``full``) once it has caught up; so a slow reader costs nothing
    but its own buffer, and nothing is queued for it.

    A stream that has said its last (``publish(..., last=True)``) ends every response
    with that message, and ends those that attach later with its whole state.
    """

    def __init__(self) -> None:
        self.version = 0
        self.full = b""
        #: The last message ended every response: nothing more is written.
        self.ended = False
        self._sinks: set[Sink] = set()
        self._finishing: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self._sinks)

    def attach(self, send: Send, seen: int) -> Sink:
        """Write to ``send`` from now on; ``seen``: the version it already has."""
        sink = Sink(send, seen)
        if self.ended:
            self._write(sink, self.full if seen != self.version else b"")
            return sink
        self._sinks.add(sink)
        if seen != self.version and not self._write(sink, self.full):
            self._sinks.discard(sink)
        return sink

    def detach(self, sink: Sink) -> None:
        self._sinks.discard(sink)

    def publish(self, message: bytes, full: bytes, *, last: bool = False) -> None:
        """Write ``message`` to every connection; ``full``: what one that missed some gets;
        ``last``: the message ends every response."""
        self.version += 1
        self.full = full
        self.ended = last
        body = self._body(message)
        failed = [sink for sink in self._sinks if not sink.busy and not self._send(sink, body)]
        self._sinks.difference_update(failed)
        if last:
            # Those written to are over; a busy one ends once it has caught up.
            self._sinks = {sink for sink in self._sinks if sink.busy}

    def ping(self, chunk: bytes) -> None:
        """Write ``chunk`` (a comment: no new state) to every connection that is idle."""
        if self.ended:
            return
        body = self._body(chunk)
        failed = [sink for sink in self._sinks if not sink.busy and not self._send(sink, body)]
        self._sinks.difference_update(failed)

    def close(self) -> None:
        """End every response (the server is stopping)."""
        end: Message = {"type": "http.response.body", "body": b"", "more_body": False}
        for sink in list(self._sinks):
            if not sink.busy:
                self._send(sink, end)
        self._sinks.clear()
        for task in self._finishing:
            task.cancel()

    def _body(self, chunk: bytes) -> Message:
        return {"type": "http.response.body", "body": chunk, "more_body": not self.ended}

    def _write(self, sink: Sink, chunk: bytes) -> bool:
        return self._send(sink, self._body(chunk))

    def _send(self, sink: Sink, message: Message) -> bool:
        """Write ``message``, or start to; ``False`` when the connection cannot take it."""
        sink.seen = self.version
        step = sink.send(message)
        if not isinstance(step, Coroutine):  # a server whose send is another awaitable
            sink.busy = True
            self._track(sink, asyncio.ensure_future(self._await(sink, step)))
            return True
        try:
            waiting = step.send(None)
        except StopIteration:
            return True
        except (OSError, RuntimeError) as exc:
            # The connection is gone or its response is over: its own task ends it.
            log.debug("broadcast: a write failed: %s", exc)
            return False
        sink.busy = True
        self._track(sink, asyncio.ensure_future(self._finish(sink, step, waiting)))
        return True

    def _track(self, sink: Sink, task: asyncio.Future[None]) -> None:
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _await(self, sink: Sink, step: Awaitable[None]) -> None:
        try:
            await step
        except (OSError, RuntimeError) as exc:
            log.debug("broadcast: a write failed: %s", exc)
            self._sinks.discard(sink)
        finally:
            sink.busy = False

    async def _finish(self, sink: Sink, step: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Drive a write that had to wait, as a task would, to its end."""
        try:
            while True:
                if waiting is None:
                    await asyncio.sleep(0)
                else:
                    with contextlib.suppress(Exception):
                        await waiting  # the write reads its outcome itself when resumed
                try:
                    waiting = step.send(None)
                except StopIteration:
                    break
        except (OSError, RuntimeError) as exc:
            log.debug("broadcast: a write failed: %s", exc)
            self._sinks.discard(sink)
            return
        finally:
            sink.busy = False
        if sink.seen != self.version and sink in self._sinks and not self._write(sink, self.full):
            self._sinks.discard(sink)
        if self.ended and not sink.busy:
            self._sinks.discard(sink)


def requested_after(connection: HTTPConnection) -> str:
    """The stream id an event stream resumes after: ``Last-Event-ID``, or (for a page that
    opens a new stream after the old one was refused) the query's ``after``; else ``""``."""
    return (
        connection.headers.get("last-event-id") or connection.query_params.get("after") or ""
    ).strip()


def resume_after(connection: HTTPConnection) -> str:
    """:func:`requested_after`, refused with a 400 when it is not a stream id."""
    after = requested_after(connection)
    if after and not STREAM_ID.fullmatch(after):
        raise BadRequest(f'event id "{after[:40]}" is not a stream id such as 1700000000000-0')
    return after


#: A server-sent event response's headers: never cached nor held back by a proxy.
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    """Server-sent events, never cached nor held back by a proxy."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
