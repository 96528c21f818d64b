"""A consultation at the kiosk in real Chromium (fake camera and microphone, two cameras),
with the specialist a real aiortc peer joined through the signaling server with a staff
session: topic → waiting → the specialist accepts and offers → media both ways (frames
decoded in the page, frames received by aiortc) → chat both ways → a document still,
a mark and a form reach the kiosk → the specialist ends → five faces → back at the start.

The specialist runs on an event loop of its own, in a thread (Playwright's sync API holds
this thread's loop); each step waits for what it needs with a generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import threading
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from playwright.sync_api import Browser, Page, expect
from pypdf import PdfReader
from redis.asyncio import Redis
from test_consult_signaling import Client, Received, until
from websockets.asyncio.client import connect

from madoguchi.consult.calls import Calls
from madoguchi.consult.forms import FormsLibrary, sample_pdf
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import Role
from madoguchi.web.sessions import SessionStore

from .conftest import LiveServer, Restartable, assert_accessible, run_async
from .test_kiosk_screens import LANGUAGES, enroll, in_redis, kiosk_context, strict
from kiosks import ASAHARA

T = TypeVar("T")
TIMEOUT = 30.0
WAIT_MS = 30_000
#: Every RTCPeerConnection the page makes, and the video frames decoded over all of them
#: (``window.__decoded``) and by the newest (``window.__latest``), from getStats() four
#: times a second.
PEERS = """
window.__peers = [];
window.__decoded = 0;
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.__peers.push(this); }
};
setInterval(async () => {
  let frames = 0;
  for (const pc of window.__peers) {
    if (pc.connectionState === "closed") continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
  }
  window.__decoded = frames;
  const last = window.__peers.at(-1);
  let latest = 0;
  if (last) {
    (await last.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") latest += s.framesDecoded || 0;
    });
  }
  window.__latest = latest;
}, 250);
"""


class Loop:
    """An event loop in a thread of its own, for the aiortc specialist."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Awaitable[T], timeout: float = TIMEOUT) -> T:
        async def wrapped() -> T:
            return await work

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Specialist:
    """The staff end of the call: an aiortc peer on the call's signaling socket."""

    def __init__(self, port: int, call: str, session: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/consult/ws/{call}"
        self.origin = f"http://127.0.0.1:{port}"
        self.session = session
        self.received = Received()
        self.pc = RTCPeerConnection()
        self.pc.addTrack(AudioStreamTrack())
        self.pc.addTrack(VideoStreamTrack())
        self.pc.addTransceiver("video", direction="recvonly")  # the document camera
        self.pc.on("track", self.received.follow)
        self.channel: RTCDataChannel = self.pc.createDataChannel("snapshot")
        self.chunks: list[bytes | str] = []
        self.channel.on("message", self.chunks.append)
        self.client: Client | None = None
        self.stack = contextlib.AsyncExitStack()
        self.tasks: list[asyncio.Task[None]] = []

    async def join(self) -> dict[str, Any]:
        ws = await self.stack.enter_async_context(
            connect(
                self.url,
                origin=self.origin,  # type: ignore[arg-type]
                additional_headers={"Cookie": f"madoguchi={self.session}"},
                proxy=None,
            )
        )
        self.client = client = Client(ws)
        client.task = asyncio.create_task(client._gather())
        welcome = await client.expect("welcome")
        self.tasks.append(asyncio.create_task(self._candidates()))
        return welcome

    async def _candidates(self) -> None:
        assert self.client is not None
        while True:
            message = await self.client.expect("candidate")
            if not message["candidate"]:
                continue
            candidate = candidate_from_sdp(message["candidate"].split(":", 1)[1])
            candidate.sdpMid = message.get("sdpMid")
            candidate.sdpMLineIndex = message.get("sdpMLineIndex")
            await self.pc.addIceCandidate(candidate)

    async def offer(self) -> None:
        assert self.client is not None
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.client.send(type="offer", sdp=self.pc.localDescription.sdp, to="kiosk")
        answer = await self.client.expect("answer")
        assert answer["from"] == "kiosk"
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def frames_from_kiosk(self) -> dict[str, int]:
        await until(lambda: min(self.received.frames.values()) >= 10, "the kiosk's audio and video")
        return dict(self.received.frames)

    async def snapshot(self) -> tuple[dict[str, Any], bytes]:
        assert self.client is not None
        await self.client.send(type="snapshot-request", camera="document")

        def whole() -> bool:
            if not self.chunks or not isinstance(self.chunks[0], str):
                return False
            size = json.loads(self.chunks[0])["size"]
            return sum(len(c) for c in self.chunks[1:] if isinstance(c, bytes)) >= size

        await until(whole, "the document still over the data channel")
        header = json.loads(str(self.chunks[0]))
        return header, b"".join(c for c in self.chunks[1:] if isinstance(c, bytes))

    async def send(self, **message: Any) -> None:
        assert self.client is not None
        await self.client.send(**message)

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        assert self.client is not None
        return await self.client.expect(kind, **fields)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.received.stop()
        await self.pc.close()
        await self.stack.aclose()
        if self.client is not None and self.client.task is not None:
            with contextlib.suppress(Exception):
                await self.client.task


async def made(kind: type[T], *args: Any) -> T:
    """Make ``kind`` on the running loop (aiortc's objects keep the loop they were made on)."""
    return kind(*args)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


async def _accept_with_session(settings: Settings, now: float) -> tuple[str, str]:
    """The clerk (serving "care") signs in and accepts the longest-waiting consultation:
    the call's id and the clerk's session."""
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        sessions = SessionStore(
            redis,
            idle_seconds=settings.session_idle_seconds,
            absolute_seconds=settings.session_absolute_seconds,
        )
        session = await sessions.create("clerk", now=now)
        calls = Calls(QueueClient(redis, settings))
        call = await calls.accept("kokurakita", "clerk", ("care",), now=now)
        assert call is not None, "a consultation waits"
        return call.id, session.id
    finally:
        await redis.aclose()


async def _call_record(settings: Settings, call: str) -> dict[str, Any]:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        office, _, ticket = call.partition(".")
        return (await Calls(QueueClient(redis, settings)).get(office, ticket)).record()
    finally:
        await redis.aclose()


async def _add_form(settings: Settings, now: float) -> str:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        pdf = sample_pdf("介護保険 要介護認定申請書", ["氏名", "住所", "生年月日"])
        info = await FormsLibrary(redis).add(
            "kokurakita", "介護保険 要介護認定申請書", "kaigo.pdf", pdf, now=now, by="admin"
        )
        return info.id
    finally:
        await redis.aclose()


def test_a_consultation_from_topic_to_the_five_faces(
    browser: Browser, server: LiveServer, settings: Settings, loop: Loop, make_staff: Any
) -> None:
    make_staff("clerk", Role.STAFF, services=("care",), name="山田 花子")
    form_id = server.run(_add_form(settings, server.clock()))
    context = kiosk_context(browser, server.url, enroll(settings, ASAHARA))
    context.add_init_script(PEERS)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    port = int(server.url.rsplit(":", 1)[1])

    # The topic, then the waiting screen: the place in line, and the way out.
    page.goto("/kiosk/consult")
    page.get_by_role("button", name=re.compile("介護")).tap()
    page.wait_for_url(re.compile(r"/kiosk/call/kokurakita\.\d{8}$"))
    call = page.url.rsplit("/", 1)[1]
    expect(page.locator("#waiting")).to_be_visible()
    expect(page.locator("#live")).to_contain_text(re.compile(r"\S"))
    expect(page.locator("#talk")).to_be_hidden()
    expect(page.locator("#self")).to_have_js_property("readyState", 4)  # the camera is on
    assert_accessible(page)
    strict(page)

    # The specialist accepts and joins; the kiosk joins by itself and the call connects.
    accepted, session = server.run(_accept_with_session(settings, server.clock()))
    assert accepted == call
    specialist: Specialist = loop.run(made(Specialist, port, call, session))
    try:
        welcome = loop.run(specialist.join())
        assert welcome["role"] == "specialist"
        loop.run(specialist.expect("state", state="connected"))
        expect(page.locator("#talk")).to_be_visible()
        expect(page.locator("#waiting")).to_be_hidden()
        assert page.evaluate("document.body.dataset.busy") == "call", "no idle reset now"
        loop.run(specialist.offer())

        # Media both ways: decoded in the page, received by aiortc (face, document, audio).
        page.wait_for_function("() => window.__decoded > 10")
        frames = loop.run(specialist.frames_from_kiosk())
        assert frames["video"] >= 10
        assert frames["audio"] >= 10
        videos = [t for t in specialist.pc.getTransceivers() if t.kind == "video"]
        assert [t.currentDirection for t in videos] == ["sendrecv", "recvonly"]
        quality = loop.run(specialist.expect("quality"))
        assert quality["from"] == "kiosk"
        assert quality["level"] in ("good", "fair", "poor")

        # Chat both ways, in large type.
        loop.run(specialist.send(type="chat", text="聞こえますか"))
        expect(page.locator("#chat-log .them .words")).to_have_text("聞こえますか")
        reply = page.locator("button.reply").first
        reply_text = reply.get_attribute("data-reply")
        reply.tap()
        chat = loop.run(specialist.expect("chat"))
        assert (chat["text"], chat["from"]) == (reply_text, "kiosk")

        # The document: a full-resolution still on request, then a mark drawn on it.
        header, data = loop.run(specialist.snapshot())
        assert header["camera"] == "document"
        assert len(data) == header["size"]
        magic = {"image/jpeg": b"\xff\xd8", "image/png": b"\x89PNG"}[header["mime"]]
        assert data.startswith(magic), header
        label = "ここに書いてください"
        points = [[0.2, 0.3], [0.6, 0.3], [0.6, 0.4]]
        loop.run(specialist.send(type="mark", points=points, label=label))
        expect(page.locator("#mark")).to_be_visible()
        expect(page.locator("#mark-label")).to_have_text(label)
        expect(page.locator("#mark-title")).not_to_be_empty()
        width = page.locator("#mark-canvas").evaluate("(c) => c.width")
        assert width >= 640, "drawn on the still at its own size"

        # A form to print.
        loop.run(specialist.send(type="form", form=form_id, title="要介護認定申請書"))
        expect(page.locator("#form")).to_be_visible()
        expect(page.locator("#form-name")).to_have_text("要介護認定申請書")
        first = page.locator("#form-pages img").first
        expect(first).to_have_attribute("src", f"/consult/forms/kokurakita/{form_id}/pages/1.png")
        page.wait_for_function("() => document.querySelector('#form-pages img').naturalWidth > 0")
        page.locator("#print").tap()
        assert page.evaluate("window.__printed") == 1
        printed = PdfReader(io.BytesIO(page.pdf(prefer_css_page_size=True)))
        assert len(printed.pages) == 1, "on paper: the form's one page, nothing else"
        assert not printed.pages[0].extract_text().strip(), "no text of the screen"
        expect(page.locator("#quality")).to_have_attribute(
            "data-level", re.compile("good|fair|poor")
        )
        assert_accessible(page)
        strict(page)

        # The specialist ends the call: the five faces.
        loop.run(specialist.send(type="bye"))
        page.wait_for_url(re.compile(rf"/kiosk/call/{re.escape(call)}/survey$"))
    finally:
        loop.run(specialist.close())
    expect(page.locator("button[data-rating]")).to_have_count(5)
    assert page.locator("video").count() == 0, "nothing of the call is left"
    assert_accessible(page)
    strict(page)
    page.locator('button[data-rating="4"]').tap()
    page.wait_for_url(re.compile(r"/kiosk/$"))
    expect(page.locator("#consult")).to_be_visible()
    record = server.run(_call_record(settings, call))
    assert (record["outcome"], record["rating"]) == ("completed", 4)
    context.close()


# -- the waiting screen, and every screen in every language ---------------------------------


@pytest.fixture
def kiosk_page(browser: Browser, server: LiveServer, settings: Settings) -> Iterator[Page]:
    """A page of the enrolled kiosk ``asahara``."""
    context = kiosk_context(browser, server.url, enroll(settings, ASAHARA))
    yield context.new_page()
    context.close()


def raise_at_kiosk(page: Page) -> str:
    """Touch the topic 介護 on the kiosk: the consultation's id, its waiting screen shown."""
    page.goto("/kiosk/consult")
    page.get_by_role("button", name=re.compile("介護|Long-term care")).tap()
    page.wait_for_url(re.compile(r"/kiosk/call/kokurakita\.\d{8}$"))
    return page.url.rsplit("/", 1)[1]


def test_the_waiting_screen_shows_the_place_in_line_live(
    kiosk_page: Page, server: LiveServer, settings: Settings
) -> None:
    async def two_before(redis: Redis) -> None:
        calls = Calls(QueueClient(redis, settings))
        for kiosk in ("elsewhere-1", "elsewhere-2"):
            await calls.request("kokurakita", kiosk, "care", now=server.clock())

    in_redis(settings, two_before)
    page = kiosk_page
    page.goto("/kiosk/?lang=en")
    raise_at_kiosk(page)
    expect(page.locator("#live strong")).to_have_text("2")

    async def both_taken(redis: Redis) -> None:
        calls = Calls(QueueClient(redis, settings))
        for clerk in ("clerk-1", "clerk-2"):
            assert await calls.accept("kokurakita", clerk, ("care",), now=server.clock())

    in_redis(settings, both_taken)
    expect(page.locator("#live")).to_contain_text("You are next.", timeout=WAIT_MS)


def test_the_waiting_screen_waits_long_then_gives_up_and_ends_it(
    kiosk_page: Page, server: LiveServer, settings: Settings
) -> None:
    page = kiosk_page
    page.clock.install()
    call = raise_at_kiosk(page)
    page.clock.fast_forward(61_000)  # a minute without a touch: a waiting resident stays
    expect(page.locator("#waiting")).to_be_visible()
    assert page.url.endswith(f"/kiosk/call/{call}")
    page.clock.fast_forward(15 * 60_000)
    page.wait_for_url(re.compile(r"/kiosk/$"))
    record = server.run(_call_record(settings, call))
    assert record["outcome"] == "cancelled", "the idle reset ended the consultation"


def test_the_call_screens_in_every_language_are_accessible(
    kiosk_page: Page, server: LiveServer, settings: Settings
) -> None:
    page = kiosk_page
    call = raise_at_kiosk(page)

    async def talked(redis: Redis) -> None:
        calls = Calls(QueueClient(redis, settings))
        office, _, ticket = call.partition(".")
        now = server.clock()
        await calls.accept(office, "clerk", ("care",), now=now)
        await calls.join(office, ticket, staff="clerk", connection="s", now=now)

    screens = [f"/kiosk/call/{call}", f"/kiosk/call/{call}/survey"]
    for lang in LANGUAGES:
        page.goto(f"/kiosk/?lang={lang}")
        page.goto(screens[0])
        expect(page.locator("#waiting")).to_be_visible()
        assert_accessible(page)
        strict(page)
    in_redis(settings, talked)  # the page joins by itself: the call connects
    expect(page.locator("#talk")).to_be_visible()
    for lang in (*LANGUAGES, "ja&furigana=1"):
        page.goto(f"/kiosk/?lang={lang}")
        page.goto(screens[0])
        expect(page.locator("#talk")).to_be_visible()
        assert_accessible(page)
        strict(page)
    page.locator("#talk form.end button").tap()
    page.wait_for_url(re.compile(r"/survey$"))
    for lang in (*LANGUAGES, "ja&furigana=1"):
        page.goto(f"/kiosk/?lang={lang}")
        page.goto(screens[1])
        expect(page.locator("button[data-rating]")).to_have_count(5)
        assert_accessible(page)
        strict(page)


def test_the_call_goes_on_when_the_server_restarts(
    browser: Browser, restartable: Restartable, settings: Settings, loop: Loop, make_staff: Any
) -> None:
    """The web process goes away mid-call and comes back: the media goes on peer to peer,
    the kiosk calmly shows that it is reconnecting, its socket comes back by itself, and
    the call goes on (chat again) without anyone re-dialling or a reload."""
    make_staff("clerk", Role.STAFF, services=("care",), name="山田 花子")
    context = kiosk_context(browser, restartable.url, enroll(settings, ASAHARA))
    context.add_init_script(PEERS)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    call = raise_at_kiosk(page)
    page.evaluate("window.__same_page = true")
    _, session = run_async(_accept_with_session(settings, restartable.clock()))
    specialist: Specialist = loop.run(made(Specialist, restartable.port, call, session))
    try:
        loop.run(specialist.join())
        loop.run(specialist.expect("state", state="connected"))
        loop.run(specialist.offer())
        page.wait_for_function("() => window.__decoded > 10")
        restartable.stop()
        expect(page.locator("#reconnecting")).to_be_visible()
        decoded = page.evaluate("window.__decoded")
        page.wait_for_function(f"() => window.__decoded > {decoded + 10}")  # peer to peer meanwhile
        restartable.start()
        loop.run(specialist.close())
        specialist = loop.run(made(Specialist, restartable.port, call, session))
        loop.run(specialist.join())
        loop.run(specialist.expect("state", state="connected"))
        expect(page.locator("#reconnecting")).to_be_hidden()
        loop.run(specialist.send(type="chat", text="まだ聞こえますか"))
        expect(page.locator("#chat-log .them .words").last).to_have_text("まだ聞こえますか")
        assert page.evaluate("window.__same_page"), "no reload"
        expect(page.locator("#talk")).to_be_visible()
        # A new peer connection at the staff end (a reloaded console): its offer, with
        # new DTLS keys, gets a fresh connection at the kiosk, and media flows again.
        made_before = page.evaluate("window.__peers.length")
        loop.run(specialist.offer())
        assert min(loop.run(specialist.frames_from_kiosk()).values()) >= 10
        assert page.evaluate("window.__peers.length") == made_before + 1
        page.wait_for_function("() => window.__latest > 10")
        open_peers = "window.__peers.filter((p) => p.connectionState !== 'closed').length"
        assert page.evaluate(open_peers) == 1, "the old connection is closed"
    finally:
        loop.run(specialist.close())
    context.close()
