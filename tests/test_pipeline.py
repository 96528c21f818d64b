"""The queue scripts' shared connection, and the event hub's subscription read the same way."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from madoguchi.embedded import RedisServer, find_redis_server
from madoguchi.queue import keys, tickets
from madoguchi.queue.model import Office
from madoguchi.queue.pipeline import ScriptPipe, pack
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web import live
from madoguchi.web.live import EventHub

from conftest import OFFICE, SERVICES, T0

MOJI = Office("moji", "門司区役所", "Moji Ward Office")
ECHO = "return ARGV[1] .. '@' .. KEYS[1]"
#: Busy for ARGV[1] milliseconds of Redis's clock, then answers.
SLOW = """
local t = redis.call('TIME')
local until_us = t[1] * 1e6 + t[2] + ARGV[1] * 1000
repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= until_us
return 'slept'
"""


def test_commands_are_packed_in_the_redis_protocol() -> None:
    assert pack("EVALSHA", "ab", "1", "k", "小倉") == (
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n$6\r\n\xe5\xb0\x8f\xe5\x80\x89\r\n"
    )


def in_use(redis: Redis) -> int:
    return len(redis.connection_pool._in_use_connections)  # type: ignore[attr-defined]


async def test_concurrent_runs_each_get_their_own_reply_on_one_connection(aredis: Redis) -> None:
    sha = await aredis.script_load(ECHO)
    pipe = ScriptPipe(aredis, deadline=5.0)
    replies = await asyncio.gather(*(pipe.evalsha(sha, f"k{n % 7}", [str(n)]) for n in range(500)))
    assert [bytes(r).decode() for r in replies] == [f"{n}@k{n % 7}" for n in range(500)]
    assert in_use(aredis) == 1


async def test_an_error_reaches_its_caller_only(aredis: Redis) -> None:
    sha = await aredis.script_load(ECHO)
    failing = await aredis.script_load("return redis.error_reply('NOPE ' .. ARGV[1])")
    pipe = ScriptPipe(aredis, deadline=5.0)
    good, bad, after = await asyncio.gather(
        pipe.evalsha(sha, "k", ["a"]),
        pipe.evalsha(failing, "k", ["b"]),
        pipe.evalsha(sha, "k", ["c"]),
        return_exceptions=True,
    )
    assert good == b"a@k"
    assert isinstance(bad, ResponseError)
    assert "NOPE b" in str(bad)
    assert after == b"c@k"


async def test_a_reply_that_comes_after_its_caller_gave_up_goes_to_nobody(aredis: Redis) -> None:
    sha = await aredis.script_load(ECHO)
    slow = await aredis.script_load(SLOW)
    pipe = ScriptPipe(aredis, deadline=5.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pipe.evalsha(slow, "k", ["300"]), 0.05)
    # The late "slept" is read and dropped; the next caller gets its own reply.
    assert await pipe.evalsha(sha, "k", ["next"]) == b"next@k"


async def test_a_flushed_script_cache_is_reloaded(queue: QueueClient, aredis: Redis) -> None:
    await queue.put_office(OFFICE, now=T0)
    await aredis.script_flush()
    await queue.put_service(OFFICE.id, SERVICES[0], now=T0)
    issued = await queue.issue(OFFICE.id, SERVICES[0].id, now=T0)
    assert issued.ticket.number == "A-001"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to kill and stop."""
    server = RedisServer(find_redis_server(), tmp_path, fsync="everysec")
    server.start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def moji_queue(
    server: RedisServer, **options: Any
) -> AsyncIterator[tuple[Redis, QueueClient]]:
    """A client of ``server`` (with ``options``) and its queue, with the office ``moji``."""
    client = Redis.from_url(server.url, decode_responses=True, **options)
    queue = QueueClient(client, Settings(redis_url=server.url))
    try:
        await queue.put_office(MOJI, now=T0)
        await queue.put_service(MOJI.id, SERVICES[0], now=T0)
        yield client, queue
    finally:
        await client.aclose()


