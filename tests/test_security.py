"""Who may do what: every route against every role, CSRF on every change, cookies, revocation.

The authorization matrix walks ``app.routes`` (into mounts) and fails for a route that
has no expectation here, so a new route cannot ship without saying who may use it.
Each (route, role) runs against a freshly seeded world, as a real ASGI request (not
through a client that would hide an exception or hang on an event stream), and must
answer exactly the expected status, and never with an exception; a refused request
must leave Redis (sessions aside) exactly as it was.

Roles: ``anonymous``; ``resident``: anonymous, but paths name the ticket by its token
(the only thing a resident holds); ``kiosk``: the device token of an enrolled kiosk of
kokurakita (:data:`KIOSK`; moji has a kiosk of its own, :data:`MOJI_KIOSK`);
``staff``: a clerk of kokurakita; ``other_staff``: a clerk of another office (moji);
``supervisor`` and ``admin``; ``unenrolled``: a clerk of kokurakita whose admin
requires an authenticator they have not set up, who may only set it up or sign out.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import httpx
import pyotp
import pytest
from aiortc import RTCPeerConnection, VideoStreamTrack
from redis.asyncio import Redis as AsyncRedis
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from madoguchi.consult.calls import Role as CallRole
from madoguchi.consult.forms import FormsLibrary, sample_pdf
from madoguchi.kiosk.devices import KIOSK_COOKIE, Kiosk, KioskStore, Printer
from madoguchi.queue import keys
from madoguchi.queue.appointments import Appointment, AppointmentClient, SlotSettings
from madoguchi.queue.model import Channel, Office, Service, ServiceMode, Ticket
from madoguchi.queue.tickets import QueueClient
from madoguchi.web.accounts import AccountStore, Role, StaffAccount, password_hasher
from madoguchi.web.sessions import SessionStore, announce

from conftest import OFFICE, PASSWORD, SERVICES, T0

ROLES = (
    "anonymous",
    "resident",
    "kiosk",
    "staff",
    "other_staff",
    "supervisor",
    "admin",
    "unenrolled",
)
SIGNED_IN = ("staff", "other_staff", "supervisor", "admin", "unenrolled")
#: Who each signed-in role is: user name, role, offices, whether TOTP is required.
PEOPLE: dict[str, tuple[str, Role, tuple[str, ...], bool]] = {
    "staff": ("clerk", Role.STAFF, ("kokurakita",), False),
    "other_staff": ("outsider", Role.STAFF, ("moji",), False),
    "supervisor": ("lead", Role.SUPERVISOR, ("kokurakita",), False),
    "admin": ("boss", Role.ADMIN, (), False),
    "unenrolled": ("newbie", Role.STAFF, ("kokurakita",), True),
}
MOJI = Office("moji", "門司区役所", "Moji Ward Office")
#: The kiosk the role ``kiosk`` holds the device token of, and one of another office.
KIOSK = Kiosk(
    "kokurakita-ashihara",
    "kokurakita",
    "小倉北 — 足原市民センター",
    "1階ロビー",
    ("certs", "moving"),
    ("care",),
    ("face", "document"),
    Printer("browser"),
)
MOJI_KIOSK = Kiosk(
    "moji-dairi",
    "moji",
    "門司 — 大里市民センター",
    "1階",
    ("certs",),
    (),
    ("face",),
    Printer("browser"),
)
BASE = "/api/v1/offices/kokurakita"
COOKIE = "__Host-madoguchi"
SIGNIN_COOKIE = "__Host-madoguchi-signin"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


# -- what a request looks like, and what it must get ------------------------------------


@dataclass(frozen=True)
class Redirect:
    """A 303 to a location that starts with ``to``."""

    to: str

    def __str__(self) -> str:
        return f"303 → {self.to}"


Expected = int | Redirect
SIGN_IN = Redirect("/staff/signin")
ENROL = Redirect("/staff/totp")


@dataclass
class Call:
    """One request. ``csrf``: send the session's token (a form field for forms, else the
    ``X-CSRF-Token`` header); ``signin``: the form is a sign-in form, whose token pairs
    with the sign-in cookie instead."""

    method: str
    path: str
    json: Any = None
    form: dict[str, str] | None = None
    csrf: bool = True
    signin: bool = False
    cookies: dict[str, str] = field(default_factory=dict)
    #: Files to send with ``form`` as ``multipart/form-data``: name → (file name, bytes, type).
    files: dict[str, tuple[str, bytes, str]] | None = None


Probe = Callable[["World", str], Awaitable[Call]]


@dataclass(frozen=True)
class Expect:
    """One way to call a route (``name``), and the answer each role gets."""

    name: str
    probe: Probe
    answers: dict[str, Expected]
    #: Why this call needs no CSRF token, when it needs none.
    no_csrf: str = ""

    def __post_init__(self) -> None:
        assert set(self.answers) == set(ROLES), f"{self.name}: {set(ROLES) ^ set(self.answers)}"


def everyone(answer: Expected) -> dict[str, Expected]:
    return dict.fromkeys(ROLES, answer)


STRANGERS = ("anonymous", "resident", "kiosk")


def _allowed(role: str, least: Role, office: bool, at: str) -> bool:
    _, has, offices, _ = PEOPLE[role]
    at_office = has is Role.ADMIN or at in offices
    return has.at_least(least) and (at_office or not office)


def page(
    ok: Expected = 200,
    least: Role = Role.STAFF,
    *,
    office: bool = False,
    at: str = "kokurakita",
) -> dict[str, Any]:
    """A staff page: strangers are sent to sign in, the unenrolled to enrol.

    ``office``: the page is about the office ``at``, so staff of other offices are refused.
    """
    answers: dict[str, Expected] = dict.fromkeys(STRANGERS, SIGN_IN)
    for role in ("staff", "other_staff", "supervisor", "admin"):
        answers[role] = ok if _allowed(role, least, office, at) else 403
    answers["unenrolled"] = ENROL
    return answers


def action(
    ok: Expected = 200,
    least: Role = Role.STAFF,
    *,
    office: bool = True,
    at: str = "kokurakita",
) -> dict[str, Any]:
    """A staff request that is not a page (an API call, a form post): 401, then 403."""
    answers: dict[str, Expected] = dict.fromkeys(STRANGERS, 401)
    for role in ("staff", "other_staff", "supervisor", "admin"):
        answers[role] = ok if _allowed(role, least, office, at) else 403
    answers["unenrolled"] = 403
    return answers


# -- the world each request meets ---------------------------------------------------------


@dataclass
class World:
    """Redis seeded afresh: kokurakita and moji, the people above, nothing else."""

    app: Starlette
    redis: AsyncRedis
    serial: Iterator[int] = field(default_factory=itertools.count)
    #: The seeded Redis, key by key (name, time to live in ms, DUMP), to restore at each reset.
    seeded: list[tuple[str, int, bytes]] = field(default_factory=list, repr=False)
    #: The device token of :data:`KIOSK` (enrolled while seeding, so restored with it).
    kiosk_token: str = ""

    @property
    def queue(self) -> QueueClient:
        queue: QueueClient = self.app.state.queue
        return queue

    @property
    def accounts(self) -> AccountStore:
        accounts: AccountStore = self.app.state.accounts
        return accounts

    @property
    def sessions(self) -> SessionStore:
        sessions: SessionStore = self.app.state.sessions
        return sessions

    @property
    def kiosks(self) -> KioskStore:
        kiosks: KioskStore = self.app.state.kiosks
        return kiosks

    def now(self) -> float:
        now: float = self.app.state.clock()
        return now

    async def reset(self) -> None:
        """Seed Redis the first time; every later time, restore what the first one made
        (ten times faster than seeding again, which checks and hashes five passwords)."""
        await self.redis.flushdb()
        if self.seeded:
            async with self.redis.pipeline(transaction=False) as pipe:
                for name, ttl, value in self.seeded:
                    pipe.restore(name, max(ttl, 0), value)
                await pipe.execute()
            return
        for office in (OFFICE, MOJI):
            await self.queue.put_office(office, now=T0)
            for service in SERVICES:
                await self.queue.put_service(office.id, service, now=T0)
        for username, role, offices, totp in PEOPLE.values():
            await self.account(username, role, offices, totp_required=totp)
        for kiosk in (KIOSK, MOJI_KIOSK):
            await self.kiosks.put(kiosk)
        code = await self.kiosks.issue_code(KIOSK.id, T0)
        _, self.kiosk_token = await self.kiosks.enroll(code, T0)
        for key in map(str, await self.redis.keys("*")):
            dumped = await self.redis.dump(key)
            assert dumped is not None
            self.seeded.append((key, await self.redis.pttl(key), dumped))

    async def account(
        self,
        username: str,
        role: Role = Role.STAFF,
        offices: tuple[str, ...] = ("kokurakita",),
        **flags: bool,
    ) -> StaffAccount:
        services = tuple(s.id for s in SERVICES)
        account = StaffAccount(username, f"Test {username}", role, offices, services, **flags)
        hasher = password_hasher(1024, 1)
        return await AccountStore(self.redis, hasher=hasher).create(account, PASSWORD)

    def fresh(self, kind: str) -> str:
        return f"{kind}{next(self.serial)}"

    async def ticket(self, state: str = "waiting", service: str = "certs") -> Ticket:
        """A new ticket of kokurakita in ``state``: waiting, called or serving."""
        ticket = (await self.queue.issue("kokurakita", service, now=self.now())).ticket
        if state == "waiting":
            return ticket
        counter = await self.counter([service])
        called = await self.queue.call_next("kokurakita", counter, now=self.now())
        assert called is not None
        assert called.id == ticket.id
        if state == "serving":
            return await self.queue.start("kokurakita", ticket.id, now=self.now())
        return called

    async def counter(
        self, services: list[str] | None = None, office: str = "kokurakita", *, closed: bool = False
    ) -> str:
        """A new counter of ``office``: open, or ``closed`` (as an admin creates one)."""
        counter = self.fresh("c")
        if closed:
            await self.queue.put_counter(
                office, counter, services or ["certs"], now=self.now(), exists=False
            )
        else:
            await self.queue.open_counter(office, counter, services or ["certs"], now=self.now())
        return counter

    async def ref(self, role: str, ticket: Ticket) -> str:
        """How ``role`` names a ticket: a resident by its token, everyone else by its id."""
        return ticket.token if role == "resident" else ticket.id

    async def code_for(self, username: str) -> str:
        """The current code of the authenticator ``username`` is setting up."""
        secret = await self.accounts.pending_totp(username)
        return pyotp.TOTP(secret).at(self.now())


# -- the probes: how to call each route ---------------------------------------------------


def get(path: str) -> Probe:
    async def probe(world: World, role: str) -> Call:
        return Call("GET", path)

    return probe


async def take_ticket(world: World, role: str) -> Call:
    return Call("POST", f"{BASE}/tickets", json={"service": "certs"})


async def take_priority_ticket(world: World, role: str) -> Call:
    return Call("POST", f"{BASE}/tickets", json={"service": "certs", "priority": True})


async def read_ticket(world: World, role: str) -> Call:
    ticket = await world.ticket()
    return Call("GET", f"{BASE}/tickets/{await world.ref(role, ticket)}")


async def cancel_ticket(world: World, role: str) -> Call:
    ticket = await world.ticket()
    return Call("DELETE", f"{BASE}/tickets/{await world.ref(role, ticket)}")


def ticket_action(action: str, state: str, body: Any = None) -> Probe:
    async def probe(world: World, role: str) -> Call:
        ticket = await world.ticket(state)
        path = f"{BASE}/tickets/{await world.ref(role, ticket)}/{action}"
        return Call("POST", path, json=body)

    return probe


def counter_action(action: str, body: Any = None) -> Probe:
    async def probe(world: World, role: str) -> Call:
        if action == "open":
            counter = world.fresh("c")
        else:
            counter = await world.counter()
            if action == "call-next":
                await world.ticket()
        return Call("POST", f"{BASE}/counters/{counter}/{action}", json=body)

    return probe


async def api_sign_in(world: World, role: str) -> Call:
    username = world.fresh("u")
    await world.account(username)
    return Call("POST", "/api/v1/session", json={"username": username, "password": PASSWORD})


async def api_sign_out(world: World, role: str) -> Call:
    return Call("DELETE", "/api/v1/session")


async def form_sign_in(world: World, role: str) -> Call:
    username = world.fresh("u")
    await world.account(username)
    form = {"username": username, "password": PASSWORD, "next": "/staff/"}
    return Call("POST", "/staff/signin", form=form, signin=True)


async def form_sign_in_code(world: World, role: str) -> Call:
    username = world.fresh("u")
    await world.account(username)
    secret = pyotp.random_base32()
    await world.redis.hset(keys.staff_account(username), "totp", secret)
    pending = await world.sessions.await_code(username, "/staff/", now=world.now())
    form = {"pending": pending.token, "code": pyotp.TOTP(secret).at(world.now())}
    return Call("POST", "/staff/signin/code", form=form, signin=True)


async def sign_out(world: World, role: str) -> Call:
    return Call("POST", "/staff/signout", form={})


async def totp_confirm(world: World, role: str) -> Call:
    code = await world.code_for(PEOPLE[role][0]) if role in SIGNED_IN else "123456"
    return Call("POST", "/staff/totp", form={"code": code})


async def totp_new(world: World, role: str) -> Call:
    return Call("POST", "/staff/totp/new", form={})


# The staff side's pages and forms. Fixed names are safe: every call meets a fresh world.
KOKURA_ADMIN = "/admin/offices/kokurakita"
OFFICE_FORM = {
    "name_ja": "小倉北区役所",
    "name_en": "Kokurakita Ward Office",
    "timezone": "Asia/Tokyo",
    "priority_cap": "3",
}
SERVICE_FORM = {
    "name_ja": "証明書",
    "name_en": "Certificates",
    "mode": "in_person",
    "default_minutes": "3",
    "band_moderate": "15",
    "band_long": "30",
    "band_very_long": "60",
    "active": "on",
}
ACCOUNT_FORM = {"name": "Test Newcomer", "role": "staff", "offices": "kokurakita"}


async def console_open(world: World, role: str) -> Call:
    form = {"office": "kokurakita", "counter": "window-1", "services": "certs"}
    return Call("POST", "/staff/console", form=form)


async def console_remembered(world: World, role: str) -> Call:
    """The picker of a browser that last ran a counter of kokurakita, still open."""
    counter = await world.counter()
    return Call("GET", "/staff/console", cookies={"madoguchi_console": f"kokurakita/{counter}"})


async def serve_only_moving(world: World, role: str) -> None:
    """Let ``role`` (if signed in) serve only "moving"; the probes below then ask for "certs"."""
    if role in SIGNED_IN:
        account = await world.accounts.get(PEOPLE[role][0])
        await world.accounts.update(replace(account, services=("moving",)))


async def console_open_unserved(world: World, role: str) -> Call:
    await serve_only_moving(world, role)
    return await console_open(world, role)


async def api_open_unserved(world: World, role: str) -> Call:
    await serve_only_moving(world, role)
    return Call("POST", f"{BASE}/counters/window-1/open", json={"services": ["certs"]})


def console_page(office: str) -> Probe:
    async def probe(world: World, role: str) -> Call:
        return Call("GET", f"/staff/console/{office}/{await world.counter(office=office)}")

    return probe


def supervise(verb: str, office: str = "kokurakita") -> Probe:
    """A supervisor's counter form: open a closed counter, or change an open one."""

    async def probe(world: World, role: str) -> Call:
        counter = await world.counter(office=office, closed=verb == "open")
        form = {"services": "moving"} if verb == "services" else {}
        return Call("POST", f"/staff/supervisor/{office}/counters/{counter}/{verb}", form=form)

    return probe


