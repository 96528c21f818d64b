"""The ``madoguchi`` command: ``serve``, ``demo``, ``worker``, ``replay`` and ``admin``.

``serve`` runs everything on one machine. When ``REDIS_URL`` is unset it starts an
embedded Redis under the data directory, then the web process (uvicorn) and the
worker process (``madoguchi worker``), and supervises them: Ctrl-C or SIGTERM stops
the web process, then the worker, then Redis (which flushes its append-only file),
and exits 0. If one of them dies on its own, ``serve`` says so, stops the others and
exits 1. A web port already taken or no ``redis-server`` to run is a one-line message
and exit status 2.

Only ``serve`` receives Ctrl-C, so it alone decides the order of the shutdown: the
web and worker processes lead process groups of their own (which also lets ``serve``
clear out anything they forked), and the embedded Redis starts with SIGINT blocked.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from redis import ConnectionError as RedisConnectionError
from redis import Redis
from redis import TimeoutError as RedisTimeoutError
from redis.asyncio import Redis as AsyncRedis
from rq import Worker
from rq.serializers import JSONSerializer

from . import __version__, admin, demo
from .consult.forms import FormsLibrary
from .embedded import EmbeddedRedisError, RedisServer, find_redis_server, port_is_free
from .kiosk import launcher
from .kiosk.devices import KioskStore
from .queue.jobs import job_queue, schedule_close_past_days, schedule_roll_up_past_days
from .queue.tickets import QueueClient
from .settings import Settings, load_settings
from .web.accounts import AccountStore, password_hasher
from .web.http import PROTOCOL as HTTP_PROTOCOL

log = logging.getLogger(__name__)

#: The app factory the web process runs.
APP_FACTORY = "madoguchi.web.app:create_app"
#: Exit status for a problem the user can fix: a port taken, no redis-server, no REDIS_URL.
USAGE_ERROR = 2
#: How long the web process may take to listen after it starts, in seconds.
WEB_START_TIMEOUT = 30.0
#: How long each process may take to stop before it is killed, in seconds.
STOP_TIMEOUT = 15.0
#: How often ``serve`` checks on its processes, in seconds.
POLL_INTERVAL = 0.2


class SetupError(Exception):
    """Something the user must fix before ``serve`` can run; the message says what."""


class ProcessFailure(Exception):
    """A supervised process failed: ``serve`` stops the others and exits 1."""


class ChildExited(ProcessFailure):
    """A supervised process exited on its own."""

    def __init__(self, name: str, status: int) -> None:
        super().__init__(f"the {name} process exited unexpectedly ({describe(status)})")
        self.name = name
        self.status = status


def describe(status: int) -> str:
    """An exit status as ``subprocess`` reports it, in words."""
    if status < 0:
        return f"signal {signal.Signals(-status).name}"
    return f"status {status}"


@dataclass
class Child:
    """A web or worker process, started as the leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        """Whether it exited, without reaping it.

        Until it is reaped its pid, and so its process group id, cannot be reused,
        which makes killing what is left of the group safe.
        """
        if self.process.returncode is not None:
            return True
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self.pid, flags) is not None

    def reap(self) -> int:
        """Kill what it left behind in its process group, then collect its exit status."""
        if self.process.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        return self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Ask it to stop (SIGTERM); kill its whole group if it has not within ``timeout``."""
        if self.process.returncode is not None:
            return self.process.returncode
        if not self.exited():
            log.info("%s (pid %d) stopping", self.name, self.pid)
            # Not Popen.send_signal: that polls, which would reap the process.
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not self.exited():
                log.warning(
                    "%s (pid %d) did not stop within %s s; killing it", self.name, self.pid, timeout
                )
        status = self.reap()
        log.info("%s (pid %d) stopped (%s)", self.name, self.pid, describe(status))
        return status


@dataclass(frozen=True)
class Backend:
    """The Redis everything uses, and the embedded server when ``serve`` started one."""

    url: str
    server: RedisServer | None = None

    def check(self) -> None:
        """Raise :class:`ChildExited` if the embedded Redis has exited."""
        process = None if self.server is None else self.server.process
        if process is not None and process.poll() is not None:
            raise ChildExited("redis", process.returncode)


class StopRequest:
    """Turns SIGINT, SIGTERM and SIGHUP into a flag the supervising loop waits on."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.is_set():
            self.signal = signal.Signals(signum).name
        self.event.set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    @property
    def requested(self) -> bool:
        return self.event.is_set()


