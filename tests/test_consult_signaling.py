"""Signaling through real WebSockets: two web processes (uvicorn) on one Redis, real
aiortc peers as the kiosk and the specialist, media flowing both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import uvicorn
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from madoguchi.consult.calls import Call, Calls, Role
from madoguchi.consult.signaling import (
    BURST,
    MAX_BYTES,
    Invalid,
    TokenBucket,
    quality_level,
    validate,
)
from madoguchi.kiosk.devices import Kiosk, KioskStore
from madoguchi.queue import keys
from madoguchi.queue.model import Office, Service, ServiceMode
from madoguchi.settings import Settings
from madoguchi.web.app import create_app
from madoguchi.web.http import HttpToolsProtocol

from conftest import T0, make_account

TIMEOUT = 20.0


# -- the servers and the people ----------------------------------------------------------


@dataclass
class Server:
    app: Starlette
    port: int

    @property
    def calls(self) -> Calls:
        calls: Calls = self.app.state.switchboard.calls
        return calls

    def url(self, call: str) -> str:
        return f"ws://127.0.0.1:{self.port}/consult/ws/{call}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def advance(self, seconds: float) -> None:
        self.app.state.offset += seconds


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Server]:
    """A web process: the whole app under uvicorn on a free port, its clock at T0 + offset."""
    app = create_app(settings, clock=lambda: T0 + app.state.offset)
    app.state.offset = 0.0
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", http=HttpToolsProtocol, ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.02)
    try:
        yield Server(app, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
        sock.close()


@pytest.fixture
async def one(settings: Settings, office: Office) -> AsyncIterator[Server]:
    async with serving(settings) as server:
        yield server


@pytest.fixture
async def two(settings: Settings, office: Office) -> AsyncIterator[Server]:
    async with serving(settings) as server:
        yield server


async def kiosk_token(redis: Redis, kiosk_id: str, office: str = "kokurakita") -> str:
    store = KioskStore(redis)
    await store.put(
        Kiosk(kiosk_id, office, "足原市民センター", "1F", (), ("care",), ("face", "document"))
    )
    code = await store.issue_code(kiosk_id, T0)
    return (await store.enroll(code, T0))[1]


async def staff_session(server: Server, redis: Redis, username: str, **kw: Any) -> str:
    await make_account(redis, username, **kw)
    session = await server.app.state.sessions.create(username, now=T0)
    return str(session.id)


@dataclass
class World:
    redis: Redis
    kiosk: str
    other_kiosk: str
    clerk: str
    outsider: str


@pytest.fixture
async def world(aredis: Redis, one: Server) -> World:
    return World(
        aredis,
        kiosk=await kiosk_token(aredis, "k1"),
        other_kiosk=await kiosk_token(aredis, "k2"),
        clerk=await staff_session(one, aredis, "clerk", services=("care",)),
        outsider=await staff_session(one, aredis, "outsider", services=("certs",)),
    )


@dataclass
class Client:
    """One participant's WebSocket; each message waits until a test asks for its kind."""

    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None

    async def _gather(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                async with self.arrived:
                    self.messages.append(json.loads(raw))
                    self.arrived.notify_all()

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The first message of ``kind`` (with ``fields``) not taken yet; earlier messages
        of other kinds stay for whoever asks for them."""

        def first() -> dict[str, Any] | None:
            for message in self.messages:
                if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                    self.messages.remove(message)
                    return message
            return None

        async with asyncio.timeout(TIMEOUT), self.arrived:
            while (found := first()) is None:
                await self.arrived.wait()
            return found

    async def closed(self) -> tuple[int, str]:
        async with asyncio.timeout(TIMEOUT):
            await self.ws.wait_closed()
        assert self.ws.close_code is not None
        return self.ws.close_code, self.ws.close_reason or ""


@contextlib.asynccontextmanager
async def joining(
    server: Server, call: str, *, kiosk: str = "", session: str = "", origin: str | None = None
) -> AsyncIterator[Client]:
    cookies = []
    if kiosk:
        cookies.append(f"madoguchi-kiosk={kiosk}")
    if session:
        cookies.append(f"madoguchi={session}")
    headers = {"Cookie": "; ".join(cookies)} if cookies else {}
    async with connect(
        server.url(call),
        origin=origin or server.origin,  # type: ignore[arg-type]
        additional_headers=headers,
        proxy=None,
        max_size=4 * MAX_BYTES,
    ) as ws:
        client = Client(ws)
        client.task = asyncio.create_task(client._gather())
        try:
            yield client
        finally:
            await ws.close()
            await client.task


async def refused(server: Server, call: str, **kw: Any) -> tuple[int, str]:
    async with joining(server, call, **kw) as client:
        return await client.closed()


async def raised(server: Server, kiosk: str = "k1") -> Call:
    return await server.calls.request("kokurakita", kiosk, "care", now=T0)


# -- the message rules -------------------------------------------------------------------


def test_validation_keeps_only_known_fields() -> None:
    offer = validate({"type": "offer", "sdp": "v=0\r\n", "to": "kiosk"}, Role.SPECIALIST)
    assert offer == {"type": "offer", "sdp": "v=0\r\n", "to": "kiosk"}
    assert validate({"type": "quality", "loss": 0.1, "rtt": 50}, Role.KIOSK)["level"] == "poor"
    assert validate({"type": "chat", "text": "こんにちは"}, Role.KIOSK)["text"] == "こんにちは"
    mark = validate({"type": "mark", "points": [[0.1, 0.2]], "label": "ここ"}, Role.SPECIALIST)
    assert mark["points"] == [[0.1, 0.2]]


@pytest.mark.parametrize(
    ("message", "role", "says"),
    [
        ([], Role.KIOSK, "JSON object"),
        ({"type": "shout"}, Role.KIOSK, "unknown message type"),
        ({"type": 7}, Role.KIOSK, "unknown message type"),
        ({"type": "offer", "sdp": "hello"}, Role.KIOSK, "session description"),
        ({"type": "offer", "sdp": "v=0", "extra": 1}, Role.KIOSK, "unknown field"),
        ({"type": "offer", "sdp": "v=0", "to": "kiosk"}, Role.KIOSK, "another participant"),
        ({"type": "candidate", "candidate": "x"}, Role.KIOSK, "ICE candidate"),
        ({"type": "candidate", "candidate": "", "sdpMLineIndex": 1.5}, Role.KIOSK, "whole"),
        ({"type": "chat", "text": " "}, Role.KIOSK, "empty"),
        ({"type": "chat", "text": "a\x00b"}, Role.KIOSK, "control"),
        ({"type": "chat", "text": "x" * 1001}, Role.KIOSK, "longer"),
        ({"type": "mark", "points": [[0.5, 0.5]]}, Role.KIOSK, "may not send"),
        ({"type": "mark", "points": [[2, 0.5]]}, Role.SPECIALIST, "from 0 to 1"),
        ({"type": "mark", "points": []}, Role.SPECIALIST, "1 to 256"),
        ({"type": "form", "form": "../etc"}, Role.SPECIALIST, "form id"),
        ({"type": "quality", "loss": float("nan"), "rtt": 1}, Role.KIOSK, "number"),
        ({"type": "quality", "loss": True, "rtt": 1}, Role.KIOSK, "number"),
        ({"type": "restart", "renegotiate": "yes"}, Role.KIOSK, "true or false"),
        ({"type": "snapshot-request", "camera": "ceiling"}, Role.SPECIALIST, "document"),
    ],
)
def test_malformed_messages_are_refused(message: Any, role: Role, says: str) -> None:
    with pytest.raises(Invalid, match=says):
        validate(message, role)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "sdp",
        "candidate",
        "sdpMid",
        "sdpMLineIndex",
        "usernameFragment",
        "renegotiate",
        "text",
        "points",
        "label",
        "clear",
        "camera",
        "form",
        "title",
        "loss",
        "rtt",
        "fps",
        "to",
        "x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(
        [
            "offer",
            "answer",
            "candidate",
            "restart",
            "chat",
            "mark",
            "form",
            "snapshot-request",
            "quality",
            "bye",
            "other",
        ]
    )
    | JSON,
    body=st.dictionaries(FIELDS, JSON, max_size=5),
    role=st.sampled_from(list(Role)),
)
def test_no_message_breaks_the_validator(kind: Any, body: dict[str, Any], role: Role) -> None:
    """A fuzzer's worth of messages: each is either refused as invalid or comes out clean."""
    try:
        clean = validate({**body, "type": kind}, role)
    except Invalid:
        return
    assert clean["type"] == kind
    json.dumps(clean, allow_nan=False)  # what is relayed is plain JSON


def test_quality_levels() -> None:
    assert quality_level(0.0, 40, 30) == "good"
    assert quality_level(0.03, 40, 30) == "fair"
    assert quality_level(0.0, 900, 30) == "poor"
    assert quality_level(0.0, 40, 5) == "poor"


def test_the_token_bucket() -> None:
    bucket = TokenBucket(burst=3, rate=1, tokens=3)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(101.0)
    assert not bucket.take(101.0)


# -- who may join --------------------------------------------------------------------------


async def test_only_the_participants_may_join(one: Server, world: World) -> None:
    call = await raised(one)
    assert await refused(one, call.id, kiosk=world.other_kiosk) == (
        4403,
        f"you are not a participant of consultation {call.number}",
    )
    assert (await refused(one, call.id))[0] == 4401  # signed out
    assert await refused(one, call.id, kiosk="forged-token") == (
        4401,
        "this kiosk is not enrolled, or its enrollment was revoked",
    )
    # Nobody accepted it yet: not even a clerk who serves the topic.
    assert (await refused(one, call.id, session=world.clerk))[0] == 4403
    await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    assert (await refused(one, call.id, session=world.outsider))[0] == 4403
    code, reason = await refused(one, call.id, kiosk=world.kiosk, origin="https://evil.example")
    assert (code, reason) == (4403, "connections from other sites are refused")
    assert (await refused(one, "kokurakita.99999999", kiosk=world.kiosk))[0] == 4404
    assert (await refused(one, "nonsense", kiosk=world.kiosk))[0] == 4404
    async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
        welcome = await kiosk.expect("welcome")
        assert welcome["role"] == "kiosk"
        assert welcome["state"]["state"] == "ringing"
        assert welcome["iceServers"] == []


async def test_a_kiosk_of_another_office_is_refused(one: Server, world: World) -> None:
    call = await raised(one)
    token = await kiosk_token(world.redis, "m1", office="moji")
    code, reason = await refused(one, call.id, kiosk=token)
    assert code == 4403
    assert "moji" in reason


# -- bad input -------------------------------------------------------------------------------


async def test_oversize_and_flooding_are_refused(one: Server, world: World) -> None:
    call = await raised(one)
    async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
        await kiosk.expect("welcome")
        await kiosk.send(type="chat", text="x" * 10, padding="y" * MAX_BYTES)
        assert await kiosk.closed() == (1009, f"a message may be at most {MAX_BYTES} bytes")
    async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
        await kiosk.expect("welcome")
        for _ in range(BURST * 3):
            await kiosk.ws.send(json.dumps({"type": "quality", "loss": 0, "rtt": 10}))
        code, reason = await kiosk.closed()
        assert code == 1008
        assert reason.startswith("too many messages")
    async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
        await kiosk.expect("welcome")
        await kiosk.ws.send(b"\x00\x01")
        assert (await kiosk.closed())[0] == 1003


async def test_malformed_messages_are_answered_and_the_call_goes_on(
    one: Server, two: Server, world: World
) -> None:
    call = await raised(one)
    await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    async with (
        joining(one, call.id, kiosk=world.kiosk) as kiosk,
        joining(two, call.id, session=world.clerk) as clerk,
    ):
        await kiosk.expect("state", state="connected")
        for junk in ("{", "[]", '{"type": "offer"}', '{"type": "chat", "text": 5}', "null"):
            await kiosk.ws.send(junk)
            assert (await kiosk.expect("error"))["code"] == "invalid"
        await kiosk.send(type="chat", text="聞こえますか")
        chat = await clerk.expect("chat")
        assert chat == {"type": "chat", "text": "聞こえますか", "from": "kiosk"}
        await clerk.send(type="mark", points=[[0.2, 0.3], [0.4, 0.5]], label="ここに書いてください")
        assert (await kiosk.expect("mark"))["label"] == "ここに書いてください"
        await clerk.send(type="form", form="kaigo-shinsei", title="介護保険 要介護認定申請書")
        assert (await kiosk.expect("form"))["form"] == "kaigo-shinsei"
        await kiosk.send(type="quality", loss=0.0, rtt=35.0, fps=29.5)
        assert (await clerk.expect("quality"))["level"] == "good"


def junk(rng: random.Random, depth: int = 0) -> Any:
    """Something JSON can say, often almost a valid message."""
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False, 0, -1, 10**30, 1e308, 0.5])
    if pick == 2:
        return "".join(rng.choice("v=0 \r\n\x00candidate:{}<>\u3042") for _ in range(8))
    if pick == 3:
        return rng.choice(["offer", "answer", "candidate", "chat", "mark", "form", "kiosk"])
    if pick in (4, 5):
        return rng.choice([[rng.random(), rng.random()], [], "", "v=0"])
    if pick == 6:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    fields = ["type", "sdp", "text", "points", "to", "candidate", "loss", "rtt", "form", "x"]
    return {rng.choice(fields): junk(rng, depth + 1) for _ in range(rng.randrange(5))}


