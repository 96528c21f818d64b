"""A consultation end to end, both ends in real Chromium, media relayed by a real coturn.

The kiosk is a browser context enrolled as the kiosk (1080 × 1920, touch, two fake
cameras); each member of staff is a context of their own signed in through the form.
Calls carry media only through TURN (``MADOGUCHI_ICE_TRANSPORT_POLICY=relay``), served by
coturn in REST mode on free ports with the app's ``MADOGUCHI_TURN_SECRET``: that is the
media path, and stopping the TURN server (SIGSTOP) is a real network cut of it, which
DevTools' offline emulation is not (it leaves WebRTC media and open sockets alone).

CI installs coturn (``.ci/run``); without ``turnserver`` these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis
from starlette.datastructures import Secret

from madoguchi.consult.calls import Call, Calls
from madoguchi.consult.forms import FormsLibrary, sample_pdf
from madoguchi.embedded import free_port
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from .conftest import LiveServer, assert_accessible, sign_in
from .test_consult_console import FORM_TITLE, PATIENCE, PENSION, accept, decoded, eventually
from .test_kiosk_screens import enroll, kiosk_context, strict
from conftest import CHEAP_HASHES, T0
from kiosks import ASAHARA

#: Chromium's second fake camera ("fake_device_1") delivers 16-bit depth frames (Y16),
#: which WebRTC cannot encode: a track of it sends nothing. The kiosk's document camera
#: is therefore the first fake camera, opened a second time.
DOCUMENT_CAMERA = """
(() => {
  const devices = navigator.mediaDevices;
  if (!devices) return;
  const open = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints) => {
    const wanted = constraints?.video?.deviceId?.exact;
    if (wanted) {
      const cameras = (await devices.enumerateDevices()).filter((d) => d.kind === "videoinput");
      if (cameras[1]?.label === "fake_device_1" && wanted === cameras[1].deviceId) {
        const video = { ...constraints.video, deviceId: { exact: cameras[0].deviceId } };
        constraints = { ...constraints, video };
      }
    }
    return open(constraints);
  };
})();
"""


OFFICE = "kokurakita"
WAIT_MS = PATIENCE * 1000
#: How long the media path is cut.
CUT_SECONDS = 5.0
TURN_SECRET = "e2e-static-auth-secret"
#: Every RTCPeerConnection the page makes (``window.__pcs``, as ``decoded`` reads them), and
#: every ICE connection state any of them went through (``window.__ice``).
PEERS = """
window.__pcs = [];
window.__ice = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) {
    super(...args);
    window.__pcs.push(this);
    this.addEventListener("iceconnectionstatechange", () => {
      window.__ice.push(this.iceConnectionState);
    });
  }
};
"""
#: The candidate types of the pairs the page's live connections send media on.
SELECTED = """async () => {
  const types = [];
  for (const pc of window.__pcs) {
    if (pc.connectionState === "closed") continue;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    report.forEach((s) => {
      if (s.type !== "transport" || !s.selectedCandidatePairId) return;
      const pair = byId.get(s.selectedCandidatePairId);
      if (!pair) return;
      types.push([byId.get(pair.localCandidateId)?.candidateType,
                  byId.get(pair.remoteCandidateId)?.candidateType]);
    });
  }
  return types;
}"""


# -- coturn ---------------------------------------------------------------------------------


@dataclass
class Turn:
    """A coturn process in REST mode (``use-auth-secret``) on free ports."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    paused_at: float = 0.0

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        self.paused_at = time.monotonic()

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def turn_host() -> str:
    """The address coturn listens and relays on: ``MADOGUCHI_TEST_TURN_HOST`` if set, else
    the one this machine's default route leaves from. Not loopback: coturn refuses loopback
    peers (unless ``--allow-loopback-peers``), and media relayed there does not flow."""
    if os.environ.get("MADOGUCHI_TEST_TURN_HOST"):
        return os.environ["MADOGUCHI_TEST_TURN_HOST"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("203.0.113.1", 9))  # a documentation address: nothing is sent
        address: str = probe.getsockname()[0]
    assert not address.startswith("127."), "no address but loopback for coturn"
    return address


