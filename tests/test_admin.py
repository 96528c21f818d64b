"""Administration over HTTP: offices, services, counters, staff accounts and the audit trail."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette

from madoguchi.queue.exceptions import InvalidInput
from madoguchi.queue.model import DEFAULT_BANDS, Office, Service
from madoguchi.web.accounts import Role

from conftest import T0, refusal, shown, sign_in_form

SERVICES = "/admin/offices/kokurakita/services"
CERTS = f"{SERVICES}/certs"


@pytest.fixture
async def admin(http: httpx.AsyncClient, app: Starlette) -> str:
    return await sign_in_form(http, app, "admin", Role.ADMIN, ())


def service_form(csrf: str, **changes: str) -> dict[str, str]:
    form = {
        "csrf": csrf,
        "id": "pension",
        "prefix": "P",
        "name_ja": "国民年金",
        "name_ja_easy": "ねんきん",
        "name_en": "National pension",
        "name_zh_hans": "国民年金",
        "name_ko": "국민연금",
        "name_vi": "Lương hưu quốc dân",
        "mode": "in_person",
        "default_minutes": "12",
        "band_moderate": "10",
        "band_long": "25",
        "band_very_long": "50",
        "active": "1",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v != "-"}


async def events(app: Starlette, office: str = "kokurakita") -> list[dict[str, object]]:
    return [e for _, e in await app.state.queue.events(office, count=200)]


# -- who may ---------------------------------------------------------------------------


async def test_admin_pages_need_the_admin_role(http: httpx.AsyncClient, app: Starlette) -> None:
    anonymous = await http.get("/admin/")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/staff/signin")
    csrf = await sign_in_form(http, app, "boss", Role.SUPERVISOR)
    assert (await http.get("/admin/")).status_code == 403
    refused = await http.post("/admin/offices", data={"csrf": csrf, "id": "tobata"})
    assert refused.status_code == 403
    assert "tobata" not in await app.state.queue.office_ids()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/offices",
        "/admin/offices/kokurakita",
        "/admin/offices/kokurakita/services",
        "/admin/offices/kokurakita/services/certs",
        "/admin/offices/kokurakita/services/certs/delete",
        "/admin/offices/kokurakita/services/certs/deactivate",
        "/admin/offices/kokurakita/counters",
        "/admin/staff",
        "/admin/staff/admin/disable",
        "/admin/staff/admin/sessions",
        "/admin/staff/admin/password",
        "/admin/staff/admin/totp/remove",
    ],
)
async def test_every_admin_form_refuses_a_post_without_its_csrf_token(
    http: httpx.AsyncClient, app: Starlette, admin: str, path: str
) -> None:
    before = await app.state.queue.events("kokurakita", count=1)
    for data in ({}, {"csrf": "not-the-token"}):
        refused = await http.post(path, data=data)
        assert refused.status_code == 403, path
        assert "reload" in refused.json()["error"]["message"]
    assert await app.state.queue.events("kokurakita", count=1) == before


# -- offices ---------------------------------------------------------------------------


async def test_create_and_edit_an_office(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    created = await http.post(
        "/admin/offices",
        data={
            "csrf": admin,
            "id": "tobata",
            "name_ja": "戸畑区役所",
            "name_en": "Tobata Ward Office",
            "timezone": "Asia/Tokyo",
            "priority_cap": "2",
        },
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/admin/offices/tobata?done=created"
    office = await app.state.queue.office("tobata")
    assert (office.name_ja, office.priority_cap) == ("戸畑区役所", 2)
    page = await http.get("/admin/offices/tobata?done=created")
    assert "Tobata Ward Office" in shown(page)
    edited = await http.post(
        "/admin/offices/tobata",
        data={
            "csrf": admin,
            "name_ja": "戸畑区役所",
            "name_en": "Tobata Ward",
            "timezone": "Asia/Seoul",
            "priority_cap": "4",
        },
    )
    assert edited.status_code == 303
    office = await app.state.queue.office("tobata")
    assert (office.name_en, office.timezone, office.priority_cap) == (
        "Tobata Ward",
        "Asia/Seoul",
        4,
    )
    kinds = [(e["type"], e["actor"]) for e in await events(app, "tobata")]
    assert kinds == [("office_updated", "staff:admin"), ("office_created", "staff:admin")]


async def test_office_form_problems_are_named_field_by_field(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    refused = await http.post(
        "/admin/offices",
        data={
            "csrf": admin,
            "id": "Tobata!",
            "name_ja": "",
            "name_en": "Tobata",
            "timezone": "Mars/Olympus",
            "priority_cap": "0",
        },
    )
    assert refused.status_code == 422
    text = refused.text
    assert "can only have lowercase letters" in text
    assert "Enter “Name in Japanese”." in text
    assert "“Mars/Olympus” is not a time zone" in text
    assert "must be a whole number from 1 to 20" in text
    assert 'aria-invalid="true"' in text
    # what was typed comes back, so that it need not be typed again
    assert 'value="Tobata"' in text
    assert "“kokurakita” is already in use" in await refusal(
        http,
        422,
        "/admin/offices",
        data={
            "csrf": admin,
            "id": "kokurakita",
            "name_ja": "小倉北",
            "name_en": "Kokurakita",
            "timezone": "Asia/Tokyo",
            "priority_cap": "3",
        },
    )
    assert await app.state.queue.office_ids() == ["kokurakita"]
    assert (await app.state.queue.office("kokurakita")).name_en == "Kokurakita Ward Office"


async def test_a_missing_office_is_a_404(http: httpx.AsyncClient, admin: str) -> None:
    assert (await http.get("/admin/offices/nowhere")).status_code == 404
    assert (await http.get("/admin/offices/Bad%20Id")).status_code == 404
    posted = await http.post("/admin/offices/nowhere/services", data=service_form(admin))
    assert posted.status_code == 404


# -- services --------------------------------------------------------------------------


async def test_create_a_service_with_every_name(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    created = await http.post("/admin/offices/kokurakita/services", data=service_form(admin))
    assert created.status_code == 303, created.text
    snapshot = await app.state.queue.snapshot("kokurakita", now=T0)
    service = snapshot.services["pension"]
    assert service.names == {
        "ja": "国民年金",
        "ja-easy": "ねんきん",
        "en": "National pension",
        "zh-Hans": "国民年金",
        "ko": "국민연금",
        "vi": "Lương hưu quốc dân",
    }
    assert (service.prefix, service.default_seconds, service.bands) == ("P", 720.0, (10, 25, 50))
    assert service.active
    event = (await events(app))[0]
    assert (event["type"], event["service"], event["actor"]) == (
        "service_created",
        "pension",
        "staff:admin",
    )
    # its page shows the names back for editing
    page = await http.get("/admin/offices/kokurakita/services/pension")
    assert 'value="Lương hưu quốc dân"' in shown(page)
    assert 'lang="ko"' in shown(page)


async def test_optional_names_fall_back(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    form = service_form(admin, name_ja_easy="", name_zh_hans="", name_ko="", name_vi="")
    assert (await http.post("/admin/offices/kokurakita/services", data=form)).status_code == 303
    service = (await app.state.queue.snapshot("kokurakita", now=T0)).services["pension"]
    assert service.name("ja-easy") == "国民年金"
    assert service.name("vi") == "National pension"


async def test_service_form_problems(http: httpx.AsyncClient, app: Starlette, admin: str) -> None:
    form = service_form(
        admin,
        id="certs",
        prefix="B",
        name_en="",
        mode="teleport",
        default_minutes="lots",
        band_moderate="30",
        band_long="20",
        active="-",
    )
    refused = await http.post("/admin/offices/kokurakita/services", data=form)
    assert refused.status_code == 422
    text = refused.text
    assert "“certs” is already in use" in text
    assert "Prefix “B” is already used by the service “Moving in and out”" in text
    assert "Enter “Name in English”." in text
    assert "Choose one of the options" in text
    assert "must be a number from 0.5 to 240" in text
    assert "thresholds must increase" in text
    snapshot = await app.state.queue.snapshot("kokurakita", now=T0)
    assert snapshot.services["certs"].name_en == "Certificates"
    assert len(snapshot.services) == 3
    long_name = service_form(admin, name_ko="가" * 81)
    assert "can have at most 80 characters" in await refusal(
        http, 422, "/admin/offices/kokurakita/services", data=long_name
    )


async def test_edit_a_service_keeps_its_id(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    form = service_form(admin, id="ignored", prefix="A", name_en="Certificates and seals")
    edited = await http.post("/admin/offices/kokurakita/services/certs", data=form)
    assert edited.status_code == 303
    services = (await app.state.queue.snapshot("kokurakita", now=T0)).services
    assert "ignored" not in services
    assert services["certs"].name_en == "Certificates and seals"
    assert services["certs"].bands == (10, 25, 50)


async def test_a_service_in_use_cannot_be_deleted_only_deactivated(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    queue = app.state.queue
    waiting = await queue.issue("kokurakita", "certs", now=T0)
    refused = await http.post(
        "/admin/offices/kokurakita/services/certs/delete", data={"csrf": admin}
    )
    assert refused.status_code == 409
    assert "still has 1 waiting ticket(s)" in shown(refused)
    assert "Deactivate the service instead" in shown(refused)
    assert "certs" in (await queue.snapshot("kokurakita", now=T0)).services
    deactivated = await http.post(
        "/admin/offices/kokurakita/services/certs/deactivate", data={"csrf": admin}
    )
    assert deactivated.status_code == 303
    services = (await queue.snapshot("kokurakita", now=T0)).services
    assert not services["certs"].active
    assert services["certs"].name_en == "Certificates"  # nothing else changed
    # the waiting ticket is still served; a counter that serves the service blocks deletion
    await queue.put_counter("kokurakita", "c1", ["certs"], now=T0)
    await queue.open_counter("kokurakita", "c1", now=T0)
    called = await queue.call_next("kokurakita", "c1", now=T0 + 60)
    assert called is not None
    assert called.id == waiting.ticket.id
    await queue.start("kokurakita", called.id, now=T0 + 90)
    await queue.finish("kokurakita", called.id, now=T0 + 120)
    assert 'counter "c1" serves "certs"' in await refusal(
        http, 409, "/admin/offices/kokurakita/services/certs/delete", data={"csrf": admin}
    )
    await queue.put_counter("kokurakita", "c1", ["moving"], now=T0)
    deleted = await http.post(
        "/admin/offices/kokurakita/services/certs/delete", data={"csrf": admin}
    )
    assert deleted.status_code == 303
    assert "certs" not in (await queue.snapshot("kokurakita", now=T0)).services
    assert (await events(app))[0]["type"] == "service_deleted"


async def test_a_service_held_at_a_counter_cannot_be_deleted(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    queue = app.state.queue
    await queue.issue("kokurakita", "moving", now=T0)
    await queue.open_counter("kokurakita", "c1", ["moving"], now=T0)
    await queue.call_next("kokurakita", "c1", now=T0 + 1)
    await queue.put_counter("kokurakita", "c1", ["certs"], now=T0 + 2)
    assert 'counter "c1" holds ticket B-001' in await refusal(
        http, 409, "/admin/offices/kokurakita/services/moving/delete", data={"csrf": admin}
    )


# -- counters --------------------------------------------------------------------------


async def test_counters_are_created_closed_edited_and_deleted(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    queue = app.state.queue
    created = await http.post(
        "/admin/offices/kokurakita/counters",
        data={"csrf": admin, "id": "window-3", "name": "3番窓口", "services": ["certs", "moving"]},
    )
    assert created.status_code == 303
    counter = (await queue.snapshot("kokurakita", now=T0)).counters[0]
    assert (counter.id, counter.name, counter.state.value, counter.services) == (
        "window-3",
        "3番窓口",
        "closed",
        ("certs", "moving"),
    )
    assert "“window-3” is already in use" in await refusal(
        http,
        409,
        "/admin/offices/kokurakita/counters",
        data={"csrf": admin, "id": "window-3", "name": "Other", "services": ["certs"]},
    )
    assert "Choose at least one for “Services it serves”." in await refusal(
        http,
        422,
        "/admin/offices/kokurakita/counters/window-3",
        data={"csrf": admin, "name": "3番窓口"},
    )
    assert "“nope” is not one of the choices" in await refusal(
        http,
        422,
        "/admin/offices/kokurakita/counters/window-3",
        data={"csrf": admin, "name": "3番窓口", "services": ["certs", "nope"]},
    )
    await queue.open_counter("kokurakita", "window-3", now=T0)
    edited = await http.post(
        "/admin/offices/kokurakita/counters/window-3",
        data={"csrf": admin, "name": "Window 3", "services": ["moving"]},
    )
    assert edited.status_code == 303
    counter = (await queue.snapshot("kokurakita", now=T0)).counters[0]
    assert (counter.name, counter.state.value, counter.services) == (
        "Window 3",
        "open",
        ("moving",),
    )
    # A remote service is not among a counter's choices: specialists take it.
    assert "“care” is not one of the choices" in await refusal(
        http,
        422,
        "/admin/offices/kokurakita/counters/window-3",
        data={"csrf": admin, "name": "Window 3", "services": ["care"]},
    )
    assert "is open, not closed" in await refusal(
        http, 409, "/admin/offices/kokurakita/counters/window-3/delete", data={"csrf": admin}
    )
    await queue.close_counter("kokurakita", "window-3", now=T0)
    deleted = await http.post(
        "/admin/offices/kokurakita/counters/window-3/delete", data={"csrf": admin}
    )
    assert deleted.status_code == 303
    assert (await queue.snapshot("kokurakita", now=T0)).counters == []
    kinds = [e["type"] for e in await events(app)][:3]
    assert kinds == ["counter_deleted", "counter_closed", "counter_updated"]
    assert (await http.get("/admin/offices/kokurakita/counters/window-3")).status_code == 404


# -- staff accounts --------------------------------------------------------------------


def staff_form(csrf: str, **changes: object) -> dict[str, object]:
    form: dict[str, object] = {
        "csrf": csrf,
        "username": "sato",
        "name": "佐藤 花子",
        "password": "Window-Three-Tuesday-88",
        "role": "staff",
        "offices": ["kokurakita"],
        "services": ["certs", "moving"],
    }
    form.update(changes)
    return form


async def test_create_a_staff_account(http: httpx.AsyncClient, app: Starlette, admin: str) -> None:
    created = await http.post("/admin/staff", data=staff_form(admin, totp_required="1"))
    assert created.status_code == 303, created.text
    account = await app.state.accounts.get("sato")
    assert (account.name, account.role, account.offices, account.services) == (
        "佐藤 花子",
        Role.STAFF,
        ("kokurakita",),
        ("certs", "moving"),
    )
    assert account.totp_required
    assert await app.state.accounts.authenticate("sato", "Window-Three-Tuesday-88") is not None
    event = (await events(app))[0]
    assert (event["type"], event["staff"], event["actor"]) == (
        "staff_created",
        "sato",
        "staff:admin",
    )
    listed = await http.get("/admin/staff")
    assert "佐藤 花子" in shown(listed)


async def test_staff_account_problems(http: httpx.AsyncClient, app: Starlette, admin: str) -> None:
    assert "a password needs at least 12 characters" in await refusal(
        http, 422, "/admin/staff", data=staff_form(admin, password="password123")
    )
    common = await http.post("/admin/staff", data=staff_form(admin, password="passwordpassword"))
    assert common.status_code == 422
    assert "choose a stronger password" in shown(common)
    assert "passwordpassword" not in shown(common)  # a password is never sent back
    bad = await http.post(
        "/admin/staff",
        data=staff_form(
            admin, username="9lives", role="emperor", offices=[], services=["nope"], name=""
        ),
    )
    assert bad.status_code == 422
    for message in (
        "must be 2 to 32 lowercase letters",
        "Choose one of the options for “Role”",
        "Enter “Display name”.",
        "“nope” is not one of the choices",
    ):
        assert message in shown(bad)
    assert "Choose at least one for “Offices”." in await refusal(
        http, 422, "/admin/staff", data=staff_form(admin, offices=[])
    )
    assert "“admin” is already in use" in await refusal(
        http, 409, "/admin/staff", data=staff_form(admin, username="admin")
    )
    assert [a.username for a in await app.state.accounts.all()] == ["admin"]


async def test_disabling_an_account_ends_its_sessions(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as other:
        await sign_in_form(other, app, "ito", Role.STAFF)
        assert (await other.get("/staff/")).status_code == 200
        disabled = await http.post("/admin/staff/ito/disable", data={"csrf": admin})
        assert disabled.status_code == 303
        assert (await app.state.accounts.get("ito")).disabled
        gone = await other.get("/staff/")
        assert gone.status_code == 303
        assert gone.headers["location"].startswith("/staff/signin")
        page = await http.get("/admin/staff/ito")
        assert "Enable account" in shown(page)
        enabled = await http.post("/admin/staff/ito/enable", data={"csrf": admin})
        assert enabled.status_code == 303
        assert not (await app.state.accounts.get("ito")).disabled
    kinds = [(e["type"], e.get("staff"), e["actor"]) for e in await events(app)][:2]
    assert kinds == [
        ("staff_enabled", "ito", "staff:admin"),
        ("staff_disabled", "ito", "staff:admin"),
    ]


async def test_end_all_sessions_and_set_a_password(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as other:
        await sign_in_form(other, app, "ito", Role.STAFF)
        ended = await http.post("/admin/staff/ito/sessions", data={"csrf": admin})
        assert ended.status_code == 303
        assert (await other.get("/staff/")).status_code == 303
    assert "a password needs at least 12 characters" in await refusal(
        http, 422, "/admin/staff/ito/password", data={"csrf": admin, "password": "short"}
    )
    changed = await http.post(
        "/admin/staff/ito/password", data={"csrf": admin, "password": "Kokura-Castle-Lantern-7"}
    )
    assert changed.status_code == 303
    assert await app.state.accounts.authenticate("ito", "Kokura-Castle-Lantern-7") is not None
    kinds = [e["type"] for e in await events(app)][:2]
    assert kinds == ["staff_password_set", "staff_sessions_ended"]


async def test_remove_a_lost_authenticator(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    await http.post("/admin/staff", data=staff_form(admin))
    await app.state.accounts.enroll_totp("sato")
    assert (await app.state.accounts.get("sato")).has_totp
    assert "Remove authenticator" in shown(await http.get("/admin/staff/sato"))
    removed = await http.post("/admin/staff/sato/totp/remove", data={"csrf": admin})
    assert removed.status_code == 303
    assert not (await app.state.accounts.get("sato")).has_totp
    event = (await events(app))[0]
    assert (event["type"], event["staff"], event["actor"]) == (
        "staff_totp_removed",
        "sato",
        "staff:admin",
    )


async def test_an_admin_cannot_lock_themself_out(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    assert "cannot disable your own account" in await refusal(
        http, 409, "/admin/staff/admin/disable", data={"csrf": admin}
    )
    assert "cannot take away your own admin role" in await refusal(
        http,
        409,
        "/admin/staff/admin",
        data={"csrf": admin, "name": "Admin", "role": "staff", "offices": ["kokurakita"]},
    )
    account = await app.state.accounts.get("admin")
    assert account.role is Role.ADMIN
    assert not account.disabled


async def test_edit_a_staff_account(http: httpx.AsyncClient, app: Starlette, admin: str) -> None:
    await http.post("/admin/staff", data=staff_form(admin))
    edited = await http.post(
        "/admin/staff/sato",
        data={
            "csrf": admin,
            "name": "佐藤 花子",
            "role": "supervisor",
            "offices": ["kokurakita"],
            "services": ["care"],
        },
    )
    assert edited.status_code == 303
    account = await app.state.accounts.get("sato")
    assert (account.role, account.services) == (Role.SUPERVISOR, ("care",))
    assert (await events(app))[0]["type"] == "staff_updated"
    assert (await http.get("/admin/staff/nobody")).status_code == 404


# -- audit -----------------------------------------------------------------------------


async def test_audit_shows_who_did_what_newest_first(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    queue = app.state.queue
    ticket = (await queue.issue("kokurakita", "certs", now=T0 + 60, actor="resident")).ticket
    await queue.open_counter("kokurakita", "c1", ["certs"], now=T0 + 61, actor="staff:ito")
    await queue.call_next("kokurakita", "c1", now=T0 + 62, actor="staff:ito")
    await http.post("/admin/staff", data=staff_form(admin))
    page = await http.get("/admin/offices/kokurakita/audit")
    assert page.status_code == 200
    text = page.text
    rows = re.findall(r'<td data-type="([a-z_]+)"', text)
    assert rows[:4] == ["staff_created", "called", "counter_opened", "issued"]
    assert "2026-11-26 09:01:02" in text  # the call, in the office's time zone
    assert "staff:ito" in text
    assert "staff:admin" in text
    assert ticket.number in text
    mine = await http.get("/admin/offices/kokurakita/audit", params={"actor": "staff:ito"})
    assert re.findall(r'<td data-type="([a-z_]+)"', mine.text) == ["called", "counter_opened"]
    calls = await http.get("/admin/offices/kokurakita/audit", params={"type": "issued"})
    assert re.findall(r'<td data-type="([a-z_]+)"', calls.text) == ["issued"]
    nothing = await http.get(
        "/admin/offices/kokurakita/audit", params={"actor": "staff:nobody", "before": "junk"}
    )
    assert nothing.status_code == 200
    assert "No events match." in shown(nothing)


async def test_audit_pages_go_back_in_time(
    http: httpx.AsyncClient, app: Starlette, admin: str
) -> None:
    queue = app.state.queue
    for i in range(60):
        await queue.issue("kokurakita", "certs", now=T0 + 100 + i, actor="resident")
    first = await http.get("/admin/offices/kokurakita/audit", params={"type": "issued"})
    numbers = re.findall(r"<td>(A-\d{3})</td>", first.text)
    assert numbers == [f"A-{n:03d}" for n in range(60, 10, -1)]
    older = re.search(r'href="([^"]*before=[^"]+)"', first.text)
    assert older is not None
    second = await http.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(r"<td>(A-\d{3})</td>", second.text) == [
        f"A-{n:03d}" for n in range(10, 0, -1)
    ]
    assert ">Older<" not in shown(second)
    assert ">Newest<" in shown(second)


def test_services_stored_before_the_extra_fields_read_with_defaults() -> None:
    raw = {
        "id": "certs",
        "prefix": "A",
        "name_ja": "証明書",
        "name_en": "Certificates",
        "mode": "in_person",
        "active": "1",
        "default_seconds": "180.0",
    }
    service = Service.from_redis(raw)
    assert service.bands == DEFAULT_BANDS
    assert service.names["ko"] == ""
    assert Service.from_redis(service.to_redis()) == service
    assert [service.band(m) for m in (0, 14.9, 15, 45, 60, 600)] == [0, 0, 1, 2, 3, 3]


async def test_notes_are_only_administrative_events(app: Starlette, office: Office) -> None:
    queue = app.state.queue
    with pytest.raises(InvalidInput, match="not an administrative event type"):
        await queue.note("kokurakita", "finished", {}, now=T0)
    with pytest.raises(InvalidInput, match='event field "actor" is set by the queue'):
        await queue.note("kokurakita", "staff_created", {"actor": "someone else"}, now=T0)
    with pytest.raises(InvalidInput, match="is not an event id"):
        await queue.events("kokurakita", before="yesterday")
    event_id = await queue.note("kokurakita", "staff_created", {"staff": "ito"}, now=T0, actor="x")
    assert await queue.events("kokurakita", count=1) == [
        (
            event_id,
            {
                "type": "staff_created",
                "staff": "ito",
                "t": repr(T0),
                "actor": "x",
                "office": "kokurakita",
            },
        )
    ]