async def test_a_fuzzer_does_not_break_the_call(one: Server, two: Server, world: World) -> None:
    call = await raised(one)
    await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    rng = random.Random(5)
    async with (
        joining(one, call.id, kiosk=world.kiosk) as kiosk,
        joining(two, call.id, session=world.clerk) as clerk,
    ):
        await clerk.expect("state", state="connected")
        for _ in range(100):
            message = junk(rng)
            if isinstance(message, dict) and rng.random() < 0.5:
                message["type"] = rng.choice(["offer", "chat", "mark", "quality", "candidate"])
            await clerk.ws.send(json.dumps(message))
        await clerk.send(type="chat", text="still here")
        assert (await kiosk.expect("chat", text="still here"))["from"] == "specialist"
        state = await one.calls.get("kokurakita", call.ticket)
        assert state.state.value == "connected"


# -- timeouts ----------------------------------------------------------------------------------


async def test_a_vanished_kiosk_ends_the_call_for_the_specialist(
    one: Server, two: Server, world: World
) -> None:
    call = await raised(one)
    await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    async with joining(two, call.id, session=world.clerk) as clerk:
        async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
            await kiosk.expect("state", state="connected")
            await clerk.expect("state", state="connected")
        # The kiosk's connection is gone (a power cut looks the same to the server).
        state = await clerk.expect("state", state="reconnecting")
        assert state["reason"] == "kiosk_left"
        assert state["present"] == {"kiosk": False, "specialist": True, "guest": False}
        two.advance(31)
        one.advance(31)
        ended = await clerk.expect("state", state="ended")
        assert ended["reason"] == "kiosk_lost"
        assert await clerk.closed() == (1000, "the consultation ended (kiosk_lost)")