def post(path: str, form: dict[str, str] | None = None) -> Probe:
    async def probe(world: World, role: str) -> Call:
        return Call("POST", path, form=dict(form or {}))

    return probe


def on_counter(method: str, suffix: str = "", form: dict[str, str] | None = None) -> Probe:
    """A request about a counter of kokurakita that an admin created (so, closed)."""

    async def probe(world: World, role: str) -> Call:
        counter = await world.counter(closed=True)
        path = f"{KOKURA_ADMIN}/counters/{counter}{suffix}"
        return Call(method, path, form=None if method == "GET" else dict(form or {}))

    return probe


def on_account(
    suffix: str, form: dict[str, str] | None = None, *, disabled: bool = False, totp: bool = False
) -> Probe:
    """An admin's form about the account ``target``: a clerk of kokurakita, signed in
    (unless ``disabled``), with an authenticator if ``totp``."""

    async def probe(world: World, role: str) -> Call:
        await world.account("target", disabled=disabled)
        if totp:
            await world.redis.hset(keys.staff_account("target"), "totp", pyotp.random_base32())
        if not disabled:
            await world.sessions.create("target", now=world.now())
        return Call("POST", f"/admin/staff/target{suffix}", form=dict(form or {}))

    return probe


def _live(office: str) -> dict[str, Expected]:
    # An event stream is read by a script, not a person: strangers get a 401, no redirect.
    return {**page(office=True, at=office), **dict.fromkeys(STRANGERS, 401)}


def _admin(done: str) -> dict[str, Expected]:
    return action(Redirect(done), Role.ADMIN, office=False)


def _supervise(verb: str, office: str = "kokurakita") -> Expect:
    done = Redirect(f"/staff/supervisor/{office}?done={verb}&counter=c")
    answers = action(done, Role.SUPERVISOR, at=office)
    return Expect(f"{verb} a counter at {office}", supervise(verb, office), answers)


def _statistics(name: str, path: str) -> list[Expect]:
    """Statistics for supervisors: of their offices, of the home office, of another one."""
    return [
        Expect(name, get(path), page(least=Role.SUPERVISOR)),
        Expect(
            f"{name} of kokurakita",
            get(f"{path}?office=kokurakita"),
            page(least=Role.SUPERVISOR, office=True),
        ),
        Expect(
            f"{name} of moji",
            get(f"{path}?office=moji"),
            page(least=Role.SUPERVISOR, office=True, at="moji"),
        ),
    ]


def _signed_in_elsewhere(answer: Expected) -> dict[str, Expected]:
    """Anyone may call it; the signed-in get ``answer`` instead."""
    return {**everyone(200), **dict.fromkeys(SIGNED_IN, answer)}


# -- appointments: a service with slots, and a booking of it ---------------------------------


