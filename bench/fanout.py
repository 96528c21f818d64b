"""Live fan-out: 10,000 phones (or congestion-page watchers) on server-sent events.

Run it from the repository root::

    .venv/bin/python bench/fanout.py          # phones and congestion, 1 and 2 web processes
    .venv/bin/python bench/fanout.py --watchers phones --workers 1
    .venv/bin/python bench/fanout.py --connections 2000 --seconds 10   # a quick look

(``make bench-fanout`` runs the first), and paste the block it prints into the README.

What it does, for each kind of watcher and each number of web processes:

1. Starts a throw-away embedded Redis (no persistence) and seeds the demo city: the
   seven ward offices with their services and open counters (``madoguchi.demo``).
2. Takes tickets, spread evenly over the offices and, within an office, over its
   in-person services (straight through the queue, as kiosks would): one per phone, or
   for the congestion page an ordinary queue of ``--queue`` tickets (60 an office).
3. Starts the web processes exactly as production runs them (``uvicorn --factory
   madoguchi.web.app:create_app --http madoguchi.web.http:HttpToolsProtocol --loop uvloop``;
   ``--workers 2`` for two).
4. Opens one SSE connection per ticket: ``phones`` watch ``/o/{office}/t/{token}/events``,
   ``congestion`` watchers all watch ``/live``. The clients are ``--clients`` separate
   processes with a minimal client on raw asyncio streams (uvloop), so that they cost the
   server as little of the machine as possible.
5. Once every connection is open and the server has settled, counters call at
   ``--rate`` calls/s in all (3 by default: a city's peak), round robin over the offices
   and their open counters, for ``--seconds`` seconds; half a period after each call
   its ticket is marked a no-show, so that the counter is free for its next call.

Latency is measured from the moment the caller sends a call to the moment a watcher
has read the first message that reflects it: for a phone, the first event whose id (a
stream id: every view carries the id of the latest event it reflects) is at or after
the call's; for a congestion watcher, the first ``waits`` message whose summary of the
office carries such an event id. A call *affects* the phones of tickets in the called
service's line at that office (their position drops) and the called ticket's own
phone; every congestion watcher is affected by every call. A delivery that never
arrives within the run is counted as missed.

Memory per connection is the growth of the web processes' resident memory (with their
helpers: the estimator runs in a process of its own) from before the connections to
after, divided by the connections; "in all" is their whole resident memory then. CPU
is the web processes' (and helpers') CPU time over the measured window, as a share of
one core; of it, the event loops' (the web processes without their helpers), also per
call and per message the watchers read: on a machine that others use too, these move
much less than the latencies do. The client processes and Redis share the same two
cores, and are reported too. ``--profile PATH`` samples the (first) event loop with
py-spy over the measured window, for a look at where its time goes.

Only 127.0.0.1 is ever contacted, and everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import pickle
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queue_ops import cpu_model, descendants, web_command, web_env  # bench/ is this script's folder

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
#: Connections a client process opens at once while ramping up.
OPEN_AT_ONCE = 64
#: Seconds to let the server settle after the last connection opened.
SETTLE = 5.0
#: Seconds after the last call during which late deliveries are still counted.
DRAIN = 5.0


# -- the client processes -------------------------------------------------------------------


@dataclass
class Watch:
    """One connection: what it watches and what it read, as ``(time, id)`` pairs."""

    path: str
    office: str
    service: str = ""
    ticket: str = ""
    #: Phones: (receive time, event id) per message.
    got: list[tuple[float, tuple[int, int]]] = field(default_factory=list)
    #: Congestion watchers: (receive time, {office: event id}) per message.
    waits: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    opened: float = 0.0
    closed: float = 0.0
    error: str = ""


def stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.strip().partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


class Parser:
    """Server-sent events out of a chunked HTTP/1.1 response, just enough for this bench.

    Each event arrives as one chunk of the response, so an event's lines are never split
    by the chunk framing; the framing lines (sizes, blank) are simply not field lines.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.headed = False

    def feed(self, data: bytes) -> list[tuple[bytes, bytes, bytes]]:
        """The complete events in ``data`` (and what came before): (event, id, data)."""
        self.buffer += data
        if not self.headed:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return []
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            self.headed = True
            self.buffer = rest
        *complete, self.buffer = self.buffer.split(b"\n\n")
        events = []
        for block in complete:
            kind = ident = body = b""
            for line in block.split(b"\n"):
                if line.startswith(b"data: "):
                    body = line[6:]
                elif line.startswith(b"id: "):
                    ident = line[4:].strip()
                elif line.startswith(b"event: "):
                    kind = line[7:].strip()
            if body:
                events.append((kind, ident, body))
        return events


