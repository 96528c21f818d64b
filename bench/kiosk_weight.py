"""How heavy the kiosk's start screen is: bytes transferred and requests, in Chromium.

Run it from the repository root::

    .venv/bin/python bench/kiosk_weight.py            # the start screen, cold, in Japanese
    .venv/bin/python bench/kiosk_weight.py --json     # the figures as JSON

It starts a throw-away embedded Redis (no persistence), seeds one office with its
services and an enrolled kiosk, serves the app with uvicorn on 127.0.0.1, and loads
``/kiosk/`` in the system's Chromium (``MADOGUCHI_TEST_CHROMIUM``, else
``/usr/bin/chromium``) with an empty cache, at the kiosk's 1080 × 1920, until the
network has been quiet for half a second. DevTools counts every request the page makes
and the bytes each one took on the wire (``Network.loadingFinished``'s
``encodedDataLength``: headers and body as transferred). The target is under 150 KB,
with no framework. Only 127.0.0.1 is contacted, and everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright
from redis.asyncio import Redis

from madoguchi.embedded import RedisServer, find_redis_server, free_port
from madoguchi.kiosk.devices import PLAIN_KIOSK_COOKIE, Kiosk, KioskStore
from madoguchi.queue.model import Office, Service, ServiceMode
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.app import create_app

TARGET_BYTES = 150 * 1024
CHROMIUM = os.environ.get("MADOGUCHI_TEST_CHROMIUM", "/usr/bin/chromium")
OFFICE = Office("kokurakita", "小倉北区役所", "Kokurakita Ward Office")
SERVICES = (
    Service("certs", "A", "証明書", "Certificates"),
    Service("moving", "B", "転入・転出", "Moving in and out"),
    Service("care", "C", "介護", "Long-term care", mode=ServiceMode.REMOTE),
)
KIOSK = Kiosk(
    "asahara",
    "kokurakita",
    "足原市民センター",
    "1階ロビー",
    ("certs", "moving"),
    ("care",),
    ("face", "document"),
)


@dataclass
class Weight:
    requests: list[tuple[str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(size for _, size in self.requests)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(binary=find_redis_server(), data_dir=Path(data), ephemeral=True)
        server.start()
        try:
            yield server
        finally:
            server.stop()


async def seed(settings: Settings) -> str:
    """The office, its services and the kiosk; the kiosk's device token."""
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        queue = QueueClient(redis, settings)
        await queue.put_office(OFFICE, now=time.time())
        for service in SERVICES:
            await queue.put_service(OFFICE.id, service, now=time.time())
        store = KioskStore(redis)
        await store.put(KIOSK)
        code = await store.issue_code(KIOSK.id, time.time())
        _, token = await store.enroll(code, time.time())
        return token
    finally:
        await redis.aclose()


@contextmanager
def web(settings: Settings) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the web server did not start")
        time.sleep(0.02)
    try:
        yield f"http://localhost:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def measure(url: str, token: str, path: str) -> Weight:
    weight = Weight()
    urls: dict[str, str] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(
            base_url=url, viewport={"width": 1080, "height": 1920}, has_touch=True
        )
        context.add_cookies([{"name": PLAIN_KIOSK_COOKIE, "value": token, "url": url}])
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        cdp.on(
            "Network.requestWillBeSent",
            lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]),
        )
        cdp.on(
            "Network.loadingFinished",
            lambda e: weight.requests.append(
                (urls.get(e["requestId"], "?"), int(e["encodedDataLength"]))
            ),
        )
        page.goto(path, wait_until="networkidle")
        page.wait_for_timeout(500)
        browser.close()
    return weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/kiosk/", help="the screen to load (default /kiosk/)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with redis_server() as redis:
        settings = Settings(redis_url=redis.url, estimate_interval=0.0)
        token = asyncio.run(seed(settings))
        with web(settings) as url:
            weight = measure(url, token, args.path)
    if args.json:
        print(
            json.dumps(
                {"bytes": weight.total, "requests": len(weight.requests), "each": weight.requests}
            )
        )
        return
    for address, size in weight.requests:
        print(f"{size:>8,} B  {address.replace(url, '')}")
    verdict = "meets" if weight.total < TARGET_BYTES else "misses"
    print(
        f"{args.path}: {weight.total:,} bytes ({weight.total / 1024:.1f} KiB) in "
        f"{len(weight.requests)} requests; {verdict} the target of {TARGET_BYTES // 1024} KiB"
    )


if __name__ == "__main__":
    main()
