"""The event hub: one subscription per process, every office's events to its listeners."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis
from starlette.types import Message

from madoguchi.embedded import RedisServer, find_redis_server
from madoguchi.queue import keys
from madoguchi.queue.model import Office
from madoguchi.queue.tickets import QueueClient
from madoguchi.web.live import BACKLOG, Broadcast, Dropped, Event, EventHub, parse

from conftest import T0


async def test_listeners_get_their_office_events_with_stream_ids(
    queue: QueueClient, office: Office, aredis: Redis
) -> None:
    hub = EventHub(aredis)
    hub.start()
    try:
        await asyncio.wait_for(hub.connected.wait(), 5)
        async with hub.listen(office.id) as mine, hub.listen("tobata") as other:
            issued = (await queue.issue(office.id, "certs", now=T0)).ticket
            event = await asyncio.wait_for(mine.next(), 5)
            assert event.type == "issued"
            assert event.data["ticket"] == issued.id
            [(last_id, _)] = await aredis.xrevrange(keys.events(office.id), count=1)
            assert event.id == last_id
            assert other.queue.empty()
    finally:
        await hub.stop()


async def test_a_listener_that_falls_behind_is_dropped_not_grown() -> None:
    hub = EventHub(Redis())  # never started: events are handed over by hand
    async with hub.listen("moji") as listener:
        for n in range(BACKLOG + 5):
            hub.publish_locally(Event(f"{n}-0", "moji", {"type": "issued"}))
        drained = 0
        try:
            while True:
                await asyncio.wait_for(listener.next(), 1)
                drained += 1
        except Dropped:
            pass
        assert drained < BACKLOG
    await hub.redis.aclose()


async def test_the_hub_resubscribes_after_redis_restarts(tmp_path: Path) -> None:
    server = RedisServer(find_redis_server(), tmp_path, fsync="everysec")
    server.start()
    client = Redis.from_url(server.url, decode_responses=True)
    hub = EventHub(client, retry_seconds=0.1)
    hub.start()
    try:
        await asyncio.wait_for(hub.connected.wait(), 5)
        server.kill()
        await asyncio.sleep(0.3)
        server.start()
        async with hub.listen("moji") as listener:
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                await client.publish(keys.live("moji"), '1-0 {"type": "ping"}')
                try:
                    event = await asyncio.wait_for(listener.next(), 0.2)
                except TimeoutError:
                    assert asyncio.get_running_loop().time() < deadline
                else:
                    break
            assert event.type == "ping"
    finally:
        await hub.stop()
        await client.aclose()
        server.stop()


def test_malformed_messages_are_ignored() -> None:
    assert parse(keys.live("moji"), "1-0 not json") is None
    assert parse("elsewhere", '1-0 {"type": "x"}') is None
    assert parse(keys.live("moji"), "1-0 [1]") is None
    event = parse(keys.live("moji"), '1-0 {"type": "issued"}')
    assert event == Event("1-0", "moji", {"type": "issued"})


async def test_a_broadcast_that_says_its_last_ends_every_response() -> None:
    broadcast = Broadcast()
    written: dict[str, list[tuple[bytes, bool]]] = {"early": [], "slow": [], "late": []}
    caught_up = asyncio.Event()

    def writer(name: str) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            if name == "slow" and message["body"] == b"1":
                await caught_up.wait()  # its buffer is full for a while
            written[name].append((message["body"], message["more_body"]))

        return send

    broadcast.attach(writer("early"), 0)
    broadcast.attach(writer("slow"), 0)
    broadcast.publish(b"1", b"all of 1")
    # A comment goes to the idle ones only, and is no new state.
    broadcast.ping(b": keep-alive\n\n")
    assert broadcast.version == 1
    broadcast.publish(b"2", b"all of 2", last=True)
    assert written["early"] == [(b"1", True), (b": keep-alive\n\n", True), (b"2", False)]
    assert len(broadcast) == 1  # the slow one, still writing
    caught_up.set()
    for _ in range(10):
        await asyncio.sleep(0)
    # It caught up with the whole state, which ends its response too.
    assert written["slow"] == [(b"1", True), (b"all of 2", False)]
    assert len(broadcast) == 0
    # Nothing more is written; one that comes later gets the whole state, and the end.
    broadcast.ping(b": keep-alive\n\n")
    broadcast.attach(writer("late"), 0)
    assert written["late"] == [(b"all of 2", False)]
    assert len(written["early"]) == 3