async def test_a_specialist_who_never_joins_puts_the_resident_back(
    one: Server, world: World
) -> None:
    call = await raised(one)
    async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
        await kiosk.expect("welcome")
        await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
        await kiosk.expect("state", state="ringing")
        one.advance(40)
        back = await kiosk.expect("state", reason="unanswered")
        assert back["state"] == "waiting"
        assert back["specialist"] == ""


async def test_joining_again_replaces_the_old_connection(one: Server, world: World) -> None:
    call = await raised(one)
    async with joining(one, call.id, kiosk=world.kiosk) as first:
        await first.expect("welcome")
        async with joining(one, call.id, kiosk=world.kiosk) as second:
            await second.expect("welcome")
            assert await first.closed() == (4409, "joined again from another connection")
            state = await one.calls.get("kokurakita", call.ticket)
            assert Role.KIOSK in state.present


# -- media through the signaling server --------------------------------------------------------


class Received:
    """Frames of each kind a peer receives."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.tasks: list[asyncio.Task[None]] = []

    def follow(self, track: MediaStreamTrack) -> None:
        async def pull() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    self.frames[track.kind] += 1

        self.tasks.append(asyncio.create_task(pull()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` (media state has no event to wait on), failing after a while."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"not seen within {TIMEOUT} s: {what}")


def media_peer(received: Received) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(VideoStreamTrack())
    pc.addTrack(AudioStreamTrack())
    pc.on("track", received.follow)
    return pc


async def answer_offers(client: Client, pc: RTCPeerConnection) -> None:
    """The kiosk's side: answer each offer the specialist makes."""
    while True:
        offer = await client.expect("offer")
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await client.send(type="answer", sdp=pc.localDescription.sdp, to="specialist")