@pytest.fixture
def turn() -> Iterator[Turn]:
    binary = shutil.which("turnserver")
    assert binary, "coturn's turnserver is not installed (apt-get install coturn)"
    host = turn_host()
    port = free_port()
    relays = free_port()  # a start for the relay ports; coturn skips any in use
    low = max(1024, min(relays, 65_000))
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "turn.log"
        command = [
            binary,
            "-n",  # no configuration file: everything is on this line
            f"--listening-ip={host}",
            f"--relay-ip={host}",
            f"--listening-port={port}",
            f"--min-port={low}",
            f"--max-port={low + 400}",
            "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}",
            "--realm=madoguchi.test",
            "--no-tls",
            "--no-dtls",
            "--no-tcp-relay",
            "--no-cli",
            "--no-rfc5780",
            "--simple-log",
            f"--log-file={log}",
            f"--pidfile={Path(folder) / 'turn.pid'}",
            f"--userdb={Path(folder) / 'turn.sqlite'}",
        ]
        with open(log.with_suffix(".out"), "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: _listening(port) or process.poll() is not None, "coturn to start")
            assert process.poll() is None, log.with_suffix(".out").read_text(errors="replace")
            yield Turn(process, f"turn:{host}:{port}?transport=udp", log)
        finally:
            process.send_signal(signal.SIGCONT)  # a stopped process would not end
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _listening(port: int) -> bool:
    """Whether a UDP socket is bound to ``port`` (``/proc/net/udp``, hex ports)."""
    wanted = f":{port:04X}"
    tables = [Path("/proc/net/udp"), Path("/proc/net/udp6")]
    return any(
        line.split()[1].endswith(wanted)
        for table in tables
        if table.exists()
        for line in table.read_text().splitlines()[1:]
    )


@pytest.fixture
def settings(redis_url: str, turn: Turn) -> Settings:
    """The tests' settings, with calls relayed through the coturn of :func:`turn`."""
    return Settings(
        redis_url=redis_url,
        estimate_interval=0.0,
        turn_urls=(turn.url,),
        turn_secret=Secret(TURN_SECRET),
        ice_transport_policy="relay",
        **CHEAP_HASHES,  # type: ignore[arg-type]
    )


# -- the scene --------------------------------------------------------------------------------


async def _scene(settings: Settings) -> str:
    """The pension service and a form in the library: the form's id."""
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        await QueueClient(redis, settings).put_service(OFFICE, PENSION, now=T0)
        pdf = sample_pdf(FORM_TITLE, ["氏名", "住所"])
        info = await FormsLibrary(redis).add(
            OFFICE, FORM_TITLE, "kaigo-shinsei.pdf", pdf, now=T0, by="admin"
        )
        return info.id
    finally:
        await redis.aclose()


async def _call(settings: Settings, call: str) -> Call:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        office, _, ticket = call.partition(".")
        return await Calls(QueueClient(redis, settings)).get(office, ticket)
    finally:
        await redis.aclose()


async def _another_resident(settings: Settings, service: str, now: float) -> str:
    """A consultation raised by another kiosk, now: its id."""
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        call = await Calls(QueueClient(redis, settings)).request(
            OFFICE, "elsewhere", service, now=now
        )
        return call.id
    finally:
        await redis.aclose()


@dataclass
class Scene:
    server: LiveServer
    settings: Settings
    browser: Browser
    contexts: list[BrowserContext]

    def kiosk(self) -> Page:
        context = kiosk_context(self.browser, self.server.url, enroll(self.settings, ASAHARA))
        context.add_init_script(PEERS)
        context.add_init_script(DOCUMENT_CAMERA)
        return self._page(context)

    def staff(self, username: str, available: bool = True) -> Page:
        """``username``'s consultation console, signed in (and available, if so)."""
        context = self.browser.new_context(
            base_url=self.server.url, viewport={"width": 1280, "height": 900}
        )
        context.add_init_script(PEERS)
        page = self._page(context)
        sign_in(page, username)
        page.goto(f"/staff/consult/{OFFICE}")
        expect(page.locator("#live-state")).to_have_text("Live")
        if available:
            page.get_by_label("Available").check()
            expect(page.locator("#feedback")).to_have_text("You are now: Available.")
        return page

    def _page(self, context: BrowserContext) -> Page:
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        return page

    def call(self, call: str) -> Call:
        found: Call = self.server.run(_call(self.settings, call))
        return found


@pytest.fixture
def scene(
    browser: Browser, server: LiveServer, settings: Settings, make_staff: Callable[..., Any]
) -> Iterator[Scene]:
    make_staff("ito", services=("care",), name="伊藤 さくら")
    made = Scene(server, settings, browser, [])
    yield made
    for context in made.contexts:
        context.close()


def raise_consultation(kiosk: Page) -> str:
    """The resident touches 介護 at the kiosk: the waiting screen, the call's id."""
    kiosk.goto("/kiosk/consult")
    kiosk.get_by_role("button", name=re.compile("介護")).tap()
    kiosk.wait_for_url(re.compile(r"/kiosk/call/kokurakita\.\d{8}$"))
    expect(kiosk.locator("#waiting")).to_be_visible()
    return kiosk.url.rsplit("/", 1)[1]


def take(staff: Page, call: str, service: str) -> None:
    """The specialist sees the consultation in their queue and accepts it."""
    row = staff.locator(f'tr[data-call="{call}"]')
    expect(row).to_contain_text(service)
    accept(staff, row.locator("th").inner_text())


def frames_grow(page: Page, what: str, videos: int = 1) -> None:
    """Frames decoded grow on at least ``videos`` of the videos the page receives now."""

    def growing() -> bool:
        before = decoded(page)
        page.wait_for_timeout(500)
        after = decoded(page)
        return (
            len(after) == len(before)
            and sum(a > b for a, b in zip(after, before, strict=True)) >= videos
        )

    eventually(growing, what)


def relayed(page: Page) -> bool:
    """Every live connection of the page sends on a relay (TURN) pair at both ends."""
    types: list[list[str]] = page.evaluate(SELECTED)
    return bool(types) and all(pair == ["relay", "relay"] for pair in types)


# -- the tests ----------------------------------------------------------------------------


def test_a_consultation_from_topic_to_survey_with_both_ends_in_chromium(
    scene: Scene, server: LiveServer, settings: Settings, make_staff: Callable[..., Any]
) -> None:
    form_id = server.run(_scene(settings))
    make_staff("sato", services=(), name="佐藤 通訳")
    make_staff("kato", services=("pension",), name="加藤 年金")
    kiosk = scene.kiosk()
    ito = scene.staff("ito")

    # Topic → waiting; the specialist sees the resident and accepts; the kiosk joins by itself.
    call = raise_consultation(kiosk)
    take(ito, call, "Long-term care")
    expect(kiosk.locator("#talk")).to_be_visible()
    expect(kiosk.locator("#waiting")).to_be_hidden()

    # Media both ways, through TURN: the kiosk's cameras at the console, the specialist's
    # camera at the kiosk.
    eventually(lambda: len(d := decoded(ito)) >= 2 and min(d) > 0, "the kiosk's two cameras")
    eventually(lambda: len(d := decoded(kiosk)) >= 1 and max(d) > 0, "the specialist's camera")
    eventually(lambda: relayed(ito) and relayed(kiosk), "media on TURN relay pairs")

    # The document: a still at the console, a mark drawn on it shown large at the kiosk.
    ito.get_by_role("button", name="Take a snapshot of the document").click()
    image = ito.locator("#snapshot-image")
    eventually(lambda: image.evaluate("i => i.complete && i.naturalWidth") > 0, "the still")
    canvas = ito.locator("#snapshot-marks")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    ito.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    ito.mouse.down()
    ito.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.4, steps=8)
    ito.mouse.up()
    expect(kiosk.locator("#mark")).to_be_visible()
    expect(kiosk.locator("#mark-label")).to_have_text("ここに書いてください")

    # A form from the library: its page image shows at the kiosk.
    ito.get_by_label("Form to show and print at the kiosk").select_option(label=FORM_TITLE)
    ito.get_by_role("button", name="Send the form").click()
    expect(kiosk.locator("#form")).to_be_visible()
    expect(kiosk.locator("#form-name")).to_have_text(FORM_TITLE)
    page_one = kiosk.locator("#form-pages img").first
    expect(page_one).to_have_attribute("src", f"/consult/forms/{OFFICE}/{form_id}/pages/1.png")
    eventually(lambda: page_one.evaluate("i => i.complete && i.naturalWidth") > 0, "the form")

    # Chat both ways.
    ito.get_by_label("Message", exact=True).fill("お名前を書いてください")
    ito.get_by_role("button", name="Send", exact=True).click()
    expect(kiosk.locator("#chat-log .them .words").last).to_have_text("お名前を書いてください")
    reply = kiosk.locator("button.reply").first
    reply_text = reply.get_attribute("data-reply")
    reply.tap()
    expect(ito.locator("#chat-log")).to_contain_text(f"Resident: {reply_text}")

    # A third participant: a colleague is invited, joins as a guest, sees the kiosk.
    sato = scene.staff("sato", available=False)
    invite = ito.get_by_label("Invite a colleague into the call")
    expect(invite.locator("option", has_text="佐藤 通訳")).to_have_count(1)
    invite.select_option("sato")
    ito.get_by_role("button", name="Invite", exact=True).click()
    expect(ito.locator("#feedback")).to_have_text("佐藤 通訳 may now join the call.")
    sato.get_by_role("button", name="Join the call as a guest").click()
    expect(sato.locator("#call-state")).to_have_text("Connected.")
    eventually(lambda: len(d := decoded(sato)) >= 3 and min(d) > 0, "the guest's videos")
    frames_grow(sato, "the kiosk's cameras at the guest", videos=2)
    eventually(lambda: relayed(sato), "the guest's media on TURN")
    expect(kiosk.locator("#talk")).to_be_visible()
    sato.get_by_role("button", name="Leave the call").click()
    expect(sato.locator("#call-over")).to_have_text("You left the call.")

    # Transfer to pension: the resident waits again, keeping their place ahead of one
    # who came later; a specialist of pension takes them, and the call connects again.
    later = server.run(_another_resident(settings, "pension", server.clock()))
    kato = scene.staff("kato")
    ito.get_by_label("Transfer to another remote service").select_option("pension")
    ito.get_by_role("button", name="Transfer", exact=True).click()
    expect(ito.locator("#call-over")).to_contain_text("was transferred to")
    expect(kiosk.locator("#waiting")).to_be_visible()
    expect(kiosk.locator("#talk")).to_be_hidden()
    assert kiosk.url.endswith(f"/kiosk/call/{call}")
    assert_accessible(kiosk)  # waiting again, after a transfer
    strict(kiosk)
    assert_accessible(ito)  # the console after handing the call on
    rows = kato.locator("tr[data-call]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-call", call)
    expect(rows.nth(1)).to_have_attribute("data-call", later)
    take(kato, call, "Insurance and pension")
    expect(kiosk.locator("#talk")).to_be_visible()
    eventually(lambda: len(d := decoded(kato)) >= 2 and min(d) > 0, "the kiosk at pension")
    frames_grow(kiosk, "the second specialist at the kiosk")
    record = scene.call(call)
    assert (record.specialist, record.service, record.transfers) == ("kato", "pension", 1)

    # The end: five faces at the kiosk, the rating recorded, back at the start.
    kato.get_by_role("button", name="End the call").click()
    expect(kato.locator("#call-over")).to_have_text("The call has ended.")
    kiosk.wait_for_url(re.compile(rf"/kiosk/call/{re.escape(call)}/survey$"))
    expect(kiosk.locator("button[data-rating]")).to_have_count(5)
    assert kiosk.locator("video").count() == 0, "nothing of the call is left"
    kiosk.locator('button[data-rating="5"]').tap()
    kiosk.wait_for_url(re.compile(r"/kiosk/$"))
    expect(kiosk.locator("#consult")).to_be_visible()
    done = scene.call(call).record()
    assert (done["outcome"], done["rating"]) == ("completed", 5)
    assert (done["topic"], done["transfer"], done["specialist"]) == ("care", "pension", "kato")


