"""The web process's garbage-collector policy: long-lived objects stay out of full passes.

A web process lives for days and holds many long-lived objects: what start-up built (the
app, the catalogues, furigana's dictionary of hundreds of thousands of objects) and every
open connection with its stream (10,000 phones watching their tickets are about 1.5
million objects). CPython's full collection walks all of them, and while it does, the
event loop stands still for every request and every stream at once: 0.7–0.8 s at 10,000
connections, the whole of the phones' p99 in ``bench/fanout.py``. Raising the thresholds
does not stop it (a full pass also runs once the objects that reached the oldest
generation since the last one exceed a quarter of it). So:

- after start-up, and once the furigana dictionary is loaded, everything is frozen
  (``gc.freeze()``: moved where the collector never looks);
- every ``freeze_seconds`` (10 s) the two young generations are collected and what survived is
  frozen too. Frozen objects are still freed the moment nothing refers to them; only a
  *cycle* of garbage old enough to have reached the oldest generation waits, for:
- once a day, at ``reclaim_hour`` (03:00 in Asia/Tokyo by default, when every office is
  closed), ``gc.unfreeze()``, one full collection, and ``gc.freeze()`` again: the only
  full pass, when no one is waiting for anything.

Freezing often keeps each full pass CPython still makes small: it walks only what
reached the oldest generation since the last freeze. The price is memory: cyclic garbage
(a closed connection's tasks and futures, say) is held until the night's reclaim.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

#: The young generation's threshold. At CPython's default (700 allocations) it was
#: collected about a hundred times a second under load, each pass promoting the objects
#: of the requests in flight; at 10,000 they die young and collections become rare.
YOUNG_THRESHOLD = 10_000


def freeze() -> None:
    """Collect the young generations, then freeze every object alive now."""
    gc.collect(1)
    gc.freeze()


def reclaim() -> float:
    """The daily full pass: unfreeze, collect everything, freeze again; its seconds."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    took = time.perf_counter() - started
    log.info("full garbage collection: %.3f s, %d objects frozen", took, gc.get_freeze_count())
    return took


def seconds_until(hour: int, now: datetime) -> float:
    """Seconds from ``now`` (aware) to the next ``hour``:00 in ``now``'s time zone."""
    then = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if then <= now:
        then += timedelta(days=1)
    return (then - now).total_seconds()


class Freezer:
    """The policy as the app's lifespan runs it: :meth:`start` after start-up, then
    :meth:`stop` at shutdown. ``loaded`` returns once the slow-loading data is in."""

    def __init__(
        self,
        *,
        freeze_seconds: float,
        reclaim_hour: int,
        zone: str = "Asia/Tokyo",
        loaded: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.freeze_seconds = freeze_seconds
        self.reclaim_hour = reclaim_hour
        self.zone = ZoneInfo(zone)
        self.loaded = loaded
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
        if self.freeze_seconds <= 0:
            return
        self._tasks = [
            asyncio.create_task(self._freeze_often(), name="gc-freeze"),
            asyncio.create_task(self._reclaim_daily(), name="gc-reclaim"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _freeze_often(self) -> None:
        if self.loaded is not None:
            await self.loaded()
            freeze()
        while True:
            await asyncio.sleep(self.freeze_seconds)
            freeze()

    async def _reclaim_daily(self) -> None:
        while True:
            await asyncio.sleep(seconds_until(self.reclaim_hour, datetime.now(self.zone)))
            reclaim()
