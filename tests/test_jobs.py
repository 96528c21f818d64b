"""The rq jobs, run by a burst ``SimpleWorker`` from synchronous tests, with the JSON serializer."""

from __future__ import annotations

import asyncio
import time

import redis
from redis.asyncio import Redis as AsyncRedis
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from madoguchi.queue import keys
from madoguchi.queue.jobs import (
    close_day,
    close_past_days,
    job_queue,
    schedule_close_past_days,
)
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

from conftest import OFFICE, SERVICES, T0, run_job, work

DAY = 86_400.0
#: The office's local date at ``T0``.
FIRST_DAY = "2026-11-26"


async def _queue_day(settings: Settings) -> dict[str, str]:
    """Tickets of two days at ``kokurakita``: their resident tokens by role."""
    client = AsyncRedis.from_url(settings.redis_url, decode_responses=True)
    queue = QueueClient(client, settings)
    try:
        await queue.put_office(OFFICE, now=T0)
        for service in SERVICES:
            await queue.put_service(OFFICE.id, service, now=T0)
        await queue.open_counter(OFFICE.id, "c1", ["certs"], now=T0)
        called = (await queue.issue(OFFICE.id, "certs", now=T0)).ticket
        await queue.call_next(OFFICE.id, "c1", now=T0 + 10)
        stale = (await queue.issue(OFFICE.id, "certs", now=T0 + 20)).ticket
        stale_moving = (await queue.issue(OFFICE.id, "moving", now=T0 + 30)).ticket
        booked = (
            await queue.issue(OFFICE.id, "moving", now=T0 + 40, appointment_at=T0 + 3 * DAY)
        ).ticket
        today = (await queue.issue(OFFICE.id, "certs", now=T0 + DAY)).ticket
    finally:
        await client.aclose()
    return {
        "called": called.token,
        "stale": stale.token,
        "stale_moving": stale_moving.token,
        "booked": booked.token,
        "today": today.token,
    }


async def _statuses(settings: Settings, tokens: dict[str, str]) -> dict[str, str]:
    client = AsyncRedis.from_url(settings.redis_url, decode_responses=True)
    queue = QueueClient(client, settings)
    try:
        return {
            role: (await queue.ticket(OFFICE.id, token, now=T0 + DAY)).status.value
            for role, token in tokens.items()
        }
    finally:
        await client.aclose()


def test_close_day_abandons_what_still_waits_from_that_day(
    connection: redis.Redis, settings: Settings
) -> None:
    tokens = asyncio.run(_queue_day(settings))

    job = run_job(connection, close_day, OFFICE.id, FIRST_DAY, T0 + DAY + 60)

    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == 2
    assert asyncio.run(_statuses(settings, tokens)) == {
        "called": "called",  # at a counter: the counter decides
        "stale": "abandoned",
        "stale_moving": "abandoned",
        "booked": "waiting",  # its day is the appointment's
        "today": "waiting",
    }
    events = [fields[b"e"] for _, fields in connection.xrange(keys.events(OFFICE.id))]
    closing = [event for event in events if b'"type":"abandoned"' in event]
    assert len(closing) == 2
    assert all(b'"actor":"close_day"' in event for event in closing)


def test_close_day_again_changes_nothing(connection: redis.Redis, settings: Settings) -> None:
    asyncio.run(_queue_day(settings))
    assert run_job(connection, close_day, OFFICE.id, FIRST_DAY, T0 + DAY).return_value() == 2
    length = connection.xlen(keys.events(OFFICE.id))

    assert run_job(connection, close_day, OFFICE.id, FIRST_DAY, T0 + DAY).return_value() == 0
    assert connection.xlen(keys.events(OFFICE.id)) == length


def test_close_day_of_an_unknown_office_closes_nothing(connection: redis.Redis) -> None:
    job = run_job(connection, close_day, "nowhere", FIRST_DAY, T0)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == 0


def test_close_day_refuses_a_malformed_day(connection: redis.Redis) -> None:
    job = run_job(connection, close_day, OFFICE.id, "yesterday", T0)
    assert job.get_status() == JobStatus.FAILED
    assert "yesterday" in (job.latest_result().exc_string or "")


def test_close_past_days_closes_yesterday_and_schedules_its_next_run(
    connection: redis.Redis, settings: Settings
) -> None:
    tokens = asyncio.run(_queue_day(settings))
    now = T0 + DAY + 3600  # 2026-11-27 10:00 in Tokyo, 01:00 UTC

    job = run_job(connection, close_past_days, now)

    assert job.return_value() == {OFFICE.id: 2}
    assert asyncio.run(_statuses(settings, tokens))["today"] == "waiting"
    registry = ScheduledJobRegistry(queue=job_queue(connection))
    assert registry.get_job_ids() == ["madoguchi-close-past-days-20261127T02"]

    assert run_job(connection, close_past_days, now).return_value() == {OFFICE.id: 0}
    assert registry.get_job_ids() == ["madoguchi-close-past-days-20261127T02"]


def test_each_hour_is_scheduled_once(connection: redis.Redis) -> None:
    schedule_close_past_days(connection, now=T0)
    schedule_close_past_days(connection, now=T0 + 60)
    schedule_close_past_days(connection, now=T0 + 3600)
    registry = ScheduledJobRegistry(queue=job_queue(connection))
    assert sorted(registry.get_job_ids()) == [
        "madoguchi-close-past-days-20261126T01",
        "madoguchi-close-past-days-20261126T02",
    ]


def test_the_scheduler_runs_a_due_closing(connection: redis.Redis, settings: Settings) -> None:
    asyncio.run(_queue_day(settings))
    due = schedule_close_past_days(connection, now=time.time() - 7200)

    work(connection, with_scheduler=True)

    ran = Job.fetch(
        f"madoguchi-close-past-days-{due:%Y%m%dT%H}",
        connection=connection,
        serializer=JSONSerializer,
    )
    assert ran.get_status() == JobStatus.FINISHED
    assert list(ran.return_value()) == [OFFICE.id]  # how many depends on today's date
    registry = ScheduledJobRegistry(queue=job_queue(connection))
    assert len(registry.get_job_ids()) == 1  # the next hour's
