"""Wait-time estimates: a Monte Carlo replay of the office's own routing.

From a :class:`~.model.Snapshot` the estimator simulates, a few dozen times, how
the office's open counters will work through the tickets waiting now — under the
same routing as ``call_next.lua`` (due appointments, then priority tickets with
the cap, then the longest wait, across each counter's services) — drawing service
times from the office's own recent history of each service, no-shows at the rate
seen today, and residents who give up at the rate seen today. Every waiting
ticket's call time falls out of each run at once, so one simulation serves the
whole office; a "ghost" ticket per service, which is recorded when reached but
takes no counter time, gives the estimate for a ticket issued now.

The published point estimate is the median of the simulated waits and the
interval runs from the 10th to the 90th percentile, widened a little for what
the simulation cannot know (counters that close or open later, tomorrow's mix).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..settings import Settings
from .model import CounterState, Estimate, Snapshot, TicketStatus

#: Order of the waiting lines inside a service, as ``call_next.lua`` reads them.
LINES = ("appt", "priority", "regular")
#: Pseudo-observations given to the service's configured default time.
PRIOR_WEIGHT = 5.0
#: Shape of the gamma distribution drawn around the default (coefficient of variation ~0.7).
PRIOR_SHAPE = 2.0
#: Prior no-show rate and its weight in calls.
NO_SHOW_PRIOR, NO_SHOW_WEIGHT = 0.04, 25.0
#: Prior seconds a counter waits for a resident who does not come.
NO_SHOW_HOLD = 60.0
#: Prior rate at which a waiting resident gives up: one leave per this many waiting seconds.
PATIENCE_PRIOR_SECONDS = 4 * 3600.0
#: Simulated tickets per estimate (runs x waiting tickets) above which runs are cut.
RUN_BUDGET = 12_000
#: Widening of the simulated 10-90 % range for what the model leaves out.
WIDEN_LOW, WIDEN_HIGH, WIDEN_SECONDS = 0.9, 1.1, 30.0


@dataclass
class Estimates:
    """Estimates for one office at one moment."""

    #: For every waiting ticket, by ticket id.
    tickets: dict[str, Estimate] = field(default_factory=dict)
    #: For a ticket that would be issued now, by service id.
    new: dict[str, Estimate] = field(default_factory=dict)


class ServiceTimes:
    """The distribution of one service's times: its own history, shrunk toward a default."""

    def __init__(self, history: Sequence[float], default: float) -> None:
        samples = sorted(x for x in history if x > 0)
        if len(samples) >= 8:
            # A clerk who forgot to press "finish" must not teach the office that
            # the service takes three hours: clip far outliers (median + 6 MAD).
            median = statistics.median(samples)
            mad = statistics.median(abs(x - median) for x in samples)
            ceiling = median + 6 * max(mad, 0.1 * median)
            samples = [min(x, ceiling) for x in samples]
        self.samples = samples
        self.default = default
        self.own_share = len(samples) / (len(samples) + PRIOR_WEIGHT)
        own_mean = statistics.fmean(samples) if samples else default
        self.mean = self.own_share * own_mean + (1 - self.own_share) * default

    def draw(self, rng: random.Random) -> float:
        if self.samples and rng.random() < self.own_share:
            return self.samples[int(rng.random() * len(self.samples))]
        return rng.gammavariate(PRIOR_SHAPE, self.default / PRIOR_SHAPE)

    def draw_beyond(self, elapsed: float, rng: random.Random) -> float:
        """The time still to run for a service that has already lasted ``elapsed`` seconds."""
        if self.samples and self.samples[-1] > elapsed and rng.random() < self.own_share:
            start = bisect.bisect_right(self.samples, elapsed)
            pick = self.samples[start + int(rng.random() * (len(self.samples) - start))]
            return pick - elapsed
        for _ in range(8):
            total = rng.gammavariate(PRIOR_SHAPE, self.default / PRIOR_SHAPE)
            if total > elapsed:
                return total - elapsed
        # Longer than anything we know: expect it to end soon, but not at once.
        return 0.25 * self.mean


@dataclass
class _Entry:
    id: str
    score: float
    #: From this moment the entry takes no counter time when reached (it left, or it is a ghost).
    ghost_from: float


@dataclass
class _Office:
    """What one simulation run starts from."""

    now: float
    cap: int
    early: float
    servers: list[tuple[str, tuple[str, ...], float | None, str | None]]
    # ^ (counter id, services, busy-with-elapsed or None, held ticket service or state)
    lines: dict[str, dict[str, list[tuple[str, float]]]]
    times: dict[str, ServiceTimes]
    no_show: dict[str, float]
    hold: float
    leave_rate: float


