"""Live wait estimates for a long-running process, recomputed only when worth it.

Estimating simulates the whole office, so a web process must not do it for every
request. :class:`WaitBoard` keeps the latest :class:`~.estimator.Estimates` per
office. A request costs one cheap look at the office's latest event; the board is
recomputed when something happened since (but at most once per ``interval``
seconds of real time, so a busy office is simulated a few times a second, not
once per operation), or when ``max_age`` seconds of queue time have passed, since
waits drift as counters work even when nothing is announced. Requests that arrive
while a recomputation runs wait for it rather than start their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from .estimator import Estimates, Estimator
from .model import Estimate, Snapshot, Ticket, TicketStatus
from .tickets import QueueClient


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.estimator = estimator
        self.interval = interval
        self.max_age = max_age
        self.clock = clock
        self._boards: dict[str, Board] = {}
        self._computed: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _fresh(self, office: str, last_event: str) -> Board | None:
        known = self._boards.get(office)
        if known is None or self.clock() - known.computed_at >= self.max_age:
            return None
        if known.snapshot.last_event == last_event:
            return known
        if time.monotonic() - self._computed[office] < self.interval:
            return known
        return None

    async def board(self, office: str) -> Board:
        """The office's snapshot and estimates (see the module's docstring for how fresh)."""
        last_event = await self.queue.last_event(office)
        known = self._fresh(office, last_event)
        if known is not None:
            return known
        lock = self._locks.setdefault(office, asyncio.Lock())
        async with lock:
            known = self._fresh(office, await self.queue.last_event(office))
            if known is not None:
                return known
            now = self.clock()
            snapshot = await self.queue.snapshot(office, now=now)
            estimates = self.estimator.estimate(snapshot)
            self._boards[office] = board = Board(snapshot, estimates, now)
            self._computed[office] = time.monotonic()
            return board

    async def for_ticket(self, office: str, ticket: Ticket) -> Estimate | None:
        """The ticket's estimate; ``None`` once it is no longer waiting."""
        if ticket.status is not TicketStatus.WAITING:
            return None
        board = await self.board(office)
        known = board.estimates.tickets.get(ticket.id)
        if known is not None:
            return known
        # Issued after the board was computed: it stands where a new ticket stood then.
        return board.estimates.new.get(ticket.service)