async def test_two_aiortc_peers_talk_through_two_web_processes(
    one: Server, two: Server, world: World
) -> None:
    call = await raised(one)
    kiosk_media, clerk_media = Received(), Received()
    kiosk_pc, clerk_pc = media_peer(kiosk_media), media_peer(clerk_media)
    answering: asyncio.Task[None] | None = None
    try:
        async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
            await kiosk.expect("welcome")
            answering = asyncio.create_task(answer_offers(kiosk, kiosk_pc))
            await two.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 30)
            await kiosk.expect("state", state="ringing")
            async with joining(two, call.id, session=world.clerk) as clerk:
                welcome = await clerk.expect("welcome")
                assert welcome["role"] == "specialist"
                await clerk.expect("state", state="connected")
                await kiosk.expect("state", state="connected")
                await clerk_pc.setLocalDescription(await clerk_pc.createOffer())
                await clerk.send(type="offer", sdp=clerk_pc.localDescription.sdp, to="kiosk")
                answer = await clerk.expect("answer")
                assert answer["from"] == "kiosk"
                await clerk_pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
                await until(
                    lambda: kiosk_pc.connectionState == clerk_pc.connectionState == "connected",
                    "both peers connected",
                )
                await until(
                    lambda: min(*kiosk_media.frames.values(), *clerk_media.frames.values()) >= 10,
                    "audio and video both ways",
                )
                await clerk.send(type="bye")
                ended = await kiosk.expect("state", state="ended")
                assert ended["reason"] == "completed"
                assert await kiosk.closed() == (1000, "the consultation ended (completed)")
                assert (await clerk.closed())[0] == 1000
    finally:
        if answering is not None:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await answering
        await kiosk_media.stop()
        await clerk_media.stop()
        await kiosk_pc.close()
        await clerk_pc.close()
    record = await one.calls.get("kokurakita", call.ticket)
    assert record.record()["outcome"] == "completed"
    assert record.talked >= 0


