"""Kiosk registration, one-time enrollment codes and device tokens, against real Redis;
and the enrollment page that uses them."""

from __future__ import annotations

import dataclasses
import re

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from madoguchi.demo import CITY, seed_kiosks
from madoguchi.kiosk.devices import (
    CODE_SECONDS,
    MAX_GUESSES,
    CodeRefused,
    Kiosk,
    KioskStore,
    Printer,
    digest,
)
from madoguchi.queue import keys
from madoguchi.queue.model import Office
from madoguchi.web.accounts import Role

from conftest import CSRF, T0, shown, sign_in_form
from kiosks import ASHIHARA

KIOSK = dataclasses.replace(ASHIHARA, printer=Printer("escpos", "192.0.2.50", 9100, 58))


@pytest.fixture
async def store(aredis: Redis) -> KioskStore:
    kiosks = KioskStore(aredis)
    await kiosks.put(KIOSK)
    return kiosks


async def test_a_kiosk_is_kept_as_registered(store: KioskStore) -> None:
    assert await store.get(KIOSK.id) == KIOSK
    assert await store.get("nowhere") is None
    moved = dataclasses.replace(KIOSK, place="2階", printer=Printer("browser"))
    await store.put(moved)
    assert await store.all() == [moved]


async def test_a_code_is_eight_digits_and_enrolls_its_kiosk_once(store: KioskStore) -> None:
    code = await store.issue_code(KIOSK.id, T0)
    assert re.fullmatch(r"\d{8}", code)
    kiosk, token = await store.enroll(code, T0 + 60)
    assert kiosk == KIOSK
    assert len(token) >= 43
    assert await store.by_token(token) == KIOSK
    with pytest.raises(CodeRefused) as again:
        await store.enroll(code, T0 + 61)
    assert again.value.reason == "used"


async def test_a_code_expires_after_15_minutes(store: KioskStore) -> None:
    code = await store.issue_code(KIOSK.id, T0)
    with pytest.raises(CodeRefused) as late:
        await store.enroll(code, T0 + CODE_SECONDS)
    assert late.value.reason == "expired"
    just_in_time = await store.issue_code(KIOSK.id, T0)
    kiosk, _ = await store.enroll(just_in_time, T0 + CODE_SECONDS - 1)
    assert kiosk.id == KIOSK.id


async def test_a_new_code_ends_the_one_before(store: KioskStore) -> None:
    first = await store.issue_code(KIOSK.id, T0)
    second = await store.issue_code(KIOSK.id, T0 + 1)
    with pytest.raises(CodeRefused) as refused:
        await store.enroll(first, T0 + 2)
    assert refused.value.reason == "wrong"
    await store.enroll(second, T0 + 2)


@pytest.mark.parametrize("code", ["", "1234567", "123456789", "abcdefgh", "00000000"])
async def test_wrong_codes_are_refused(store: KioskStore, code: str) -> None:
    await store.issue_code(KIOSK.id, T0)
    with pytest.raises(CodeRefused) as refused:
        await store.enroll(code, T0)
    assert refused.value.reason == "wrong"


async def test_only_hashes_are_kept(store: KioskStore, aredis: Redis) -> None:
    code = await store.issue_code(KIOSK.id, T0)
    _, token = await store.enroll(code, T0)
    dumped = []
    for key in await aredis.keys("*"):
        dumped.append(key)
        kind = await aredis.type(key)
        if kind == "string":
            dumped.append(await aredis.get(key))
        elif kind == "hash":
            dumped += [f"{k}={v}" for k, v in (await aredis.hgetall(key)).items()]
    everything = "\n".join(dumped)
    assert token not in everything
    assert code not in everything
    assert digest(token) in everything
    assert await aredis.exists(keys.kiosk_token(digest(token)))


async def test_enrolling_again_ends_the_old_token(store: KioskStore) -> None:
    _, old = await store.enroll(await store.issue_code(KIOSK.id, T0), T0)
    _, new = await store.enroll(await store.issue_code(KIOSK.id, T0 + 5), T0 + 5)
    assert await store.by_token(old) is None
    assert await store.by_token(new) == KIOSK


async def test_revocation_is_at_once_and_a_new_code_enrolls_again(store: KioskStore) -> None:
    _, token = await store.enroll(await store.issue_code(KIOSK.id, T0), T0)
    pending = await store.issue_code(KIOSK.id, T0 + 1)
    await store.revoke(KIOSK.id)
    assert await store.by_token(token) is None
    revoked = await store.get(KIOSK.id)
    assert revoked is not None
    assert revoked.revoked
    with pytest.raises(CodeRefused):  # a code issued before the revocation is void too
        await store.enroll(pending, T0 + 2)
    kiosk, fresh = await store.enroll(await store.issue_code(KIOSK.id, T0 + 3), T0 + 3)
    assert not kiosk.revoked
    assert await store.by_token(fresh) == KIOSK
    assert await store.by_token(token) is None


async def test_tokens_that_are_not_are_refused(store: KioskStore) -> None:
    for token in ("", "x", "y" * 43, "z" * 500):
        assert await store.by_token(token) is None


