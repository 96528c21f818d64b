"""``madoguchi kiosk launch URL``: Chromium in kiosk mode, kept running for months.

The launcher

- writes Chromium's managed policy (``/etc/chromium/policies/managed/madoguchi.json``
  for Debian's Chromium; ``--policy-dir`` elsewhere): camera and microphone allowed
  for the kiosk's origin only and without a prompt, nothing but that origin (and the
  local waiting page) reachable, silent printing, no password manager, no translation,
  no sign-in, sync, downloads, file dialogs or developer tools;
- starts Chromium with its own profile directory and the kiosk flags (full screen,
  silent printing to the default printer, no first-run pages, no translate bar, no
  pinch zoom or overscroll navigation, sound allowed without a touch first);
- restarts Chromium when it exits or crashes, waiting 1 s, then 2, 4 … up to
  :data:`MAX_BACKOFF` seconds between attempts (back to 1 s once it has run a minute);
- polls the server's ``/livez``; while the server does not answer it shows a local
  page (a file it writes) that says, calmly, that the kiosk is waiting for the server,
  and goes back to the URL as soon as the server answers.

It talks to Chromium over ``--remote-debugging-pipe`` (the DevTools protocol on two
pipes, fds 3 and 4, so no port is open to anyone else) to read the page shown and to
navigate. SIGTERM or Ctrl-C stops Chromium and the launcher.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_POLICY_DIR = Path("/etc/chromium/policies/managed")
POLICY_FILE = "madoguchi.json"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Longest wait between two restarts of a browser that keeps dying, in seconds.
MAX_BACKOFF = 30.0
#: A browser that ran this long is healthy again: the next restart waits 1 s.
STABLE_AFTER = 60.0
#: Failed polls in a row before the waiting page is shown.
FAILURES_BEFORE_WAITING = 2
#: Seconds a DevTools command may take.
COMMAND_TIMEOUT = 10.0
KIOSK_FLAGS = (
    "--kiosk",
    "--kiosk-printing",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-translate",
    "--disable-features=Translate,TranslateUI,OverscrollHistoryNavigation,"
    "InfiniteSessionRestore,MediaRouter",
    "--overscroll-history-navigation=0",
    "--disable-pinch",
    "--autoplay-policy=no-user-gesture-required",
    "--noerrdialogs",
    "--disable-infobars",
    "--disable-session-crashed-bubble",
    "--hide-crash-restore-bubble",
    "--disable-background-networking",
    "--check-for-update-interval=31536000",
    "--password-store=basic",
    "--remote-debugging-pipe",
)

WAITING_PAGE = """<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>サーバーを待っています</title>
<style>
html {{ height: 100%; background: #ffffff; color: #000000;
  font-family: "Noto Sans CJK JP", "Noto Sans JP", sans-serif; }}
