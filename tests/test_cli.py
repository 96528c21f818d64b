"""The ``madoguchi`` command, run as real processes: serve, demo, worker, and their failures."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psutil
import pytest
import redis
from rq.job import JobStatus

from madoguchi.cli import main
from madoguchi.embedded import free_port
from madoguchi.queue.jobs import close_day, job_queue

MADOGUCHI = [sys.executable, "-m", "madoguchi.cli"]


def environment(**extra: str) -> dict[str, str]:
    """The test's environment without any Madoguchi setting, plus ``extra``."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if name != "REDIS_URL" and not name.startswith("MADOGUCHI_")
    }
    return {**clean, **extra}


@dataclass
class Running:
    """A ``madoguchi serve`` or ``demo`` process that has printed its welcome."""

    process: subprocess.Popen[str]
    port: int
    welcome: str
    stderr: Path
    tree: list[psutil.Process] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def redis_url(self) -> str:
        match = re.search(r"Redis:\s+(\S+)", self.welcome)
        assert match, self.welcome
        return match.group(1)

    def child(self, name: str) -> psutil.Process:
        """The direct child whose command line mentions ``name``."""
        for child in psutil.Process(self.process.pid).children():
            if any(name in part for part in child.cmdline()):
                return child
        raise LookupError(f"no {name} process under {self.process.pid}")

    def errors(self) -> str:
        return self.stderr.read_text()

    def stop(self, signum: signal.Signals = signal.SIGINT, timeout: float = 15) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def ctrl_c(self, timeout: float = 15) -> int:
        """Ctrl-C at a terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)


Start = Callable[..., Running]


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start ``madoguchi <command>`` on a free port; everything it started is gone afterwards."""
    started: list[Running] = []

    def run(command: str = "serve", data_dir: Path | None = None, **env: str) -> Running:
        port = free_port()
        data_dir = data_dir or tmp_path / "data"
        stderr = tmp_path / f"{command}-{port}.err"
        with stderr.open("w") as errors:
            process = subprocess.Popen(
                [*MADOGUCHI, command, "--port", str(port), "--data-dir", str(data_dir)],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=environment(**env),
                start_new_session=True,  # its own process group, as at a terminal
            )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        else:
            process.wait(15)
            process.stdout.close()
            pytest.fail(f"{command} exited with {process.returncode}: {stderr.read_text()}")
        running = Running(process, port, "".join(lines), stderr)
        running.tree = psutil.Process(process.pid).children(recursive=True)
        started.append(running)
        return running

    yield run
    for running in started:
        if running.process.poll() is None:
            running.process.terminate()
            running.process.wait(20)
        for leftover in still_running(running.tree):
            leftover.kill()
        assert running.process.stdout is not None
        running.process.stdout.close()


def test_serve_answers_and_sigint_stops_everything(start: Start, tmp_path: Path) -> None:
    served = start()
    assert len(served.tree) >= 4  # redis, web, worker and the worker's scheduler
    livez = httpx.get(served.url("/livez"), timeout=5)
    assert livez.status_code == 200
    assert httpx.get(served.url("/readyz"), timeout=5).json() == {"status": "ready"}
    assert httpx.get(served.url("/api/v1/offices"), timeout=5).json() == {"offices": []}

    began = time.monotonic()
    assert served.stop(signal.SIGINT) == 0
    assert time.monotonic() - began < 10
    psutil.wait_procs(served.tree, timeout=5)
    assert still_running(served.tree) == []
    assert "Traceback" not in served.errors()
    assert (tmp_path / "data" / "redis" / "appendonly.aof").is_file()


def test_sigterm_stops_everything_too(start: Start) -> None:
    served = start()
    assert served.stop(signal.SIGTERM) == 0
    psutil.wait_procs(served.tree, timeout=5)
    assert still_running(served.tree) == []


def test_ctrl_c_at_a_terminal_stops_in_order(start: Start) -> None:
    served = start()
    assert served.ctrl_c() == 0
    psutil.wait_procs(served.tree, timeout=5)
    assert still_running(served.tree) == []
    errors = served.errors()
    assert "Traceback" not in errors
    steps = [
        r"web \(pid \d+\) stopped",
        r"worker \(pid \d+\) stopped \(status 0\)",
        r"redis redis://\S+ stopping",
        r"redis redis://\S+ stopped",
    ]
    found = [re.search(step, errors) for step in steps]
    assert all(found), errors
    places = [match.start() for match in found if match]
    assert places == sorted(places), errors


def test_the_worker_runs_jobs(start: Start) -> None:
    served = start()
    connection = redis.Redis.from_url(served.redis_url)
    try:
        job = job_queue(connection).enqueue(close_day, "kokurakita", "2026-11-26")
        deadline = time.monotonic() + 20
        while job.get_status() not in (JobStatus.FINISHED, JobStatus.FAILED):
            assert time.monotonic() < deadline, "the worker did not run the job"
            time.sleep(0.05)
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value() == 0  # no such office yet: nothing to close
    finally:
        connection.close()
    assert served.stop() == 0


