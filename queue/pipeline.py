"""Queue scripts sent to Redis a few to a write, on one connection, replies matched in order.

Every queue operation is one EVALSHA. Sent the usual way, each takes a connection from
the pool, writes, and waits on that connection's socket for its reply: under load a web
process makes two system calls and one event-loop wake-up per operation on its side,
and Redis as many on its own. :class:`ScriptPipe` writes the script runs started in
the same turn of the event loop a few to a write (:data:`WRITE_EVERY`), on one
connection, and hands each reply to its caller as it is read, in the order Redis
answers them (the order they were written). This is Redis's own pipelining, spanning
concurrent requests.

The connection is made by redis-py (address, TLS, password, database: whatever the
client was configured with), then taken from the client's pool for good and read by
:class:`Adopted`, a small protocol of ours, instead of redis-py's stream reader; the
event hub's subscription is read the same way. Closing the client (its pool) closes
them. A script run written on a connection that is then lost fails with
``ConnectionError``: whether Redis ran it is unknown, so it is not sent again; one not
yet written is sent on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Commands written together at most. Redis starts on the first ones while the web process
#: is still handling the rest of its turn: writing all of a turn's commands at its end left
#: the process idle a sixth of the time (waiting for Redis to get through them), writing
#: each at once cost a system call each. bench/queue_ops.py, 64 clients: 3,150 operations/s
#: writing a turn's at its end, 3,800 writing each at once, 4,200 writing every 4.
WRITE_EVERY = 4


class Overdue(RedisTimeoutError):
    """A reply did not come within the pipe's deadline; the connection was closed."""


class _Unsent(Exception):
    """The connection was lost before the command was written; it may be sent again."""


def pack(*args: str) -> bytes:
    """One command in the Redis protocol (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Adopted(asyncio.Protocol):
    """A connection made by redis-py, taken from its pool for good and read by us.

    redis-py makes the connection (address, TLS, password, database: whatever the
    client was configured with); its transport is then handed to this protocol, which
    parses what Redis sends with hiredis and gives each reply to :meth:`reply`. Closing
    the client's pool closes it, as it would any connection in use.
    """

    def __init__(self, transport: asyncio.Transport, *, encoding: str | None = None) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.reader = (
            hiredis.Reader(replyError=ResponseError, encoding=encoding, errors="replace")
            if encoding
            else hiredis.Reader(replyError=ResponseError)
        )
        self.lost = False
        #: Resolved once the connection is closed, by either side.
        self.closed: asyncio.Future[None] = self.loop.create_future()
        #: The protocol redis-py gave the transport, told when the connection closes.
        self.original = transport.get_protocol()
        transport.set_protocol(self)

    def reply(self, reply: Any) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                self.reply(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # Not Redis's protocol, or a reply nobody asked for: nothing more can be trusted.
            self.fail(RedisConnectionError(f"unexpected data from redis: {exc}"))
            self.transport.abort()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to redis lost: {exc or 'closed by redis'}"))
        if not self.closed.done():
            self.closed.set_result(None)
        with contextlib.suppress(Exception):
            self.original.connection_lost(exc)

    def fail(self, error: Exception) -> None:
        self.lost = True


async def adopt(redis: Redis) -> tuple[Any, asyncio.Transport]:
    """A connection of ``redis``'s pool, kept in use, and its transport to hand to a protocol."""
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
    writer = getattr(connection, "_writer", None)
    if writer is None:
        await pool.release(connection)
        raise RedisConnectionError("redis connection has no stream to take over")
    return connection, writer.transport


async def give_back(redis: Redis, connection: Any) -> None:
    """Return an adopted connection to its pool, closed (to be made afresh when next used)."""
    with contextlib.suppress(Exception):
        await connection.disconnect()
    with contextlib.suppress(KeyError):
        await redis.connection_pool.release(connection)