async def test_a_third_participant_and_addressing(one: Server, two: Server, world: World) -> None:
    call = await raised(one)
    interpreter = await staff_session(one, world.redis, "interpreter", services=())
    await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    async with (
        joining(one, call.id, kiosk=world.kiosk) as kiosk,
        joining(two, call.id, session=world.clerk) as clerk,
    ):
        await clerk.expect("state", state="connected")
        assert (await refused(two, call.id, session=interpreter))[0] == 4403  # not invited yet
        await one.calls.invite("kokurakita", call.ticket, "clerk", "interpreter", now=T0 + 2)
        async with joining(two, call.id, session=interpreter) as guest:
            assert (await guest.expect("welcome"))["role"] == "guest"
            await kiosk.expect("joined", role="guest")
            await kiosk.send(type="chat", text="通訳をお願いします")
            assert (await guest.expect("chat"))["from"] == "kiosk"
            assert (await clerk.expect("chat"))["text"] == "通訳をお願いします"
            await guest.send(type="offer", sdp="v=0\r\n", to="kiosk")
            assert (await kiosk.expect("offer"))["from"] == "guest"
            await guest.send(type="chat", text="only for the specialist", to="specialist")
            await clerk.expect("chat", text="only for the specialist")
            await guest.send(type="bye")  # the guest leaves; the call goes on
            assert (await guest.closed())[0] == 1000
            await kiosk.expect("left", role="guest")
            after = await one.calls.get("kokurakita", call.ticket)
            assert (after.state.value, after.guest) == ("connected", "")
        assert not [m for m in kiosk.messages if m.get("text") == "only for the specialist"]
        # A transfer sends the resident back to the queue, and the specialist away.
        pension = Service("pension", "P", "国保・年金", "Pension", mode=ServiceMode.REMOTE)
        await one.app.state.queue.put_service("kokurakita", pension, now=T0)
        await two.calls.transfer("kokurakita", call.ticket, "clerk", "pension", now=T0 + 3)
        code, reason = await clerk.closed()
        assert (code, reason) == (4410, "the consultation went back to the queue (transferred)")
        waiting = await kiosk.expect("state", reason="transferred")
        assert (waiting["state"], waiting["service"]) == ("waiting", "pension")


