"""Call set-up: from the specialist's "accept" to the first decoded video frame at both ends.

Run it from the repository root::

    .venv/bin/python bench/call_setup.py              # 20 calls (after one to warm up)
    .venv/bin/python bench/call_setup.py --calls 5    # a quick look
    .venv/bin/python bench/call_setup.py --json       # the figures as JSON

(``make bench-call`` runs the first.) It starts a throw-away embedded Redis (no
persistence), seeds one office with a remote service, an enrolled kiosk and a specialist
who serves it, serves the app with uvicorn on 127.0.0.1, and opens two contexts of the
system's Chromium (``MADOGUCHI_TEST_CHROMIUM``, else ``/usr/bin/chromium``), each with
Chromium's fake camera and microphone: the kiosk (1080 × 1920, touch, its device cookie)
and the specialist's console (signed in through the form, available).

Each call runs as a resident and a specialist would: the kiosk touches the topic and
waits (its camera on, its socket open); the specialist's console shows the consultation
and the specialist clicks "Accept"; the call connects by itself; the specialist ends it
and the kiosk's resident gives a rating. An init script in both pages stamps
(``Date.now()``, one clock for both pages) the click on "Accept", and hooks
``RTCPeerConnection``: every connection made is polled with ``getStats()`` every 20 ms
until a video frame has been decoded on it (``inbound-rtp`` ``framesDecoded`` > 0). The
set-up time of a side is from the click to its first decoded frame; "both" is the later
of the two: when the resident and the specialist both see each other. The first call
warms up (caches, JIT, codecs) and is shown apart, not counted.

ICE uses host candidates (no STUN or TURN: the ward offices' closed network), both ends
and the server on this machine. Chromium's second fake camera sends frames WebRTC cannot
encode, so the kiosk sends its face camera (and microphone) only; the document camera's
m-line stays silent. The target is a p50 under 800 ms for "both". Only 127.0.0.1 is
contacted, and everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from kiosk_weight import redis_server, web  # bench/ is on the path of a script run from it
from playwright.sync_api import Page, expect, sync_playwright
from redis.asyncio import Redis

from madoguchi.kiosk.devices import PLAIN_KIOSK_COOKIE, Kiosk, KioskStore
from madoguchi.queue.model import Office, Service, ServiceMode
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import AccountStore, Role, StaffAccount

TARGET_MS = 800.0
CHROMIUM = os.environ.get("MADOGUCHI_TEST_CHROMIUM", "/usr/bin/chromium")
#: Chromium's fake camera and microphone, their permission granted.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
OFFICE = Office("kokurakita", "小倉北区役所", "Kokurakita Ward Office")
SERVICES = (
    Service("certs", "A", "証明書", "Certificates"),
    Service("care", "C", "介護", "Long-term care", mode=ServiceMode.REMOTE),
)
KIOSK = Kiosk(
    "asahara", "kokurakita", "足原市民センター", "1階ロビー", ("certs",), ("care",), ("face",)
)
SPECIALIST = StaffAccount("ito", "伊藤 さくら", Role.STAFF, ("kokurakita",), ("care",))
PASSWORD = "Counter-Clerk-2026!"
#: How long any one step may take before the run gives up.
PATIENCE_MS = 30_000
#: The stamps, in both pages: the click on "Accept" (``__accepted``), and for every
#: RTCPeerConnection when it was made and when it first decoded a video frame
#: (``__first``: [{made, frame}]).
STAMPS = """
window.__first = [];
document.addEventListener("click", (event) => {
  if (event.target.closest?.("button.accept, #accept-next")) window.__accepted = Date.now();
}, true);
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) {
    super(...args);
    const entry = { made: Date.now(), connected: null, frame: null };
    window.__first.push(entry);
    this.addEventListener("iceconnectionstatechange", () => {
      const up = ["connected", "completed"].includes(this.iceConnectionState);
      if (up && entry.connected === null) entry.connected = Date.now();
    });
    const poll = setInterval(async () => {
      if (this.connectionState === "closed") { clearInterval(poll); return; }
      let frames = 0;
      (await this.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
      });
      if (frames > 0 && entry.frame === null) {
        entry.frame = Date.now();
        clearInterval(poll);
      }
    }, 20);
  }
};
"""
#: The first frame decoded on a connection made at or after the given time.
FIRST_FRAME = """(since) => {
  const found = window.__first.filter((e) => e.made >= since && e.frame !== null);
  return found.length ? Math.min(...found.map((e) => e.frame)) : null;
}"""
#: When the first connection made at or after the given time had ICE connected.
CONNECTED = """(since) => {
  const found = window.__first.filter((e) => e.made >= since && e.connected !== null);
  return found.length ? Math.min(...found.map((e) => e.connected)) : null;
}"""


@dataclass
class Figures:
    kiosk: list[float] = field(default_factory=list)
    specialist: list[float] = field(default_factory=list)
    #: From the click to ICE connected at the console (signaling and ICE, before media).
    ice: list[float] = field(default_factory=list)
    both: list[float] = field(default_factory=list)
    warm_up: tuple[float, float, float] | None = None


async def seed(settings: Settings) -> str:
    """The office, its services, the kiosk and the specialist; the kiosk's device token."""
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        queue = QueueClient(redis, settings)
        await queue.put_office(OFFICE, now=time.time())
        for service in SERVICES:
            await queue.put_service(OFFICE.id, service, now=time.time())
        await AccountStore(redis).create(SPECIALIST, PASSWORD)
        store = KioskStore(redis)
        await store.put(KIOSK)
        code = await store.issue_code(KIOSK.id, time.time())
        _, token = await store.enroll(code, time.time())
        return token
    finally:
        await redis.aclose()