class Follower(asyncio.Protocol):
    """One watcher's connection: a bare protocol, no task, so the client costs little."""

    def __init__(self, watch: Watch, port: int, cache: dict[bytes, Any]) -> None:
        self.watch = watch
        self.port = port
        self.cache = cache
        self.parser = Parser()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.watch.opened = time.time()
        transport.write(
            f"GET {self.watch.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            "Accept: text/event-stream\r\nAccept-Language: ja\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.time()
        try:
            events = self.parser.feed(data)
        except ConnectionError as exc:
            self.watch.error = str(exc)
            self.close()
            return
        for kind, ident, body in events:
            if kind == b"waits":
                offices = self.cache.get(body)
                if offices is None:
                    parsed = json.loads(body)
                    offices = {o["office"]: stream_id(o["event"]) for o in parsed["offices"]}
                    self.cache[body] = offices
                self.watch.waits.append((now, offices))
            elif ident:
                self.watch.got.append((now, stream_id(ident)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.closed = time.time()
        if exc is not None:
            self.watch.error = str(exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def client_main(plan: dict[str, Any]) -> list[Watch]:
    port = plan["port"]
    watches = [Watch(**w) for w in plan["watches"]]
    cache: dict[bytes, Any] = {}
    loop = asyncio.get_running_loop()
    followers: list[Follower] = []
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one(watch: Watch) -> None:
        async with gate:
            try:
                _, follower = await loop.create_connection(
                    lambda: Follower(watch, port, cache), HOST, port
                )
            except OSError as exc:
                watch.error = f"connect: {exc}"
                return
            followers.append(follower)
            # A connection counts as open once it has read its first message.
            deadline = time.monotonic() + 60
            while not (watch.got or watch.waits or watch.error or watch.closed):
                if time.monotonic() > deadline:
                    watch.error = "no first message within 60 s"
                    break
                await asyncio.sleep(0.01)

    await asyncio.gather(*(open_one(w) for w in watches))
    failed = sum(1 for w in watches if w.error)
    print(f"connected {len(watches) - failed} {failed}", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    assert line.strip() == "stop", line
    for follower in followers:
        follower.close()
    await asyncio.sleep(0.5)
    return watches


# -- the machine ----------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    return [pid, *descendants(pid)]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def event_loops(web: int, workers: int) -> list[int]:
    """The processes that serve the connections: the web process itself, or its workers
    (not the helpers they start, such as the estimator's process)."""
    if workers == 1:
        return [web]
    return [pid for pid in descendants(web) if parent_of(pid) == web]


def parent_of(pid: int) -> int:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return 0


def profile(
    pids: list[int], args: argparse.Namespace, watchers: str, workers: int
) -> subprocess.Popen[bytes] | None:
    """``py-spy`` sampling the first event loop over the measured window (``--profile``)."""
    if not args.profile:
        return None
    out = Path(args.profile).with_suffix(f".{watchers}-{workers}.txt")
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(pids[0]),
            "--duration",
            str(round(args.seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- the run --------------------------------------------------------------------------------


@dataclass
class Call:
    office: str
    service: str
    ticket: str
    id: tuple[int, int]
    sent: float


@dataclass
class Result:
    watchers: str
    workers: int
    connections: int
    connected: int
    calls: int
    latencies: list[float]
    missed: int
    #: Messages the watchers read over the measured window (deliveries or not).
    messages: int
    rss_before: int
    rss_after: int
    cpu_web: float
    #: The event loops' share of ``cpu_web`` (the web processes without their helpers).
    cpu_loops: float
    cpu_clients: float
    cpu_redis: float
    seconds: float
    #: Seconds the CPU figures cover: the calls, then ``DRAIN``.
    window: float
    redis_memory: int

    @property
    def loop_us_per_message(self) -> float:
        """Event-loop CPU time per message read by a watcher, in microseconds."""
        return self.cpu_loops * self.window / max(1, self.messages) * 1e6

    @property
    def loop_ms_per_call(self) -> float:
        """Event-loop CPU time per call, in milliseconds: the steadier figure on a busy
        machine (latencies move with whatever else runs there)."""
        return self.cpu_loops * self.window / max(1, self.calls) * 1000

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def seed(redis_url: str, connections: int) -> list[Watch]:
    """The demo city, and ``connections`` waiting tickets spread over it."""
    from redis.asyncio import Redis

    from madoguchi.demo import CITY
    from madoguchi.demo import seed as seed_city
    from madoguchi.queue.model import ServiceMode
    from madoguchi.queue.tickets import QueueClient
    from madoguchi.settings import Settings

    redis = Redis.from_url(redis_url, decode_responses=True)
    queue = QueueClient(redis, Settings(redis_url=redis_url))
    now = time.time()
    await seed_city(queue, now=now)
    targets = []
    for demo in CITY:
        served = {s for c in demo.counters for s in c.services}
        targets.append(
            (
                demo.office.id,
                [
                    s.id
                    for s in demo.services
                    if s.mode is ServiceMode.IN_PERSON and s.active and s.id in served
                ],
            )
        )
    watches: list[Watch] = []
    for n in range(connections):
        office, services = targets[n % len(targets)]
        service = services[(n // len(targets)) % len(services)]
        issued = await queue.issue(office, service, now=now + n * 0.001)
        ticket = issued.ticket
        watches.append(Watch(f"/o/{office}/t/{ticket.token}/events", office, service, ticket.id))
    await redis.aclose()
    return watches


async def call_at_rate(redis_url: str, rate: float, seconds: float) -> list[Call]:
    """Call the next ticket at ``rate`` calls/s, round robin over offices and counters."""
    from redis.asyncio import Redis

    from madoguchi.demo import CITY
    from madoguchi.queue import keys
    from madoguchi.queue.model import CounterState
    from madoguchi.queue.tickets import QueueClient
    from madoguchi.settings import Settings

    redis = Redis.from_url(redis_url, decode_responses=True)
    queue = QueueClient(redis, Settings(redis_url=redis_url))
    counters: dict[str, list[str]] = {}
    for demo in CITY:
        snapshot = await queue.snapshot(demo.office.id, now=time.time())
        counters[demo.office.id] = [
            c.id
            for c in snapshot.counters
            if c.state is CounterState.OPEN and not c.id.startswith("consult")
        ]
    offices = list(counters)
    calls: list[Call] = []
    began = time.monotonic()
    n = 0
    while time.monotonic() - began < seconds:
        due = began + n / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        office = offices[n % len(offices)]
        ring = counters[office]
        counter = ring[(n // len(offices)) % len(ring)]
        n += 1
        sent = time.time()
        ticket = await queue.call_next(office, counter, now=sent)
        if ticket is None:
            continue
        # The call's event: the latest "called" of this ticket in the office's stream.
        for entry_id, fields in await redis.xrevrange(keys.events(office), count=5):
            event = json.loads(fields["e"])
            if event.get("type") == "called" and event.get("ticket") == ticket.id:
                calls.append(Call(office, ticket.service, ticket.id, stream_id(entry_id), sent))
                break
        # Half a period later the resident has not come: the counter is free again. (Apart
        # from the call, so that no message answers both and the ids tell them apart.)
        await asyncio.sleep(max(0.0, due + 0.5 / rate - time.monotonic()))
        await queue.no_show(office, ticket.id, now=time.time())
    await redis.aclose()
    return calls


def start_web(
    redis_url: str, port: int, workers: int, settings: dict[str, str]
) -> subprocess.Popen[bytes]:
    # Phones are limited per address and day; every bench client is 127.0.0.1.
    env = web_env(redis_url, {"MADOGUCHI_WEB_TICKETS_PER_ADDRESS": "1000000", **settings})
    command = web_command(
        port, "--log-level", "warning", "--backlog", "4096", "--timeout-graceful-shutdown", "2"
    )
    if workers > 1:
        command += ["--workers", str(workers)]
    return subprocess.Popen(command, env=env, start_new_session=True, stdin=subprocess.DEVNULL)


def wait_ready(port: int, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the web process on port {port} did not become ready")


def latencies_of(
    watchers: str, watches: list[Watch], calls: list[Call], window_end: float
) -> tuple[list[float], int]:
    found: list[float] = []
    missed = 0
    by_office: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        by_office[call.office].append(call)
    called_at = {(c.office, c.ticket): c.id for c in calls}
    for watch in watches:
        if watch.error and not (watch.got or watch.waits):
            continue
        if watchers == "phones":
            ids = [ident for _, ident in watch.got]
            mine = called_at.get((watch.office, watch.ticket))
            for call in by_office[watch.office]:
                affected = call.ticket == watch.ticket or (
                    call.service == watch.service and (mine is None or call.id < mine)
                )
                if not affected or call.sent < watch.opened:
                    continue
                at = bisect.bisect_left(ids, call.id)
                if at < len(ids):
                    found.append(watch.got[at][0] - call.sent)
                elif watch.closed >= window_end:
                    missed += 1
        else:
            for call in calls:
                got = next(
                    (
                        when
                        for when, offices in watch.waits
                        if offices.get(call.office, (0, 0)) >= call.id
                    ),
                    None,
                )
                if got is not None:
                    found.append(got - call.sent)
                else:
                    missed += 1
    return found, missed


def run_clients(plan: dict[str, Any], watches: list[Watch], processes: int, tmp: Path) -> list[Any]:
    clients = []
    for n in range(processes):
        part = watches[n::processes]
        plan_path = tmp / f"plan-{n}.json"
        plan_path.write_text(
            json.dumps(
                {
                    **plan,
                    "watches": [
                        {
                            "path": w.path,
                            "office": w.office,
                            "service": w.service,
                            "ticket": w.ticket,
                        }
                        for w in part
                    ],
                }
            )
        )
        out_path = tmp / f"out-{n}.pickle"
        process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client-plan",
                str(plan_path),
                "--client-out",
                str(out_path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        clients.append((process, out_path))
    return clients


def measure(args: argparse.Namespace, watchers: str, workers: int) -> Result:
    from madoguchi.embedded import RedisServer, find_redis_server, free_port

    tmp = Path(tempfile.mkdtemp(prefix="madoguchi-fanout-"))
    server = RedisServer(find_redis_server(), tmp / "redis", ephemeral=True)
    server.start()
    assert server.process is not None
    redis_pid = server.process.pid
    web: subprocess.Popen[bytes] | None = None
    clients: list[Any] = []
    try:
        if watchers == "phones":
            watches = asyncio.run(seed(server.url, args.connections))
        else:
            # Watchers of the congestion page hold no ticket: the queue is an ordinary one.
            asyncio.run(seed(server.url, args.queue))
            watches = [Watch("/live", "") for _ in range(args.connections)]
        port = free_port()
        web = start_web(server.url, port, workers, dict(args.set))
        wait_ready(port)
        time.sleep(2.0)  # the estimator's process starts, the feed's first round is done
        web_pids = tree(web.pid)
        rss_before = rss_bytes(web_pids)
        began = time.monotonic()
        clients = run_clients({"port": port}, watches, args.clients, tmp)
        connected = failed = 0
        for process, _ in clients:
            line = process.stdout.readline().split()
            if not line or line[0] != "connected":
                raise RuntimeError(f"a client process failed: {line}")
            connected += int(line[1])
            failed += int(line[2])
        print(
            f"  {connected} connections open ({failed} failed) in "
            f"{time.monotonic() - began:.0f} s; settling",
            file=sys.stderr,
        )
        time.sleep(SETTLE)
        web_pids = tree(web.pid)
        loop_pids = event_loops(web.pid, workers)
        rss_after = rss_bytes(web_pids)
        client_pids = [p.pid for p, _ in clients]
        cpu0 = (
            cpu_seconds(web_pids),
            cpu_seconds(client_pids),
            cpu_seconds([redis_pid]),
            cpu_seconds(loop_pids),
        )
        profiler = profile(loop_pids, args, watchers, workers)
        t0 = time.monotonic()
        window_start = time.time()
        calls = asyncio.run(call_at_rate(server.url, args.rate, args.seconds))
        window_end = time.time()
        time.sleep(DRAIN)
        elapsed = time.monotonic() - t0
        web_pids = tree(web.pid)
        cpu1 = (
            cpu_seconds(web_pids),
            cpu_seconds(client_pids),
            cpu_seconds([redis_pid]),
            cpu_seconds(loop_pids),
        )
        if profiler is not None:
            profiler.wait(60)
        rss_after = max(rss_after, rss_bytes(web_pids))
        for process, _ in clients:
            assert process.stdin is not None
            process.stdin.write("stop\n")
            process.stdin.flush()
        results: list[Watch] = []
        for process, out_path in clients:
            process.stdout.readline()
            process.wait(60)
            with open(out_path, "rb") as found:
                results.extend(pickle.load(found))
        latencies, missed = latencies_of(watchers, results, calls, window_end)
        messages = sum(
            1
            for w in results
            for when in [*(t for t, _ in w.got), *(t for t, _ in w.waits)]
            if when >= window_start
        )
        import redis

        info = redis.Redis.from_url(server.url).info("memory")
        return Result(
            watchers=watchers,
            workers=workers,
            connections=args.connections,
            connected=connected,
            calls=len(calls),
            latencies=latencies,
            missed=missed,
            messages=messages,
            rss_before=rss_before,
            rss_after=rss_after,
            cpu_web=(cpu1[0] - cpu0[0]) / elapsed,
            cpu_loops=(cpu1[3] - cpu0[3]) / elapsed,
            cpu_clients=(cpu1[1] - cpu0[1]) / elapsed,
            cpu_redis=(cpu1[2] - cpu0[2]) / elapsed,
            seconds=args.seconds,
            window=elapsed,
            redis_memory=int(info["used_memory"]),
        )
    finally:
        for process, _ in clients:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        if web is not None and web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait(10)
        server.stop()


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {cpu_model()} ({os.cpu_count()} cores), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}; {args.connections:,} connections over the "
        f"7 demo offices, {args.rate:g} calls/s for {args.seconds:g} s; "
        f"{args.clients} client processes on the same machine.",
        "",
        "| watchers | web processes | deliveries | p50 ms | p99 ms | max ms | missed "
        "| web RSS (all) | per connection | web CPU | of it event loops | loop CPU per call "
        "| messages | loop CPU per message | clients CPU | Redis CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = (r.rss_after - r.rss_before) / max(1, r.connected)
        lines.append(
            f"| {r.watchers} | {r.workers} | {len(r.latencies):,} "
            f"| {r.percentile(0.5) * 1000:.0f} | {r.percentile(0.99) * 1000:.0f} "
            f"| {max(r.latencies, default=float('nan')) * 1000:.0f} | {r.missed} "
            f"| {r.rss_after / 2**20:.0f} MiB | {per / 1024:.1f} KiB "
            f"| {r.cpu_web * 100:.0f} % | {r.cpu_loops * 100:.0f} % "
            f"| {r.loop_ms_per_call:.0f} ms | {r.messages:,} | {r.loop_us_per_message:.0f} µs "
            f"| {r.cpu_clients * 100:.0f} % | {r.cpu_redis * 100:.0f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--watchers", default="phones,congestion")
    parser.add_argument("--workers", default="1,2", help="web processes, e.g. 1,2")
    parser.add_argument(
        "--queue",
        type=int,
        default=420,
        help="tickets waiting while the congestion page is watched",
    )
    parser.add_argument("--rate", type=float, default=3.0, help="calls per second in all")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)),
        metavar="MADOGUCHI_NAME=VALUE",
        help="a setting for the web processes (repeatable), to see what it changes",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="sample the (first) web process with py-spy over the measured window; "
        "collapsed stacks go to PATH.<watchers>-<workers>.txt",
    )
    parser.add_argument("--client-plan", help=argparse.SUPPRESS)
    parser.add_argument("--client-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.client_plan:
        import uvloop

        watches = uvloop.run(client_main(json.loads(Path(args.client_plan).read_text())))
        with open(args.client_out, "wb") as out:
            pickle.dump(watches, out)
        print("done", flush=True)
        return
    results = []
    for watchers in args.watchers.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            print(f"{watchers}, {workers} web process(es)…", file=sys.stderr)
            results.append(measure(args, watchers, workers))
            print(report(results[-1:], args).splitlines()[-1], file=sys.stderr)
    print(report(results, args))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "watchers": r.watchers,
                        "workers": r.workers,
                        "p50_ms": r.percentile(0.5) * 1000,
                        "p99_ms": r.percentile(0.99) * 1000,
                        "deliveries": len(r.latencies),
                        "missed": r.missed,
                        "rss_mib": r.rss_after / 2**20,
                        "per_connection_kib": (r.rss_after - r.rss_before) / r.connected / 1024,
                        "web_cpu": r.cpu_web,
                        "loop_cpu": r.cpu_loops,
                        "loop_ms_per_call": r.loop_ms_per_call,
                        "messages": r.messages,
                        "loop_us_per_message": r.loop_us_per_message,
                    }
                    for r in results
                ]
            )
        )


if __name__ == "__main__":
    main()