async def slotted(world: World) -> AppointmentClient:
    """Kokurakita's certs in 15-minute slots, 09:00-17:00 every day."""
    client = AppointmentClient(world.queue)
    hours = (((540, 1020),),) * 7
    await client.put_settings("kokurakita", SlotSettings("certs", hours=hours), now=world.now())
    return client


async def booking(world: World) -> Appointment:
    """A booking at 09:15 today: its check-in is open (from 08:45)."""
    client = await slotted(world)
    return await client.book("kokurakita", "certs", str(int(T0 + 15 * 60)), now=world.now())


async def kiosk_check_in(world: World, role: str) -> Call:
    form = {"office": "kokurakita", "code": (await booking(world)).code}
    return Call("POST", "/kiosk/check-in", form=form)


def on_slots(method: str, path: str, form: dict[str, str] | None = None) -> Probe:
    async def probe(world: World, role: str) -> Call:
        await slotted(world)
        if method == "GET":
            return Call("GET", path)
        return Call(method, path, form=dict(form or {}), signin=True)

    return probe


def on_booking(method: str, suffix: str = "", form: dict[str, str] | None = None) -> Probe:
    async def probe(world: World, role: str) -> Call:
        path = f"/o/kokurakita/a/{(await booking(world)).token}{suffix}"
        if method == "GET":
            return Call("GET", path)
        return Call(method, path, form=dict(form or {}), signin=True)

    return probe


SLOTS_FORM = {
    "minutes": "15",
    "capacity": "2",
    "days_ahead": "7",
    "before": "30",
    "after": "15",
    "enabled": "1",
    "hours_mon": "09:00-12:00",
}


# -- kiosks: enrollment, health, and their administration -------------------------------------

KIOSK_FORM = {
    "office": "kokurakita",
    "branch": "小倉北 — 足原市民センター",
    "place": "2階",
    "services": "certs",
    "topics": "care",
    "cameras": "face",
    "printer_kind": "browser",
    "printer_port": "9100",
    "printer_width": "80",
}
HEALTH = {"cameras": 2, "microphones": 1, "printer": "unknown", "round_trip_ms": 40, "version": "1"}
KIOSK_ONLY = {**everyone(401), "kiosk": 200}
DEVICE = "a kiosk's request: a SameSite=Strict device cookie, and JSON only (no cross-site form)"


async def enroll_kiosk(world: World, role: str) -> Call:
    code = await world.kiosks.issue_code(KIOSK.id, world.now())
    return Call("POST", "/kiosk/enroll", form={"code": code}, signin=True)


async def health_report(world: World, role: str) -> Call:
    return Call("POST", "/kiosk/api/health", json=HEALTH)


async def revoked_health_report(world: World, role: str) -> Call:
    await world.kiosks.revoke(KIOSK.id)
    return Call("POST", "/kiosk/api/health", json=HEALTH)


KIOSK_PAGE: dict[str, Expected] = {**everyone(Redirect("/kiosk/enroll")), "kiosk": 200}
KIOSK_SCREEN_FORM = (
    "a kiosk's form: only the kiosk's SameSite=Strict device cookie authorizes it, and "
    "no other site's form carries that cookie"
)


def kiosk_ticket(channel: Channel) -> Probe:
    """The kiosk screen of a ticket of kokurakita taken through ``channel``."""

    async def probe(world: World, role: str) -> Call:
        issued = await world.queue.issue("kokurakita", "certs", now=world.now(), channel=channel)
        return Call("GET", f"/kiosk/tickets/{issued.ticket.token}")

    return probe


def kiosk_take(office: str) -> Probe:
    async def probe(world: World, role: str) -> Call:
        form = {"office": office, "service": "certs", "key": world.fresh("key-") * 8}
        return Call("POST", "/kiosk/tickets", form=form)

    return probe


def on_kiosk(suffix: str, form: dict[str, str] | None = None) -> Probe:
    """An admin's form about the kiosk of kokurakita."""

    async def probe(world: World, role: str) -> Call:
        return Call("POST", f"/admin/kiosks/{KIOSK.id}{suffix}", form=dict(form or {}))

    return probe


# -- residents' phone pages: the resident holds the ticket's token, others name it by id --------

#: The resident's cookie, and the token their forms carry (it must match the cookie).
RESIDENT_COOKIE = "__Host-madoguchi-resident"
RESIDENT_TOKEN = "r" * 43
RESIDENT_FORM = (
    "a resident's form: no session; its token pairs with the phone's own cookie "
    "(refusals: tests/test_residents.py)"
)
PUSH = '{"endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": {"p256dh": "k", "auth": "a"}}'


def resident_form(form: dict[str, str]) -> dict[str, Any]:
    return {
        "form": {**form, "csrf": RESIDENT_TOKEN},
        "csrf": False,
        "cookies": {RESIDENT_COOKIE: RESIDENT_TOKEN},
    }


async def take_web_ticket(world: World, role: str) -> Call:
    await world.counter()
    return Call("POST", "/o/kokurakita", **resident_form({"service": "certs", "key": "k-1"}))


def on_ticket(method: str, suffix: str = "", form: dict[str, str] | None = None) -> Probe:
    async def probe(world: World, role: str) -> Call:
        path = f"/o/kokurakita/t/{await world.ref(role, await world.ticket())}{suffix}"
        if method == "GET":
            return Call("GET", path)
        return Call(method, path, **resident_form(form or {}))

    return probe


#: The ticket's pages answer its token only: anyone else names it by id, which is not one.
resident_only = {**everyone(404), "resident": 200}


# -- remote consultation: signaling WebSockets and the kiosk's pre-call check -------------------


async def consultation(world: World, *, accepted: bool) -> str:
    """A consultation the kiosk of kokurakita raised, accepted by the clerk if ``accepted``."""
    calls = world.app.state.switchboard.calls
    call = await calls.request("kokurakita", KIOSK.id, "care", now=world.now())
    if accepted:
        await calls.accept("kokurakita", "clerk", ("care",), now=world.now())
    return str(call.id)


def join_call(*, accepted: bool) -> Probe:
    async def probe(world: World, role: str) -> Call:
        return Call("WS", f"/consult/ws/{await consultation(world, accepted=accepted)}")

    return probe


def joins(kiosk: Expected, clerk: Expected) -> dict[str, Expected]:
    """Who may join a call (101: the connection stays open; else its close code)."""
    return {**everyone(4403), "anonymous": 4401, "resident": 4401, "kiosk": kiosk, "staff": clerk}


_ECHO_OFFER: list[str] = []


async def echo_offer(world: World, role: str) -> Call:
    if not _ECHO_OFFER:
        pc = RTCPeerConnection()
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        _ECHO_OFFER.append(pc.localDescription.sdp)
        await pc.close()
    peers = world.app.state.switchboard.echoes
    await peers.close_all()
    peers.seconds = 3600.0  # so that no peer closes (and records its result) mid-matrix
    return Call("POST", "/consult/api/echo", json={"type": "offer", "sdp": _ECHO_OFFER[0]})


async def echo_result(world: World, role: str) -> Call:
    body = {"round_trip_ms": 40, "loss": 0.0, "fps": 30, "audio_dbfs": -20}
    return Call("POST", "/consult/api/echo/result", json=body)


async def raise_consultation(world: World, role: str) -> Call:
    return Call("POST", "/consult/api/calls", json={"topic": "care"})


async def rate_consultation(world: World, role: str) -> Call:
    call = await consultation(world, accepted=False)
    await world.app.state.switchboard.calls.end(
        "kokurakita", call.partition(".")[2], CallRole.KIOSK, KIOSK.id, now=world.now()
    )
    return Call("POST", f"/consult/api/calls/{call}/rate", json={"rating": 5})


async def talked_consultation(world: World) -> str:
    """A consultation the kiosk talked in (accepted, both ends joined), then ended."""
    calls = world.app.state.switchboard.calls
    call = await consultation(world, accepted=True)
    ticket = call.partition(".")[2]
    await calls.join("kokurakita", ticket, kiosk=KIOSK.id, connection="k", now=world.now())
    await calls.join("kokurakita", ticket, staff="clerk", connection="s", now=world.now())
    await calls.end("kokurakita", ticket, CallRole.KIOSK, KIOSK.id, now=world.now())
    return call


def kiosk_call(suffix: str = "", *, post: bool = False, talked: bool = False) -> Probe:
    """A kiosk screen of its consultation (kiosk/calls.py): waiting, or talked and ended."""

    async def probe(world: World, role: str) -> Call:
        call = await (talked_consultation(world) if talked else consultation(world, accepted=False))
        path = f"/kiosk/call/{call}{suffix}"
        return Call("POST", path, form={}) if post else Call("GET", path)

    return probe


def kiosk_consult(office: str) -> Probe:
    async def probe(world: World, role: str) -> Call:
        form = {"office": office, "topic": "care", "key": world.fresh("key-") * 8}
        return Call("POST", "/kiosk/consult", form=form)

    return probe


async def accept_consultation(world: World, role: str) -> Call:
    await consultation(world, accepted=False)
    return Call("POST", "/consult/api/offices/kokurakita/accept", json={})