async def test_the_call_survives_the_kiosk_reconnecting(
    one: Server, two: Server, world: World
) -> None:
    """A network cut: the kiosk's connection drops and comes back; the specialist offers
    afresh (aiortc cannot restart ICE, so a new peer connection) and media flows again,
    nobody re-dialling."""
    call = await raised(one)
    await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
    peers: list[RTCPeerConnection] = []
    received: list[Received] = []
    tasks: list[asyncio.Task[None]] = []

    async def connect_media(kiosk: Client, clerk: Client) -> tuple[Received, Received]:
        kiosk_media, clerk_media = Received(), Received()
        kiosk_pc, clerk_pc = media_peer(kiosk_media), media_peer(clerk_media)
        peers.extend((kiosk_pc, clerk_pc))
        received.extend((kiosk_media, clerk_media))
        tasks.append(asyncio.create_task(answer_offers(kiosk, kiosk_pc)))
        await clerk_pc.setLocalDescription(await clerk_pc.createOffer())
        await clerk.send(type="offer", sdp=clerk_pc.localDescription.sdp, to="kiosk")
        answer = await clerk.expect("answer")
        await clerk_pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await until(
            lambda: min(*kiosk_media.frames.values(), *clerk_media.frames.values()) >= 5,
            "media both ways",
        )
        return kiosk_media, clerk_media

    try:
        async with joining(two, call.id, session=world.clerk) as clerk:
            async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
                await clerk.expect("state", state="connected")
                await connect_media(kiosk, clerk)
            await clerk.expect("state", state="reconnecting")
            for task in tasks:
                task.cancel()
            one.advance(10)  # within the 30 s the kiosk has to come back
            async with joining(one, call.id, kiosk=world.kiosk) as kiosk:
                back = await clerk.expect("state", state="connected")
                assert back["reason"] == "kiosk_joined"
                await clerk.send(type="restart", renegotiate=True, to="kiosk")
                assert (await kiosk.expect("restart"))["renegotiate"] is True
                await connect_media(kiosk, clerk)
                record = await one.calls.get("kokurakita", call.ticket)
                assert record.state.value == "connected"
                assert record.connected_at == T0  # the first connection, not the second
    finally:
        for task in tasks:
            task.cancel()
        for media in received:
            await media.stop()
        for pc in peers:
            await pc.close()


# -- a web process that dies without closing its sockets -----------------------------------


async def test_the_participants_of_a_dead_process_are_let_go(
    settings: Settings, office: Office, aredis: Redis
) -> None:
    """A process stops renewing its lease (it crashed: its sockets never closed); another
    process's sweep takes its kiosk as gone, and the call times out as usual."""
    quick = replace(settings, call_lease_seconds=1.0)
    async with serving(quick) as one, serving(quick) as two:
        kiosk = await kiosk_token(aredis, "k1")
        clerk = await staff_session(one, aredis, "clerk", services=("care",))
        call = await raised(one)
        await one.calls.accept("kokurakita", "clerk", ("care",), now=T0 + 1)
        async with (
            joining(two, call.id, session=clerk) as specialist,
            joining(one, call.id, kiosk=kiosk) as device,
        ):
            await device.expect("state", state="connected")
            await specialist.expect("state", state="connected")
            # The crash: one's relay, sweep and heartbeat stop; its sockets stay open.
            board = one.app.state.switchboard
            for task in board._tasks:
                task.cancel()
            await asyncio.gather(*board._tasks, return_exceptions=True)
            held = await aredis.smembers(keys.switchboard_held(board.id))
            assert len(held) == 1  # the kiosk's connection
            state = await specialist.expect("state", state="reconnecting")
            assert state["reason"] == "kiosk_left"
            assert state["present"]["kiosk"] is False
            assert not await aredis.exists(keys.switchboard_held(board.id))
            assert board.id not in await aredis.smembers(keys.SWITCHBOARDS)
            two.advance(31)
            ended = await specialist.expect("state", state="ended")
            assert ended["reason"] == "kiosk_lost"


async def test_a_living_process_keeps_its_participants(
    settings: Settings, office: Office, aredis: Redis
) -> None:
    quick = replace(settings, call_lease_seconds=1.0)
    async with serving(quick) as one, serving(quick) as two:
        kiosk = await kiosk_token(aredis, "k1")
        call = await raised(one)
        async with joining(one, call.id, kiosk=kiosk) as device:
            await device.expect("welcome")
            await asyncio.sleep(2.5)  # beyond the lease: renewed meanwhile
            assert await two.app.state.switchboard.reap() == 0
            assert (await two.calls.get("kokurakita", call.ticket)).present == {Role.KIOSK}
