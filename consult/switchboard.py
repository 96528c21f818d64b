"""This web process's part of remote consultation, owned by the app's lifespan.

- **The relay.** Signaling messages between a call's participants travel on the call's
  Redis channel (``keys.call_relay``), so the kiosk and the specialist may be connected
  to different web processes. Each process holds one pattern subscription to every
  call's channel and hands each message to the participants of that call connected
  here (one subscription per process, not one per participant).
- **Timeouts.** Every :data:`SWEEP_SECONDS` it settles the calls whose deadline has
  passed by the app's clock (any number of processes may do this: the scripts are
  atomic and settle a call once).
- **The lease.** It lists the connections it holds in Redis (``keys.switchboard_held``)
  under a lease it renews every third of :data:`LEASE_SECONDS` (real time, not the app's
  clock: it is about the process being alive). A process that dies without closing its
  sockets stops renewing; the sweep of any other process then takes each of its
  connections as closed, through the same ``leave`` script a closing socket runs, so the
  reconnect grace and its timeout apply as usual.
- **Echo peers.** The aiortc peers of kiosks' pre-call checks, closed at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from ..queue import keys
from ..queue.exceptions import QueueError
from ..queue.tickets import QueueClient
from .calls import Calls, Role
from .echo import EchoPeers
from .probe import ProbePeers

log = logging.getLogger(__name__)

#: Seconds between two sweeps for calls whose timeout has passed.
SWEEP_SECONDS = 1.0
#: Messages a participant may have waiting to be sent before it is disconnected.
BACKLOG = 256
#: Seconds a process's lease on its connections lasts without being renewed.
LEASE_SECONDS = 15.0


@dataclass(eq=False)
class Participant:
    """One signaling connection on this process."""

    office: str
    ticket: str
    connection: str
    #: Known once the join script has said who this is.
    role: Role | None = None
    #: Messages for this participant; ``None`` means "the relay was lost: reconnect".
    inbox: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(BACKLOG)
    )
    overflowed: bool = False
    #: Said goodbye (the invited person leaves; the others end the call).
    left: bool = False

    def offer(self, message: dict[str, Any] | None) -> None:
        try:
            self.inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True


def wanted(participant: Participant, envelope: dict[str, Any]) -> bool:
    """Whether a relayed envelope is for this participant."""
    if envelope.get("conn") == participant.connection:
        return False  # its own message
    only = envelope.get("only")
    if only is not None:
        return bool(only == participant.connection)
    to = envelope.get("to")
    if to is not None:
        return participant.role is not None and to == participant.role.value
    return True


class Switchboard:
    def __init__(
        self,
        redis: Redis,
        queue: QueueClient,
        clock: Callable[[], float],
        *,
        sweep_seconds: float = SWEEP_SECONDS,
        retry_seconds: float = 1.0,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.redis = redis
        self.calls = Calls(queue)
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        self.retry_seconds = retry_seconds
        self.lease_seconds = lease_seconds
        self.echoes = EchoPeers()
        self.probes = ProbePeers()
        self.ready = asyncio.Event()
        self._here: dict[tuple[str, str], set[Participant]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._relay(), name="madoguchi-call-relay"),
            asyncio.create_task(self._sweep(), name="madoguchi-call-timeouts"),
            asyncio.create_task(self._heartbeat(), name="madoguchi-call-lease"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_all()
        await self.echoes.close_all()
        await self.probes.close_all()
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
            await self.redis.delete(keys.switchboard_lease(self.id))

    @contextlib.asynccontextmanager
    async def attend(self, participant: Participant) -> AsyncIterator[Participant]:
        """Deliver the call's messages to ``participant`` while the block runs."""
        key = (participant.office, participant.ticket)
        self._here.setdefault(key, set()).add(participant)
        held = f"{participant.office} {participant.ticket} {participant.connection}"
        # Listed before it joins: should this process die, the others find it to let go of.
        await self._hold("sadd", held)
        try:
            yield participant
        finally:
            here = self._here.get(key, set())
            here.discard(participant)
            if not here:
                self._here.pop(key, None)
            await self._hold("srem", held)

    async def _hold(self, command: str, held: str) -> None:
        try:
            await getattr(self.redis, command)(keys.switchboard_held(self.id), held)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("switchboard %s: cannot %s %s (%s)", self.id, command, held, exc)

    async def send(
        self,
        participant: Participant,
        message: dict[str, Any],
        *,
        to: str | None = None,
    ) -> None:
        """Relay ``message`` from ``participant`` to the call's others, on any process."""
        assert participant.role is not None
        envelope = {
            "from": participant.role.value,
            "conn": participant.connection,
            "to": to,
            "message": {**message, "from": participant.role.value},
        }
        channel = keys.call_relay(participant.office, participant.ticket)
        await self.redis.publish(channel, json.dumps(envelope, ensure_ascii=False))

    def deliver(self, office: str, ticket: str, envelope: dict[str, Any]) -> None:
        message = envelope.get("message")
        if not isinstance(message, dict):
            return
        for participant in list(self._here.get((office, ticket), ())):
            if wanted(participant, envelope):
                participant.offer(message)

    def _drop_all(self) -> None:
        for participants in self._here.values():
            for participant in participants:
                participant.offer(None)

    async def _relay(self) -> None:
        while True:
            try:
                await self._tail()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.ready.clear()
                self._drop_all()  # what was said meanwhile is lost: everyone reconnects
                log.warning("call relay lost redis (%s); retrying", exc)
                await asyncio.sleep(self.retry_seconds)

    async def _tail(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(keys.call_relay_pattern())
            self.ready.set()
            while True:
                message = await pubsub.get_message(timeout=30.0)
                if message is None or message.get("type") != "pmessage":
                    continue
                try:
                    office, ticket = keys.call_from_relay(str(message["channel"]))
                    envelope = json.loads(str(message["data"]))
                except ValueError:
                    log.warning("malformed relay message on %s", message.get("channel"))
                    continue
                if isinstance(envelope, dict):
                    self.deliver(office, ticket, envelope)
        finally:
            self.ready.clear()
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.reap()
                await self.calls.expire_due(self.clock())
            except (RedisConnectionError, RedisTimeoutError, OSError, QueueError) as exc:
                log.warning("call timeouts: sweep failed (%s)", exc)

    async def renew(self) -> None:
        """Renew this process's lease on its connections."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.switchboard_lease(self.id), "1", px=int(self.lease_seconds * 1000))
            pipe.sadd(keys.SWITCHBOARDS, self.id)
            await pipe.execute()

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.renew()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("switchboard %s: lease not renewed (%s)", self.id, exc)
            await asyncio.sleep(self.lease_seconds / 3)

    async def reap(self) -> int:
        """Let go of the connections of every process whose lease expired; how many.

        Each goes through the ``leave`` script with the connection's id, which changes
        nothing when that participant has joined again since."""
        released = 0
        for board in sorted(str(b) for b in await self.redis.smembers(keys.SWITCHBOARDS)):
            if board == self.id or await self.redis.exists(keys.switchboard_lease(board)):
                continue
            held = keys.switchboard_held(board)
            for entry in sorted(str(e) for e in await self.redis.smembers(held)):
                office, ticket, connection = entry.split(" ")
                released += await self._release(office, ticket, connection)
                await self.redis.srem(held, entry)
            await self.redis.srem(keys.SWITCHBOARDS, board)
            log.warning("switchboard %s: lease expired; let go of its connections", board)
        return released

    async def _release(self, office: str, ticket: str, connection: str) -> int:
        raw = await self.redis.hgetall(keys.call(office, ticket))
        for role in Role:
            if raw.get(f"{role.value}_conn") == connection:
                try:
                    await self.calls.leave(
                        office, ticket, role, connection=connection, now=self.clock()
                    )
                except QueueError as exc:  # the call is gone meanwhile: nothing to let go of
                    log.info("call %s.%s: no leave for %s (%s)", office, ticket, role, exc)
                    return 0
                return 1
        return 0


def switchboard_of(connection: HTTPConnection) -> Switchboard:
    board: Switchboard = connection.app.state.switchboard
    return board


async def start(app: Starlette) -> None:
    """Start this process's switchboard (the app's lifespan calls this)."""
    state = app.state
    board = Switchboard(
        state.redis, state.queue, state.clock, lease_seconds=state.settings.call_lease_seconds
    )
    state.switchboard = board
    board.start()


async def stop(app: Starlette) -> None:
    """Stop the switchboard and close every echo peer (the app's lifespan calls this)."""
    board: Switchboard | None = getattr(app.state, "switchboard", None)
    if board is not None:
        await board.stop()