body {{ margin: 0; min-height: 100%; display: flex; align-items: center; justify-content: center; }}
main {{ max-width: 900px; padding: 48px; text-align: center; }}
h1 {{ font-size: 56px; margin: 0 0 32px; }}
p {{ font-size: 32px; line-height: 1.6; margin: 0 0 24px; }}
p[lang=en] {{ font-size: 28px; color: #222222; }}
</style>
</head>
<body>
<main>
<h1>しばらくお待ちください</h1>
<p>ただいま区役所のサーバーにつながるのを待っています。<br>
つながると、自動で元の画面にもどります。</p>
<p>急ぎのご用は、窓口の職員にお声がけください。</p>
<p lang="en">Please wait a moment. This kiosk is waiting for the ward office's server,
and will come back by itself as soon as it answers.</p>
<p class="where" lang="en">{origin}</p>
</main>
</body>
</html>
"""


class LaunchError(Exception):
    """Something the user must fix (no Chromium, a policy directory not writable)."""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise LaunchError(f'"{url}" is not an http:// or https:// URL')
    return f"{parts.scheme}://{parts.netloc}"


def policy(url: str, waiting_url: str) -> dict[str, Any]:
    """Chromium's managed policy for a kiosk of ``url``."""
    origin = origin_of(url)
    return {
        # Camera and microphone: for our origin only, never a prompt.
        "VideoCaptureAllowed": False,
        "AudioCaptureAllowed": False,
        "VideoCaptureAllowedUrls": [origin],
        "AudioCaptureAllowedUrls": [origin],
        "DefaultNotificationsSetting": 2,
        "DefaultGeolocationSetting": 2,
        # Only our site, and the page shown while it is away.
        "URLBlocklist": ["*"],
        "URLAllowlist": [origin, waiting_url, "about:blank"],
        # Receipts print at once on the default printer.
        "PrintingEnabled": True,
        "DisablePrintPreview": True,
        "PrintPreviewUseSystemDefaultPrinter": True,
        # Spoken guidance and call chimes play without a touch first.
        "AutoplayAllowed": True,
        # Nothing a stranger could use or leave behind.
        "PasswordManagerEnabled": False,
        "AutofillAddressEnabled": False,
        "AutofillCreditCardEnabled": False,
        "TranslateEnabled": False,
        "BrowserSignin": 0,
        "SyncDisabled": True,
        "IncognitoModeAvailability": 1,
        "DownloadRestrictions": 3,
        "AllowFileSelectionDialogs": False,
        "BookmarkBarEnabled": False,
        "EditBookmarksEnabled": False,
        "DefaultBrowserSettingEnabled": False,
        "MetricsReportingEnabled": False,
        "SpellcheckEnabled": False,
        "BackgroundModeEnabled": False,
        "HideWebStoreIcon": True,
    }


def write_policy(policy_dir: Path, url: str, waiting_url: str) -> Path:
    path = policy_dir / POLICY_FILE
    try:
        policy_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(policy(url, waiting_url), indent=2, sort_keys=True) + "\n"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.chmod(0o644)
        temporary.replace(path)
    except PermissionError as exc:
        raise LaunchError(
            f"cannot write the browser policy to {path}: run as root, or pass --policy-dir"
        ) from exc
    return path


def write_waiting_page(state_dir: Path, url: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "waiting.html"
    path.write_text(WAITING_PAGE.format(origin=origin_of(url)), encoding="utf-8")
    return path


def find_chromium(given: str | None) -> str:
    if given:
        found = shutil.which(given)
        if found is None:
            raise LaunchError(f'no browser at "{given}"')
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise LaunchError("no Chromium found: install it (Debian: apt-get install chromium)")


def server_answers(url: str, timeout: float = 3.0) -> bool:
    """Whether the server's ``/livez`` answers 200."""
    try:
        with urllib.request.urlopen(  # noqa: S310 (an http(s) URL: origin_of checked it)
            origin_of(url) + "/livez", timeout=timeout
        ) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class DevTools:
    """The DevTools protocol over Chromium's ``--remote-debugging-pipe``: JSON messages
    ending in a NUL byte, commands written to its fd 3, answers read from its fd 4."""

    def __init__(self, commands: int, answers: int) -> None:
        self._out = os.fdopen(commands, "wb", buffering=0)
        self._in = os.fdopen(answers, "rb", buffering=0)
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self._ready = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True, name="devtools")
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                decoded = json.loads(message)
                if "id" in decoded:
                    with self._ready:
                        self._answers[decoded["id"]] = decoded
                        self._ready.notify_all()
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its answer; :class:`OSError` if the browser is gone."""
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + COMMAND_TIMEOUT
        with self._ready:
            while number not in self._answers:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise OSError(f"no answer from the browser to {method}")
                self._ready.wait(left)
            answer = self._answers.pop(number)
        if "error" in answer:
            raise OSError(f"{method}: {answer['error'].get('message', answer['error'])}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def page(self) -> dict[str, Any] | None:
        """The page target the kiosk shows (the first one), if any."""
        targets = self.call("Target.getTargets")["targetInfos"]
        pages = [t for t in targets if t.get("type") == "page"]
        return pages[0] if pages else None

    def navigate(self, target: str, url: str) -> None:
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            self.call("Page.navigate", session, url=url)
        finally:
            self.call("Target.detachFromTarget", sessionId=session)

    def close(self) -> None:
        for stream in (self._out, self._in):
            with contextlib.suppress(OSError):
                stream.close()


@dataclass
class Browser:
    process: subprocess.Popen[bytes]
    devtools: DevTools
    started: float

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                _kill(self.process)
        self.devtools.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait(10)


@dataclass
class Launcher:
    url: str
    chromium: str
    profile_dir: Path
    waiting_url: str
    extra_flags: tuple[str, ...] = ()
    poll_seconds: float = 5.0
    stop: threading.Event = field(default_factory=threading.Event)

    def start_browser(self, first_url: str) -> Browser:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        to_browser, commands = os.pipe()  # we write commands; Chromium reads fd 3
        answers, from_browser = os.pipe()  # Chromium writes fd 4; we read answers
        arguments = [
            *KIOSK_FLAGS,
            f"--user-data-dir={self.profile_dir}",
            *self.extra_flags,
            first_url,
        ]
        # The shell puts the pipe ends at fds 3 and 4, where Chromium looks for them.
        wrapper = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        process = subprocess.Popen(  # noqa: S603 (our own arguments)
            ["/bin/sh", "-c", wrapper, self.chromium, *arguments],
            pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        os.close(to_browser)
        os.close(from_browser)
        log.info("started Chromium (pid %d) at %s", process.pid, first_url)
        return Browser(process, DevTools(commands, answers), time.monotonic())

    def run(self) -> int:
        browser: Browser | None = None
        backoff = 1.0
        failures = 0
        try:
            while not self.stop.is_set():
                up = server_answers(self.url)
                failures = 0 if up else failures + 1
                if browser is not None and browser.process.poll() is not None:
                    ran = time.monotonic() - browser.started
                    log.warning(
                        "Chromium (pid %d) exited with %s after %.0f s; restarting in %.0f s",
                        browser.process.pid,
                        browser.process.returncode,
                        ran,
                        backoff,
                    )
                    _kill(browser.process)  # what is left of it: renderers, the zygote
                    browser.devtools.close()
                    browser = None
                    if ran >= STABLE_AFTER:
                        backoff = 1.0
                    if self.stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                if browser is None:
                    browser = self.start_browser(self.url if up else self.waiting_url)
                else:
                    self.steer(browser, up, failures)
                self.stop.wait(self.poll_seconds)
        finally:
            if browser is not None:
                browser.stop()
                log.info("stopped Chromium (pid %d)", browser.process.pid)
        return 0

    def steer(self, browser: Browser, up: bool, failures: int) -> None:
        """Show the waiting page while the server is away; go back when it answers."""
        try:
            page = browser.devtools.page()
            if page is None:
                return
            shown = str(page.get("url", ""))
            waiting = shown.startswith(self.waiting_url) or shown.startswith("chrome-error:")
            if up and waiting:
                log.info("the server answers again: back to %s", self.url)
                browser.devtools.navigate(page["targetId"], self.url)
            elif not up and not waiting and failures >= FAILURES_BEFORE_WAITING:
                log.info("the server does not answer: showing the waiting page")
                browser.devtools.navigate(page["targetId"], self.waiting_url)
        except OSError as exc:
            log.warning("cannot steer Chromium: %s", exc)


# -- the command ----------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``kiosk`` and its subcommands to the ``madoguchi`` command."""
    summary = "run a kiosk: Chromium in kiosk mode, kept running"
    parser = commands.add_parser(
        "kiosk", help=summary, description=summary[0].upper() + summary[1:] + "."
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    launch = actions.add_parser(
        "launch",
        help="start Chromium in kiosk mode on URL and keep it there",
        description=(
            "Write Chromium's managed policy (camera and microphone for URL's origin only, "
            "silent printing, nothing else reachable), start Chromium in kiosk mode on URL "
            "with a profile of its own, restart it when it dies, and show a waiting page "
            "while the server does not answer. Stop it with Ctrl-C or SIGTERM."
        ),
        epilog=(
            "Enroll the kiosk once: open URL's /kiosk/enroll (it goes there by itself when "
            "not enrolled) and enter the code an administrator issued at /admin/kiosks."
        ),
    )
    launch.add_argument("url", metavar="URL", help="the kiosk's start page, e.g. https://…/kiosk/")
    launch.add_argument(
        "--policy-dir",
        type=Path,
        default=DEFAULT_POLICY_DIR,
        help=f"where Chromium reads managed policies (default: {DEFAULT_POLICY_DIR}; "
        "Google Chrome: /etc/opt/chrome/policies/managed)",
    )
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    launch.add_argument(
        "--profile-dir",
        type=Path,
        default=state / "madoguchi-kiosk" / "profile",
        help="Chromium's profile directory, the kiosk's own (default: %(default)s)",
    )
    launch.add_argument(
        "--chromium", metavar="PATH", help="the browser to run (default: chromium on PATH)"
    )
    launch.add_argument(
        "--chromium-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more Chromium flag, e.g. --chromium-flag=--force-device-scale-factor=1.5",
    )
    launch.add_argument(
        "--poll-seconds",
        type=float,
        default=5.0,
        help="how often to ask the server's /livez (default: 5)",
    )


def launch(options: argparse.Namespace) -> int:
    """Run ``madoguchi kiosk launch``; returns the exit status."""
    try:
        url: str = options.url
        origin_of(url)
        chromium = find_chromium(options.chromium)
        profile_dir: Path = options.profile_dir.resolve()
        waiting = write_waiting_page(profile_dir.parent, url)
        written = write_policy(options.policy_dir, url, waiting.as_uri())
    except LaunchError as exc:
        print(f"madoguchi: {exc}", file=sys.stderr, flush=True)
        return 2
    log.info("wrote the browser policy to %s", written)
    launcher = Launcher(
        url,
        chromium,
        profile_dir,
        waiting.as_uri(),
        tuple(options.chromium_flag),
        max(0.2, float(options.poll_seconds)),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        launcher.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return launcher.run()
