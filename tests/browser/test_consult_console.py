"""The consultation console in real Chromium, with the kiosk played by a real aiortc peer.

The kiosk raises its consultation through the kiosk API with its device token, joins the
call's WebSocket as the kiosk and answers the console's offers with audio and two video
tracks (face and document camera), as the kiosk's browser would; it sends a JPEG over the
data channel when asked for a snapshot, in peer.js's chunk format.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.sdp import candidate_from_sdp
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from madoguchi.consult.forms import FormsLibrary, sample_pdf
from madoguchi.kiosk.devices import KioskStore
from madoguchi.queue.model import Service, ServiceMode
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from .conftest import LiveServer, assert_accessible, sign_in
from conftest import T0
from kiosks import ASAHARA, ASHIHARA, enrolled

OFFICE = "kokurakita"
PENSION = Service("pension", "P", "国保・年金", "Insurance and pension", mode=ServiceMode.REMOTE)
FORM_TITLE = "介護保険 要介護認定申請書"
#: How long anything may take to show up before the test gives up on it.
PATIENCE = 30.0
#: The snapshot's size: larger than a screen, so that "full resolution" shows.
SNAPSHOT_SIZE = (1600, 1200)
CHUNK = 16 * 1024
#: Keeps every RTCPeerConnection the page makes, so that the test can read its getStats().
PC_SPY = """
window.__pcs = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.__pcs.push(this); }
};
"""
#: framesDecoded of every video track the page receives on a live connection.
DECODED = """async () => {
  const out = [];
  for (const pc of window.__pcs) {
    if (pc.connectionState === "closed") continue;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") out.push(s.framesDecoded || 0);
    });
  }
  return out;
}"""


def eventually(check: Callable[[], Any], what: str, patience: float = PATIENCE) -> Any:
    """Poll ``check`` until it gives something true; fail naming ``what`` after a while."""
    deadline = time.monotonic() + patience
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {patience:g} s: {what}")
        time.sleep(0.1)


def snapshot_jpeg() -> bytes:
    """A document's still: noisy enough to take several data-channel chunks."""
    picture = Image.effect_noise(SNAPSHOT_SIZE, 60).convert("RGB")
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85)
    return out.getvalue()


@dataclass
class Link:
    """The kiosk's peer connection with one other participant."""

    pc: RTCPeerConnection
    channel: RTCDataChannel | None = None
    tasks: list[asyncio.Future[None]] = field(default_factory=list)