def on_consultation(suffix: str, body: dict[str, str]) -> Probe:
    """A request about a consultation the clerk accepted (with a second remote topic)."""

    async def probe(world: World, role: str) -> Call:
        pension = Service("pension", "P", "国保・年金", "Pension", mode=ServiceMode.REMOTE)
        await world.queue.put_service("kokurakita", pension, now=world.now())
        call = await consultation(world, accepted=True)
        return Call("POST", f"/consult/api/calls/{call}/{suffix}", json=body)

    return probe


def post_json(path: str, body: dict[str, str]) -> Probe:
    async def probe(world: World, role: str) -> Call:
        return Call("POST", path, json=body)

    return probe


async def probe_offer(world: World, role: str) -> Call:
    offer = await echo_offer(world, role)
    peers = world.app.state.switchboard.probes
    await peers.close_all()
    peers.seconds = 3600.0  # so that no probe closes (and records its verdict) mid-matrix
    return Call("POST", "/consult/api/probe", json=offer.json)


def on_form(method: str, suffix: str, form: dict[str, str] | None = None) -> Probe:
    """A request about a form in kokurakita's library."""

    async def probe(world: World, role: str) -> Call:
        pdf = sample_pdf("Form", ["Name"])
        await FormsLibrary(world.redis).add("kokurakita", "申請書", "form.pdf", pdf, now=T0, by="x")
        if method == "GET":
            return Call("GET", f"/consult/forms/kokurakita/form{suffix}")
        return Call("POST", f"{KOKURA_ADMIN}/forms/form{suffix}", form=dict(form or {}))

    return probe


async def upload_form(world: World, role: str) -> Call:
    pdf = ("form.pdf", sample_pdf("Form", ["Name"]), "application/pdf")
    return Call("POST", f"{KOKURA_ADMIN}/forms", form={"title": "申請書"}, files={"file": pdf})


staff_only_ticket = {**action(200), "resident": 200}
NO_SESSION = "a resident's request: no session, and the body must be JSON (no cross-site form)"

