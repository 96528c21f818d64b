"""Throughput and latency of the ticket queue's hot path, through HTTP, on one web process.

Run it from the repository root::

    .venv/bin/python bench/queue_ops.py               # both Redis modes, ~1 minute (make bench)
    .venv/bin/python bench/queue_ops.py --fsync off   # only Redis without persistence
    .venv/bin/python bench/queue_ops.py --json        # the figures as JSON

and paste the block it prints into the README.

What it does, once per ``--fsync`` mode (by default ``off,always``): starts a throw-away
embedded Redis (``off``: no AOF, no snapshots; ``always`` or ``everysec``: AOF on with that
``appendfsync``, in a temporary data directory; ``madoguchi serve`` runs ``always``), seeds
one office with a few services and one open counter per client, each serving every
service, then starts one web process exactly as production does (``python -m uvicorn
--factory madoguchi.web.app:create_app --http madoguchi.web.http:HttpToolsProtocol
--loop uvloop``) and drives it
from ``--clients`` concurrent clients for ``--warmup`` then ``--seconds``
seconds. Each client owns one counter, so call-next never meets a counter that still
holds a ticket, and loops through one ticket's life:

    issue → call-next → start → finish        (or, ``--no-show-rate`` of the time,
    issue → call-next → no-show)               so that the counter is free again

Every request is an operation; the issue + call-next pair is the one the target is about,
and is reported on its own. Only 127.0.0.1 is ever contacted, and everything stops by itself.

``--rate N`` paces the clients to offer N operations/s in all instead, to see the latency
at a given load rather than at saturation. At saturation a closed loop of 64 clients has,
by Little's law, a mean latency of 64 / throughput: at 3,000 operations/s that is 21 ms,
so a p99 under 30 ms there needs a narrow spread or more throughput.

The client. The load generator shares the machine's two cores with the server and Redis,
so a heavy client steals the capacity it is trying to measure. Two are offered:

- ``--client raw`` (the default): a minimal HTTP/1.1 keep-alive client on asyncio streams
  and uvloop, one connection per simulated client; it writes a prepared request and reads
  the ``Content-Length`` body, nothing more. Measured here it spends about 0.03 ms of CPU
  per request, a fifth of what the web process spends answering it.
- ``--client httpx``: one ``httpx.AsyncClient`` (one keep-alive connection) per simulated
  client. It spends about 1.2 ms of CPU per request (some forty times the raw client),
  so on two cores it, not the server, sets the pace: a few hundred operations/s. One
  shared ``AsyncClient`` pool for all 64 tasks was worse still (about 10 ms per request).

aiohttp was not tried: it is not a dependency of the project, and the raw client already
leaves the server nearly all of the machine that the server can use.
``--profile FILE`` records the web process with py-spy for the measured window
(``pip install py-spy``), as a flame graph (``.svg``), speedscope (``.json``) or collapsed
stacks (anything else).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from redis.asyncio import Redis

from madoguchi.embedded import RedisServer, find_redis_server, free_port
from madoguchi.queue.model import Office, Service
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.accounts import AccountStore, Role, StaffAccount
from madoguchi.web.http import PROTOCOL

HOST = "127.0.0.1"
OFFICE = Office("bench", "ベンチ区役所", "Bench Ward Office")
SERVICES = (
    Service("certs", "A", "証明書", "Certificates", default_seconds=180),
    Service("moving", "B", "転入・転出", "Moving in and out", default_seconds=700),
    Service("tax", "C", "税", "Taxes", default_seconds=400),
    Service("pension", "D", "国保・年金", "Health insurance and pensions", default_seconds=600),
)
FSYNC_MODES = ("off", "everysec", "always")
KINDS = ("issue", "call-next", "start", "finish", "no-show")
#: The clerk the clients sign in as (POST /api/v1/session), with a throw-away password.
BENCH_USER = "bench"
BENCH_PASSWORD = secrets.token_urlsafe(24)
#: Cores other processes may use before the summary warns that the figures are disturbed.
OTHER_LOAD_WARNING = 0.15
#: How long the clients may take to finish their last request, so a stuck server cannot hang us.
REQUEST_TIMEOUT = 10.0


# -- the machine and its processes ------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (the web process may run helpers of its own)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_usage(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process, and of the web process's helpers."""
    used = {name: cpu_seconds(pid) for name, pid in pids.items()}
    helpers = 0.0
    for pid in descendants(pids["web"]):
        with contextlib.suppress(OSError):
            helpers += cpu_seconds(pid)
    used["web helpers"] = helpers
    return used


