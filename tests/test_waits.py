"""The wait board: estimates computed in another process, answered from the last board."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from madoguchi.queue.estimator import Estimator
from madoguchi.queue.model import Office
from madoguchi.queue.tickets import QueueClient
from madoguchi.queue.waits import WaitBoard
from madoguchi.settings import Settings

from conftest import T0


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as executor:
        yield executor


async def test_a_board_computed_in_another_process_equals_one_computed_here(
    queue: QueueClient, office: Office, settings: Settings, pool: ProcessPoolExecutor
) -> None:
    await queue.open_counter(office.id, "c1", ["certs", "moving"], now=T0)
    for n in range(6):
        await queue.issue(office.id, "certs" if n % 2 else "moving", now=T0 + n)
    there = WaitBoard(
        queue, Estimator(settings), interval=0.0, clock=lambda: T0 + 10, executor=pool
    )
    here = WaitBoard(queue, Estimator(settings), interval=0.0, clock=lambda: T0 + 10)
    remote, local = await there.board(office.id), await here.board(office.id)
    assert remote.estimates == local.estimates
    assert len(remote.estimates.tickets) == 6


async def test_with_an_interval_requests_get_the_last_board_while_a_new_one_computes(
    queue: QueueClient, office: Office, settings: Settings, pool: ProcessPoolExecutor
) -> None:
    board = WaitBoard(
        queue, Estimator(settings), interval=3600.0, clock=lambda: T0 + 10, executor=pool
    )
    first = await board.board(office.id)  # nothing known yet: waits for the first board
    issued = await queue.issue(office.id, "certs", now=T0 + 5)
    # The event is new but the interval has not passed: the last board is answered.
    assert await board.board(office.id, issued.event) is first
    assert issued.ticket.id not in first.estimates.tickets
