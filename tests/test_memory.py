"""The web process's garbage-collector policy (web/memory.py), in this very process."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from madoguchi.web import memory

TOKYO = ZoneInfo("Asia/Tokyo")


class Node:
    """Something that can hold a reference cycle."""

    other: Node | None = None


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    """Leave the collector as it was: nothing frozen, the same thresholds."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def cycle() -> weakref.ref[Node]:
    """Garbage that only a collection frees: two nodes that refer to each other."""
    one, two = Node(), Node()
    one.other, two.other = two, one
    return weakref.ref(one)


def test_the_next_quiet_hour() -> None:
    at = datetime(2026, 11, 26, 2, 30, tzinfo=TOKYO)
    assert memory.seconds_until(3, at) == 30 * 60
    assert memory.seconds_until(3, at.replace(hour=3, minute=0)) == 24 * 3600
    assert memory.seconds_until(3, at.replace(hour=3)) == 23.5 * 3600
    assert memory.seconds_until(3, at.replace(hour=23)) == 3.5 * 3600


def test_a_frozen_cycle_waits_for_the_daily_reclaim() -> None:
    gc.collect()
    garbage = cycle()
    gc.freeze()
    gc.collect()
    assert garbage() is not None, "frozen: the full pass does not see it"
    assert memory.reclaim() >= 0
    assert garbage() is None
    assert gc.get_freeze_count() > 0, "what is alive is frozen again"


async def test_the_freezer_freezes_at_start_once_loaded_and_then_often() -> None:
    loaded = asyncio.Event()

    async def dictionary() -> None:
        await loaded.wait()

    freezer = memory.Freezer(freeze_seconds=0.05, reclaim_hour=3, loaded=dictionary)
    freezer.start()
    try:
        assert gc.get_threshold()[0] == memory.YOUNG_THRESHOLD
        at_start = gc.get_freeze_count()
        assert at_start > 0
        kept = [Node() for _ in range(2_000)]  # alive, and tracked by the collector
        loaded.set()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if gc.get_freeze_count() >= at_start + len(kept):
                break
        assert gc.get_freeze_count() >= at_start + len(kept)
    finally:
        await freezer.stop()
    assert freezer._tasks == []


async def test_freezing_only_at_start_when_asked() -> None:
    freezer = memory.Freezer(freeze_seconds=0, reclaim_hour=3)
    freezer.start()
    assert gc.get_freeze_count() > 0
    assert freezer._tasks == []
    await freezer.stop()