def machine_seconds() -> dict[str, float]:
    """CPU seconds the whole machine has spent, over all cores, by kind (``/proc/stat``)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    )
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "busy": (user + nice + system + irq + softirq) / tick,
        "interrupts": (irq + softirq) / tick,
        "steal": steal / tick,
    }


def redis_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip()


# -- the HTTP clients -----------------------------------------------------------------------------


class Transport(Protocol):
    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class RawConnection:
    """One keep-alive HTTP/1.1 connection; just enough protocol for this API's answers."""

    def __init__(self, port: int, auth: dict[str, str]) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.head = (
            f"Host: {HOST}:{port}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in auth.items())
            + "Content-Type: application/json\r\n"
        ).encode()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self.head, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, closing = -1, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection":
                closing = value.strip().lower() == b"close"
        if length < 0:
            raise RuntimeError(f"response to POST {path} has no Content-Length: {head[:200]!r}")
        body = await self.reader.readexactly(length)
        if closing:
            await self.close()
            self.writer = None
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


class HttpxConnection:
    """An ``httpx.AsyncClient`` with one keep-alive connection."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self.client.post(path, content=body)
        return response.status_code, response.content

    async def close(self) -> None:
        return None


async def sign_in(port: int) -> dict[str, str]:
    """Sign the bench clerk in; the headers that carry the session (cookie and CSRF token)."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=30) as client:
        response = await client.post(
            "/api/v1/session", json={"username": BENCH_USER, "password": BENCH_PASSWORD}
        )
    if response.status_code != 200:
        raise RuntimeError(f"the bench clerk cannot sign in: {response.text[:200]}")
    cookie = response.headers["set-cookie"].split(";")[0]
    return {"Cookie": cookie, "X-CSRF-Token": response.json()["csrf"]}


@contextlib.asynccontextmanager
async def connections(kind: str, port: int, count: int) -> AsyncIterator[list[Transport]]:
    auth = await sign_in(port)
    if kind == "raw":
        raw: list[Transport] = [RawConnection(port, auth) for _ in range(count)]
        try:
            yield raw
        finally:
            for connection in raw:
                await connection.close()
        return
    # One client (and pool) per simulated client: a single pool shared by 64 tasks spends
    # most of its time arbitrating between them.
    headers = {**auth, "Content-Type": "application/json"}
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://{HOST}:{port}",
                    headers=headers,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    timeout=REQUEST_TIMEOUT,
                )
            )
            for _ in range(count)
        ]
        yield [HttpxConnection(client) for client in clients]


# -- the load --------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Every request's kind, start and duration, and the failures by kind and status."""

    clients: int

    started: list[float] = field(default_factory=list)
    took: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: dict[str, str] = field(default_factory=dict)

    def fail(self, kind: str, status: int, body: bytes) -> None:
        key = f"{kind} {status}"
        self.errors[key] += 1
        self.samples.setdefault(key, body[:300].decode("utf-8", "replace"))


async def client_loop(
    index: int,
    http: Transport,
    recorder: Recorder,
    stop_at: float,
    no_show_rate: float,
    interval: float,
) -> None:
    """One counter's clerk and its residents: issue, call next, then free the counter.

    With ``interval`` > 0 each request starts ``interval`` seconds after the previous one
    was due (or at once, when the answer came later than that: a client that falls behind
    does not catch up in a burst); with 0 each starts as soon as the previous one ends.
    """
    rng = random.Random(index)
    office = f"/api/v1/offices/{OFFICE.id}"
    counter = f"{office}/counters/c{index:03d}/call-next"
    issues = [json.dumps({"service": s.id, "channel": "reception"}).encode() for s in SERVICES]
    clock = time.perf_counter
    started, took, kinds = recorder.started, recorder.took, recorder.kinds
    # Spread the clients' schedules evenly over one interval.
    due = clock() + interval * index / max(1, recorder.clients)

    async def op(kind: str, path: str, body: bytes, expect: int) -> bytes | None:
        nonlocal due
        if interval:
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            due = max(due + interval, clock())
        begin = clock()
        status, answer = await http.post(path, body)
        started.append(begin)
        took.append(clock() - begin)
        kinds.append(kind)
        if status != expect:
            recorder.fail(kind, status, answer)
            return None
        return answer

    while clock() < stop_at:
        if await op("issue", f"{office}/tickets", rng.choice(issues), 201) is None:
            continue
        if clock() >= stop_at:
            return
        answer = await op("call-next", counter, b"", 200)
        if answer is None:
            continue
        ticket = json.loads(answer)["ticket"]
        if ticket is None:
            recorder.fail("call-next", 200, answer)
            continue
        actions = ("no-show",) if rng.random() < no_show_rate else ("start", "finish")
        for action in actions:
            if await op(action, f"{office}/tickets/{ticket['id']}/{action}", b"", 200) is None:
                break


