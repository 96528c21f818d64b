"""The rq jobs: side effects of the queue that may run late, twice or not at all.

Every job here is idempotent and changes queue state only through the queue's
Lua scripts (via :class:`~madoguchi.queue.tickets.QueueClient`), so a lost or
repeated job can never corrupt the queue. Arguments are plain JSON values: the
worker uses rq's JSON serializer.

The recurring jobs run at the top of every hour, each scheduling its own next run
(the worker schedules the first ones when it starts):

- :func:`close_past_days` abandons tickets still waiting from a day that has ended
  in their office's time zone;
- :func:`roll_up_past_days` stores the statistics roll-up of each office day once
  it is final (a few hours after midnight, local time: a nightly job per office).

Running them hourly rather than once a night covers every time zone and catches
up after the worker was down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue, get_current_job
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from ..settings import Settings, load_settings
from . import statistics
from .exceptions import NotFound, WrongState
from .model import CancelReason, Office, TicketStatus
from .tickets import QueueClient

log = logging.getLogger(__name__)

#: The rq queue every Madoguchi job goes to.
QUEUE_NAME = "madoguchi"
#: The actor recorded in the events of tickets a job closes.
ACTOR = "close_day"
#: How many days back :func:`roll_up_past_days` looks for final days without a roll-up.
ROLL_UP_DAYS = 35


def job_queue(connection: Redis) -> Queue:
    """The ``madoguchi`` rq queue on ``connection``, with the JSON serializer."""
    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)


def close_day(office: str, day: str, now: float | None = None) -> int:
    """Abandon every ticket of ``office`` still waiting from ``day`` (``YYYY-MM-DD``) or before.

    A ticket belongs to the day it was issued, or to the day of its appointment if
    it has one, so an appointment booked for a later day is left alone. Returns how
    many tickets were abandoned; running it again returns 0.
    """
    date.fromisoformat(day)  # refuse a malformed day before touching anything
    return asyncio.run(_run_close_day(load_settings(), office, day, now))


def close_past_days(now: float | None = None) -> dict[str, int]:
    """Run :func:`close_day` for every office on the day before its current local date.

    Returns the tickets abandoned per office. Under a worker, schedules its own next
    run first, so an error here delays nothing but this run.
    """
    at = time.time() if now is None else now
    job = get_current_job()
    if job is not None:
        schedule_close_past_days(job.connection, now=at)
    return asyncio.run(_run_close_past_days(load_settings(), at))


def schedule_close_past_days(connection: Redis, *, now: float) -> datetime:
    """Schedule :func:`close_past_days` at the next top of the hour after ``now``.

    The job id names the hour, so every worker that starts, and every run that
    schedules its successor, schedules the same job once. Returns when it runs.
    """
    return _schedule_next_hour(connection, close_past_days, "close-past-days", now)


def roll_up_day(office: str, day: str, now: float | None = None) -> dict[str, int] | None:
    """Store the statistics roll-up of ``office`` for ``day`` (``YYYY-MM-DD``).

    Returns the day's ticket counts, or ``None`` when the office does not exist or
    the day is not final yet (see :mod:`.statistics`). Running it again stores the
    same roll-up.
    """
    date.fromisoformat(day)  # refuse a malformed day before touching anything
    at = time.time() if now is None else now
    return asyncio.run(_run_roll_up_day(load_settings(), office, day, at))


def roll_up_past_days(now: float | None = None) -> dict[str, list[str]]:
    """Roll up, for every office, each final day of the last :data:`ROLL_UP_DAYS` that
    has events and no roll-up yet. Returns the days rolled up per office.

    Under a worker, schedules its own next run first, like :func:`close_past_days`.
    """
    at = time.time() if now is None else now
    job = get_current_job()
    if job is not None:
        schedule_roll_up_past_days(job.connection, now=at)
    return asyncio.run(_run_roll_up_past_days(load_settings(), at))


def schedule_roll_up_past_days(connection: Redis, *, now: float) -> datetime:
    """Schedule :func:`roll_up_past_days` at the next top of the hour after ``now``, once."""
    return _schedule_next_hour(connection, roll_up_past_days, "roll-up-past-days", now)


def _schedule_next_hour(
    connection: Redis, function: Callable[..., Any], name: str, now: float
) -> datetime:
    # The job id names the hour: however many schedule it, it is scheduled once.
    hour = datetime.fromtimestamp(now, UTC).replace(minute=0, second=0, microsecond=0)
    at = hour + timedelta(hours=1)
    return schedule_once(connection, function, f"madoguchi-{name}-{at:%Y%m%dT%H}", at)


def schedule_once(
    connection: Redis, function: Callable[..., Any], job_id: str, at: datetime
) -> datetime:
    """Run ``function`` at ``at`` as job ``job_id``, unless a job of that id is scheduled."""
    try:
        job_queue(connection).enqueue_at(at, function, job_id=job_id, unique=True)
    except DuplicateJobError:
        log.debug("%s already scheduled", job_id)
    else:
        log.info("%s scheduled at %s", job_id, at.isoformat())
    return at


@asynccontextmanager
async def _queue_client(settings: Settings) -> AsyncIterator[QueueClient]:
    if settings.redis_url is None:
        raise RuntimeError("jobs need REDIS_URL: the worker runs them against that Redis")
    redis = AsyncRedis.from_url(settings.redis_url, decode_responses=True)
    try:
        yield QueueClient(redis, settings)
    finally:
        await redis.aclose()


async def _run_close_day(settings: Settings, office: str, day: str, now: float | None) -> int:
    async with _queue_client(settings) as queue:
        return await _close_day(queue, office, day, now)


async def _run_close_past_days(settings: Settings, now: float) -> dict[str, int]:
    async with _queue_client(settings) as queue:
        return await _close_past_days(queue, now)


async def _close_day(queue: QueueClient, office: str, day: str, now: float | None) -> int:
    at = time.time() if now is None else now
    try:
        known = await queue.office(office)
    except NotFound:
        log.warning("office %s: not closing %s, the office does not exist", office, day)
        return 0
    snapshot = await queue.snapshot(office, now=at)
    waiting = [
        ticket_id
        for line in snapshot.lines.values()
        for members in line.values()
        for ticket_id, _ in members
    ]
    abandoned = 0
    for ticket_id in waiting:
        if await _abandon_if_past(queue, known, ticket_id, day, at):
            abandoned += 1
    if abandoned:
        log.info("office %s: %d tickets of %s or before abandoned", office, abandoned, day)
    return abandoned


async def _abandon_if_past(
    queue: QueueClient, office: Office, ticket_id: str, day: str, now: float
) -> bool:
    try:
        ticket = await queue.ticket(office.id, ticket_id, now=now)
        if ticket.status is not TicketStatus.WAITING:
            return False
        ticket_day = ticket.day
        if ticket.appointment_at is not None:
            ticket_day = office.day(ticket.appointment_at)
        if ticket_day > day:
            return False
        await queue.cancel(
            office.id, ticket_id, now=now, reason=CancelReason.ABANDONED, actor=ACTOR
        )
    except (NotFound, WrongState):
        # Called, cancelled or expired since the snapshot: the script refused, nothing changed.
        return False
    return True


async def _close_past_days(queue: QueueClient, now: float) -> dict[str, int]:
    closed: dict[str, int] = {}
    for office_id in await queue.office_ids():
        office = await queue.office(office_id)
        yesterday = date.fromisoformat(office.day(now)) - timedelta(days=1)
        closed[office_id] = await _close_day(queue, office_id, yesterday.isoformat(), now)
    return closed


async def _run_roll_up_day(
    settings: Settings, office: str, day: str, now: float
) -> dict[str, int] | None:
    async with _queue_client(settings) as queue:
        try:
            known = await queue.office(office)
        except NotFound:
            log.warning("office %s: not rolling up %s, the office does not exist", office, day)
            return None
        stored = await statistics.roll_up(queue.redis, known, [date.fromisoformat(day)], now)
    if not stored:
        log.info("office %s: %s is not final yet, not rolled up", office, day)
        return None
    (stats,) = stored.values()
    total = statistics.figures(
        ((service, tally) for (service, _), tally in stats.cells.items()), {}
    )
    return {
        "issued": total.issued,
        "called": total.called,
        "served": total.served,
        "no_show": total.no_show,
        "cancelled": total.cancelled,
        "abandoned": total.abandoned,
    }


async def _run_roll_up_past_days(settings: Settings, now: float) -> dict[str, list[str]]:
    rolled: dict[str, list[str]] = {}
    async with _queue_client(settings) as queue:
        for office_id in await queue.office_ids():
            office = await queue.office(office_id)
            days = await statistics.days_to_roll_up(queue.redis, office, now, back=ROLL_UP_DAYS)
            stored = await statistics.roll_up(queue.redis, office, days, now)
            rolled[office_id] = [day.isoformat() for day in stored]
            if stored:
                log.info("office %s: rolled up %s", office_id, ", ".join(rolled[office_id]))
    return rolled