def test_a_data_dir_serves_one_at_a_time(start: Start, tmp_path: Path) -> None:
    served = start()
    second = subprocess.run(
        [*MADOGUCHI, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
    )
    assert second.returncode == 2
    assert "is in use by another madoguchi serve" in second.stderr
    assert served.stop() == 0


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*MADOGUCHI, "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=environment(),
            timeout=30,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"madoguchi: port {port} on 127.0.0.1 is taken: stop what uses it, "
        "or choose another with --port"
    ]


def test_a_missing_redis_server_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "redis-server"
    result = subprocess.run(
        [*MADOGUCHI, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment(PATH="/nonexistent", MADOGUCHI_REDIS_SERVER=str(missing)),
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"madoguchi: redis-server {missing} (MADOGUCHI_REDIS_SERVER) "
        "does not exist or is not executable"
    ]


def test_a_child_that_dies_stops_the_rest(start: Start) -> None:
    served = start()
    served.child("worker").kill()
    assert served.process.wait(20) == 1
    assert "the worker process exited unexpectedly (signal SIGKILL)" in served.errors()
    psutil.wait_procs(served.tree, timeout=5)
    assert still_running(served.tree) == []


def test_a_ticket_survives_a_crash(start: Start, tmp_path: Path) -> None:
    data = tmp_path / "durable"
    served = start("demo", data_dir=data)
    taken = httpx.post(
        served.url("/api/v1/offices/kokurakita/tickets"),
        json={"service": "certs", "channel": "web"},
        timeout=5,
    )
    assert taken.status_code == 201, taken.text
    ticket = taken.json()["ticket"]

    # Power cut: Redis, the web and the worker die at once, with no chance to flush.
    victims = [served.child(name) for name in ("redis-server", "uvicorn", "worker")]
    for victim in victims:
        victim.kill()
    assert served.process.wait(20) == 1
    psutil.wait_procs(served.tree, timeout=5)
    assert still_running(served.tree) == []

    again = start("serve", data_dir=data)
    read = httpx.get(again.url(f"/api/v1/offices/kokurakita/tickets/{ticket['token']}"), timeout=5)
    assert read.status_code == 200, read.text
    assert read.json()["ticket"]["number"] == ticket["number"]
    assert read.json()["ticket"]["status"] == "waiting"
    assert again.stop() == 0


def test_demo_prints_what_to_open_and_working_logins(start: Start) -> None:
    served = start("demo")
    for path in ("/api/v1/offices", "/api/v1/offices/kokurakita", "/api/v1/openapi.json"):
        assert served.url(path) in served.welcome
        assert httpx.get(served.url(path), timeout=5).status_code == 200
    assert served.url("/metrics") in served.welcome
    assert served.url("/staff/signin") in served.welcome
    assert "門司区役所" in served.welcome
    assert "大里市民センター" in served.welcome
    assert "Bearer" not in served.welcome
    password = re.search(r"everyone's password is (\S+)\)", served.welcome)
    assert password, served.welcome
    logins = re.findall(r"^  (\S+) +(staff|supervisor|admin) +(http\S+)", served.welcome, re.M)
    assert {role for _, role, _ in logins} == {"staff", "supervisor", "admin"}, served.welcome
    offices = httpx.get(served.url("/api/v1/offices"), timeout=5).json()["offices"]
    assert len(offices) == 7

    ticket = httpx.post(
        served.url("/api/v1/offices/kokurakita/tickets"), json={"service": "care"}, timeout=5
    ).json()["ticket"]
    by_id = served.url(f"/api/v1/offices/kokurakita/tickets/{ticket['id']}")
    assert httpx.get(by_id, timeout=5).status_code == 401
    staff = httpx.Client(timeout=5)
    for username, _, opens in logins:
        signed = staff.post(
            served.url("/api/v1/session"),
            json={"username": username, "password": password.group(1)},
        )
        assert signed.status_code == 200, signed.text
        page = staff.get(opens, follow_redirects=True)
        assert page.status_code == 200, f"{username}: {opens}"
    assert staff.get(by_id).status_code == 200  # the client keeps the last one's cookie
    assert served.url("/staff/consult/kokurakita") in served.welcome

    # The worker closes today's leftovers as the nightly job would.
    today = datetime.now(ZoneInfo("Asia/Tokyo")).date().isoformat()
    connection = redis.Redis.from_url(served.redis_url)
    try:
        job = job_queue(connection).enqueue(close_day, "kokurakita", today)
        deadline = time.monotonic() + 20
        while job.get_status() != JobStatus.FINISHED:
            assert job.get_status() != JobStatus.FAILED, job.latest_result()
            assert time.monotonic() < deadline, "the worker did not run the job"
            time.sleep(0.05)
        assert job.return_value() == 1
    finally:
        connection.close()
    closed = staff.get(by_id).json()["ticket"]
    assert closed["status"] == "abandoned"
    staff.close()
    assert served.stop() == 0


def admin(
    *arguments: str, password: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``madoguchi admin ...``, the password (if any) on standard input."""
    flags = ["--password-stdin"] if password is not None else []
    return subprocess.run(
        [*MADOGUCHI, "admin", *arguments, *flags],
        input="" if password is None else password + "\n",
        capture_output=True,
        text=True,
        env=environment(**env),
        timeout=60,
    )


def test_admin_create_makes_the_first_admin_who_can_sign_in(start: Start, tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    made = admin(
        "create",
        "chief",
        "--name",
        "松本 恵子",
        "--data-dir",
        str(data),
        password="Chief-of-the-counters-1",
    )
    assert made.returncode == 0, made.stderr
    assert 'created admin "chief"' in made.stdout
    served = start("serve", data_dir=data)
    signed = httpx.post(
        served.url("/api/v1/session"),
        json={"username": "chief", "password": "Chief-of-the-counters-1"},
        timeout=10,
    )
    assert signed.status_code == 200, signed.text
    assert signed.json()["role"] == "admin"
    # While serve holds the data directory, admin says what to do instead.
    busy = admin(
        "create",
        "second",
        "--name",
        "Second",
        "--data-dir",
        str(data),
        password="Chief-of-the-counters-2",
    )
    assert busy.returncode == 2
    assert "in use by a running madoguchi serve: set REDIS_URL" in busy.stderr
    with_url = admin(
        "create",
        "second",
        "--name",
        "Second",
        password="Chief-of-the-counters-2",
        REDIS_URL=served.redis_url,
    )
    assert with_url.returncode == 0, with_url.stderr
    assert served.stop() == 0


def test_admin_refuses_clearly(redis_url: str) -> None:
    weak = admin("create", "chief", "--name", "Chief", password="password1234", REDIS_URL=redis_url)
    assert (weak.returncode, weak.stderr.strip()) == (
        1,
        "madoguchi: choose a stronger password: this is a very common password",
    )
    assert (
        admin(
            "create",
            "Chief!",
            "--name",
            "C",
            password="Chief-of-the-counters-1",
            REDIS_URL=redis_url,
        ).returncode
        == 1
    )
    no_office = admin("create", "ito", "--name", "Ito", "--role", "staff", REDIS_URL=redis_url)
    assert "needs at least one --office" in no_office.stderr
    no_terminal = admin("create", "chief", "--name", "Chief", REDIS_URL=redis_url)
    assert "pipe it in with --password-stdin" in no_terminal.stderr
    made = admin(
        "create",
        "chief",
        "--name",
        "Chief",
        password="Chief-of-the-counters-1",
        REDIS_URL=redis_url,
    )
    assert made.returncode == 0, made.stderr
    again = admin(
        "create",
        "chief",
        "--name",
        "Chief",
        password="Chief-of-the-counters-1",
        REDIS_URL=redis_url,
    )
    assert (again.returncode, again.stderr.strip()) == (1, 'madoguchi: user "chief" already exists')
    unknown = admin(
        "create",
        "ito",
        "--name",
        "Ito",
        "--role",
        "staff",
        "--office",
        "atlantis",
        password="Chief-of-the-counters-1",
        REDIS_URL=redis_url,
    )
    assert 'office "atlantis" does not exist' in unknown.stderr
    reset = admin("password", "chief", password="Another-chief-password-2", REDIS_URL=redis_url)
    assert reset.returncode == 0, reset.stderr
    totp = admin("reset-totp", "chief", REDIS_URL=redis_url)
    assert totp.returncode == 0, totp.stderr
    missing = admin("password", "nobody", password="Another-chief-password-2", REDIS_URL=redis_url)
    assert 'user "nobody" does not exist' in missing.stderr


def test_the_command_is_installed() -> None:
    script = Path(sys.executable).parent / "madoguchi"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, env=environment(), timeout=30
    )
    assert result.returncode == 0
    for command in ("serve", "demo", "worker", "replay", "admin"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["serve", "demo", "worker", "admin"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: madoguchi {command}" in capsys.readouterr().out


def test_replay_gets_its_own_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["replay", "--help"])
    assert exited.value.code == 0
    assert "trace" in capsys.readouterr().out


def test_worker_needs_redis_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["worker"]) == 2
    assert "the worker needs REDIS_URL" in capsys.readouterr().err


def test_worker_in_burst_mode_runs_what_is_queued(redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    job = job_queue(connection).enqueue(close_day, "kokurakita", "2026-11-26")
    result = subprocess.run(
        [*MADOGUCHI, "worker", "--burst"],
        capture_output=True,
        text=True,
        env=environment(REDIS_URL=redis_url),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert job.get_status() == JobStatus.FINISHED
    connection.close()