# -- the servers -----------------------------------------------------------------------------------


async def seed(url: str, clients: int) -> None:
    """One office, its services, and one open counter per client serving every service."""
    redis = Redis.from_url(url, decode_responses=True)
    try:
        queue = QueueClient(redis, Settings(redis_url=url))
        now = time.time()
        await queue.put_office(OFFICE, now=now)
        for service in SERVICES:
            await queue.put_service(OFFICE.id, service, now=now)
        services = [s.id for s in SERVICES]
        for index in range(clients):
            await queue.open_counter(OFFICE.id, f"c{index:03d}", services, now=now)
        clerk = StaffAccount(BENCH_USER, "Bench clerk", Role.STAFF, (OFFICE.id,), tuple(services))
        await AccountStore(redis).create(clerk, BENCH_PASSWORD)
    finally:
        await redis.aclose()


@contextlib.contextmanager
def redis_server(fsync: str, data_dir: Path) -> Iterator[RedisServer]:
    binary = find_redis_server()
    if fsync == "off":
        server = RedisServer(binary=binary, data_dir=data_dir, ephemeral=True)
    else:
        server = RedisServer(binary=binary, data_dir=data_dir, fsync=fsync)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def web_env(redis_url: str, extra: dict[str, str]) -> dict[str, str]:
    """A web process's environment: this one's without its settings, then ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MADOGUCHI_") and k != "REDIS_URL"
    }
    return env | {"REDIS_URL": redis_url, "MADOGUCHI_LOG_LEVEL": "WARNING", **extra}


def web_command(port: int, *options: str) -> list[str]:
    """The web process's command line, as the Procfile has it (our httptools protocol, uvloop)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "madoguchi.web.app:create_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--http",
        PROTOCOL,
        "--loop",
        "uvloop",
        "--no-access-log",
        *options,
    ]


@contextlib.contextmanager
def web_server(
    redis_url: str, port: int, log: Path, extra: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """The web process, started as the Procfile starts it (one process, our protocol, uvloop).

    Its output goes to ``log``, shown only if it fails to start.
    """
    env = web_env(redis_url, extra)
    command = web_command(port)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited with status {process.returncode} at start:\n"
                    + log.read_text(errors="replace")[-2000:]
                )
            try:
                if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not answer /readyz within 20 s")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_profiler(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    formats = {".svg": "flamegraph", ".json": "speedscope"}
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        # py-spy stops the process for each sample: at 100 a second the web process
        # loses about a sixth of its throughput, so read the profile for shares, and
        # take the figures from a run without it.
        "--rate",
        "100",
        "--format",
        formats.get(output.suffix, "raw"),
        "--output",
        str(output),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


# -- one run and its figures -----------------------------------------------------------------------


def quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    position = q * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def latency(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": quantile(ordered, 0.50) * 1000,
        "p90_ms": quantile(ordered, 0.90) * 1000,
        "p99_ms": quantile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] if ordered else float("nan")) * 1000,
    }