class _Link(Adopted):
    """One connection's script runs in flight: written in batches, answered in order."""

    def __init__(self, transport: asyncio.Transport, deadline: float) -> None:
        super().__init__(transport)
        #: Written, awaiting their replies, oldest first; and when each was written.
        self.sent: deque[asyncio.Future[Any]] = deque()
        self.sent_at: deque[float] = deque()
        #: Not yet written: sent together at the end of this turn of the loop.
        self.queued: list[asyncio.Future[Any]] = []
        self.buffer: list[bytes] = []
        self.deadline = deadline
        self.watching = self.loop.call_later(deadline / 4, self.watch)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        if not self.buffer:
            self.loop.call_soon(self.flush)
        self.buffer.append(command)
        self.queued.append(future)
        if len(self.buffer) >= WRITE_EVERY:
            self.flush()
        return future

    def flush(self) -> None:
        if self.lost or not self.buffer:
            return
        data, self.buffer = b"".join(self.buffer), []
        self.sent.extend(self.queued)
        self.sent_at.extend(itertools.repeat(self.loop.time(), len(self.queued)))
        self.queued = []
        self.transport.write(data)

    def watch(self) -> None:
        """Close the connection once the oldest reply is overdue: Redis, or the way to it,
        may be gone, and a dead connection can stay silent for many minutes. (One timer
        for the connection costs less than one for each run.)"""
        if self.lost:
            return
        if self.sent_at and self.loop.time() - self.sent_at[0] > self.deadline:
            self.fail(Overdue(f"redis did not answer within {self.deadline} s"))
            self.transport.abort()
            return
        self.watching = self.loop.call_later(self.deadline / 4, self.watch)

    def reply(self, reply: Any) -> None:
        future = self.sent.popleft()
        self.sent_at.popleft()
        if future.done():
            return  # its caller gave up
        if isinstance(reply, ResponseError):
            message = str(reply)
            future.set_exception(
                NoScriptError(message) if message.startswith("NOSCRIPT") else reply
            )
        else:
            future.set_result(reply)

    def fail(self, error: Exception) -> None:
        super().fail(error)
        self.watching.cancel()
        for future in self.sent:
            if not future.done():
                future.set_exception(error)
        for future in self.queued:
            if not future.done():
                future.set_exception(_Unsent())
        self.sent.clear()
        self.sent_at.clear()
        self.queued = []
        self.buffer = []


class ScriptPipe:
    """EVALSHA for many concurrent callers on one connection of ``redis``'s pool.

    A run whose reply has not come ``deadline`` seconds after it was written fails with
    :class:`Overdue`, and so does everything else in flight: the connection is closed, and
    the next run makes a new one.
    """

    def __init__(self, redis: Redis, *, deadline: float) -> None:
        self.redis = redis
        self.deadline = deadline
        self._link: _Link | None = None
        #: The pool's connection the link took over, given back when the link is replaced.
        self._connection: Any = None
        self._connecting: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    async def evalsha(self, sha: str, key: str, arguments: list[str]) -> Any:
        """Run a loaded script with one key; its reply, or the error Redis gave."""
        command = pack("EVALSHA", sha, "1", key, *arguments)
        for _ in range(2):
            link = self._link
            if link is None or link.lost or link.loop is not asyncio.get_running_loop():
                link = await self._connect()
            try:
                return await link.send(command)
            except _Unsent:
                continue
        raise RedisConnectionError("connection to redis lost twice before the command was sent")

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._connecting[0] is not loop:
            self._connecting = (loop, asyncio.Lock())
        async with self._connecting[1]:
            link = self._link
            if link is not None and not link.lost and link.loop is loop:
                return link
            old, self._link, self._connection = self._connection, None, None
            if old is not None:
                # Closed already, or made on another event loop: give it back to be remade.
                await give_back(self.redis, old)
            connection, transport = await adopt(self.redis)
            self._link = link = _Link(transport, self.deadline)
            self._connection = connection
            return link