class Estimator:
    """Estimates every waiting ticket's wait, and a new ticket's, from a snapshot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runs = settings.estimate_samples

    def estimate(self, snapshot: Snapshot) -> Estimates:
        office = self._prepare(snapshot)
        waiting = [tid for line in office.lines.values() for kind in LINES for tid, _ in line[kind]]
        ghosts = {f"new:{sid}": sid for sid in snapshot.services}
        # The same state always gets the same estimates (a resident who reloads sees
        # the same numbers, and a replay gives the same figures every time).
        state = f"{snapshot.office.id}|{snapshot.at:.3f}|{','.join(sorted(waiting))}"
        seed = hashlib.sha256(state.encode()).digest()
        rng = random.Random(seed)
        waits: dict[str, list[float]] = {tid: [] for tid in [*waiting, *ghosts]}
        aheads: dict[str, list[int]] = {tid: [] for tid in waits}
        # A long queue costs more per run: keep one estimate to tens of milliseconds.
        runs = max(16, min(self.runs, RUN_BUDGET // max(1, len(waiting))))
        for _ in range(runs):
            calls = self._run(office, ghosts, rng)
            order = sorted(calls.items(), key=lambda item: item[1][0])
            real = 0
            for tid, (when, counted) in order:
                waits[tid].append(when - office.now)
                aheads[tid].append(real)
                if counted:
                    real += 1
        servers = {
            sid: sum(1 for _, services, _, _ in office.servers if sid in services)
            for sid in snapshot.services
        }
        service_of = {
            tid: sid
            for sid, line in office.lines.items()
            for kind in LINES
            for tid, _ in line[kind]
        }
        result = Estimates()
        for tid in waiting:
            sid = service_of[tid]
            result.tickets[tid] = self._summarise(
                waits[tid], aheads[tid], sid, servers, office, runs
            )
        for ghost, sid in ghosts.items():
            result.new[sid] = self._summarise(
                waits[ghost], aheads[ghost], sid, servers, office, runs
            )
        return result

    def _prepare(self, snapshot: Snapshot) -> _Office:
        now = snapshot.at
        default = self.settings.default_service_seconds
        times = {
            sid: ServiceTimes(snapshot.history.get(sid, []), service.default_seconds or default)
            for sid, service in snapshot.services.items()
        }
        day = snapshot.day
        no_show = {
            sid: (day.get(f"noshow:{sid}", 0.0) + NO_SHOW_PRIOR * NO_SHOW_WEIGHT)
            / (day.get(f"called:{sid}", 0.0) + NO_SHOW_WEIGHT)
            for sid in snapshot.services
        }
        shows = sum(v for k, v in day.items() if k.startswith("noshow:"))
        hold = (day.get("noshow_hold", 0.0) + NO_SHOW_HOLD * 3) / (shows + 3)
        lines = {
            sid: {kind: list(snapshot.lines.get(sid, {}).get(kind, [])) for kind in LINES}
            for sid in snapshot.services
        }
        # Residents waiting now have waited too: their time counts as exposure.
        exposure = day.get("exposure", 0.0) + sum(
            max(0.0, now - score)
            for line in lines.values()
            for kind in ("priority", "regular")
            for _, score in line[kind]
        )
        leave_rate = (day.get("leaves", 0.0) + 1.0) / (exposure + PATIENCE_PRIOR_SECONDS)
        servers: list[tuple[str, tuple[str, ...], float | None, str | None]] = []
        for counter in (*snapshot.counters, *snapshot.desks):
            if counter.state is not CounterState.OPEN:
                continue
            held = snapshot.held.get(counter.id)
            if held is None:
                servers.append((counter.id, counter.services, None, None))
            elif held.status is TicketStatus.SERVING and held.started_at is not None:
                servers.append((counter.id, counter.services, now - held.started_at, held.service))
            else:
                since = now - (held.called_at or now)
                servers.append((counter.id, counter.services, -since - 1.0, held.service))
        return _Office(
            now=now,
            cap=snapshot.office.priority_cap,
            early=float(snapshot.office.appt_early),
            servers=servers,
            lines=lines,
            times=times,
            no_show=no_show,
            hold=hold,
            leave_rate=leave_rate,
        )

    def _job(self, office: _Office, service: str, rng: random.Random) -> float:
        """How long a counter is taken by one call of a ticket of ``service``."""
        if rng.random() < office.no_show[service]:
            return office.hold
        return office.times[service].draw(rng)

    def _run(
        self, office: _Office, ghosts: dict[str, str], rng: random.Random
    ) -> dict[str, tuple[float, bool]]:
        """One simulated future: when each ticket is called, and whether it took counter time."""
        now = office.now
        rate = office.leave_rate
        queues: dict[str, dict[str, deque[_Entry]]] = {}
        for sid, line in office.lines.items():
            queues[sid] = {
                kind: deque(
                    _Entry(tid, score, now + rng.expovariate(rate) if rate > 0 else math.inf)
                    for tid, score in line[kind]
                )
                for kind in LINES
            }
        for ghost, sid in ghosts.items():
            queues[sid]["regular"].append(_Entry(ghost, now + 1e-6, now))
        free: list[tuple[float, int]] = []
        services: list[tuple[str, ...]] = []
        streaks: list[int] = []
        for index, (_, served, busy, held_service) in enumerate(office.servers):
            services.append(tuple(s for s in served if s in queues))
            streaks.append(0)
            if busy is None or held_service is None or held_service not in office.times:
                start = now
            elif busy >= 0:
                start = now + office.times[held_service].draw_beyond(busy, rng)
            else:
                # Called, not yet started: the resident walks up, or does not come.
                since_call = -busy - 1.0
                if rng.random() < office.no_show[held_service]:
                    start = now + max(0.0, office.hold - since_call)
                else:
                    start = now + office.times[held_service].draw(rng)
            free.append((start, index))
        heapq.heapify(free)
        calls: dict[str, tuple[float, bool]] = {}
        while free:
            at, index = heapq.heappop(free)
            mine = services[index]
            wake: float | None = None
            while True:
                chosen = self._pick(queues, mine, at, office, streaks, index)
                if chosen is None:
                    wake = self._next_appointment(queues, mine, office)
                    break
                entry, sid = chosen
                taken = at < entry.ghost_from
                calls[entry.id] = (at, taken)
                if taken:
                    heapq.heappush(free, (at + self._job(office, sid, rng), index))
                    break
            if wake is not None and wake > at:
                heapq.heappush(free, (wake, index))
        return calls

    @staticmethod
    def _pick(
        queues: dict[str, dict[str, deque[_Entry]]],
        mine: tuple[str, ...],
        at: float,
        office: _Office,
        streaks: list[int],
        index: int,
    ) -> tuple[_Entry, str] | None:
        def head(kind: str, limit: float | None) -> tuple[_Entry, str] | None:
            best: tuple[_Entry, str] | None = None
            for sid in mine:
                line = queues[sid][kind]
                if line and (limit is None or line[0].score <= limit):
                    entry = line[0]
                    if best is None or (entry.score, entry.id) < (best[0].score, best[0].id):
                        best = (entry, sid)
            return best

        chosen = head("appt", at + office.early)
        kind = "appt"
        if chosen is None:
            pri, reg = head("priority", None), head("regular", None)
            if pri is not None and (reg is None or streaks[index] < office.cap):
                chosen, kind = pri, "priority"
                streaks[index] += 1
            elif reg is not None:
                chosen, kind = reg, "regular"
                streaks[index] = 0
        if chosen is None:
            return None
        queues[chosen[1]][kind].popleft()
        return chosen

    @staticmethod
    def _next_appointment(
        queues: dict[str, dict[str, deque[_Entry]]], mine: tuple[str, ...], office: _Office
    ) -> float | None:
        due = [queues[sid]["appt"][0].score - office.early for sid in mine if queues[sid]["appt"]]
        return min(due) if due else None

    def _summarise(
        self,
        waits: list[float],
        aheads: list[int],
        service: str,
        servers: dict[str, int],
        office: _Office,
        runs: int,
    ) -> Estimate:
        count = servers.get(service, 0)
        if len(waits) < max(3, runs // 4):
            # No open counter reaches this ticket: say what one counter would mean,
            # with a wide interval, rather than nothing.
            mean = office.times[service].mean if service in office.times else 600.0
            ahead = sum(
                len(office.lines[service][kind]) for kind in LINES if service in office.lines
            )
            wait = (ahead + 1) * mean
            return Estimate(wait, 0.5 * wait, 2.0 * wait + 600, ahead, count, office.now)
        waits = sorted(waits)
        wait = _quantile(waits, 0.5)
        low = min(wait, WIDEN_LOW * _quantile(waits, 0.1))
        high = max(wait, WIDEN_HIGH * _quantile(waits, 0.9) + WIDEN_SECONDS)
        ahead = round(statistics.median(aheads))
        return Estimate(wait, max(0.0, low), high, ahead, count, office.now)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted sequence."""
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)