async def drive(
    args: argparse.Namespace, port: int, pids: dict[str, int], profile: Path | None
) -> dict[str, Any]:
    recorder = Recorder(args.clients)
    interval = args.clients / args.rate if args.rate else 0.0
    begin = time.perf_counter()
    measure_from = begin + args.warmup
    stop_at = measure_from + args.seconds
    async with connections(args.client, port, args.clients) as pool:
        loops = [
            asyncio.create_task(
                client_loop(i, http, recorder, stop_at, args.no_show_rate, interval)
            )
            for i, http in enumerate(pool)
        ]
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_before = cpu_usage(pids)
        machine_before = machine_seconds()
        profiler = start_profiler(pids["web"], args.seconds, profile) if profile else None
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu_after = cpu_usage(pids)
        machine_after = machine_seconds()
        measured_until = time.perf_counter()
        # Each loop stops at its next request after ``stop_at``; a stuck server fails the run.
        await asyncio.wait_for(asyncio.gather(*loops), REQUEST_TIMEOUT)
    if profiler is not None:
        profiler.wait(30)
    window = measured_until - measure_from
    by_kind: dict[str, list[float]] = defaultdict(list)
    every: list[float] = []
    for started, took, kind in zip(recorder.started, recorder.took, recorder.kinds, strict=True):
        if measure_from <= started and started + took <= measured_until:
            by_kind[kind].append(took)
            every.append(took)
    pair = by_kind["issue"] + by_kind["call-next"]
    cpu = {name: (cpu_after[name] - cpu_before[name]) / window for name in cpu_before}
    machine = {k: (machine_after[k] - machine_before[k]) / window for k in machine_after}
    # Loopback TCP is processed in softirqs, which no process is charged for.
    cpu["kernel interrupts"] = machine["interrupts"]
    cpu["other processes"] = max(0.0, machine["busy"] - sum(cpu.values()))
    cpu["stolen by the hypervisor"] = machine["steal"]
    ours = [*cpu_before, "kernel interrupts"]
    per_op = {name: cpu[name] / max(len(every) / window, 1e-9) * 1000 for name in ours}
    return {
        "window_seconds": window,
        "operations": len(every),
        "ops_per_second": len(every) / window,
        "issue_call_next_ops_per_second": len(pair) / window,
        "cycles_per_second": len(by_kind["issue"]) / window,
        "latency": {
            "all": latency(every),
            "issue+call-next": latency(pair),
            **{kind: latency(by_kind[kind]) for kind in KINDS if by_kind[kind]},
        },
        "errors": dict(recorder.errors),
        "error_samples": recorder.samples,
        "cpu_cores_used": cpu,
        "cpu_ms_per_operation": per_op,
    }


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def run(args: argparse.Namespace, fsync: str) -> dict[str, Any]:
    """One measurement: fresh Redis and web process, seeded, warmed up, measured, stopped."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="madoguchi-bench-") as tmp:
        with redis_server(fsync, Path(tmp) / "redis") as redis:
            asyncio.run(seed(redis.url, args.clients))
            port = args.port or free_port(HOST)
            log = Path(tmp) / "web.log"
            with web_server(redis.url, port, log, dict(args.env)) as web:
                assert redis.process is not None
                pids = {"web": web.pid, "bench client": os.getpid(), "redis": redis.process.pid}
                profile = args.profile
                if profile is not None and len(args.fsync) > 1:
                    profile = profile.with_stem(f"{profile.stem}-{fsync}")
                figures = drive_with_loop(args, port, pids, profile)
        binary = redis.binary
    import uvicorn

    return {
        "configuration": {
            "web": f"1 uvicorn process, --http {PROTOCOL} --loop uvloop --no-access-log",
            "uvicorn": uvicorn.__version__,
            "redis": redis_version(binary),
            "redis_persistence": "none" if fsync == "off" else f"AOF, appendfsync {fsync}",
            "client": args.client,
            "clients": args.clients,
            "offered_rate": args.rate or None,
            "counters": args.clients,
            "services": len(SERVICES),
            "no_show_rate": args.no_show_rate,
            "warmup_seconds": args.warmup,
            "seconds": args.seconds,
            "settings": dict(args.env),
            "load_average_before": load_before,
            "profiled_with_py_spy": args.profile is not None,
        },
        **figures,
    }


def drive_with_loop(
    args: argparse.Namespace, port: int, pids: dict[str, int], profile: Path | None
) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(drive(args, port, pids, profile))
    return uvloop.run(drive(args, port, pids, profile))


# -- output ---------------------------------------------------------------------------------------


def summary(found: dict[str, Any], target_ops: float, target_p99: float) -> str:
    """The figures as a block to paste into the README: one column per run."""
    host, runs = found["machine"], found["runs"]
    config = runs[0]["configuration"]
    pacing = (
        f"paced at {config['offered_rate']:g} operations/s in all"
        if config["offered_rate"]
        else "each client sends its next request as soon as it has an answer (saturation)"
    )
    lines = [
        f"bench/queue_ops.py: issue → call-next → start → finish (or no-show) through HTTP, "
        f"{config['clients']} clients, one web process",
        f"machine   {host['cpu']}, {host['cores']} cores, Python {host['python']}, "
        f"{host['system']}",
        f"server    {config['web']}; uvicorn {config['uvicorn']}; redis {config['redis']}",
        f"client    {config['client']} HTTP/1.1 keep-alive, {config['clients']} connections, "
        f"on the same machine; {pacing}",
        f"office    {config['counters']} open counters (one per client), "
        f"{config['services']} services, {config['no_show_rate']:.0%} no-shows; "
        f"{config['warmup_seconds']:g} s warm-up, {config['seconds']:g} s measured",
    ]
    if config["settings"]:
        lines.append("settings  " + " ".join(f"{k}={v}" for k, v in config["settings"].items()))
    width = 24
    label = 34

    def row(name: str, cells: list[str]) -> str:
        return f"{name:<{label}}" + "".join(f"{cell:>{width}}" for cell in cells)

    lines += ["", row("redis persistence", [r["configuration"]["redis_persistence"] for r in runs])]
    lines.append(row("operations/s, all", [f"{r['ops_per_second']:,.0f}" for r in runs]))
    lines.append(
        row(
            "operations/s, issue + call-next",
            [f"{r['issue_call_next_ops_per_second']:,.0f}" for r in runs],
        )
    )
    lines.append(row("issue + call-next pairs/s", [f"{r['cycles_per_second']:,.0f}" for r in runs]))
    lines.append(row("latency ms, p50 / p90 / p99", []))
    kinds = list(runs[0]["latency"])
    for kind in kinds:
        cells = []
        for r in runs:
            got = r["latency"].get(kind)
            cells.append(
                f"{got['p50_ms']:.1f} / {got['p90_ms']:.1f} / {got['p99_ms']:.1f}" if got else "-"
            )
        lines.append(row(f"  {kind}", cells))
    lines.append(
        row(
            "CPU ms per operation: web",
            [f"{r['cpu_ms_per_operation']['web']:.3f}" for r in runs],
        )
    )
    lines.append(
        row(
            "  redis / client",
            [
                f"{r['cpu_ms_per_operation']['redis']:.3f} / "
                f"{r['cpu_ms_per_operation']['bench client']:.3f}"
                for r in runs
            ],
        )
    )
    lines.append(
        row(
            "cores busy: web / other processes",
            [
                f"{r['cpu_cores_used']['web']:.2f} / {r['cpu_cores_used']['other processes']:.2f}"
                for r in runs
            ],
        )
    )
    lines.append(
        row(
            "errors",
            [str(sum(r["errors"].values())) for r in runs],
        )
    )
    lines.append(
        row(
            f"target >= {target_ops:,.0f} ops/s, p99 < {target_p99:g} ms",
            [
                ("met" if r["ops_per_second"] >= target_ops else "MISSED")
                + " / "
                + ("met" if r["latency"]["all"]["p99_ms"] < target_p99 else "MISSED")
                for r in runs
            ],
        )
    )
    if config["profiled_with_py_spy"]:
        lines.append(
            "WARNING: py-spy sampled the web process during these runs, which slows it: "
            "read the profile, not these figures"
        )
    for r in runs:
        persistence = r["configuration"]["redis_persistence"]
        for kind, sample in r["error_samples"].items():
            lines.append(f"error ({persistence}) {kind}: {sample}")
        other = r["cpu_cores_used"]["other processes"]
        if other > OTHER_LOAD_WARNING:
            lines.append(
                f"WARNING ({persistence}): other processes kept {other:.2f} cores busy during "
                "the run, so operations/s and latency are understated; CPU ms per operation "
                "is the figure to compare"
            )
    return "\n".join(lines)


def setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("MADOGUCHI_"):
        raise argparse.ArgumentTypeError(f'"{text}" is not MADOGUCHI_NAME=VALUE')
    return name, value


def fsync_modes(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in FSYNC_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f'"{text}" must be a comma-separated list of {", ".join(FSYNC_MODES)}'
        )
    return modes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time first (3)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (64)")
    parser.add_argument(
        "--fsync",
        type=fsync_modes,
        default=["off", "always"],
        help="comma-separated runs to make, each with a fresh Redis and web process: off "
        "(no persistence), everysec or always (AOF with that appendfsync; `madoguchi serve` "
        "runs always) (off,always)",
    )
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offer at most this many operations/s in all, paced evenly over the clients; "
        "0 (the default): each client sends its next request as soon as it has an answer, "
        "which measures the server at saturation",
    )
    parser.add_argument("--no-show-rate", type=float, default=0.1, help="share of no-shows (0.1)")
    parser.add_argument("--port", type=int, default=0, help="web port (a free one)")
    parser.add_argument("--profile", type=Path, help="record the web process with py-spy here")
    parser.add_argument(
        "--env",
        type=setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the web process, e.g. MADOGUCHI_ESTIMATE_INTERVAL=2 (repeatable)",
    )
    parser.add_argument("--target-ops", type=float, default=3000.0)
    parser.add_argument("--target-p99-ms", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 999:
        parser.error(f"--clients must be between 1 and 999, not {args.clients}")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive and --warmup not negative")
    if args.rate < 0:
        parser.error(f"--rate must not be negative, not {args.rate}")
    if not 0.0 <= args.no_show_rate <= 1.0:
        parser.error(f"--no-show-rate must be between 0 and 1, not {args.no_show_rate}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    found = {"machine": machine(), "runs": [run(args, fsync) for fsync in args.fsync]}
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        print(summary(found, args.target_ops, args.target_p99_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
