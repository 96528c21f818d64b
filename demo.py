"""The demo city: Kitakyushu's seven ward offices, their services, counters and kiosks.

``madoguchi demo`` seeds this into Redis before it starts the web and worker
processes, with demo staff accounts whose password it prints (demo only: anyone who
reads the README knows it). Seeding only adds what is missing, so running the demo
again keeps the tickets, counters, accounts and any edits made since. The offices
and their services are modelled on what a Kitakyushu ward office's 市民課 and
保健福祉課 handle; counter layouts and kiosk branches are illustrative.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass

from .consult.forms import FormsLibrary, render, sample_pdf
from .kiosk.devices import Kiosk, KioskStore, Printer
from .queue.appointments import AppointmentClient, SlotSettings
from .queue.exceptions import Conflict, NotFound
from .queue.model import Office, Service, ServiceMode
from .queue.tickets import QueueClient
from .web.accounts import AccountStore, Role, StaffAccount

log = logging.getLogger(__name__)

#: The actor recorded in the events the seeding produces.
ACTOR = "demo"


@dataclass(frozen=True)
class DemoCounter:
    """A counter of a demo office and the services it serves when it opens."""

    id: str
    name: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class DemoKiosk:
    """A kiosk in a neighbourhood branch, connected to its ward office.

    Seeding registers it (see :func:`seed_kiosks`); an admin issues its enrollment code.
    """

    id: str
    name_ja: str
    name_en: str


@dataclass(frozen=True)
class DemoOffice:
    office: Office
    services: tuple[Service, ...]
    counters: tuple[DemoCounter, ...]
    kiosks: tuple[DemoKiosk, ...]


#: Every ward office offers the same services: the city's service catalogue.
SERVICES: tuple[Service, ...] = (
    Service("certs", "A", "証明書（住民票・印鑑証明）", "Certificates", default_seconds=240),
    Service("moving", "B", "転入・転出・転居", "Moving in, out or within", default_seconds=900),
    Service("koseki", "C", "戸籍（出生・婚姻・死亡届）", "Family register", default_seconds=720),
    Service("insurance", "D", "国保・年金", "Health insurance and pension", default_seconds=660),
    Service("tax", "E", "税（証明・申告相談）", "Local tax", default_seconds=420),
    Service(
        "childcare",
        "F",
        "子育て（児童手当・保育）",
        "Child benefits and daycare",
        default_seconds=900,
    ),
    Service("care", "G", "介護保険", "Long-term care insurance", default_seconds=780),
    Service(
        "care-consult",
        "R",
        "介護相談（オンライン）",
        "Care consultation (video)",
        mode=ServiceMode.REMOTE,
        default_seconds=1200,
    ),
    Service(
        "childcare-consult",
        "S",
        "子育て相談（オンライン）",
        "Parenting consultation (video)",
        mode=ServiceMode.REMOTE,
        default_seconds=1200,
    ),
    Service(
        "insurance-consult",
        "T",
        "国保・年金相談（オンライン）",
        "Insurance and pension consultation (video)",
        mode=ServiceMode.REMOTE,
        default_seconds=900,
    ),
)

_REMOTE = tuple(s.id for s in SERVICES if s.mode is ServiceMode.REMOTE)

#: Counter layouts by office size. Remote consultations are not served at counters:
#: specialists take them in the consultation console.
_SMALL = (
    DemoCounter("counter-1", "1番窓口", ("certs", "tax", "moving")),
    DemoCounter("counter-2", "2番窓口", ("moving", "koseki", "certs")),
    DemoCounter("counter-3", "3番窓口", ("insurance", "childcare", "care")),
)
_MEDIUM = (
    DemoCounter("counter-1", "1番窓口", ("certs", "tax")),
    DemoCounter("counter-2", "2番窓口", ("certs", "moving")),
    DemoCounter("counter-3", "3番窓口", ("moving", "koseki")),
    DemoCounter("counter-4", "4番窓口", ("insurance",)),
    DemoCounter("counter-5", "5番窓口", ("childcare", "care")),
)
_LARGE = (
    DemoCounter("counter-1", "1番窓口", ("certs",)),
    DemoCounter("counter-2", "2番窓口", ("certs", "tax")),
    DemoCounter("counter-3", "3番窓口", ("moving",)),
    DemoCounter("counter-4", "4番窓口", ("moving", "koseki")),
    DemoCounter("counter-5", "5番窓口", ("insurance",)),
    DemoCounter("counter-6", "6番窓口", ("insurance", "care")),
    DemoCounter("counter-7", "7番窓口", ("childcare",)),
)


def _office(
    office_id: str,
    name_ja: str,
    name_en: str,
    counters: tuple[DemoCounter, ...],
    kiosks: Iterable[tuple[str, str, str]],
) -> DemoOffice:
    return DemoOffice(
        Office(office_id, name_ja, name_en),
        SERVICES,
        counters,
        tuple(DemoKiosk(*kiosk) for kiosk in kiosks),
    )


#: The demo city, in the order the city lists its wards.
CITY: tuple[DemoOffice, ...] = (
    _office(
        "moji",
        "門司区役所",
        "Moji Ward Office",
        _SMALL,
        [("moji-dairi", "大里市民センター", "Dairi Community Center")],
    ),
    _office(
        "kokurakita",
        "小倉北区役所",
        "Kokurakita Ward Office",
        _LARGE,
        [
            ("kokurakita-ashihara", "足原市民センター", "Ashihara Community Center"),
            ("kokurakita-sakaimachi", "堺町市民センター", "Sakaimachi Community Center"),
        ],
    ),
    _office(
        "kokuraminami",
        "小倉南区役所",
        "Kokuraminami Ward Office",
        _LARGE,
        [
            ("kokuraminami-sone", "曽根市民センター", "Sone Community Center"),
            ("kokuraminami-tokuriki", "徳力市民センター", "Tokuriki Community Center"),
        ],
    ),
    _office(
        "wakamatsu",
        "若松区役所",
        "Wakamatsu Ward Office",
        _SMALL,
        [("wakamatsu-shimago", "島郷市民センター", "Shimago Community Center")],
    ),
    _office(
        "yahatahigashi",
        "八幡東区役所",
        "Yahatahigashi Ward Office",
        _MEDIUM,
        [("yahatahigashi-edamitsu", "枝光市民センター", "Edamitsu Community Center")],
    ),
    _office(
        "yahatanishi",
        "八幡西区役所",
        "Yahatanishi Ward Office",
        _LARGE,
        [
            ("yahatanishi-orio", "折尾市民センター", "Orio Community Center"),
            ("yahatanishi-kurosaki", "黒崎市民センター", "Kurosaki Community Center"),
        ],
    ),
    _office(
        "tobata",
        "戸畑区役所",
        "Tobata Ward Office",
        _SMALL,
        [("tobata-tenraiji", "天籟寺市民センター", "Tenraiji Community Center")],
    ),
)


#: Appointments: moving and the family register take bookings on weekdays (office time).
_WEEKDAY_HOURS = (((540, 720), (780, 1020)),) * 5 + ((), ())
DEMO_SLOTS = {
    "moving": SlotSettings("moving", minutes=30, capacity=2, hours=_WEEKDAY_HOURS),
    "koseki": SlotSettings("koseki", minutes=20, capacity=1, hours=_WEEKDAY_HOURS),
}


@dataclass
class Seeded:
    """What :func:`seed` added; all zero when the city was already there."""

    offices: int = 0
    services: int = 0
    counters: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.offices or self.services or self.counters)


async def seed(queue: QueueClient, *, now: float, city: tuple[DemoOffice, ...] = CITY) -> Seeded:
    """Add the offices, services and open counters of ``city`` that Redis lacks.

    What exists is left as it is, whatever it holds now: running this twice adds
    nothing the second time, and never touches tickets.
    """
    seeded = Seeded()
    appointments = AppointmentClient(queue)
    for demo in city:
        office_id = demo.office.id
        try:
            await queue.office(office_id)
        except NotFound:
            await queue.put_office(demo.office, now=now, actor=ACTOR)
            seeded.offices += 1
        snapshot = await queue.snapshot(office_id, now=now)
        for service in demo.services:
            if service.id not in snapshot.services:
                await queue.put_service(office_id, service, now=now, actor=ACTOR)
                seeded.services += 1
        offered = {service.id for service in demo.services}
        for service_id, slots in DEMO_SLOTS.items():
            if service_id in offered and await appointments.settings(office_id, service_id) is None:
                await appointments.put_settings(office_id, slots, now=now, actor=ACTOR)
        existing = {counter.id for counter in snapshot.counters}
        for counter in demo.counters:
            if counter.id not in existing:
                await queue.open_counter(
                    office_id,
                    counter.id,
                    counter.services,
                    now=now,
                    name=counter.name,
                    actor=ACTOR,
                )
                seeded.counters += 1
    log.info(
        "demo city seeded: %d offices, %d services, %d counters added",
        seeded.offices,
        seeded.services,
        seeded.counters,
    )
    return seeded


# -- demo kiosks --------------------------------------------------------------------------


def kiosk_of(demo: DemoOffice, kiosk: DemoKiosk) -> Kiosk:
    """The registration of a demo kiosk: every service of its office, both cameras."""
    ward = demo.office.name_ja.removesuffix("区役所")
    return Kiosk(
        id=kiosk.id,
        office=demo.office.id,
        branch=f"{ward} — {kiosk.name_ja}",
        place="1階ロビー",
        services=tuple(s.id for s in demo.services if s.mode is not ServiceMode.REMOTE),
        topics=tuple(s.id for s in demo.services if s.mode is ServiceMode.REMOTE),
        cameras=("face", "document"),
        printer=Printer("browser", width_mm=80),
    )


async def seed_kiosks(kiosks: KioskStore, city: tuple[DemoOffice, ...] = CITY) -> int:
    """Register the demo kiosks that are not registered yet; how many were added."""
    added = 0
    for demo in city:
        for kiosk in demo.kiosks:
            if await kiosks.get(kiosk.id) is None:
                await kiosks.put(kiosk_of(demo, kiosk))
                added += 1
    log.info("demo kiosks seeded: %d added", added)
    return added


# -- demo forms (the forms library of remote consultation) -------------------------------

#: Forms every office with remote services gets: title, file name, heading, fields, pages.
FORMS: tuple[tuple[str, str, str, tuple[str, ...], int], ...] = (
    (
        "介護保険 要介護・要支援認定 申請書",
        "care-application.pdf",
        "介護保険 要介護・要支援認定 申請書",
        ("氏名（ふりがな）", "生年月日", "住所", "被保険者番号", "申請の理由"),
        2,
    ),
    (
        "児童手当 認定請求書",
        "child-allowance.pdf",
        "児童手当 認定請求書",
        ("請求者の氏名", "住所", "児童の氏名・生年月日", "振込先の口座"),
        1,
    ),
)


async def seed_forms(library: FormsLibrary, city: tuple[DemoOffice, ...] = CITY) -> int:
    """Give each office with remote services the demo forms, unless it has forms already;
    how many were added. The PDFs are drawn here, in code."""
    added = 0
    drawn: dict[str, tuple[bytes, list[bytes]]] = {}  # drawn and rendered once, for every office
    for demo in city:
        if not any(s.mode is ServiceMode.REMOTE for s in demo.services):
            continue
        if await library.all(demo.office.id):
            continue
        for title, name, heading, fields, pages in FORMS:
            if name not in drawn:
                pdf = sample_pdf(heading, list(fields), pages=pages)
                drawn[name] = pdf, await asyncio.to_thread(render, pdf)
            pdf, images = drawn[name]
            await library.add(demo.office.id, title, name, pdf, now=0.0, by="system", pages=images)
            added += 1
    log.info("demo forms seeded: %d added", added)
    return added


# -- demo staff ---------------------------------------------------------------------------

#: The password of every demo account. Printed by ``madoguchi demo``: demo data only.
DEMO_PASSWORD = "demo-kokura-window"  # noqa: S105 - a published demo password


@dataclass(frozen=True)
class DemoLogin:
    """A demo account and the page its person would open first."""

    account: StaffAccount
    opens: str


LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin(StaffAccount("admin", "松本 恵子", Role.ADMIN), "/admin/"),
    DemoLogin(
        StaffAccount(
            "kokurakita-lead",
            "中村 健一",
            Role.SUPERVISOR,
            ("kokurakita",),
            tuple(s.id for s in SERVICES),
        ),
        "/staff/supervisor",
    ),
    DemoLogin(
        StaffAccount(
            "ito", "伊藤 さくら", Role.STAFF, ("kokurakita",), ("certs", "moving", "koseki", "tax")
        ),
        "/staff/console",
    ),
    DemoLogin(
        StaffAccount(
            "tanaka",
            "田中 大輔",
            Role.STAFF,
            ("kokurakita",),
            ("insurance", "childcare", "care", *_REMOTE),
        ),
        "/staff/consult/kokurakita",
    ),
)


async def seed_accounts(
    accounts: AccountStore, logins: tuple[DemoLogin, ...] = LOGINS
) -> list[StaffAccount]:
    """Create the demo accounts that do not exist yet (with :data:`DEMO_PASSWORD`).

    An account that exists is left as it is, password included.
    """
    added = []
    for login in logins:
        try:
            await accounts.get(login.account.username)
        except NotFound:
            with suppress(Conflict):  # another process made it meanwhile
                added.append(await accounts.create(login.account, DEMO_PASSWORD))
    log.info("demo staff seeded: %d accounts added", len(added))
    return added