class AiortcKiosk:
    """The kiosk's end of a call: aiortc, in a thread with an event loop of its own (the
    test's thread belongs to Playwright). It answers every offer (one peer connection
    per other participant, the kiosk never offers) and counts the frames it receives
    from each."""

    def __init__(self, base: str, token: str, call: dict[str, Any]) -> None:
        self.url = base.replace("http://", "ws://") + call["ws"]
        self.origin = base
        self.token = token
        self.messages: list[dict[str, Any]] = []
        #: Frames received, by who sent them and their kind (audio, video).
        self.frames: dict[str, dict[str, int]] = {}
        self.snapshot = snapshot_jpeg()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ws: ClientConnection | None = None
        self.links: dict[str, Link] = {}
        #: Candidates that came before their offer, by sender.
        self.early: dict[str, list[dict[str, Any]]] = {}
        self.offers = 0
        self.closed = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> None:
        self._thread.start()
        eventually(lambda: self.seen("welcome"), "the kiosk's welcome")

    def seen(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """The latest message of ``kind`` (with ``fields``) the kiosk received."""
        for message in reversed(list(self.messages)):
            if message.get("type") == kind and all(message.get(k) == v for k, v in fields.items()):
                return message
        return None

    def receives(self, role: str) -> bool:
        """Whether audio and video from ``role`` reach the kiosk."""
        got = self.frames.get(role, {})
        return got.get("audio", 0) > 0 and got.get("video", 0) > 0

    def send(self, **message: Any) -> None:
        assert self.loop is not None
        assert self.ws is not None
        future = asyncio.run_coroutine_threadsafe(self.ws.send(json.dumps(message)), self.loop)
        future.result(PATIENCE)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(PATIENCE)

    # -- in the kiosk's thread ----------------------------------------------------------------

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        headers = {"Cookie": f"madoguchi-kiosk={self.token}"}
        try:
            async with connect(
                self.url,
                origin=self.origin,  # type: ignore[arg-type]
                additional_headers=headers,
                proxy=None,
            ) as ws:
                self.ws = ws
                reading = asyncio.create_task(self._read(ws))
                stopping = asyncio.create_task(self._stop.wait())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for task in (reading, stopping):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            self.closed.set()
            for role in list(self.links):
                await self._drop(role)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            self.messages.append(message)
            kind = message.get("type")
            if kind == "offer":
                await self._answer(ws, message)
            elif kind == "candidate":
                await self._candidate(message)
            elif kind == "snapshot-request":
                await self._send_snapshot(message["from"])

    async def _answer(self, ws: ClientConnection, offer: dict[str, Any]) -> None:
        """A fresh peer connection per offer (aiortc cannot restart ICE), sending the
        microphone, the face camera and the document camera on the offer's m-lines."""
        role = offer["from"]
        await self._drop(role)
        self.offers += 1
        # MAX_BUNDLE: under aiortc's default (BALANCED) a second video m-line of a remote
        # offer keeps a transport of its own that never starts, and sends nothing.
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        link = self.links[role] = Link(RTCPeerConnection(config))
        link.pc.on("track", lambda track: self._follow(link, role, track))
        link.pc.on("datachannel", lambda channel: setattr(link, "channel", channel))
        await link.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        for track in (AudioStreamTrack(), VideoStreamTrack(), VideoStreamTrack()):
            link.pc.addTrack(track)
        await link.pc.setLocalDescription(await link.pc.createAnswer())
        for early in self.early.pop(role, []):
            await self._candidate(early)
        answer = {"type": "answer", "sdp": link.pc.localDescription.sdp, "to": role}
        await ws.send(json.dumps(answer))

    async def _candidate(self, message: dict[str, Any]) -> None:
        line = message.get("candidate") or ""
        role = message["from"]
        link = self.links.get(role)
        if link is None or link.pc.remoteDescription is None:
            self.early.setdefault(role, []).append(message)
            return
        if not line:
            return
        candidate = candidate_from_sdp(line.split(":", 1)[1])
        candidate.sdpMid = message.get("sdpMid")
        candidate.sdpMLineIndex = message.get("sdpMLineIndex")
        with contextlib.suppress(ValueError):
            await link.pc.addIceCandidate(candidate)

    def _follow(self, link: Link, role: str, track: MediaStreamTrack) -> None:
        counts = self.frames.setdefault(role, {"audio": 0, "video": 0})

        async def pull() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    counts[track.kind] += 1

        link.tasks.append(asyncio.ensure_future(pull()))

    async def _send_snapshot(self, to: str) -> None:
        link = self.links.get(to)
        channel = link.channel if link is not None else None
        assert channel is not None, "no snapshot channel"
        assert channel.readyState == "open", "the snapshot channel is not open"
        data = self.snapshot
        header = {"type": "snapshot", "size": len(data), "mime": "image/jpeg", "camera": "document"}
        channel.send(json.dumps(header))
        for at in range(0, len(data), CHUNK):
            channel.send(data[at : at + CHUNK])

    async def _drop(self, role: str) -> None:
        link = self.links.pop(role, None)
        if link is None:
            return
        for task in link.tasks:
            task.cancel()
        await link.pc.close()


# -- setting the scene ------------------------------------------------------------------------


async def scene(settings: Settings) -> str:
    """The pension service, a form in the library, and the enrolled kiosk's device token."""
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        await QueueClient(redis, settings).put_service(OFFICE, PENSION, now=T0)
        pdf = sample_pdf(FORM_TITLE, ["氏名", "住所"])
        await FormsLibrary(redis).add(OFFICE, FORM_TITLE, "kaigo-shinsei.pdf", pdf, now=T0, by="t")
        return await enrolled(KioskStore(redis), ASAHARA)
    finally:
        await redis.aclose()


@pytest.fixture
def token(server: LiveServer, settings: Settings) -> str:
    token: str = server.run(scene(settings))
    return token


def raise_call(server: LiveServer, token: str) -> dict[str, Any]:
    """The kiosk raises a consultation about care, through the kiosk API."""
    base = server.url.replace("localhost", "127.0.0.1")
    answer = httpx.post(
        f"{base}/consult/api/calls",
        json={"topic": "care"},
        headers={"Cookie": f"madoguchi-kiosk={token}"},
        timeout=PATIENCE,
    )
    assert answer.status_code == 201, answer.text
    call: dict[str, Any] = answer.json()["call"]
    return call


@contextlib.contextmanager
def kiosk_in(server: LiveServer, token: str, call: dict[str, Any]) -> Iterator[AiortcKiosk]:
    kiosk = AiortcKiosk(server.url.replace("localhost", "127.0.0.1"), token, call)
    kiosk.start()
    try:
        yield kiosk
    finally:
        kiosk.stop()


@pytest.fixture
def console(context: BrowserContext, make_staff: Callable[..., Any]) -> Page:
    """The specialist's console, signed in as ito, who serves care and pension."""
    make_staff("ito", services=("care", "pension"))
    page = context.new_page()
    page.add_init_script(PC_SPY)
    sign_in(page, "ito")
    page.goto(f"/staff/consult/{OFFICE}")
    expect(page.locator("#live-state")).to_have_text("Live")
    return page


def decoded(page: Page) -> list[int]:
    frames: list[int] = page.evaluate(DECODED)
    return frames


def accept(page: Page, number: str) -> None:
    page.get_by_role("button", name=f"Accept {number}").click()
    expect(page.locator("#call-state")).to_have_text("Connected.", timeout=PATIENCE * 1000)


# -- the tests --------------------------------------------------------------------------------


def test_a_whole_call_from_the_console(server: LiveServer, token: str, console: Page) -> None:
    page = console
    page.get_by_label("Available").check()
    expect(page.locator("#feedback")).to_have_text("You are now: Available.")
    call = raise_call(server, token)
    with kiosk_in(server, token, call) as kiosk:
        row = page.locator(f'tr[data-call="{call["id"]}"]')
        expect(row).to_contain_text(call["number"])
        expect(row).to_contain_text("Long-term care")
        expect(page.locator("#queue-count")).to_have_text("1")
        assert_accessible(page)  # idle, with someone waiting

        accept(page, call["number"])
        # Media both ways: the page decodes the face and the document camera, and the
        # kiosk receives the specialist's camera and microphone.
        eventually(lambda: len(d := decoded(page)) >= 2 and min(d) > 0, "both videos decoded")
        eventually(lambda: kiosk.receives("specialist"), "the kiosk receives audio and video")
        expect(page.locator("#presence-note")).to_contain_text("busy until it ends")
        kiosk.send(type="quality", loss=0.0, rtt=30.0, fps=30.0)
        expect(page.locator("#quality-kiosk")).to_contain_text("Good")
        expect(page.locator("#quality-self")).not_to_have_text("–", timeout=PATIENCE * 1000)

        # The document snapshot, at full resolution, and marks drawn on it.
        page.get_by_role("button", name="Take a snapshot of the document").click()
        asked = eventually(lambda: kiosk.seen("snapshot-request"), "the snapshot request")
        assert (asked["camera"], asked["from"]) == ("document", "specialist")
        image = page.locator("#snapshot-image")
        eventually(
            lambda: image.evaluate("i => i.complete && i.naturalWidth") == SNAPSHOT_SIZE[0],
            "the snapshot shown at full resolution",
        )
        canvas = page.locator("#snapshot-marks")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        for step in range(1, 11):
            x = box["x"] + box["width"] * (0.25 + step * 0.05)
            page.mouse.move(x, box["y"] + box["height"] * 0.5)
        page.mouse.up()
        mark = eventually(lambda: kiosk.seen("mark"), "a mark")
        assert mark["label"] == "ここに書いてください"
        assert mark["from"] == "specialist"
        first, last = mark["points"][0], mark["points"][-1]
        assert first == pytest.approx([0.25, 0.5], abs=0.02)
        assert last == pytest.approx([0.75, 0.5], abs=0.02)
        assert all(0 <= v <= 1 for point in mark["points"] for v in point)
        canvas.focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        spot = eventually(lambda: kiosk.seen("mark", points=[[0.52, 0.5]]), "a mark by keyboard")
        assert spot["label"] == "ここに書いてください"
        page.get_by_role("button", name="Clear the marks").click()
        eventually(lambda: kiosk.seen("mark", clear=True), "the marks cleared")

        # A form from the library.
        page.get_by_label("Form to show and print at the kiosk").select_option(label=FORM_TITLE)
        page.get_by_role("button", name="Send the form").click()
        form = eventually(lambda: kiosk.seen("form"), "the form")
        assert (form["form"], form["title"]) == ("kaigo-shinsei", FORM_TITLE)

        # Chat both ways, and a quick phrase.
        page.get_by_label("Message", exact=True).fill("書類を見せてください")
        page.get_by_role("button", name="Send", exact=True).click()
        eventually(lambda: kiosk.seen("chat", text="書類を見せてください"), "the staff's chat")
        page.get_by_role("button", name="少々お待ちください。 / One moment, please.").click()
        eventually(lambda: kiosk.seen("chat", text="少々お待ちください。"), "a quick phrase")
        kiosk.send(type="chat", text="はい、わかりました")
        expect(page.locator("#chat-log")).to_contain_text("Resident: はい、わかりました")
        assert_accessible(page)  # in the call

        # Transfer: the resident goes back to the queue of pension, keeping their place.
        page.get_by_label("Transfer to another remote service").select_option("pension")
        page.get_by_role("button", name="Transfer", exact=True).click()
        expect(page.locator("#call-over")).to_have_text(
            f"{call['number']} was transferred to P · Insurance and pension; "
            "the resident keeps their place."
        )
        moved = eventually(lambda: kiosk.seen("state", reason="transferred"), "the transfer")
        assert (moved["state"], moved["service"]) == ("waiting", "pension")
        expect(page.locator("#call")).to_be_hidden()

        # The specialist serves pension too: they take it again, and end the call.
        offers = kiosk.offers
        row = page.locator(f'tr[data-call="{call["id"]}"]')
        expect(row).to_contain_text("Insurance and pension")
        accept(page, call["number"])
        eventually(lambda: kiosk.offers > offers, "a fresh offer to the kiosk")
        eventually(lambda: len(d := decoded(page)) >= 2 and min(d) > 0, "videos again")
        page.get_by_role("button", name="End the call").click()
        ended = eventually(lambda: kiosk.seen("state", state="ended"), "the call ended")
        assert ended["reason"] == "completed"
        expect(page.locator("#call-over")).to_have_text("The call has ended.")
        expect(page.locator("#presence-note")).not_to_contain_text("busy")
        expect(page.get_by_label("Available")).to_be_checked()


def test_the_specialist_is_told_when_the_kiosk_vanishes(
    server: LiveServer, token: str, console: Page
) -> None:
    page = console
    call = raise_call(server, token)
    with kiosk_in(server, token, call) as kiosk:
        accept(page, call["number"])
        # Vanish from a call that is up (and not while aiortc is still gathering
        # candidates, which it cannot be stopped in the middle of without leaking a socket).
        eventually(lambda: kiosk.receives("specialist"), "the kiosk receives audio and video")
    assert kiosk.closed.is_set()  # a power cut looks the same to the server
    expect(page.locator("#call-state")).to_have_text(
        "The connection dropped; waiting for it to come back…"
    )
    server.clock.offset += 31  # past the 30 s the kiosk had to come back
    expect(page.locator("#call-over")).to_have_text("The kiosk has gone; the call has ended.")
    expect(page.locator("#call")).to_be_hidden()
    assert_accessible(page)


def test_a_second_accept_is_refused_while_in_a_call(
    server: LiveServer, settings: Settings, token: str, console: Page, context: BrowserContext
) -> None:
    """Two pages of the same specialist: the second cannot take another resident, and
    offers to rejoin the call instead (it would take the call over from the first)."""
    page = console
    call = raise_call(server, token)
    other_token: str = server.run(_enroll(settings, ASHIHARA))
    second = raise_call(server, other_token)
    with kiosk_in(server, token, call) as kiosk:
        accept(page, call["number"])
        other = context.new_page()
        other.goto(f"/staff/consult/{OFFICE}")
        expect(other.get_by_role("heading", name="You are in a call")).to_be_visible()
        expect(other.locator("#rejoin-text")).to_contain_text(call["number"])
        row = other.locator(f'tr[data-call="{second["id"]}"]')
        expect(row.get_by_role("button", name=f"Accept {second['number']}")).to_be_disabled()
        expect(other.locator("#accept-next")).to_be_disabled()
        answer = other.evaluate(
            """async () => {
              const csrf = document.querySelector('meta[name="csrf-token"]').content;
              const r = await fetch('/consult/api/offices/kokurakita/accept', {
                method: 'POST',
                headers: {'X-CSRF-Token': csrf, 'Content-Type': 'application/json'},
                body: '{}'});
              return [r.status, (await r.json()).error.code];
            }"""
        )
        assert answer == [409, "busy"]
        assert_accessible(other)
        other.close()
        page.get_by_role("button", name="End the call").click()
        eventually(lambda: kiosk.seen("state", state="ended"), "the call ended")
    # Free again: the second resident can be taken.
    accept_button = page.get_by_role("button", name=f"Accept {second['number']}")
    expect(accept_button).to_be_enabled()


async def _enroll(settings: Settings, kiosk: Any) -> str:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        return await enrolled(KioskStore(redis), kiosk)
    finally:
        await redis.aclose()


def test_a_colleague_is_invited_and_joins_as_a_guest(
    server: LiveServer,
    token: str,
    console: Page,
    browser: Browser,
    make_staff: Callable[..., Any],
) -> None:
    page = console
    make_staff("sato", services=(), name="佐藤 通訳")
    call = raise_call(server, token)
    colleague = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    try:
        guest = colleague.new_page()
        guest.add_init_script(PC_SPY)
        sign_in(guest, "sato")
        guest.goto(f"/staff/consult/{OFFICE}")
        expect(guest.locator("#live-state")).to_have_text("Live")
        with kiosk_in(server, token, call) as kiosk:
            accept(page, call["number"])
            invite = page.get_by_label("Invite a colleague into the call")
            expect(invite.locator("option", has_text="佐藤 通訳")).to_have_count(1)
            invite.select_option("sato")
            page.get_by_role("button", name="Invite", exact=True).click()
            expect(page.locator("#feedback")).to_have_text("佐藤 通訳 may now join the call.")

            # The colleague's console shows the invitation (heard on the live stream).
            expect(guest.get_by_role("heading", name="You are invited to a call")).to_be_visible()
            expect(guest.locator("#invitation-text")).to_contain_text(call["number"])
            assert_accessible(guest)
            guest.get_by_role("button", name="Join the call as a guest").click()
            expect(guest.locator("#call-state")).to_have_text("Connected.")
            # The guest sees the kiosk's two cameras and the specialist; both see the guest.
            eventually(
                lambda: len(d := decoded(guest)) >= 3 and min(d) > 0, "the guest's three videos"
            )
            eventually(lambda: kiosk.receives("guest"), "the kiosk receives the guest")
            expect(page.locator("#colleague")).to_be_visible()
            eventually(
                lambda: page.evaluate(
                    "() => document.getElementById('video-colleague').videoWidth"
                ),
                "the specialist sees the guest",
            )
            guest.get_by_label("Message", exact=True).fill("通訳の佐藤です")
            guest.get_by_role("button", name="Send", exact=True).click()
            said = eventually(lambda: kiosk.seen("chat", text="通訳の佐藤です"), "the guest's chat")
            assert said["from"] == "guest"
            expect(page.locator("#chat-log")).to_contain_text("Guest: 通訳の佐藤です")
            assert_accessible(guest)

            # The guest leaves; the call goes on.
            guest.get_by_role("button", name="Leave the call").click()
            expect(guest.locator("#call-over")).to_have_text("You left the call.")
            eventually(lambda: kiosk.seen("left", role="guest"), "the guest gone")
            expect(page.locator("#call-state")).to_have_text("Connected.")
            page.get_by_role("button", name="End the call").click()
            eventually(lambda: kiosk.seen("state", state="ended"), "the call ended")
    finally:
        colleague.close()