EXPECTATIONS: dict[tuple[str, str], list[Expect]] = {
    ("GET", "/livez"): [Expect("alive", get("/livez"), everyone(200))],
    ("GET", "/readyz"): [Expect("ready", get("/readyz"), everyone(200))],
    # Public like the congestion page; restrict it at the proxy if it must be private.
    ("GET", "/metrics"): [Expect("metrics", get("/metrics"), everyone(200))],
    ("GET", "/static/{path}"): [Expect("stylesheet", get("/static/staff.css"), everyone(200))],
    ("GET", "/api/v1/openapi.json"): [
        Expect("openapi", get("/api/v1/openapi.json"), everyone(200))
    ],
    ("GET", "/api/v1/offices"): [Expect("offices", get("/api/v1/offices"), everyone(200))],
    ("GET", "/api/v1/offices/{office}"): [Expect("office", get(BASE), everyone(200))],
    ("POST", "/api/v1/offices/{office}/tickets"): [
        Expect("take a ticket", take_ticket, everyone(201), no_csrf=NO_SESSION),
        Expect("take a priority ticket", take_priority_ticket, action(201)),
    ],
    ("GET", "/api/v1/offices/{office}/tickets/{ticket}"): [
        Expect("read a ticket", read_ticket, staff_only_ticket),
    ],
    ("DELETE", "/api/v1/offices/{office}/tickets/{ticket}"): [
        Expect("cancel a ticket", cancel_ticket, staff_only_ticket),
    ],
    ("POST", "/api/v1/offices/{office}/tickets/{ticket}/{action:str}"): [
        Expect("recall", ticket_action("recall", "called"), action()),
        Expect("no-show", ticket_action("no-show", "called"), action()),
        Expect("start", ticket_action("start", "called"), action()),
        Expect("finish", ticket_action("finish", "serving"), action()),
        Expect("transfer", ticket_action("transfer", "waiting", {"service": "moving"}), action()),
        Expect("cancel", ticket_action("cancel", "waiting"), action()),
    ],
    ("POST", "/api/v1/offices/{office}/counters/{counter}/{action:str}"): [
        Expect("open", counter_action("open", {"services": ["certs"]}), action()),
        # What the console's picker refuses (422 there: see POST /staff/console), the API
        # must refuse too: only an admin serves every service. (Fails: see the report.)
        Expect(
            "open for a service one may not serve",
            api_open_unserved,
            {**action(403), "admin": 200},
        ),
        Expect("pause", counter_action("pause"), action()),
        Expect("close", counter_action("close"), action()),
        Expect("call next", counter_action("call-next"), action()),
    ],
    ("POST", "/api/v1/session"): [
        Expect(
            "API sign-in",
            api_sign_in,
            everyone(200),
            no_csrf="signs in, so there is no session yet; JSON only (no cross-site form)",
        )
    ],
    ("DELETE", "/api/v1/session"): [
        Expect("API sign-out", api_sign_out, {**action(200, office=False), "unenrolled": 200})
    ],
    ("GET", "/staff/signin"): [
        Expect("sign-in page", get("/staff/signin"), _signed_in_elsewhere(Redirect("/staff/")))
    ],
    ("POST", "/staff/signin"): [Expect("sign in", form_sign_in, everyone(Redirect("/staff/")))],
    ("POST", "/staff/signin/code"): [
        Expect("sign in with a code", form_sign_in_code, everyone(Redirect("/staff/")))
    ],
    ("POST", "/staff/signout"): [
        # Without a session there is nothing to end: just the way back to the sign-in page.
        Expect("sign out", sign_out, everyone(Redirect("/staff/signin")))
    ],
    ("GET", "/staff/"): [Expect("staff home", get("/staff/"), page())],
    ("GET", "/staff/totp"): [
        Expect("authenticator page", get("/staff/totp"), {**page(), "unenrolled": 200})
    ],
    ("POST", "/staff/totp"): [
        Expect(
            "confirm an authenticator",
            totp_confirm,
            {
                **action(Redirect("/staff/totp?done=1"), office=False),
                "unenrolled": Redirect("/staff/totp?done=1"),
            },
        )
    ],
    ("POST", "/staff/totp/new"): [
        Expect(
            "new authenticator",
            totp_new,
            {
                **action(Redirect("/staff/totp"), office=False),
                "unenrolled": Redirect("/staff/totp"),
            },
        )
    ],
    # -- the counter console --------------------------------------------------------------
    ("GET", "/staff/console"): [
        Expect("counter picker", get("/staff/console"), page()),
        Expect(
            "back to the counter last opened",
            console_remembered,
            # A clerk of another office is not sent to kokurakita's counter: the picker.
            {**page(Redirect("/staff/console/kokurakita/c")), "other_staff": 200},
        ),
    ],
    ("POST", "/staff/console"): [
        Expect(
            "open a counter",
            console_open,
            # Kokurakita is not among a clerk of moji's offices: the picker says so, 422.
            {**action(Redirect("/staff/console/kokurakita/window-1")), "other_staff": 422},
        ),
        Expect(
            "open a counter for a service one may not serve",
            console_open_unserved,
            {**action(422, office=False), "admin": Redirect("/staff/console/kokurakita/window-1")},
        ),
    ],
    ("GET", "/staff/console/{office}/{counter}"): [
        Expect("console at kokurakita", console_page("kokurakita"), page(office=True)),
        Expect("console at moji", console_page("moji"), page(office=True, at="moji")),
    ],
    ("GET", "/staff/live/{office}"): [
        Expect("live events of kokurakita", get("/staff/live/kokurakita"), _live("kokurakita")),
        Expect("live events of moji", get("/staff/live/moji"), _live("moji")),
    ],
    # -- the supervisor's view -------------------------------------------------------------
    ("GET", "/staff/supervisor"): [
        Expect(
            "supervisor's office picker",
            get("/staff/supervisor"),
            # A supervisor of one office goes straight to it.
            {
                **page(least=Role.SUPERVISOR),
                "supervisor": Redirect("/staff/supervisor/kokurakita"),
            },
        )
    ],
    ("GET", "/staff/supervisor/{office}"): [
        Expect(
            "supervisor's view of kokurakita",
            get("/staff/supervisor/kokurakita"),
            page(least=Role.SUPERVISOR, office=True),
        ),
        Expect(
            "supervisor's view of moji",
            get("/staff/supervisor/moji"),
            page(least=Role.SUPERVISOR, office=True, at="moji"),
        ),
    ],
    ("GET", "/staff/supervisor/{office}/board"): [
        Expect(
            "supervisor's board of kokurakita",
            get("/staff/supervisor/kokurakita/board"),
            page(least=Role.SUPERVISOR, office=True),
        ),
        Expect(
            "supervisor's board of moji",
            get("/staff/supervisor/moji/board"),
            page(least=Role.SUPERVISOR, office=True, at="moji"),
        ),
    ],
    ("POST", "/staff/supervisor/{office}/counters/{counter}/{action}"): [
        *(_supervise(verb) for verb in ("open", "pause", "close", "services")),
        _supervise("pause", "moji"),
    ],
    # -- statistics ------------------------------------------------------------------------
    ("GET", "/staff/stats"): _statistics("statistics", "/staff/stats"),
    ("GET", "/staff/stats.csv"): _statistics("CSV", "/staff/stats.csv"),
    # -- administration: admins only, at every office --------------------------------------
    **{
        ("GET", route): [Expect(name, get(path), page(least=Role.ADMIN))]
        for route, path, name in (
            ("/admin/", "/admin/", "admin home"),
            ("/admin/offices/new", "/admin/offices/new", "new office form"),
            ("/admin/offices/{office}", KOKURA_ADMIN, "office page"),
            ("/admin/offices/{office}/audit", f"{KOKURA_ADMIN}/audit", "audit trail"),
            (
                "/admin/offices/{office}/services/new",
                f"{KOKURA_ADMIN}/services/new",
                "new service form",
            ),
            (
                "/admin/offices/{office}/services/{service}",
                f"{KOKURA_ADMIN}/services/certs",
                "service page",
            ),
            (
                "/admin/offices/{office}/counters/new",
                f"{KOKURA_ADMIN}/counters/new",
                "new counter form",
            ),
            ("/admin/staff", "/admin/staff", "staff list"),
            ("/admin/staff/new", "/admin/staff/new", "new account form"),
            ("/admin/staff/{username}", "/admin/staff/clerk", "account page"),
        )
    },
    ("GET", "/admin/offices/{office}/counters/{counter}"): [
        Expect("counter page", on_counter("GET"), page(least=Role.ADMIN))
    ],
    ("POST", "/admin/offices"): [
        Expect(
            "create an office",
            post("/admin/offices", {"id": "tobata", **OFFICE_FORM}),
            _admin("/admin/offices/tobata?done=created"),
        )
    ],
    ("POST", "/admin/offices/{office}"): [
        Expect(
            "edit an office",
            post(KOKURA_ADMIN, OFFICE_FORM),
            _admin(f"{KOKURA_ADMIN}?done=saved"),
        )
    ],
    ("POST", "/admin/offices/{office}/services"): [
        Expect(
            "create a service",
            post(f"{KOKURA_ADMIN}/services", {"id": "tax", "prefix": "D", **SERVICE_FORM}),
            _admin(f"{KOKURA_ADMIN}?done=service_created"),
        )
    ],
    ("POST", "/admin/offices/{office}/services/{service}"): [
        Expect(
            "edit a service",
            post(f"{KOKURA_ADMIN}/services/certs", {"prefix": "A", **SERVICE_FORM}),
            _admin(f"{KOKURA_ADMIN}/services/certs?done=saved"),
        )
    ],
    ("POST", "/admin/offices/{office}/services/{service}/deactivate"): [
        Expect(
            "deactivate a service",
            post(f"{KOKURA_ADMIN}/services/certs/deactivate"),
            _admin(f"{KOKURA_ADMIN}/services/certs?done=deactivated"),
        )
    ],
    ("POST", "/admin/offices/{office}/services/{service}/delete"): [
        Expect(
            "delete a service",
            post(f"{KOKURA_ADMIN}/services/certs/delete"),
            _admin(f"{KOKURA_ADMIN}?done=service_deleted"),
        )
    ],
    ("POST", "/admin/offices/{office}/counters"): [
        Expect(
            "create a counter",
            post(f"{KOKURA_ADMIN}/counters", {"id": "window-9", "name": "9", "services": "certs"}),
            _admin(f"{KOKURA_ADMIN}?done=counter_created"),
        )
    ],
    ("POST", "/admin/offices/{office}/counters/{counter}"): [
        Expect(
            "edit a counter",
            on_counter("POST", form={"name": "Window 9", "services": "moving"}),
            _admin(f"{KOKURA_ADMIN}/counters/c"),
        )
    ],
    ("POST", "/admin/offices/{office}/counters/{counter}/delete"): [
        Expect(
            "delete a counter",
            on_counter("POST", "/delete"),
            _admin(f"{KOKURA_ADMIN}?done=counter_deleted"),
        )
    ],
    ("POST", "/admin/staff"): [
        Expect(
            "create an account",
            post(
                "/admin/staff",
                {"username": "newcomer", "password": PASSWORD, "services": "certs", **ACCOUNT_FORM},
            ),
            _admin("/admin/staff/newcomer?done=created"),
        )
    ],
    ("POST", "/admin/staff/{username}"): [
        Expect(
            "edit an account",
            on_account("", {**ACCOUNT_FORM, "role": "supervisor"}),
            _admin("/admin/staff/target?done=saved"),
        )
    ],
    ("POST", "/admin/staff/{username}/password"): [
        Expect(
            "set a password",
            on_account("/password", {"password": "another-Counter-pass-77"}),
            _admin("/admin/staff/target?done=password"),
        )
    ],
    ("POST", "/admin/staff/{username}/disable"): [
        Expect(
            "disable an account",
            on_account("/disable"),
            _admin("/admin/staff/target?done=disabled"),
        )
    ],
    ("POST", "/admin/staff/{username}/enable"): [
        Expect(
            "enable an account",
            on_account("/enable", disabled=True),
            _admin("/admin/staff/target?done=enabled"),
        )
    ],
    ("POST", "/admin/staff/{username}/sessions"): [
        Expect(
            "end an account's sessions",
            on_account("/sessions"),
            _admin("/admin/staff/target?done=sessions"),
        )
    ],
    ("POST", "/admin/staff/{username}/totp/remove"): [
        Expect(
            "remove an account's authenticator",
            on_account("/totp/remove", totp=True),
            _admin("/admin/staff/target?done=totp"),
        )
    ],
    # -- appointments: residents book without an account; admins set the slots -------------
    ("GET", "/o/{office}/appointments"): [
        Expect("appointment services", get("/o/kokurakita/appointments"), everyone(200))
    ],
    ("GET", "/o/{office}/appointments/{service}"): [
        Expect(
            "appointment slots",
            on_slots("GET", "/o/kokurakita/appointments/certs"),
            everyone(200),
        )
    ],
    ("POST", "/o/{office}/appointments/{service}"): [
        Expect(
            "book an appointment",
            on_slots("POST", "/o/kokurakita/appointments/certs", {"slot": str(int(T0 + 3600))}),
            everyone(Redirect("/o/kokurakita/a/")),
        )
    ],
    ("GET", "/o/{office}/a/{token}"): [
        Expect("an appointment's page", on_booking("GET"), everyone(200))
    ],
    ("GET", "/o/{office}/a/{token}/change"): [
        Expect("change an appointment: slots", on_booking("GET", "/change"), everyone(200))
    ],
    ("POST", "/o/{office}/a/{token}/change"): [
        Expect(
            "change an appointment",
            on_booking("POST", "/change", {"slot": str(int(T0 + 3600))}),
            everyone(Redirect("/o/kokurakita/a/")),
        )
    ],
    ("POST", "/o/{office}/a/{token}/cancel"): [
        Expect(
            "cancel an appointment",
            on_booking("POST", "/cancel"),
            everyone(Redirect("/o/kokurakita/a/")),
        )
    ],
    ("POST", "/o/{office}/a/{token}/check-in"): [
        Expect(
            "check in for an appointment",
            on_booking("POST", "/check-in"),
            everyone(Redirect("/o/kokurakita/t/")),
        )
    ],
    # Check-in with the code at a kiosk: only an enrolled kiosk, of the office.
    ("GET", "/kiosk/check-in"): [
        Expect(
            "kiosk check-in screen",
            get("/kiosk/check-in"),
            {**everyone(Redirect("/kiosk/enroll")), "kiosk": 200},
        )
    ],
    ("POST", "/kiosk/check-in"): [
        Expect(
            "check in at a kiosk",
            kiosk_check_in,
            {**everyone(401), "kiosk": Redirect("/kiosk/tickets/")},
            no_csrf=DEVICE,
        )
    ],
    ("GET", "/admin/offices/{office}/services/{service}/slots"): [
        Expect(
            "appointment slots settings",
            get(f"{KOKURA_ADMIN}/services/certs/slots"),
            page(least=Role.ADMIN),
        )
    ],
    ("POST", "/admin/offices/{office}/services/{service}/slots"): [
        Expect(
            "set appointment slots",
            post(f"{KOKURA_ADMIN}/services/certs/slots", SLOTS_FORM),
            _admin(f"{KOKURA_ADMIN}/services/certs/slots?done=saved"),
        )
    ],
    # -- public information: the congestion page, busy hours, open data, the lobby board ---
    **{
        ("GET", route): [Expect(name, get(path), everyone(200))]
        for route, path, name in (
            ("/", "/", "congestion page"),
            ("/live", "/live", "congestion page's live feed"),
            ("/open/", "/open/", "open data's description"),
            ("/open/waits.json", "/open/waits.json", "open data: waits (JSON)"),
            ("/open/waits.csv", "/open/waits.csv", "open data: waits (CSV)"),
            ("/open/busy-hours.json", "/open/busy-hours.json", "open data: busy hours (JSON)"),
            ("/open/busy-hours.csv", "/open/busy-hours.csv", "open data: busy hours (CSV)"),
            ("/o/{office}/busy", "/o/kokurakita/busy", "usual busy hours"),
            ("/o/{office}/board", "/o/kokurakita/board", "lobby board"),
            ("/o/{office}/board/events", "/o/kokurakita/board/events", "lobby board's events"),
        )
    },
    # -- kiosks: enrollment is for anyone with a code; health for an enrolled kiosk ---------
    ("GET", "/kiosk/enroll"): [
        Expect("kiosk enrollment page", get("/kiosk/enroll"), everyone(200))
    ],
    ("POST", "/kiosk/enroll"): [
        Expect("enroll a kiosk", enroll_kiosk, everyone(Redirect("/kiosk/enroll?done=1")))
    ],
    ("POST", "/kiosk/api/health"): [
        Expect("kiosk health report", health_report, KIOSK_ONLY, no_csrf=DEVICE),
        Expect(
            "health report of a revoked kiosk",
            revoked_health_report,
            everyone(401),
            no_csrf=DEVICE,
        ),
    ],
    ("GET", "/kiosk/static/{path}"): [
        Expect("kiosk number pad", get("/kiosk/static/numpad.js"), everyone(200))
    ],
    ("GET", "/consult/static/{path}"): [
        Expect("the call's WebRTC module", get("/consult/static/peer.js"), everyone(200))
    ],
    # -- the kiosk screens: an enrolled kiosk, for its own office only ----------------------
    **{
        ("GET", path): [Expect(name, get(path), KIOSK_PAGE)]
        for path, name in (
            ("/kiosk/", "kiosk start screen"),
            ("/kiosk/consult", "kiosk consultation topics"),
            ("/kiosk/tickets", "kiosk services to take a ticket for"),
            ("/kiosk/waits", "kiosk waiting times"),
            ("/kiosk/language", "kiosk languages"),
        )
    },
    ("GET", "/kiosk/reset"): [
        Expect(
            "kiosk idle reset",
            get("/kiosk/reset"),
            {**everyone(Redirect("/kiosk/enroll")), "kiosk": Redirect("/kiosk/")},
        )
    ],
    ("GET", "/kiosk/tickets/{token}"): [
        Expect("a ticket taken at the kiosk", kiosk_ticket(Channel.KIOSK), KIOSK_PAGE),
        Expect(
            "a ticket taken on a phone",
            kiosk_ticket(Channel.WEB),
            {**KIOSK_PAGE, "kiosk": 403},
        ),
    ],
    ("POST", "/kiosk/tickets"): [
        Expect(
            "take a ticket at the kiosk",
            kiosk_take("kokurakita"),
            {**everyone(401), "kiosk": Redirect("/kiosk/tickets/")},
            no_csrf=KIOSK_SCREEN_FORM,
        ),
        Expect(
            "take a ticket at the kiosk for another office",
            kiosk_take("moji"),
            {**everyone(401), "kiosk": 403},
            no_csrf=KIOSK_SCREEN_FORM,
        ),
    ],
    **{
        ("GET", route): [Expect(name, get(path), page(least=Role.ADMIN))]
        for route, path, name in (
            ("/admin/kiosks", "/admin/kiosks", "kiosk fleet"),
            ("/admin/kiosks/new", "/admin/kiosks/new", "new kiosk form"),
            ("/admin/kiosks/{kiosk}", f"/admin/kiosks/{KIOSK.id}", "kiosk page"),
        )
    },
    ("POST", "/admin/kiosks"): [
        Expect(
            "register a kiosk",
            post("/admin/kiosks", {"id": "kokurakita-tobata", **KIOSK_FORM}),
            _admin("/admin/kiosks/kokurakita-tobata?done=created"),
        )
    ],
    ("POST", "/admin/kiosks/{kiosk}"): [
        Expect(
            "edit a kiosk",
            on_kiosk("", KIOSK_FORM),
            _admin(f"/admin/kiosks/{KIOSK.id}?done=saved"),
        )
    ],
    ("POST", "/admin/kiosks/{kiosk}/code"): [
        Expect(
            "issue a kiosk enrollment code",
            on_kiosk("/code"),
            action(200, Role.ADMIN, office=False),
        )
    ],
    ("POST", "/admin/kiosks/{kiosk}/revoke"): [
        Expect(
            "revoke a kiosk",
            on_kiosk("/revoke"),
            _admin(f"/admin/kiosks/{KIOSK.id}?done=revoked"),
        )
    ],
    ("POST", "/admin/kiosks/{kiosk}/probe"): [
        Expect(
            "check a kiosk's cameras now",
            on_kiosk("/probe"),
            _admin("/admin/kiosks?done=probe"),
        )
    ],
    ("POST", "/consult/api/probe"): [
        Expect("camera probe", probe_offer, KIOSK_ONLY, no_csrf=DEVICE),
    ],
    # -- the forms library: staff of the office; a form's pages also for its kiosks -----------
    ("GET", "/consult/forms/{office}"): [
        Expect("forms of the office", get("/consult/forms/kokurakita"), page(office=True)),
    ],
    ("GET", "/consult/forms/{office}/{form}/pages/{page:int}.png"): [
        Expect(
            "a form's page",
            on_form("GET", "/pages/1.png"),
            {**page(office=True), "kiosk": 200},
        ),
    ],
    ("GET", "/consult/forms/{office}/{form}.pdf"): [
        Expect("a form's PDF", on_form("GET", ".pdf"), page(office=True)),
    ],
    ("GET", "/admin/offices/{office}/forms"): [
        Expect("forms library", get(f"{KOKURA_ADMIN}/forms"), page(least=Role.ADMIN)),
    ],
    ("POST", "/admin/offices/{office}/forms"): [
        Expect("upload a form", upload_form, _admin(f"{KOKURA_ADMIN}/forms?done=uploaded")),
    ],
    ("POST", "/admin/offices/{office}/forms/{form}"): [
        Expect(
            "retitle a form",
            on_form("POST", "", {"title": "新しい題"}),
            _admin(f"{KOKURA_ADMIN}/forms?done=saved"),
        ),
    ],
    ("POST", "/admin/offices/{office}/forms/{form}/delete"): [
        Expect(
            "delete a form",
            on_form("POST", "/delete"),
            _admin(f"{KOKURA_ADMIN}/forms?done=deleted"),
        ),
    ],
    # -- residents' phone pages ---------------------------------------------------------------
    ("GET", "/sw.js"): [Expect("service worker", get("/sw.js"), everyone(200))],
    ("GET", "/o/{office}"): [Expect("office page", get("/o/kokurakita"), everyone(200))],
    ("POST", "/o/{office}"): [
        Expect(
            "take a ticket on the web",
            take_web_ticket,
            everyone(Redirect("/o/kokurakita/t/")),
            no_csrf=RESIDENT_FORM,
        )
    ],
    ("GET", "/o/{office}/poster"): [
        Expect("entrance poster", get("/o/kokurakita/poster"), everyone(200))
    ],
    ("GET", "/o/{office}/t/{token}"): [Expect("ticket page", on_ticket("GET"), resident_only)],
    ("GET", "/o/{office}/t/{token}/events"): [
        Expect("ticket's live view", on_ticket("GET", "/events"), resident_only)
    ],
    ("GET", "/o/{office}/t/{token}/cancel"): [
        Expect("cancel, asked first", on_ticket("GET", "/cancel"), resident_only)
    ],
    ("POST", "/o/{office}/t/{token}/cancel"): [
        Expect(
            "cancel on the phone",
            on_ticket("POST", "/cancel"),
            {**everyone(404), "resident": Redirect("/o/kokurakita/t/")},
            no_csrf=RESIDENT_FORM,
        )
    ],
    ("POST", "/o/{office}/t/{token}/notify"): [
        Expect(
            "tell me when",
            on_ticket("POST", "/notify", {"ahead": "3", "push": PUSH}),
            {**everyone(404), "resident": Redirect("/o/kokurakita/t/")},
            no_csrf=RESIDENT_FORM,
        )
    ],
    # -- remote consultation: only its kiosk and the specialist who accepted it join --------
    ("WS", "/consult/ws/{call}"): [
        Expect("join a waiting consultation", join_call(accepted=False), joins(101, 4403)),
        Expect("join an accepted consultation", join_call(accepted=True), joins(101, 101)),
    ],
    ("POST", "/consult/api/echo"): [
        Expect("pre-call check", echo_offer, KIOSK_ONLY, no_csrf=DEVICE),
    ],
    ("POST", "/consult/api/echo/result"): [
        Expect("pre-call check's result", echo_result, KIOSK_ONLY, no_csrf=DEVICE),
    ],
    ("POST", "/consult/api/calls"): [
        Expect(
            "raise a consultation",
            raise_consultation,
            {**everyone(401), "kiosk": 201},
            no_csrf=DEVICE,
        ),
    ],
    ("GET", "/consult/api/calls/current"): [
        Expect("the kiosk's consultation", get("/consult/api/calls/current"), KIOSK_ONLY),
    ],
    ("POST", "/consult/api/calls/{call}/rate"): [
        Expect("rate a consultation", rate_consultation, KIOSK_ONLY, no_csrf=DEVICE),
    ],
    # -- the kiosk's screens of its consultation (kiosk/calls.py) -------------------------------
    ("POST", "/kiosk/consult"): [
        Expect(
            "raise a consultation at the kiosk",
            kiosk_consult("kokurakita"),
            {**everyone(401), "kiosk": Redirect("/kiosk/call/kokurakita.")},
            no_csrf=KIOSK_SCREEN_FORM,
        ),
        Expect(
            "raise a consultation for another office",
            kiosk_consult("moji"),
            {**everyone(401), "kiosk": 403},
            no_csrf=KIOSK_SCREEN_FORM,
        ),
    ],
    ("GET", "/kiosk/call/{call}"): [
        Expect("the kiosk's waiting and call screen", kiosk_call(), KIOSK_PAGE),
    ],
    ("POST", "/kiosk/call/{call}/end"): [
        Expect(
            "stop waiting",
            kiosk_call("/end", post=True),
            {**everyone(401), "kiosk": Redirect("/kiosk/")},
            no_csrf=KIOSK_SCREEN_FORM,
        ),
    ],
    ("GET", "/kiosk/call/{call}/survey"): [
        Expect("the five faces", kiosk_call("/survey", talked=True), KIOSK_PAGE),
    ],
    ("GET", "/kiosk/call/{call}/reset"): [
        Expect(
            "idle reset while waiting",
            kiosk_call("/reset"),
            {**everyone(Redirect("/kiosk/enroll")), "kiosk": Redirect("/kiosk/reset")},
        ),
    ],
    ("GET", "/consult/api/offices/{office}/queue"): [
        Expect(
            "consultations waiting",
            get("/consult/api/offices/kokurakita/queue"),
            action(200),
        ),
    ],
    ("POST", "/consult/api/offices/{office}/accept"): [
        Expect("accept a consultation", accept_consultation, action(200)),
    ],
    # Only the specialist who accepted it (the clerk) may transfer it or invite someone.
    ("POST", "/consult/api/calls/{call}/transfer"): [
        Expect(
            "transfer a consultation",
            on_consultation("transfer", {"service": "pension"}),
            {**action(403), "staff": 200},
        ),
    ],
    ("POST", "/consult/api/calls/{call}/invite"): [
        Expect(
            "invite a third participant",
            on_consultation("invite", {"username": "lead"}),
            {**action(403), "staff": 200},
        ),
    ],
    # The consultation console: staff of the office; the picker sends those of one office on.
    ("GET", "/staff/consult"): [
        Expect(
            "consultation console's office picker",
            get("/staff/consult"),
            {
                **page(),
                "staff": Redirect("/staff/consult/kokurakita"),
                "other_staff": Redirect("/staff/consult/moji"),
                "supervisor": Redirect("/staff/consult/kokurakita"),
            },
        )
    ],
    ("GET", "/staff/consult/{office}"): [
        Expect("consultation console", get("/staff/consult/kokurakita"), page(office=True))
    ],
    ("GET", "/consult/api/offices/{office}/presence"): [
        Expect("specialists' presence", get("/consult/api/offices/kokurakita/presence"), action())
    ],
    ("POST", "/consult/api/offices/{office}/presence"): [
        Expect(
            "set one's presence",
            post_json("/consult/api/offices/kokurakita/presence", {"state": "available"}),
            action(),
        )
    ],
}