async def test_codes_cannot_be_issued_for_a_kiosk_that_does_not_exist(store: KioskStore) -> None:
    with pytest.raises(Exception, match="does not exist"):
        await store.issue_code("nowhere", T0)


# -- the enrollment page -----------------------------------------------------------------


async def enroll_form(http: httpx.AsyncClient, code: str) -> httpx.Response:
    page = await http.get("/kiosk/enroll?lang=en")  # (the choice stays, in its cookie)
    assert page.status_code == 200
    token = CSRF.search(page.text)
    assert token is not None
    return await http.post("/kiosk/enroll", data={"csrf": token.group(1), "code": code})


@pytest.fixture
async def kiosks(app: Starlette) -> KioskStore:
    store: KioskStore = app.state.kiosks
    await store.put(KIOSK)
    return store


async def test_the_page_enrolls_with_an_httponly_cookie(
    http: httpx.AsyncClient, kiosks: KioskStore, office: Office
) -> None:
    code = await kiosks.issue_code(KIOSK.id, T0)
    answer = await enroll_form(http, code)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/kiosk/enroll?done=1"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "kiosk=" in c)
    assert cookie.startswith("madoguchi-kiosk=")  # plain http://localhost: no __Host-
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert any(f.startswith("max-age=") and int(f[8:]) >= 300 * 86400 for f in flags)
    done = await http.get("/kiosk/enroll?done=1")
    assert "This kiosk is now enrolled." in shown(done)
    assert KIOSK.branch in shown(done)


async def test_the_cookie_is_host_only_and_secure_over_https(
    app: Starlette, kiosks: KioskStore, office: Office
) -> None:
    code = await kiosks.issue_code(KIOSK.id, T0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://kiosk.example.jp") as c:
        answer = await enroll_form(c, code)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "kiosk=" in c)
    assert cookie.startswith("__Host-madoguchi-kiosk=")
    assert "secure" in cookie.lower()
    assert "domain" not in cookie.lower()


@pytest.mark.parametrize(
    ("when", "status", "message"),
    [
        ("wrong", 400, "This code is not right"),
        ("expired", 410, "This code has expired"),
        ("used", 410, "This code was used already"),
    ],
)
async def test_codes_that_do_not_work_say_why(
    app: Starlette,
    http: httpx.AsyncClient,
    kiosks: KioskStore,
    office: Office,
    when: str,
    status: int,
    message: str,
) -> None:
    code = await kiosks.issue_code(KIOSK.id, T0)
    if when == "wrong":
        code = "12345678" if code != "12345678" else "87654321"
    elif when == "expired":
        app.state.offset = CODE_SECONDS + 1
    else:
        await kiosks.enroll(code, T0)
    answer = await enroll_form(http, code)
    assert answer.status_code == status
    assert message in shown(answer)
    assert "kiosk=" not in answer.headers.get("set-cookie", "").replace("-signin", "")


async def test_guessing_is_throttled_per_address(
    http: httpx.AsyncClient, kiosks: KioskStore, office: Office
) -> None:
    code = await kiosks.issue_code(KIOSK.id, T0)
    wrong = "12345678" if code != "12345678" else "87654321"
    for _ in range(MAX_GUESSES):
        assert (await enroll_form(http, wrong)).status_code == 400
    refused = await enroll_form(http, code)  # even the right code, for a while
    assert refused.status_code == 429
    assert "Too many wrong codes" in shown(refused)


async def test_the_form_needs_its_own_token(
    http: httpx.AsyncClient, kiosks: KioskStore, office: Office
) -> None:
    code = await kiosks.issue_code(KIOSK.id, T0)
    answer = await http.post("/kiosk/enroll", data={"code": code, "csrf": "x" * 43})
    assert answer.status_code == 403
    assert await kiosks.by_token("x") is None
    assert (await enroll_form(http, code)).status_code == 303  # the code still works


async def test_an_unenrolled_kiosk_is_sent_to_enroll_and_its_api_calls_get_401(
    http: httpx.AsyncClient, kiosks: KioskStore, office: Office
) -> None:
    page = await http.get("/kiosk/")
    assert page.status_code == 303
    assert page.headers["location"] == "/kiosk/enroll"
    api = await http.post("/kiosk/api/health", json={})
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "kiosk_unenrolled"


async def test_the_demo_registers_its_kiosks_once(store: KioskStore) -> None:
    added = await seed_kiosks(store)
    # All but KIOSK (above), whose id the demo's kiosk of Ashihara has: it is left as it is.
    assert added == sum(len(demo.kiosks) for demo in CITY) - 1
    assert await store.get(KIOSK.id) == KIOSK
    sakaimachi = await store.get("kokurakita-sakaimachi")
    assert sakaimachi is not None
    assert sakaimachi.branch == "小倉北 — 堺町市民センター"
    assert sakaimachi.office == "kokurakita"
    assert "certs" in sakaimachi.services
    assert "care-consult" in sakaimachi.topics
    assert "care-consult" not in sakaimachi.services
    assert sakaimachi.cameras == ("face", "document")
    assert await seed_kiosks(store) == 0
    assert len(await store.all()) == added + 1