async def test_redis_restarts_fail_what_was_sent_and_are_recovered_from(
    own_server: RedisServer,
) -> None:
    # Reconnecting as the web process's client does (its other commands use the pool).
    async with moji_queue(own_server, retry=Retry(NoBackoff(), 1)) as (client, queue):
        for restart in range(3):
            issued = await queue.issue(MOJI.id, SERVICES[0].id, now=T0)
            assert issued.ticket.number == f"A-{restart + 1:03d}"  # kept by the AOF
            sha = await client.script_load(SLOW)
            slow = asyncio.ensure_future(queue._pipe.evalsha(sha, "k", ["2000"]))
            await asyncio.sleep(0.2)
            own_server.kill()
            with pytest.raises(RedisConnectionError):
                await slow  # written, then the connection went: not sent again
            with pytest.raises(RedisConnectionError):
                await queue.issue(MOJI.id, SERVICES[0].id, now=T0)  # nobody to connect to
            own_server.start()
        # Each lost connection went back to the pool: one in use, not one per restart.
        await queue.issue(MOJI.id, SERVICES[0].id, now=T0)
        assert in_use(client) == 1


async def test_the_hub_finds_a_silent_connection_and_subscribes_again(
    own_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEALTH_SECONDS", 0.3)
    server = own_server
    assert server.process is not None
    client = Redis.from_url(server.url, decode_responses=True)
    hub = EventHub(client, retry_seconds=0.1)
    hub.start()
    try:
        await asyncio.wait_for(hub.connected.wait(), 5)
        first = hub.generation
        server.process.send_signal(signal.SIGSTOP)  # the connection stays open, but silent
        try:
            async with asyncio.timeout(5):
                while hub.connected.is_set():  # noqa: ASYNC110  # the hub clears, never sets, it
                    await asyncio.sleep(0.05)
        finally:
            server.process.send_signal(signal.SIGCONT)
        await asyncio.wait_for(hub.connected.wait(), 5)
        assert hub.generation == first + 1
        async with hub.listen("moji") as listener:
            await client.publish(keys.live("moji"), '1-0 {"type": "issued"}')
            event = await asyncio.wait_for(listener.next(), 5)
        assert (event.id, event.type) == ("1-0", "issued")
    finally:
        await hub.stop()
        await client.aclose()


async def test_a_failing_watcher_does_not_end_the_subscription(
    aredis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    hub = EventHub(aredis)
    seen: list[str] = []

    def broken(event: live.Event) -> None:
        seen.append(event.id)
        if event.id == "1-0":
            raise RuntimeError("a watcher's bug")

    hub.start()
    try:
        await asyncio.wait_for(hub.connected.wait(), 5)
        with hub.watch(broken):
            async with hub.listen("moji") as listener:
                for n in (1, 2):
                    await aredis.publish(keys.live("moji"), f'{n}-0 {{"type": "issued"}}')
                assert (await asyncio.wait_for(listener.next(), 5)).id == "1-0"
                assert (await asyncio.wait_for(listener.next(), 5)).id == "2-0"
        assert seen == ["1-0", "2-0"]
        assert "a watcher's bug" in caplog.text
    finally:
        await hub.stop()


async def test_an_overdue_reply_closes_the_connection_and_the_next_run_makes_a_new_one(
    own_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tickets, "SCRIPT_TIMEOUT", 0.3)
    assert own_server.process is not None
    async with moji_queue(own_server, socket_connect_timeout=0.5) as (_, queue):
        first = queue._pipe._link if queue._pipe else None
        own_server.process.send_signal(signal.SIGSTOP)  # silent: the connection stays open
        try:
            with pytest.raises(RedisTimeoutError, match=r"within 0\.3 s"):
                await queue.issue(MOJI.id, SERVICES[0].id, now=T0)
            assert first is not None
            assert first.lost
        finally:
            own_server.process.send_signal(signal.SIGCONT)
        # The overdue run may have been executed once Redis woke; either way the queue goes on.
        issued = await queue.issue(MOJI.id, SERVICES[0].id, now=T0)
        assert issued.ticket.number in {"A-001", "A-002"}
        assert queue._pipe is not None
        assert queue._pipe._link is not first