# -- serve and demo ---------------------------------------------------------------------


def serve(settings: Settings, *, with_demo: bool = False) -> int:
    """Run Redis (embedded unless ``REDIS_URL`` is set), the web and the worker processes."""
    stop = StopRequest()
    stop.install()
    try:
        with _redis(settings) as backend:
            if with_demo:
                try:
                    asyncio.run(_seed_demo(backend.url, settings))
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    raise SetupError(f"cannot reach Redis to seed the demo: {exc}") from None
            if stop.requested:
                return 0
            return _supervise(settings, backend, stop, with_demo=with_demo)
    except SetupError as exc:
        print(f"madoguchi: {exc}", file=sys.stderr)
        return USAGE_ERROR


#: What ``serve`` says when another one holds the data directory.
SERVE_BUSY = (
    "{data_dir} is in use by another madoguchi serve: stop it, or choose another --data-dir"
)


@contextmanager
def _redis(settings: Settings, *, web: bool = True, busy: str = SERVE_BUSY) -> Iterator[Backend]:
    """The Redis to use: ``REDIS_URL``, or an embedded one started for the duration.

    ``web``: the web port must be free too. ``busy``: what to say when a ``serve``
    holds the data directory (``{data_dir}`` is filled in).
    """
    if web and not port_is_free(settings.host, settings.port):
        raise SetupError(
            f"port {settings.port} on {settings.host} is taken: stop what uses it, "
            "or choose another with --port"
        )
    if settings.redis_url is not None:
        yield Backend(settings.redis_url)
        return
    data_dir = settings.data_dir.resolve()
    try:
        binary = _redis_binary(settings)
    except EmbeddedRedisError as exc:
        raise SetupError(str(exc)) from None
    with _locked(data_dir, busy):
        server = RedisServer(
            binary=binary,
            data_dir=data_dir / "redis",
            port=settings.redis_port,
            fsync=settings.redis_fsync,
        )
        try:
            # The terminal sends Ctrl-C to the whole foreground process group; Redis
            # must keep serving until the web and worker processes have stopped, so it
            # starts with SIGINT blocked (the mask survives exec) and stops on SIGTERM.
            with _blocked(signal.SIGINT):
                server.start()
        except EmbeddedRedisError as exc:
            raise SetupError(str(exc)) from None
        try:
            yield Backend(server.url, server)
        finally:
            log.info("redis %s stopping", server.url)
            server.stop()
            log.info("redis %s stopped", server.url)


def _redis_binary(settings: Settings) -> Path:
    if not settings.redis_server:
        return find_redis_server()
    binary = Path(settings.redis_server)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise EmbeddedRedisError(
            f"redis-server {binary} (MADOGUCHI_REDIS_SERVER) does not exist or is not executable"
        )
    return binary


@contextmanager
def _locked(data_dir: Path, busy: str = SERVE_BUSY) -> Iterator[None]:
    """Hold the data directory, so that two embedded Redis never share one append-only file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "serve.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SetupError(busy.format(data_dir=data_dir)) from None
        yield


@contextmanager
def _blocked(signum: signal.Signals) -> Iterator[None]:
    """Block ``signum`` here and in processes started meanwhile; a pending one arrives after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def _seed_demo(redis_url: str, settings: Settings) -> demo.Seeded:
    redis = AsyncRedis.from_url(redis_url, decode_responses=True)
    hasher = password_hasher(settings.password_hash_memory_kib, settings.password_hash_time_cost)
    try:
        seeded = await demo.seed(QueueClient(redis, settings), now=time.time())
        await demo.seed_accounts(AccountStore(redis, hasher=hasher))
        await demo.seed_kiosks(KioskStore(redis))
        await demo.seed_forms(FormsLibrary(redis))
        return seeded
    finally:
        await redis.aclose()


def _supervise(settings: Settings, backend: Backend, stop: StopRequest, *, with_demo: bool) -> int:
    environ = _child_environment(settings, backend.url)
    children = [
        _start("web", _web_command(settings), environ),
        _start("worker", [sys.executable, "-m", "madoguchi.cli", "worker"], environ),
    ]
    try:
        if _wait_until_listening(settings, backend, children, stop):
            _print_welcome(settings, backend.url, with_demo=with_demo)
            while not stop.wait(POLL_INTERVAL):
                _check(backend, children)
    except ProcessFailure as exc:
        log.error("%s; stopping the others", exc)
        return 1
    else:
        log.info("%s received; stopping", stop.signal)
        return 0
    finally:
        # Web first, so no request finds the worker or Redis gone; Redis last.
        for child in children:
            child.stop()