def test_a_five_second_cut_of_the_media_path_is_survived_without_redialling(
    scene: Scene, server: LiveServer, turn: Turn
) -> None:
    kiosk = scene.kiosk()
    ito = scene.staff("ito")
    navigations: list[str] = []
    call = raise_consultation(kiosk)
    take(ito, call, "Long-term care")
    expect(kiosk.locator("#talk")).to_be_visible()
    eventually(lambda: len(d := decoded(ito)) >= 2 and min(d) > 0, "the kiosk's cameras")
    eventually(lambda: len(d := decoded(kiosk)) >= 1 and max(d) > 0, "the specialist's camera")
    eventually(lambda: relayed(ito) and relayed(kiosk), "media on TURN relay pairs")
    before = scene.call(call)
    assert before.state.value == "connected"
    kiosk.evaluate("window.__same_page = true")
    kiosk.on("framenavigated", lambda frame: navigations.append(frame.url))
    ice_seen = {page: page.evaluate("window.__ice.length") for page in (kiosk, ito)}

    # The cut: TURN, the only media path, stops answering for five seconds.
    turn.pause()
    try:
        # Both ends notice (ICE leaves "connected"); the kiosk says it is reconnecting.
        for page in (kiosk, ito):
            page.wait_for_function(
                "n => window.__ice.slice(n).some(s => s === 'disconnected' || s === 'failed')",
                arg=ice_seen[page],
            )
        expect(kiosk.locator("#reconnecting")).to_be_visible()
        expect(kiosk.locator("#talk")).to_be_visible()
        assert_accessible(kiosk)  # the call screen while the line is down
        strict(kiosk)
        assert_accessible(ito)
        remaining = CUT_SECONDS - (time.monotonic() - turn.paused_at)
        if remaining > 0:
            time.sleep(remaining)  # the cut lasts its five seconds; nothing is asserted on time
    finally:
        turn.resume()

    # Back by itself: the same call, connected, nobody accepted again, media flowing.
    expect(kiosk.locator("#reconnecting")).to_be_hidden()
    expect(ito.locator("#call-state")).to_have_text("Connected.")
    frames_grow(ito, "the kiosk's cameras at the console after the cut", videos=2)
    frames_grow(kiosk, "the specialist's camera at the kiosk after the cut")
    eventually(lambda: relayed(ito) and relayed(kiosk), "media on TURN again")
    after = scene.call(call)
    assert after.id == before.id == call
    assert after.state.value == "connected"
    assert (after.accepted_at, after.specialist) == (before.accepted_at, "ito"), "no new accept"
    assert after.present == before.present
    assert kiosk.evaluate("window.__same_page"), "the kiosk did not reload"
    assert navigations == [], "the kiosk never left the call screen"
    assert kiosk.url.endswith(f"/kiosk/call/{call}")
    expect(kiosk.locator("#talk")).to_be_visible()
    ito.get_by_label("Message", exact=True).fill("まだ聞こえますか")
    ito.get_by_role("button", name="Send", exact=True).click()
    expect(kiosk.locator("#chat-log .them .words").last).to_have_text("まだ聞こえますか")