# -- the admin pages ---------------------------------------------------------------------

KIOSK_FORM = {
    "id": "kokurakita-sakaimachi",
    "office": "kokurakita",
    "branch": "小倉北 — 堺町市民センター",
    "place": "2階 ホール前",
    "services": ["certs", "moving"],
    "topics": ["care"],
    "cameras": ["face", "document"],
    "printer_kind": "escpos",
    "printer_host": "192.0.2.60",
    "printer_port": "9100",
    "printer_width": "58",
}


async def test_an_admin_registers_edits_and_revokes_a_kiosk(
    app: Starlette, http: httpx.AsyncClient, office: Office
) -> None:
    csrf = await sign_in_form(http, app, "boss", Role.ADMIN)
    created = await http.post("/admin/kiosks", data={**KIOSK_FORM, "csrf": csrf})
    assert created.status_code == 303, shown(created)
    assert created.headers["location"] == "/admin/kiosks/kokurakita-sakaimachi?done=created"
    store: KioskStore = app.state.kiosks
    kiosk = await store.get("kokurakita-sakaimachi")
    assert kiosk == Kiosk(
        "kokurakita-sakaimachi",
        "kokurakita",
        "小倉北 — 堺町市民センター",
        "2階 ホール前",
        ("certs", "moving"),
        ("care",),
        ("face", "document"),
        Printer("escpos", "192.0.2.60", 9100, 58),
    )
    edited = await http.post(
        "/admin/kiosks/kokurakita-sakaimachi",
        data={
            **KIOSK_FORM,
            "place": "1階",
            "cameras": "face",
            "printer_kind": "browser",
            "csrf": csrf,
        },
    )
    assert edited.status_code == 303
    kiosk = await store.get("kokurakita-sakaimachi")
    assert kiosk is not None
    assert (kiosk.place, kiosk.cameras, kiosk.printer.kind) == ("1階", ("face",), "browser")

    issued = await http.post("/admin/kiosks/kokurakita-sakaimachi/code", data={"csrf": csrf})
    assert issued.status_code == 200
    assert issued.headers["cache-control"] == "no-store"
    code = re.search(r'id="enrollment-code">(\d{8})<', issued.text)
    assert code is not None
    assert "2026-11-26 09:15:00" in shown(issued)  # its expiry, in the office's time
    again = await http.get("/admin/kiosks/kokurakita-sakaimachi")
    assert code.group(1) not in again.text  # shown once
    assert "A code issued earlier works until 2026-11-26 09:15:00." in shown(again)
    _, token = await store.enroll(code.group(1), T0 + 60)

    revoked = await http.post("/admin/kiosks/kokurakita-sakaimachi/revoke", data={"csrf": csrf})
    assert revoked.status_code == 303
    assert await store.by_token(token) is None
    page = await http.get("/admin/kiosks/kokurakita-sakaimachi")
    assert "This kiosk is refused until it enrolls again." in shown(page)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "Not A Slug"}, "can only have lowercase letters"),
        ({"id": "new"}, "is reserved"),
        ({"branch": ""}, "Enter “Branch”."),
        ({"office": "tobata"}, "Choose one of the options for “Ward office”."),
        ({"services": ["care"]}, "“care” is not one of the choices"),
        ({"topics": ["certs"]}, "“certs” is not one of the choices"),
        ({"cameras": ["back"]}, "“back” is not one of the choices"),
        ({"printer_host": ""}, "Enter “Printer address”."),
        ({"printer_host": "printer;rm -rf"}, "is not a host name or IP address"),
        ({"printer_port": "70000"}, "must be a whole number from 1 to 65535"),
        ({"printer_width": "110"}, "Choose one of the options for “Paper width”."),
    ],
)
async def test_a_wrong_kiosk_form_says_what_is_wrong(
    app: Starlette,
    http: httpx.AsyncClient,
    office: Office,
    changes: dict[str, object],
    message: str,
) -> None:
    csrf = await sign_in_form(http, app, "boss", Role.ADMIN)
    answer = await http.post("/admin/kiosks", data={**KIOSK_FORM, **changes, "csrf": csrf})
    assert answer.status_code == 422
    assert message in shown(answer)
    assert await app.state.kiosks.all() == []


async def test_an_id_cannot_be_taken_twice(
    app: Starlette, http: httpx.AsyncClient, office: Office
) -> None:
    csrf = await sign_in_form(http, app, "boss", Role.ADMIN)
    assert (await http.post("/admin/kiosks", data={**KIOSK_FORM, "csrf": csrf})).status_code == 303
    again = await http.post("/admin/kiosks", data={**KIOSK_FORM, "place": "x", "csrf": csrf})
    assert again.status_code == 422
    assert "is already in use" in shown(again)


async def test_a_kiosk_that_does_not_exist_is_a_404(
    app: Starlette, http: httpx.AsyncClient, office: Office
) -> None:
    await sign_in_form(http, app, "boss", Role.ADMIN)
    assert (await http.get("/admin/kiosks/nowhere")).status_code == 404
    assert (await http.get("/admin/kiosks/Not%20a%20slug")).status_code == 404
