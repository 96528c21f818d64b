"""Live wait estimates for a long-running process, recomputed only when worth it.

Estimating simulates the whole office, so a web process must not do it for every
request. :class:`WaitBoard` keeps the latest :class:`~.estimator.Estimates` per
office. A request costs one cheap look at the office's latest event; the board is
recomputed when something happened since (but at most once per ``interval``
seconds of real time, so a busy office is simulated a few times a second, not
once per operation), or when ``max_age`` seconds of queue time have passed, since
waits drift as counters work even when nothing is announced. Requests that arrive
while a recomputation runs do not start their own: they are answered from the last
board (unless it is older than ``max_stale``: then they wait for the new one). A
phone must not wait a second for its position because a long queue takes that long
to simulate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from .estimator import Estimates, Estimator
from .model import Estimate, Snapshot, Ticket, TicketStatus
from .tickets import QueueClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Board:
    snapshot: Snapshot
    estimates: Estimates
    computed_at: float


class WaitBoard:
    def __init__(
        self,
        queue: QueueClient,
        estimator: Estimator,
        *,
        interval: float = 0.5,
        max_age: float = 15.0,
        max_stale: float = 120.0,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
    ) -> None:
        self.queue = queue
        self.estimator = estimator
        self.interval = interval
        self.max_age = max_age
        self.max_stale = max_stale
        self.clock = clock
        #: Where the simulation runs; ``None`` runs it on the event loop.
        self.executor = executor
        self._boards: dict[str, Board] = {}
        self._computed: dict[str, float] = {}
        #: Least time between an office's recomputations: ``interval``, or longer when a
        #: simulation takes longer (a long queue), so that the estimator keeps up.
        self._spacing: dict[str, float] = {}
        self._refreshing: dict[str, asyncio.Task[Board]] = {}

    def _fresh(self, office: str, last_event: str) -> Board | None:
        known = self._boards.get(office)
        if known is None or self.clock() - known.computed_at >= self.max_age:
            return None
        if known.snapshot.last_event == last_event:
            return known
        if time.monotonic() - self._computed[office] < self._spacing[office]:
            return known
        return None

    async def board(self, office: str, last_event: str = "") -> Board:
        """The office's snapshot and estimates (see the module's docstring for how fresh).

        ``last_event`` is the id of an event the caller has just appended, if it has: it
        stands in for a look at the stream, saving a round trip.
        """
        last_event = last_event or await self.queue.last_event(office)
        known = self._fresh(office, last_event)
        if known is not None:
            return known
        task = self._refreshing.get(office)
        if task is None:
            task = asyncio.create_task(self._compute(office))
            self._refreshing[office] = task
            task.add_done_callback(lambda done: self._settled(office, done))
        known = self._boards.get(office)
        if (
            self.interval > 0
            and known is not None
            and self.clock() - known.computed_at < self.max_stale
        ):
            # Answer with the last board while the new one is computed. (With no
            # interval, as in tests and replays, every answer waits for a fresh board.)
            return known
        return await asyncio.shield(task)

    def _settled(self, office: str, task: asyncio.Task[Board]) -> None:
        self._refreshing.pop(office, None)
        if not task.cancelled() and task.exception() is not None:
            # Requests answered from the previous board never await this task: say why
            # the refresh failed here, or nobody would.
            log.warning("office %s estimates not refreshed: %r", office, task.exception())

    async def _compute(self, office: str) -> Board:
        started = time.monotonic()
        now = self.clock()
        snapshot = await self.queue.snapshot(office, now=now)
        if self.executor is None:
            estimates = self.estimator.estimate(snapshot)
        else:
            loop = asyncio.get_running_loop()
            estimates = await loop.run_in_executor(self.executor, self.estimator.estimate, snapshot)
        self._boards[office] = board = Board(snapshot, estimates, now)
        self._computed[office] = finished = time.monotonic()
        # (No interval, as in tests and replays: every change gets a fresh board.)
        self._spacing[office] = max(self.interval, finished - started) if self.interval else 0.0
        return board

    async def for_ticket(
        self, office: str, ticket: Ticket, last_event: str = ""
    ) -> Estimate | None:
        """The ticket's estimate; ``None`` once it is no longer waiting."""
        if ticket.status is not TicketStatus.WAITING:
            return None
        board = await self.board(office, last_event)
        known = board.estimates.tickets.get(ticket.id)
        if known is not None:
            return known
        # Issued after the board was computed: it stands where a new ticket stood then.
        return board.estimates.new.get(ticket.service)