#: Signaling messages are at most 64 KiB: refuse bigger frames before buffering them, and
#: notice a kiosk that lost power within about 20 s rather than a minute.
WEBSOCKET_FLAGS = ("--ws-max-size", "131072", "--ws-ping-interval", "10", "--ws-ping-timeout", "10")


def _web_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        APP_FACTORY,
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--http",
        HTTP_PROTOCOL,
        "--loop",
        "uvloop",
        # Open event streams would otherwise hold a graceful shutdown forever.
        "--timeout-graceful-shutdown",
        "5",
        *WEBSOCKET_FLAGS,
    ]


def _child_environment(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment of the web and worker processes: ours, plus what ``serve`` decided.

    The children read their settings from it with their own ``load_settings``.
    """
    environ = dict(os.environ)
    environ.update(
        REDIS_URL=redis_url,
        MADOGUCHI_HOST=settings.host,
        MADOGUCHI_PORT=str(settings.port),
        MADOGUCHI_DATA_DIR=str(settings.data_dir.resolve()),
        MADOGUCHI_LOG_LEVEL=settings.log_level,
    )
    return environ


def _start(name: str, command: Sequence[str], environ: Mapping[str, str]) -> Child:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, env=environ, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.info("%s (pid %d) started", name, process.pid)
    return Child(name, process)


def _check(backend: Backend, children: Sequence[Child]) -> None:
    backend.check()
    for child in children:
        if child.exited():
            raise ChildExited(child.name, child.reap())


def _wait_until_listening(
    settings: Settings, backend: Backend, children: Sequence[Child], stop: StopRequest
) -> bool:
    """Wait for the web process to accept connections; ``False`` if asked to stop first."""
    address = (_local_host(settings.host), settings.port)
    deadline = time.monotonic() + WEB_START_TIMEOUT
    while not stop.wait(0.05):
        _check(backend, children)
        with socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET) as probe:
            if probe.connect_ex(address) == 0:
                return True
        if time.monotonic() > deadline:
            raise ProcessFailure(
                f"the web process does not listen on port {settings.port} "
                f"after {WEB_START_TIMEOUT:.0f} s"
            )
    return False


def _local_host(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _print_welcome(settings: Settings, redis_url: str, *, with_demo: bool) -> None:
    host = _local_host(settings.host)
    base = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    lines = [
        f"Madoguchi is running at {base}",
        f"  waits now:      {base}/  (open data: {base}/open/)",
        f"  offices:        {base}/api/v1/offices",
        f"  API reference:  {base}/api/v1/openapi.json",
        f"  metrics:        {base}/metrics",
        f"  Redis:          {_redacted(redis_url)}",
    ]
    if with_demo:
        lines[3:3] = [f"  one office:     {base}/api/v1/offices/kokurakita"]
        lines += [
            "",
            f"Staff sign-in at {base}/staff/signin (demo accounts only: "
            f"everyone's password is {demo.DEMO_PASSWORD}):",
            *(
                f"  {login.account.username:<16} {login.account.role.value:<11} "
                f"{base}{login.opens}  {login.account.name}"
                for login in demo.LOGINS
            ),
            "",
            "Take a ticket at 小倉北区役所 on a phone (its entrance poster: add /poster):",
            f"  {base}/o/kokurakita",
            f"its lobby board: {base}/o/kokurakita/board; appointments: "
            f"{base}/o/kokurakita/appointments",
            "or through the API:",
            f"  curl -X POST {base}/api/v1/offices/kokurakita/tickets "
            "-H 'Content-Type: application/json' "
            """-d '{"service": "certs", "channel": "web"}'""",
            "",
            "A video consultation: enroll a kiosk of 小倉北区役所 (below) in a browser with",
            "a camera, touch 担当者と話す and a topic there, and take the call as tanaka at",
            f"  {base}/staff/consult/kokurakita",
            "",
            "Ward offices and their branch kiosks. To enroll a kiosk, sign in as admin, issue",
            f"its code at {base}/admin/kiosks/ID, and enter it at {base}/kiosk/enroll:",
        ]
        for office in demo.CITY:
            kiosks = "、".join(f"{kiosk.name_ja} ({kiosk.id})" for kiosk in office.kiosks)
            lines.append(f"  {office.office.id:<14} {office.office.name_ja}  kiosks: {kiosks}")
    lines += ["", "Press Ctrl-C to stop."]
    print("\n".join(lines), flush=True)


def _redacted(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# -- worker -----------------------------------------------------------------------------


def work(settings: Settings, *, burst: bool = False) -> int:
    """Run an rq worker with its scheduler on the ``madoguchi`` queue."""
    if settings.redis_url is None:
        print(
            "madoguchi: the worker needs REDIS_URL (madoguchi serve sets it for its own worker)",
            file=sys.stderr,
        )
        return USAGE_ERROR
    connection = Redis.from_url(settings.redis_url)
    try:
        schedule_close_past_days(connection, now=time.time())
        schedule_roll_up_past_days(connection, now=time.time())
        # Imported here: the probe's module brings the web app's (and python-escpos, which
        # configures logging when imported: after main() has, it changes nothing).
        from .consult.probe import schedule_probes

        schedule_probes(connection, settings.kiosk_probe_hours, now=time.time())
    except RedisConnectionError as exc:
        print(f"madoguchi: cannot reach Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    worker = Worker([job_queue(connection)], connection=connection, serializer=JSONSerializer)
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    finally:
        connection.close()
    return 0


# -- the command ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="madoguchi",
        description="Ward-office counters: a live ticket queue and remote consultation.",
    )
    parser.add_argument("--version", action="version", version=f"madoguchi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in (
        ("serve", "run Redis (embedded unless REDIS_URL is set), the web and the worker"),
        ("demo", "like serve, with Kitakyushu's seven ward offices seeded first"),
    ):
        command = commands.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + "."
        )
        command.add_argument("--host", help="interface the web process binds to (MADOGUCHI_HOST)")
        command.add_argument("--port", type=int, help="port of the web process (MADOGUCHI_PORT)")
        command.add_argument(
            "--data-dir",
            type=Path,
            help="where the embedded Redis keeps its data (MADOGUCHI_DATA_DIR)",
        )
    worker = commands.add_parser(
        "worker",
        help="run the rq worker and its scheduler (needs REDIS_URL)",
        description="Run an rq worker, with the scheduler, on the madoguchi queue.",
    )
    worker.add_argument("--burst", action="store_true", help="quit once the queue is empty")
    commands.add_parser(
        "replay",
        help="replay office-day traces in virtual time (madoguchi replay --help)",
        add_help=False,
    )
    admin.add_parser(commands)
    launcher.add_parser(commands)
    return parser


def administer(settings: Settings, options: argparse.Namespace) -> int:
    """Run ``madoguchi admin``: on ``REDIS_URL``, or on the embedded Redis of the data dir."""
    try:
        order = admin.prepare(options, sys.stdin)
        busy = (
            "{data_dir} is in use by a running madoguchi serve: set REDIS_URL to the Redis "
            "it printed when it started, or stop it first"
        )
        with _redis(settings, web=False, busy=busy) as backend:
            said = asyncio.run(admin.run(order, backend.url, settings))
    except (SetupError, admin.AdminError) as exc:
        print(f"madoguchi: {exc}", file=sys.stderr)
        return USAGE_ERROR if isinstance(exc, SetupError) else 1
    except (RedisConnectionError, RedisTimeoutError) as exc:
        print(f"madoguchi: cannot reach Redis: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(said)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``madoguchi`` command; returns its exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["replay"]:
        # replay has its own parser, --help included.
        from .queue.replay import main as replay

        return replay(arguments[1:])
    options = _parser().parse_args(arguments)
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"madoguchi: {exc}", file=sys.stderr)
        return USAGE_ERROR
    overrides = {
        name: value
        for name in ("host", "port", "data_dir")
        if (value := getattr(options, name, None)) is not None
    }
    try:
        settings = dataclasses.replace(settings, **overrides)
    except ValueError as exc:
        print(f"madoguchi: {exc}", file=sys.stderr)
        return USAGE_ERROR
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if options.command == "worker":
        return work(settings, burst=options.burst)
    if options.command == "admin":
        return administer(settings, options)
    if options.command == "kiosk":
        return launcher.launch(options)
    return serve(settings, with_demo=options.command == "demo")


if __name__ == "__main__":
    sys.exit(main())
