"""Appointments: slots, booking, changing, cancelling and checking in, against real Redis.

The first part drives :class:`AppointmentClient` (the Lua scripts); the second the
resident's pages and the admin's slot settings over HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis as AsyncRedis
from starlette.applications import Starlette

from madoguchi.kiosk.devices import KIOSK_COOKIE
from madoguchi.queue import keys
from madoguchi.queue.appointments import (
    AppointmentClient,
    AppointmentStatus,
    Cancelled,
    SlotFull,
    SlotSettings,
    TooEarly,
    TooLate,
    format_hours,
    parse_hours,
)
from madoguchi.queue.exceptions import Conflict, InvalidInput, NotFound, Unavailable, WrongState
from madoguchi.queue.model import Channel, Office, TicketStatus
from madoguchi.queue.tickets import QueueClient
from madoguchi.web.accounts import Role

from conftest import T0, refusal, shown, sign_in_form
from kiosks import ASAHARA, enrolled

#: 09:00-12:00 and 13:00-17:00 on weekdays, nothing at weekends. T0 is a Thursday, 09:00.
WEEKDAYS = ((540, 720), (780, 1020))
HOURS = (WEEKDAYS,) * 5 + ((), ())
MINUTE = 60.0
DAY = "2026-11-26"


@pytest.fixture
async def appointments(queue: QueueClient, office: Office) -> AppointmentClient:
    """Appointments at kokurakita: certs in 15-minute slots of 2 places, moving in 30 of 1."""
    client = AppointmentClient(queue)
    await client.put_settings(office.id, SlotSettings("certs", hours=HOURS), now=T0)
    settings = SlotSettings("moving", minutes=30, capacity=1, hours=HOURS, days_ahead=7)
    await client.put_settings(office.id, settings, now=T0)
    return client


def at(hour: int, minute: int = 0, days: int = 0) -> str:
    """The slot start (as the pages send it) at a local time of the test day, or days later."""
    return str(int(T0 + days * 86_400 + ((hour - 9) * 60 + minute) * MINUTE))


# -- slot settings ------------------------------------------------------------------------


def test_hours_are_read_and_written_as_local_time_ranges() -> None:
    assert parse_hours("09:00-12:00, 13:00 - 17:30") == ((540, 720), (780, 1050))
    assert parse_hours("") == ()
    assert format_hours(((540, 720), (780, 1050))) == "09:00-12:00, 13:00-17:30"
    with pytest.raises(InvalidInput, match='"9 to 5" is not a time range'):
        parse_hours("9 to 5")


def test_settings_refuse_what_makes_no_sense() -> None:
    with pytest.raises(InvalidInput, match="capacity must be from 1 to 100, not 0"):
        SlotSettings("certs", capacity=0)
    with pytest.raises(InvalidInput, match="hours of tue"):
        SlotSettings("certs", hours=((), ((600, 660), (630, 700)), (), (), (), (), ()))


async def test_slots_of_a_day_follow_the_settings(appointments: AppointmentClient) -> None:
    slots = await appointments.slots("kokurakita", "certs", DAY, now=T0)
    assert len(slots) == 12 + 16
    assert slots[0].start == T0
    assert not slots[0].open  # it begins now
    assert all(s.open and s.remaining == 2 for s in slots[1:])
    assert slots[12].start == float(at(13))
    days = await appointments.days("kokurakita", "certs", now=T0)
    assert days[:3] == [DAY, "2026-11-27", "2026-11-30"]  # no weekend
    assert days[-1] == "2026-12-10"  # 14 days ahead


async def test_a_service_without_settings_takes_no_appointments(
    appointments: AppointmentClient,
) -> None:
    with pytest.raises(Unavailable, match='service "care" takes no appointments'):
        await appointments.slots("kokurakita", "care", DAY, now=T0)
    with pytest.raises(Unavailable):
        await appointments.book("kokurakita", "care", at(10), now=T0)
    assert set(await appointments.bookable("kokurakita", now=T0)) == {"certs", "moving"}


async def test_booking_refuses_a_time_that_is_not_a_slot(appointments: AppointmentClient) -> None:
    for start, message in (
        (at(10, 5), "there is no slot"),
        (at(12, 15), "there is no slot"),
        ("noon", '"noon" is not a slot'),
        (at(10, days=15), "cannot be booked: choose a day from 2026-11-26 to 2026-12-10"),
        (at(10, days=-1), "cannot be booked"),
        (at(10, days=2), "there is no slot"),  # a Saturday
    ):
        with pytest.raises(InvalidInput, match=message):
            await appointments.book("kokurakita", "certs", start, now=T0)
    with pytest.raises(Unavailable, match="already begun"):
        await appointments.book("kokurakita", "certs", at(9), now=T0 + 1)


# -- booking ------------------------------------------------------------------------------


async def test_a_booking_takes_a_place_and_gets_a_token_and_a_code(
    appointments: AppointmentClient, aredis: AsyncRedis
) -> None:
    booked = await appointments.book("kokurakita", "certs", at(10), now=T0, contact="a@b.jp")
    assert booked.status is AppointmentStatus.BOOKED
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", booked.token)
    assert re.fullmatch(r"\d{6}", booked.code)
    assert booked.start == float(at(10))
    assert (booked.opens, booked.closes) == (booked.start - 30 * MINUTE, booked.start + 15 * MINUTE)
    slots = await appointments.slots("kokurakita", "certs", DAY, now=T0)
    assert next(s for s in slots if s.start == booked.start).remaining == 1
    assert await appointments.contact("kokurakita", booked.id) == "a@b.jp"
    assert (await appointments.appointment("kokurakita", booked.token, now=T0)) == booked
    events = await appointments.queue.events("kokurakita", count=1)
    assert events[0][1]["type"] == "appointment_booked"
    # every key it made is one keys.py builds, and each expires a while after the slot
    made = {k for k in await aredis.keys("mg:{kokurakita}:*appt*") if not k.endswith("_seq")}
    assert made == {
        keys.appointment("kokurakita", booked.id),
        keys.appointment_token("kokurakita", booked.token),
        keys.appointment_code("kokurakita", DAY, booked.code),
        keys.appointment_contact("kokurakita", booked.id),
    }
    assert await aredis.exists(keys.slot_counts("kokurakita", "certs", DAY))
    assert await aredis.exists(keys.slot_settings("kokurakita", "certs"))
    for key in made:
        assert 0 < await aredis.ttl(key) <= booked.ends - T0 + 2 * 86_400


async def test_a_bad_contact_address_is_refused(appointments: AppointmentClient) -> None:
    with pytest.raises(InvalidInput, match='"not an address" is not an e-mail address'):
        await appointments.book("kokurakita", "certs", at(10), now=T0, contact="not an address")


async def test_a_full_slot_is_refused(appointments: AppointmentClient) -> None:
    await appointments.book("kokurakita", "certs", at(10), now=T0)
    await appointments.book("kokurakita", "certs", at(10), now=T0)
    with pytest.raises(SlotFull, match="the slot is full"):
        await appointments.book("kokurakita", "certs", at(10), now=T0)
    slots = await appointments.slots("kokurakita", "certs", DAY, now=T0)
    assert next(s for s in slots if s.start == float(at(10))).full


async def test_concurrent_bookings_never_exceed_the_capacity(
    appointments: AppointmentClient,
) -> None:
    async def attempt() -> bool:
        try:
            await appointments.book("kokurakita", "certs", at(11), now=T0)
        except SlotFull:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(60)))
    assert sum(results) == 2
    slots = await appointments.slots("kokurakita", "certs", DAY, now=T0)
    assert next(s for s in slots if s.start == float(at(11))).taken == 2


async def test_a_booking_made_from_stale_settings_is_refused(
    appointments: AppointmentClient, queue: QueueClient
) -> None:
    settings = await appointments.settings("kokurakita", "certs")
    assert settings is not None
    await appointments.put_settings("kokurakita", settings, now=T0)  # version bumped
    args = ["certs", at(10), str(int(at(10)) + 900), DAY, str(settings.version), "t" * 22, "1"]
    with pytest.raises(Conflict, match="changed a moment ago"):
        await queue.run("appointment_book", "kokurakita", T0, "system", *args, "")


async def test_check_in_codes_are_unique_per_office_and_day(
    appointments: AppointmentClient, queue: QueueClient, aredis: AsyncRedis
) -> None:
    first = await appointments.book("kokurakita", "certs", at(10), now=T0)
    # Offer only the code already taken: refused, and nothing booked.
    settings = await appointments.settings("kokurakita", "certs")
    assert settings is not None
    args = ["certs", at(11), at(11, 15), DAY, str(settings.version), "u" * 22, first.code, ""]
    with pytest.raises(Conflict, match="no check-in code was free"):
        await queue.run("appointment_book", "kokurakita", T0, "system", *args)
    slots = await appointments.slots("kokurakita", "certs", DAY, now=T0)
    assert next(s for s in slots if s.start == float(at(11))).taken == 0
    # The same code on another day is someone else's there.
    args = ["certs", at(10, days=1), at(10, 15, days=1), "2026-11-27"]
    args += [str(settings.version), "v" * 22, first.code, ""]
    await queue.run("appointment_book", "kokurakita", T0, "system", *args)
    assert await aredis.get(keys.appointment_code("kokurakita", "2026-11-27", first.code))
    many = [await appointments.book("kokurakita", "certs", at(13), now=T0) for _ in range(2)]
    many += [await appointments.book("kokurakita", "certs", at(14), now=T0) for _ in range(2)]
    codes = [a.code for a in [first, *many]]
    assert len(set(codes)) == len(codes)


# -- changing and cancelling ----------------------------------------------------------------


async def test_a_change_moves_the_place(appointments: AppointmentClient) -> None:
    booked = await appointments.book("kokurakita", "certs", at(10), now=T0)
    moved = await appointments.change("kokurakita", booked.token, at(11, 30), now=T0)
    assert (moved.id, moved.token, moved.code) == (booked.id, booked.token, booked.code)
    assert moved.start == float(at(11, 30))
    assert moved.changes == 1
    slots = {s.start: s for s in await appointments.slots("kokurakita", "certs", DAY, now=T0)}
    assert slots[float(at(10))].taken == 0
    assert slots[float(at(11, 30))].taken == 1


async def test_a_change_to_a_full_slot_changes_nothing(appointments: AppointmentClient) -> None:
    mine = await appointments.book("kokurakita", "moving", at(10), now=T0)
    await appointments.book("kokurakita", "moving", at(11), now=T0)
    with pytest.raises(SlotFull):
        await appointments.change("kokurakita", mine.token, at(11), now=T0)
    slots = {s.start: s for s in await appointments.slots("kokurakita", "moving", DAY, now=T0)}
    assert slots[float(at(10))].taken == 1
    assert slots[float(at(11))].taken == 1
    assert (await appointments.appointment("kokurakita", mine.token, now=T0)).start == mine.start


async def test_concurrent_changes_into_the_last_place_let_one_through(
    appointments: AppointmentClient,
) -> None:
    tokens = [
        (await appointments.book("kokurakita", "moving", at(hour, minute), now=T0)).token
        for hour, minute in ((9, 30), (10, 0), (10, 30), (11, 0), (11, 30), (13, 0))
    ]

    async def move(token: str) -> bool:
        try:
            await appointments.change("kokurakita", token, at(14), now=T0)
        except SlotFull:
            return False
        return True

    assert sum(await asyncio.gather(*(move(t) for t in tokens))) == 1
    slots = await appointments.slots("kokurakita", "moving", DAY, now=T0)
    assert sum(s.taken for s in slots) == 6  # each still holds exactly one place
    assert next(s for s in slots if s.start == float(at(14))).taken == 1


async def test_a_change_to_another_day_keeps_the_code_when_it_is_free(
    appointments: AppointmentClient, aredis: AsyncRedis
) -> None:
    booked = await appointments.book("kokurakita", "certs", at(10), now=T0)
    moved = await appointments.change("kokurakita", booked.token, at(10, days=1), now=T0)
    assert moved.day == "2026-11-27"
    assert moved.code == booked.code
    assert not await aredis.exists(keys.appointment_code("kokurakita", DAY, booked.code))
    assert await aredis.get(keys.appointment_code("kokurakita", moved.day, moved.code)) == moved.id


async def test_cancelling_frees_the_place_and_forgets_the_contact(
    appointments: AppointmentClient,
) -> None:
    booked = await appointments.book("kokurakita", "moving", at(10), now=T0, contact="a@b.jp")
    cancelled = await appointments.cancel("kokurakita", booked.token, now=T0 + 60)
    assert cancelled.status is AppointmentStatus.CANCELLED
    assert await appointments.contact("kokurakita", booked.id) == ""
    # the place is free again, for someone else
    await appointments.book("kokurakita", "moving", at(10), now=T0 + 61)
    # a second cancel changes nothing; a change or check-in is refused
    again = await appointments.cancel("kokurakita", booked.token, now=T0 + 62)
    assert again.status is AppointmentStatus.CANCELLED
    with pytest.raises(WrongState, match="is cancelled, not booked"):
        await appointments.change("kokurakita", booked.token, at(11), now=T0 + 63)
    with pytest.raises(Cancelled, match="was cancelled"):
        await appointments.check_in("kokurakita", booked.token, now=float(at(10)))
    with pytest.raises(NotFound):
        await appointments.check_in_by_code("kokurakita", booked.code, now=float(at(10)))


async def test_unknown_tokens_and_codes_are_not_found(appointments: AppointmentClient) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        await appointments.appointment("kokurakita", "x" * 22, now=T0)
    with pytest.raises(NotFound):
        await appointments.cancel("kokurakita", "../etc", now=T0)
    with pytest.raises(NotFound, match='check-in code "123456" does not exist'):
        await appointments.check_in_by_code("kokurakita", "123456", now=T0)
    with pytest.raises(InvalidInput, match="6 digits"):
        await appointments.check_in_by_code("kokurakita", "12a", now=T0)


# -- checking in ------------------------------------------------------------------------------


async def test_check_in_is_open_only_around_the_slot(appointments: AppointmentClient) -> None:
    booked = await appointments.book("kokurakita", "certs", at(11), now=T0)
    start = booked.start
    with pytest.raises(TooEarly, match="opens 30 minutes before it"):
        await appointments.check_in("kokurakita", booked.token, now=start - 31 * MINUTE)
    late = await appointments.book("kokurakita", "certs", at(11), now=T0)
    with pytest.raises(TooLate, match="closed 15 minutes after it began"):
        await appointments.check_in("kokurakita", late.token, now=start + 16 * MINUTE)
    done = await appointments.check_in("kokurakita", booked.token, now=start - 30 * MINUTE)
    assert not done.replayed
    assert done.appointment.status is AppointmentStatus.CHECKED_IN
    assert done.ticket.appointment_at == start
    assert done.ticket.channel is Channel.PHONE
    assert done.ticket.status is TicketStatus.WAITING
    assert done.appointment.ticket_token == done.ticket.token
    # and a cancelled one cannot be changed into a checked-in one, nor cancelled once in
    with pytest.raises(WrongState, match="cancel the ticket instead"):
        await appointments.cancel("kokurakita", booked.token, now=start)


async def test_the_check_in_window_is_the_services(appointments: AppointmentClient) -> None:
    settings = SlotSettings("certs", hours=HOURS, before=5, after=0)
    await appointments.put_settings("kokurakita", settings, now=T0)
    booked = await appointments.book("kokurakita", "certs", at(11), now=T0)
    with pytest.raises(TooEarly, match="opens 5 minutes before"):
        await appointments.check_in("kokurakita", booked.token, now=booked.start - 6 * MINUTE)
    await appointments.check_in("kokurakita", booked.token, now=booked.start)


async def test_a_second_check_in_returns_the_same_ticket(
    appointments: AppointmentClient, queue: QueueClient
) -> None:
    booked = await appointments.book("kokurakita", "certs", at(10), now=T0, contact="a@b.jp")
    now = booked.start - 10 * MINUTE
    first, again, by_code = await asyncio.gather(
        appointments.check_in("kokurakita", booked.token, now=now),
        appointments.check_in("kokurakita", booked.token, now=now),
        appointments.check_in_by_code(
            "kokurakita", f" {booked.code[:3]} {booked.code[3:]}", now=now
        ),
    )
    assert {first.ticket.id, again.ticket.id, by_code.ticket.id} == {first.ticket.id}
    assert sorted([first.replayed, again.replayed, by_code.replayed]) == [False, True, True]
    snapshot = await queue.snapshot("kokurakita", now=now)
    assert len(snapshot.lines["certs"]["appt"]) == 1
    assert await appointments.contact("kokurakita", booked.id) == ""
    kinds = [e["type"] for _, e in await queue.events("kokurakita", count=3)]
    assert kinds[:2] == ["appointment_checked_in", "issued"]


async def test_the_checked_in_ticket_is_called_first_once_due(
    appointments: AppointmentClient, queue: QueueClient
) -> None:
    booked = await appointments.book("kokurakita", "certs", at(10), now=T0)
    await queue.open_counter("kokurakita", "c1", ["certs", "moving"], now=T0)
    early = booked.start - 20 * MINUTE
    walk_in = (await queue.issue("kokurakita", "moving", now=early - 600)).ticket
    priority = (await queue.issue("kokurakita", "certs", now=early - 500, priority=True)).ticket
    checked = await appointments.check_in_by_code("kokurakita", booked.code, now=early)
    assert checked.ticket.channel is Channel.KIOSK
    # 20 minutes early it is not due: the others go first
    called = await queue.call_next("kokurakita", "c1", now=early + 1)
    assert called is not None
    assert called.id == priority.id
    await queue.start("kokurakita", called.id, now=early + 2)
    await queue.finish("kokurakita", called.id, now=early + 3)
    # 5 minutes before its slot it is due, and goes before the longer-waiting walk-in
    due = booked.start - 300
    called = await queue.call_next("kokurakita", "c1", now=due)
    assert called is not None
    assert called.id == checked.ticket.id
    await queue.start("kokurakita", called.id, now=due)
    await queue.finish("kokurakita", called.id, now=due + 1)
    called = await queue.call_next("kokurakita", "c1", now=due + 2)
    assert called is not None
    assert called.id == walk_in.id


async def test_check_in_refuses_a_service_no_longer_taking_tickets(
    appointments: AppointmentClient, queue: QueueClient, office: Office
) -> None:
    booked = await appointments.book("kokurakita", "certs", at(10), now=T0)
    snapshot = await queue.snapshot("kokurakita", now=T0)
    from dataclasses import replace

    await queue.put_service("kokurakita", replace(snapshot.services["certs"], active=False), now=T0)
    with pytest.raises(Unavailable, match="not taking tickets"):
        await appointments.check_in("kokurakita", booked.token, now=booked.start)
    again = await appointments.appointment("kokurakita", booked.token, now=booked.start)
    assert again.status is AppointmentStatus.BOOKED


# -- the resident's pages -------------------------------------------------------------------

TOKEN_IN_PATH = re.compile(r"/o/kokurakita/a/([A-Za-z0-9_-]{22})")
FORM_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def resident(
    app: Starlette, office: Office, appointments: AppointmentClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A resident's browser on plain http://localhost (its cookies kept), in English."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://localhost", headers={"Accept-Language": "en"}
    ) as client:
        yield client


async def form_token(client: httpx.AsyncClient, url: str) -> str:
    page = await client.get(url)
    assert page.status_code == 200, page.text
    found = FORM_TOKEN.search(page.text)
    assert found is not None
    return found.group(1)


async def book_by_form(client: httpx.AsyncClient, start: str, **extra: str) -> str:
    url = "/o/kokurakita/appointments/certs"
    token = await form_token(client, f"{url}?day={DAY}")
    answer = await client.post(url, data={"slot": start, "csrf": token, **extra})
    assert answer.status_code == 303, answer.text
    found = TOKEN_IN_PATH.match(answer.headers["location"])
    assert found is not None
    return found.group(1)


async def test_a_resident_picks_a_service_a_day_and_a_slot(
    resident: httpx.AsyncClient, appointments: AppointmentClient
) -> None:
    services = await resident.get("/o/kokurakita/appointments")
    assert services.status_code == 200
    assert 'href="/o/kokurakita/appointments/certs"' in services.text
    assert "/appointments/care" not in services.text  # takes no appointments
    days = await resident.get("/o/kokurakita/appointments/certs")
    assert f"?day={DAY}" in days.text
    assert "?day=2026-11-28" not in days.text  # a Saturday
    await appointments.book("kokurakita", "certs", at(10), now=T0)
    await appointments.book("kokurakita", "certs", at(10), now=T0)
    await appointments.book("kokurakita", "certs", at(10, 15), now=T0)
    slots = shown(await resident.get(f"/o/kokurakita/appointments/certs?day={DAY}"))
    assert re.search(r"10:00\s*</span>\s*<span[^>]*>\s*Full", slots)
    assert re.search(r"10:15\s*</span>\s*<span[^>]*>\s*1 place left", slots)
    assert re.search(r"10:30\s*</span>\s*<span[^>]*>\s*2 places left", slots)


async def test_booking_then_the_booking_page_with_its_code_and_qr(
    resident: httpx.AsyncClient, appointments: AppointmentClient
) -> None:
    token = await book_by_form(resident, at(10), email="me@example.jp")
    page = await resident.get(f"/o/kokurakita/a/{token}")
    assert page.status_code == 200
    booked = await appointments.appointment("kokurakita", token, now=T0)
    text = shown(page)
    assert f"{booked.code[:3]} {booked.code[3:]}" in text
    assert "<svg" in page.text  # the QR code
    assert "10:00" in text
    assert await appointments.contact("kokurakita", booked.id) == "me@example.jp"
    assert "no-store" in page.headers["cache-control"]


async def test_the_booking_form_needs_its_token(
    resident: httpx.AsyncClient, appointments: AppointmentClient
) -> None:
    text = await refusal(resident, 403, "/o/kokurakita/appointments/certs", {"slot": at(10)})
    assert "expired" in text
    slots = await appointments.slots("kokurakita", "certs", DAY, now=T0)
    assert all(s.taken == 0 for s in slots)


async def test_bad_booking_input_gets_a_clear_message(resident: httpx.AsyncClient) -> None:
    url = "/o/kokurakita/appointments/certs"
    token = await form_token(resident, url)
    for data, status, message in (
        ({"slot": at(10, 5)}, 422, "That time is not one of the slots"),
        ({"slot": "soon"}, 422, "That time is not one of the slots"),
        ({"slot": at(10), "email": "nope"}, 422, "not an e-mail address"),
        ({}, 422, "Choose a time"),
    ):
        text = await refusal(resident, status, url, {**data, "csrf": token})
        assert message in text
    for _ in range(2):
        await resident.post(url, data={"slot": at(11), "csrf": token})
    assert "That time is full" in await refusal(resident, 409, url, {"slot": at(11), "csrf": token})
    bad = await resident.get(f"{url}?day=tomorrow")
    assert bad.status_code == 422
    assert "not a day" in shown(bad)
    assert (await resident.get("/o/kokurakita/appointments/nothing")).status_code == 404
    assert (await resident.get("/o/nowhere/appointments")).status_code == 404
    assert (await resident.get("/o/kokurakita/a/" + "x" * 22)).status_code == 404


async def test_change_cancel_and_check_in_on_the_booking_page(
    resident: httpx.AsyncClient, app: Starlette, appointments: AppointmentClient
) -> None:
    token = await book_by_form(resident, at(10))
    base = f"/o/kokurakita/a/{token}"
    csrf = await form_token(resident, f"{base}/change?day={DAY}")
    moved = await resident.post(f"{base}/change", data={"slot": at(11), "csrf": csrf})
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{base}?done=changed"
    assert "11:00" in shown(await resident.get(moved.headers["location"]))
    # too early to check in: no button, and a post says when it opens
    page = shown(await resident.get(base))
    assert "I have arrived" not in page
    assert "from 10:30" in page
    early = await resident.post(f"{base}/check-in", data={"csrf": csrf})
    assert early.status_code == 409
    assert "Check-in opens at 10:30" in shown(early)
    app.state.offset = 100 * MINUTE  # 10:40
    page = shown(await resident.get(base))
    assert "I have arrived" in page
    arrived = await resident.post(f"{base}/check-in", data={"csrf": csrf})
    assert arrived.status_code == 303
    booked = await appointments.appointment("kokurakita", token, now=T0)
    assert arrived.headers["location"] == f"/o/kokurakita/t/{booked.ticket_token}"
    # once checked in the page leads to the ticket; a second check-in goes there too
    again = await resident.post(f"{base}/check-in", data={"csrf": csrf})
    assert again.headers["location"] == arrived.headers["location"]
    assert f"/o/kokurakita/t/{booked.ticket_token}" in (await resident.get(base)).text
    refused = await resident.post(f"{base}/cancel", data={"csrf": csrf})
    assert refused.status_code == 409


async def test_cancel_on_the_booking_page(
    resident: httpx.AsyncClient, appointments: AppointmentClient
) -> None:
    token = await book_by_form(resident, at(10))
    base = f"/o/kokurakita/a/{token}"
    csrf = await form_token(resident, base)
    assert (await resident.post(f"{base}/cancel", data={})).status_code == 403
    done = await resident.post(f"{base}/cancel", data={"csrf": csrf})
    assert done.status_code == 303
    page = shown(await resident.get(done.headers["location"]))
    assert "cancelled" in page
    slots = await appointments.slots("kokurakita", "certs", DAY, now=T0)
    assert all(s.taken == 0 for s in slots)


# -- the admin's slot settings ----------------------------------------------------------------

SLOTS_FORM = {
    "minutes": "20",
    "capacity": "3",
    "days_ahead": "5",
    "before": "20",
    "after": "10",
    "enabled": "1",
    **{f"hours_{d}": "09:00-12:00" for d in ("mon", "tue", "wed", "thu", "fri")},
    "hours_sat": "",
    "hours_sun": "",
}


async def test_an_admin_sets_a_services_slots(
    http: httpx.AsyncClient, app: Starlette, appointments: AppointmentClient
) -> None:
    csrf = await sign_in_form(http, app, "boss", Role.ADMIN)
    url = "/admin/offices/kokurakita/services/care/slots"
    page = await http.get(url)
    assert page.status_code == 200
    saved = await http.post(url, data={**SLOTS_FORM, "csrf": csrf})
    assert saved.status_code == 303, saved.text
    settings = await appointments.settings("kokurakita", "care")
    assert settings is not None
    assert (settings.minutes, settings.capacity, settings.days_ahead) == (20, 3, 5)
    assert settings.hours[0] == ((540, 720),)
    assert settings.hours[5] == ()
    assert "09:00-12:00" in (await http.get(url)).text
    bad = {**SLOTS_FORM, "capacity": "0", "hours_mon": "9 to 5", "csrf": csrf}
    text = await refusal(http, 422, url, bad)
    assert "must be a whole number from 1 to 100" in text
    assert "09:00-12:00, 13:00-17:00" in text  # the hint on the format


# -- checking in at the kiosk ------------------------------------------------------------------

KIOSK = dataclasses.replace(ASAHARA, topics=(), cameras=())


@pytest.fixture
async def kiosk(app: Starlette, office: Office) -> AsyncIterator[httpx.AsyncClient]:
    """An enrolled kiosk of kokurakita (over https, so that its cookie is the real one)."""
    token = await enrolled(app.state.kiosks, KIOSK)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="https://testserver",
        headers={"Cookie": f"{KIOSK_COOKIE}={token}; madoguchi-lang=en"},
    ) as client:
        yield client


async def test_check_in_at_the_kiosk_with_the_code(
    kiosk: httpx.AsyncClient, app: Starlette, appointments: AppointmentClient
) -> None:
    booked = await appointments.book("kokurakita", "certs", at(10), now=T0)
    page = await kiosk.get("/kiosk/check-in")
    assert page.status_code == 200
    assert 'data-numpad-for="code"' in page.text
    form = {"office": "kokurakita", "code": booked.code}
    early = await kiosk.post("/kiosk/check-in", data=form)
    assert early.status_code == 409
    assert "Please check in from 09:30" in shown(early)
    wrong = await kiosk.post("/kiosk/check-in", data={**form, "code": "000000"})
    assert wrong.status_code == 404
    assert "No appointment today has this code" in shown(wrong)
    short = await kiosk.post("/kiosk/check-in", data={**form, "code": "12"})
    assert short.status_code == 422
    assert "The code has 6 digits" in shown(short)
    elsewhere = await kiosk.post("/kiosk/check-in", data={**form, "office": "moji"})
    assert elsewhere.status_code == 403
    app.state.offset = 45 * MINUTE
    done = await kiosk.post("/kiosk/check-in", data=form)
    assert done.status_code == 303
    checked = await appointments.appointment("kokurakita", booked.token, now=T0)
    assert done.headers["location"] == f"/kiosk/tickets/{checked.ticket_token}?print=1"
    ticket = await kiosk.get(done.headers["location"])
    assert ticket.status_code == 200
    assert "A-001" in ticket.text
    # a second time: the same ticket, not printed again
    again = await kiosk.post("/kiosk/check-in", data=form)
    assert again.headers["location"] == f"/kiosk/tickets/{checked.ticket_token}"


async def test_the_kiosk_says_so_when_the_phone_checked_in_already(
    kiosk: httpx.AsyncClient, appointments: AppointmentClient, app: Starlette
) -> None:
    booked = await appointments.book("kokurakita", "certs", at(9, 15), now=T0)
    done = await appointments.check_in("kokurakita", booked.token, now=T0)
    answer = await kiosk.post("/kiosk/check-in", data={"office": "kokurakita", "code": booked.code})
    assert answer.status_code == 200
    assert f"You have already checked in. Your number is {done.ticket.number}." in shown(answer)


async def test_the_kiosk_check_in_needs_an_enrolled_kiosk(
    client: httpx.AsyncClient, appointments: AppointmentClient
) -> None:
    page = await client.get("/kiosk/check-in")
    assert page.status_code == 303
    assert page.headers["location"] == "/kiosk/enroll"
    posted = await client.post("/kiosk/check-in", data={"office": "kokurakita", "code": "123456"})
    assert posted.status_code == 401
