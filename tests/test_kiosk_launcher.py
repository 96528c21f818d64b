"""``madoguchi kiosk launch`` with the real Chromium (headless here): the policy it
writes, a killed browser coming back, and the page coming back with the server.

The server is a small local HTTP server that stands in for Madoguchi (the launcher
only needs ``/livez`` and a page), so that the test can take it away and bring it
back on the same port; what the browser loads is seen from the server's side.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from madoguchi.embedded import free_port
from madoguchi.kiosk.launcher import KIOSK_FLAGS, origin_of, policy

CHROMIUM = os.environ.get("MADOGUCHI_TEST_CHROMIUM", "/usr/bin/chromium")
MADOGUCHI = Path(sys.executable).parent / "madoguchi"
#: Flags for Chromium in this test only: no display, no sandbox (we run as root).
TEST_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")


class StandIn:
    """A server that answers ``/livez`` and the kiosk page, counting the page's loads."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loads = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/livez":
                    body = b'{"status": "alive"}'
                elif self.path == "/kiosk/":
                    stand_in.loads += 1
                    body = b"<!doctype html><title>kiosk</title><h1>Kiosk home</h1>"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn(free_port())
    server.start()
    yield server
    server.stop()


def test_the_policy_allows_camera_and_microphone_for_the_origin_only() -> None:
    written = policy("https://kiosk.example.jp:8443/kiosk/", "file:///var/lib/k/waiting.html")
    assert written["VideoCaptureAllowedUrls"] == ["https://kiosk.example.jp:8443"]
    assert written["AudioCaptureAllowedUrls"] == ["https://kiosk.example.jp:8443"]
    # No prompt anywhere else: capture elsewhere is refused outright.
    assert written["VideoCaptureAllowed"] is False
    assert written["AudioCaptureAllowed"] is False
    assert written["URLBlocklist"] == ["*"]
    assert "https://kiosk.example.jp:8443" in written["URLAllowlist"]
    assert written["PasswordManagerEnabled"] is False
    assert written["TranslateEnabled"] is False
    assert written["DisablePrintPreview"] is True


def test_a_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    finished = subprocess.run(
        [str(MADOGUCHI), "kiosk", "launch", "ftp://x/", "--policy-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "is not an http:// or https:// URL" in finished.stderr
    assert not (tmp_path / "madoguchi.json").exists()
    assert origin_of("http://localhost:8000/kiosk/?x=1") == "http://localhost:8000"


def test_help_describes_the_command() -> None:
    shown = subprocess.run(
        [str(MADOGUCHI), "kiosk", "launch", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for words in ("--policy-dir", "--profile-dir", "kiosk mode", "restart", "waiting page"):
        assert words in shown


def test_the_launcher_keeps_the_kiosk_page_up(tmp_path: Path, stand_in: StandIn) -> None:
    url = f"http://127.0.0.1:{stand_in.port}/kiosk/"
    log = tmp_path / "launcher.log"
    with log.open("w") as log_file:
        launcher = subprocess.Popen(
            [
                str(MADOGUCHI),
                "kiosk",
                "launch",
                url,
                "--policy-dir",
                str(tmp_path / "policies"),
                "--profile-dir",
                str(tmp_path / "kiosk" / "profile"),
                "--chromium",
                CHROMIUM,
                "--poll-seconds",
                "0.3",
                *(f"--chromium-flag={flag}" for flag in TEST_FLAGS),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MADOGUCHI_LOG_LEVEL": "INFO"},
        )

    def pids() -> list[int]:
        return [int(p) for p in re.findall(r"started Chromium \(pid (\d+)\)", log.read_text())]

    try:
        # The policy: camera and microphone for this origin only.
        policy_file = tmp_path / "policies" / "madoguchi.json"
        wait_for(policy_file.exists, "the policy file")
        written = json.loads(policy_file.read_text())
        origin = f"http://127.0.0.1:{stand_in.port}"
        assert written["VideoCaptureAllowedUrls"] == [origin]
        assert written["AudioCaptureAllowedUrls"] == [origin]
        waiting = tmp_path / "kiosk" / "waiting.html"
        assert waiting.as_uri() in written["URLAllowlist"]
        assert "しばらくお待ちください" in waiting.read_text()

        wait_for(lambda: stand_in.loads >= 1, "the kiosk page to load")
        first = pids()[0]
        command_line = Path(f"/proc/{first}/cmdline").read_bytes().split(b"\0")
        for flag in ("--kiosk", "--kiosk-printing", "--no-first-run", "--disable-pinch"):
            assert flag.encode() in command_line
        assert f"--user-data-dir={tmp_path / 'kiosk' / 'profile'}".encode() in command_line

        # A browser that dies is started again, on the kiosk page.
        loads = stand_in.loads
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(pids()) >= 2, "Chromium to be restarted")
        wait_for(lambda: stand_in.loads > loads, "the kiosk page to load again")
        assert pids()[1] != first

        # The server goes away: the waiting page. It comes back: so does the kiosk page.
        stand_in.stop()
        wait_for(lambda: "showing the waiting page" in log.read_text(), "the waiting page")
        loads = stand_in.loads
        stand_in.start()
        wait_for(lambda: "the server answers again" in log.read_text(), "the way back")
        wait_for(lambda: stand_in.loads > loads, "the kiosk page to come back")
        assert len(pids()) == 2  # the browser was steered back, not restarted
    finally:
        launcher.send_signal(signal.SIGTERM)
        status = launcher.wait(30)
    assert status == 0, log.read_text()
    assert "stopped Chromium" in log.read_text()
    assert not any(alive(pid) for pid in pids())


def test_the_kiosk_flags_allow_sound_and_print_silently() -> None:
    assert "--kiosk-printing" in KIOSK_FLAGS
    assert "--autoplay-policy=no-user-gesture-required" in KIOSK_FLAGS
    assert "--remote-debugging-pipe" in KIOSK_FLAGS