# -- running a call as a real ASGI request -------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def matches(self, expected: Expected) -> bool:
        if isinstance(expected, Redirect):
            return self.status == 303 and self.headers.get("location", "").startswith(expected.to)
        return self.status == expected

    def __str__(self) -> str:
        if self.status in (301, 302, 303, 307):
            return f"{self.status} → {self.headers.get('location')}"
        return f"{self.status} {self.body[:120]!r}"


async def asgi(
    app: Starlette, method: str, path: str, headers: dict[str, str], body: bytes
) -> Answer:
    """Send one request straight to the app, over https to ``testserver``.

    The answer is taken as soon as the response starts, then the client "goes away",
    so that an event stream ends too; an exception in the app is raised here.
    """
    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50_000),
        "server": ("testserver", 443),
    }
    started = asyncio.Event()
    gone = asyncio.Event()
    sent_body = False
    answer = Answer(0, {}, b"")

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            started.set()
        elif message["type"] == "http.response.body" and len(answer.body) < 4096:
            answer.body += message.get("body", b"")

    task = asyncio.create_task(app(scope, receive, send))
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiting}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    gone.set()
    await asyncio.wait_for(task, 10)  # raises whatever the app raised
    assert answer.status, f"{method} {path}: the app ended without answering"
    return answer