def one_call(kiosk: Page, console: Page) -> tuple[float, float, float]:
    """A whole call: milliseconds from "Accept" to the first frame at the kiosk, and at
    the console, and to ICE connected at the console."""
    kiosk.goto("/kiosk/consult")
    kiosk.get_by_role("button", name=re.compile("介護")).tap()
    kiosk.wait_for_url(re.compile(r"/kiosk/call/kokurakita\.\d{8}$"))
    call = kiosk.url.rsplit("/", 1)[1]
    expect(kiosk.locator("#waiting")).to_be_visible()
    expect(kiosk.locator("#self")).to_have_js_property("readyState", 4)  # the camera is on
    row = console.locator(f'tr[data-call="{call}"]')
    number = row.locator("th").inner_text()
    button = console.get_by_role("button", name=f"Accept {number}")
    expect(button).to_be_enabled()
    button.click()
    accepted = console.evaluate("window.__accepted")
    at_kiosk = kiosk.wait_for_function(FIRST_FRAME, arg=accepted).json_value()
    at_console = console.wait_for_function(FIRST_FRAME, arg=accepted).json_value()
    connected = console.wait_for_function(CONNECTED, arg=accepted).json_value()
    console.get_by_role("button", name="End the call").click()
    expect(console.locator("#call-over")).to_have_text("The call has ended.")
    kiosk.wait_for_url(re.compile(r"/survey$"))
    kiosk.locator('button[data-rating="5"]').tap()
    kiosk.wait_for_url(re.compile(r"/kiosk/$"))
    expect(console.get_by_label("Available")).to_be_checked()
    return float(at_kiosk - accepted), float(at_console - accepted), float(connected - accepted)


def measure(url: str, token: str, calls: int) -> Figures:
    figures = Figures()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        staff = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
        staff.add_init_script(STAMPS)
        console = staff.new_page()
        console.set_default_timeout(PATIENCE_MS)
        console.goto("/staff/signin")
        console.get_by_label("User name").fill(SPECIALIST.username)
        console.get_by_label("Password").fill(PASSWORD)
        console.get_by_role("button", name="Sign in").click()
        console.wait_for_url("**/staff/**")
        console.goto(f"/staff/consult/{OFFICE.id}")
        console.get_by_label("Available").check()
        expect(console.get_by_label("Available")).to_be_checked()
        device = browser.new_context(
            base_url=url,
            viewport={"width": 1080, "height": 1920},
            has_touch=True,
            locale="ja-JP",
        )
        device.add_cookies([{"name": PLAIN_KIOSK_COOKIE, "value": token, "url": url}])
        device.add_init_script(STAMPS)
        kiosk = device.new_page()
        kiosk.set_default_timeout(PATIENCE_MS)
        for n in range(calls + 1):
            at_kiosk, at_console, ice = one_call(kiosk, console)
            if n == 0:
                figures.warm_up = (at_kiosk, at_console, max(at_kiosk, at_console))
                continue
            figures.kiosk.append(at_kiosk)
            figures.specialist.append(at_console)
            figures.ice.append(ice)
            figures.both.append(max(at_kiosk, at_console))
        browser.close()
    return figures


def percentile(values: list[float], share: float) -> float:
    """The ``share`` percentile of ``values``, interpolated between the closest ranks."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * share
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.5), 1),
        "p90": round(percentile(values, 0.9), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls measured (default 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    with redis_server() as redis:
        settings = Settings(redis_url=redis.url, estimate_interval=0.0)
        token = asyncio.run(seed(settings))
        with web(settings) as url:
            figures = measure(url, token, args.calls)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    sides = {
        "kiosk": summary(figures.kiosk),
        "specialist": summary(figures.specialist),
        "both": summary(figures.both),
        "ice": summary(figures.ice),
    }
    if args.json:
        report = {
            "calls": args.calls,
            "ms": sides,
            "each_ms": {
                "kiosk": figures.kiosk,
                "specialist": figures.specialist,
                "ice": figures.ice,
            },
            "warm_up_ms": figures.warm_up,
            "load": load,
        }
        print(json.dumps(report))
        return
    print(f"Call set-up over {args.calls} calls, from the click on Accept to the first decoded")
    print("video frame (ms):")
    print(f"{'':<38}{'p50':>8}{'p90':>8}{'min':>8}{'max':>8}")
    names = {
        "kiosk": "at the kiosk (the specialist's face)",
        "specialist": "at the console (the resident's face)",
        "both": "both ends (the later of the two)",
        "ice": "(ICE connected at the console)",
    }
    for side, name in names.items():
        s = sides[side]
        print(f"{name:<38}{s['p50']:>8.0f}{s['p90']:>8.0f}{s['min']:>8.0f}{s['max']:>8.0f}")
    if figures.warm_up is not None:
        kiosk, console, both = figures.warm_up
        print(
            f"warm-up call (not counted): kiosk {kiosk:.0f}, console {console:.0f}, both {both:.0f}"
        )
    verdict = "meets" if sides["both"]["p50"] < TARGET_MS else "misses"
    both = sides["both"]["p50"]
    print(f"p50 of both ends: {both:.0f} ms; {verdict} the target of {TARGET_MS:.0f} ms")
    if load:
        print(f"load average during the run's end (1, 5, 15 min): {' '.join(load)}")


if __name__ == "__main__":
    main()