async def asgi_websocket(app: Starlette, path: str, headers: dict[str, str]) -> Answer:
    """Open one WebSocket straight to the app, over wss to ``testserver`` from its own origin.

    The status is 101 when the app accepts and starts talking, else the code it closes
    with (the reason as the body); 403 when it refuses the handshake itself.
    """
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "wss",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"origin", b"https://testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50_000),
        "server": ("testserver", 443),
        "subprotocols": [],
    }
    decided = asyncio.Event()
    connected = False
    accepted = False
    answer = Answer(0, {}, b"")

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await decided.wait()
        return {"type": "websocket.disconnect", "code": 1001}

    async def send(message: dict[str, Any]) -> None:
        nonlocal accepted
        if message["type"] == "websocket.accept":
            accepted = True
        elif message["type"] == "websocket.close" and not decided.is_set():
            answer.status = message.get("code", 1000) if accepted else 403
            answer.body = str(message.get("reason", "")).encode()
            decided.set()
        elif message["type"] == "websocket.send" and not decided.is_set():
            answer.status = 101
            decided.set()

    task = asyncio.create_task(app(scope, receive, send))
    waiting = asyncio.create_task(decided.wait())
    await asyncio.wait({task, waiting}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    decided.set()
    await asyncio.wait_for(task, 10)  # raises whatever the app raised
    assert answer.status, f"WS {path}: the app ended without answering"
    return answer


async def perform(world: World, role: str, call: Call, *, token: str = "right") -> Answer:
    """Send ``call`` as ``role``: with a fresh session of theirs, and its CSRF token.

    ``token``: ``right``, ``missing`` or ``wrong`` (a well-formed token of no session).
    """
    cookies = dict(call.cookies)
    headers: dict[str, str] = {}
    form = dict(call.form) if call.form is not None else None
    csrf = ""
    if role in SIGNED_IN:
        session = await world.sessions.create(PEOPLE[role][0], now=world.now())
        cookies[COOKIE] = session.id
        csrf = session.csrf
    if role == "kiosk":
        cookies.setdefault(KIOSK_COOKIE, world.kiosk_token)
    if call.signin:
        csrf = "s" * 43
        cookies[SIGNIN_COOKIE] = csrf
    if token == "wrong":
        csrf = "w" * 43
    if call.csrf and token != "missing" and csrf:
        if form is not None:
            form["csrf"] = csrf
        else:
            headers["X-CSRF-Token"] = csrf
    body = b""
    if form is not None and call.files:
        multipart = httpx.Request("POST", "/", data=form, files=call.files)
        body = multipart.read()
        headers["Content-Type"] = multipart.headers["Content-Type"]
    elif form is not None:
        body = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif call.json is not None or call.method in UNSAFE:
        body = b"" if call.json is None else httpx.Request("POST", "/", json=call.json).read()
        headers["Content-Type"] = "application/json"
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    headers["Content-Length"] = str(len(body))
    if call.method == "WS":
        return await asgi_websocket(world.app, call.path, headers)
    return await asgi(world.app, call.method, call.path, headers, body)


# -- the route list ------------------------------------------------------------------------


def endpoints(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (method, path) the app answers; ``WS`` for a WebSocket; ``*`` for any method."""
    for route in routes:
        if isinstance(route, Mount):
            if route.routes:
                yield from endpoints(list(route.routes), prefix + route.path)
            else:
                yield "GET", f"{prefix}{route.path}/{{path}}"
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"*"}):
                if method != "HEAD":
                    yield method, prefix + route.path
        elif isinstance(route, WebSocketRoute):
            yield "WS", prefix + route.path
        else:
            yield "?", f"{prefix}{route!r}"


@pytest.fixture
async def world(app: Starlette, aredis: AsyncRedis) -> World:
    return World(app, aredis)


def test_every_route_has_an_expectation(app: Starlette) -> None:
    found = set(endpoints(list(app.routes)))
    missing = sorted(found - set(EXPECTATIONS))
    stale = sorted(set(EXPECTATIONS) - found)
    assert not missing, "routes without an expectation in EXPECTATIONS: " + ", ".join(
        f"{m} {p}" for m, p in missing
    )
    assert not stale, "expectations of routes that do not exist: " + ", ".join(
        f"{m} {p}" for m, p in stale
    )


def _cases() -> Iterator[tuple[str, Expect]]:
    for (method, path), expects in EXPECTATIONS.items():
        for expect in expects:
            yield f"{method} {path} [{expect.name}]", expect


async def test_every_route_answers_every_role_as_expected(world: World) -> None:
    """Each role gets exactly its answer; and where it is refused, nothing changes."""
    wrong = []
    for label, expect in _cases():
        for role in ROLES:
            await world.reset()
            call = await expect.probe(world, role)
            expected = expect.answers[role]
            before = None if _succeeds(expected) else await _state(world)
            answer = await perform(world, role, call)
            if not answer.matches(expected):
                wrong.append(f"{label} as {role}: expected {expected}, got {answer}")
            elif before is not None and (changed := _changed(before, await _state(world))):
                wrong.append(f"{label} as {role}: refused ({answer}), yet changed {changed}")
    assert not wrong, "\n".join(wrong)


def _succeeds(expected: Expected) -> bool:
    # 101: a WebSocket accepted and open.
    return isinstance(expected, Redirect) or 100 < expected < 300


async def test_every_change_needs_the_csrf_token(world: World) -> None:
    """Each state-changing call that works for someone signed in fails without its token,
    or with a wrong one, and changes nothing."""
    checked, wrong = [], []
    for (method, _), expects in EXPECTATIONS.items():
        if method not in UNSAFE:
            continue
        for expect in expects:
            role = next((r for r in SIGNED_IN if _succeeds(expect.answers[r])), None)
            if role is None or expect.no_csrf:
                continue
            for token in ("missing", "wrong"):
                await world.reset()
                call = await expect.probe(world, role)
                before = await _state(world)
                answer = await perform(world, role, call, token=token)
                changed = _changed(before, await _state(world))
                if answer.status != 403 or changed:
                    wrong.append(
                        f"{expect.name} as {role}, CSRF token {token}: got {answer}, "
                        f"changed {changed}"
                    )
            checked.append(expect.name)
    assert not wrong, "\n".join(wrong)
    assert len(checked) >= 42, checked


async def _state(world: World) -> dict[str, bytes | None]:
    """Every key of Redis but the sessions' (a request records its session's last use)
    and the web process's lease (renewed every few seconds), with its whole value (``DUMP``)."""
    names = sorted(
        k
        for k in map(str, await world.redis.keys("*"))
        if not (k.startswith(("mg:session:", "mg:switchboard")) or k.endswith(":sessions"))
    )
    return {name: await world.redis.dump(name) for name in names}


def _changed(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def test_every_state_changing_route_is_covered_by_the_csrf_test(app: Starlette) -> None:
    for method, path in endpoints(list(app.routes)):
        if method in UNSAFE:
            expects = EXPECTATIONS.get((method, path), [])
            assert expects, f"{method} {path} has no expectation"
            for expect in expects:
                allowed = [r for r in SIGNED_IN if _succeeds(expect.answers[r])]
                signin = path.startswith("/staff/signin")
                assert allowed or expect.no_csrf or signin, (
                    f"{method} {path} [{expect.name}] succeeds for nobody signed in: "
                    "its CSRF check is never exercised"
                )


# -- the sign-in forms' own token ------------------------------------------------------------


@pytest.mark.parametrize("probe", [form_sign_in, form_sign_in_code])
async def test_sign_in_forms_need_their_token(world: World, probe: Probe) -> None:
    await world.reset()
    call = await probe(world, "anonymous")
    missing = await perform(world, "anonymous", call, token="missing")
    assert missing.status == 403
    assert b"expired" in missing.body
    assert f"{COOKIE}=" not in missing.headers.get("set-cookie", "")
    call = await probe(world, "anonymous")
    assert call.form is not None
    call.form["csrf"] = "t" * 43  # a token, but not the one in the sign-in cookie
    mismatched = await perform(world, "anonymous", call, token="missing")
    assert mismatched.status == 403


# -- cookies ---------------------------------------------------------------------------------


async def _sign_in_at(app: Starlette, base_url: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        return await client.post(
            "/api/v1/session", json={"username": "clerk", "password": PASSWORD}
        )


async def test_session_cookie_flags_over_https(world: World) -> None:
    await world.reset()
    response = await _sign_in_at(world.app, "https://testserver")
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    name, _, value = cookie.split(";")[0].partition("=")
    assert name == "__Host-madoguchi"
    assert len(value) >= 43
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert flags == {"secure", "httponly", "samesite=lax", "path=/"}
    assert "domain" not in cookie.lower()  # a __Host- cookie must not name a domain


@pytest.mark.parametrize("base_url", ["http://localhost:8000", "http://127.0.0.1:8000"])
async def test_plain_http_localhost_gets_a_cookie_without_secure(
    world: World, base_url: str
) -> None:
    await world.reset()
    response = await _sign_in_at(world.app, base_url)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("madoguchi=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert flags == {"httponly", "samesite=lax", "path=/"}


async def test_plain_http_elsewhere_still_gets_the_secure_cookie(world: World) -> None:
    await world.reset()
    response = await _sign_in_at(world.app, "http://madoguchi.example.jp")
    assert response.headers["set-cookie"].startswith("__Host-madoguchi=")
    assert "Secure" in response.headers["set-cookie"]


async def test_security_headers_on_every_page(world: World) -> None:
    await world.reset()
    answer = await asgi(world.app, "GET", "/staff/signin", {}, b"")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"


# -- a session that ended stays ended ----------------------------------------------------------


async def _staff_answers(world: World, cookie: str, csrf: str) -> tuple[Answer, Answer]:
    """What a staff page and a staff API call answer to this session cookie."""
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    page_answer = await asgi(world.app, "GET", "/staff/", headers, b"")
    api_headers = {**headers, "X-CSRF-Token": csrf, "Content-Type": "application/json"}
    counter = world.fresh("c")
    body = b'{"services": ["certs"]}'
    api_answer = await asgi(world.app, "POST", f"{BASE}/counters/{counter}/open", api_headers, body)
    return page_answer, api_answer


ENDINGS: dict[str, Callable[[World, str, str], Awaitable[Any]]] = {}


def ending(name: str) -> Callable[[Callable[[World, str, str], Awaitable[Any]]], Any]:
    def register(function: Callable[[World, str, str], Awaitable[Any]]) -> Any:
        ENDINGS[name] = function
        return function

    return register


@ending("form sign-out")
async def _form_sign_out(world: World, cookie: str, csrf: str) -> None:
    headers = {
        "Cookie": f"{COOKIE}={cookie}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    answer = await asgi(world.app, "POST", "/staff/signout", headers, f"csrf={csrf}".encode())
    assert answer.status == 303
    assert answer.headers["set-cookie"].startswith(f'{COOKIE}=""')


@ending("API sign-out")
async def _api_sign_out(world: World, cookie: str, csrf: str) -> None:
    headers = {"Cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": csrf}
    answer = await asgi(world.app, "DELETE", "/api/v1/session", headers, b"")
    assert answer.status == 200


@ending("an admin ends all sessions")
async def _end_all(world: World, cookie: str, csrf: str) -> None:
    assert await world.sessions.end_all("clerk") == 1


@ending("the account is disabled")
async def _disable(world: World, cookie: str, csrf: str) -> None:
    account = await world.accounts.get("clerk")
    await world.accounts.update(
        StaffAccount(
            account.username,
            account.name,
            account.role,
            account.offices,
            account.services,
            disabled=True,
        )
    )


@ending("a new password")
async def _new_password(world: World, cookie: str, csrf: str) -> None:
    await world.accounts.set_password("clerk", "another-Counter-pass-77")


@ending("the account is deleted by hand in Redis, and the change announced")
async def _deleted(world: World, cookie: str, csrf: str) -> None:
    # Unannounced, the web processes would notice within MADOGUCHI_SESSION_CACHE_SECONDS
    # (tests/test_sessions.py shows that).
    await world.redis.delete(keys.staff_account("clerk"))
    await announce(world.redis, "clerk")
    for _ in range(200):  # until this process has heard it
        if world.app.state.staff_cache.get(cookie, world.now()) is None:
            break
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", list(ENDINGS))
async def test_a_session_cookie_is_refused_once_the_session_ended(world: World, how: str) -> None:
    await world.reset()
    session = await world.sessions.create("clerk", now=world.now())
    page_answer, api_answer = await _staff_answers(world, session.id, session.csrf)
    assert (page_answer.status, api_answer.status) == (200, 200)
    await ENDINGS[how](world, session.id, session.csrf)
    page_answer, api_answer = await _staff_answers(world, session.id, session.csrf)
    assert page_answer.matches(SIGN_IN), page_answer
    assert api_answer.status == 401, api_answer
    assert await world.redis.keys("mg:session:*") == []


async def test_another_session_of_the_same_person_survives_a_sign_out(world: World) -> None:
    await world.reset()
    laptop = await world.sessions.create("clerk", now=world.now())
    tablet = await world.sessions.create("clerk", now=world.now())
    await _api_sign_out(world, laptop.id, laptop.csrf)
    assert (await _staff_answers(world, laptop.id, laptop.csrf))[0].matches(SIGN_IN)
    assert (await _staff_answers(world, tablet.id, tablet.csrf))[0].status == 200
    # A CSRF token is bound to its session: the tablet's token does not serve the laptop.
    _, api_answer = await _staff_answers(world, tablet.id, laptop.csrf)
    assert api_answer.status == 403


def test_expectation_helpers_refuse_a_missing_role() -> None:
    with pytest.raises(AssertionError, match="kiosk"):
        Expect("x", get("/"), {r: 200 for r in ROLES if r != "kiosk"})


# -- a revoked kiosk is refused at once (that it acts for its own office only: see above) ---


async def _as_kiosk(
    world: World, method: str, path: str, form: dict[str, str] | None = None
) -> Answer:
    headers = {"Cookie": f"{KIOSK_COOKIE}={world.kiosk_token}"}
    body = b""
    if form is not None:
        body = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers["Content-Length"] = str(len(body))
    return await asgi(world.app, method, path, headers, body)


async def test_a_revoked_kiosk_is_refused_at_once(world: World) -> None:
    await world.reset()
    assert (await _as_kiosk(world, "GET", "/kiosk/")).status == 200
    await world.kiosks.revoke(KIOSK.id)
    page_answer = await _as_kiosk(world, "GET", "/kiosk/")
    assert page_answer.matches(Redirect("/kiosk/enroll")), page_answer
    form = {"office": "kokurakita", "service": "certs", "key": "k" * 24}
    before = await _state(world)
    taken = await _as_kiosk(world, "POST", "/kiosk/tickets", form)
    assert taken.status == 401, taken
    assert _changed(before, await _state(world)) == []
