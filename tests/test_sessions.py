"""Signing in and out, session timeouts on the app's clock, throttling, and the second factor."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import time
from collections.abc import AsyncIterator

import httpx
import pyotp
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from madoguchi.queue import keys
from madoguchi.queue.model import Office
from madoguchi.settings import Settings
from madoguchi.web.accounts import AccountStore
from madoguchi.web.app import create_app
from madoguchi.web.sessions import FAILURE_WINDOW, MAX_FAILURES, SessionStore

from conftest import PASSWORD, T0, make_account

COOKIE = "__Host-madoguchi"


def _client(app: Starlette, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client over https, so that it keeps and sends the ``Secure`` cookies as a browser does."""
    transport = httpx.ASGITransport(app=app, client=(address, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


@pytest.fixture
async def browser(app: Starlette, office: Office) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as http:
        yield http


def hidden(page: httpx.Response, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert match, page.text
    return match.group(1)


async def form_sign_in(
    http: httpx.AsyncClient, username: str, password: str = PASSWORD, next_path: str = "/staff/"
) -> httpx.Response:
    page = await http.get("/staff/signin")
    assert page.status_code == 200, page.text
    form = {"csrf": hidden(page, "csrf"), "username": username, "password": password}
    return await http.post("/staff/signin", data=form | {"next": next_path})


async def sign_out(http: httpx.AsyncClient) -> httpx.Response:
    home = await http.get("/staff/")
    return await http.post("/staff/signout", data={"csrf": hidden(home, "csrf")})


def advance(app: Starlette, seconds: float) -> None:
    app.state.offset += seconds


def store(app: Starlette) -> SessionStore:
    sessions: SessionStore = app.state.sessions
    return sessions


# -- the form ------------------------------------------------------------------------------


async def test_sign_in_and_out(browser: httpx.AsyncClient, aredis: Redis) -> None:
    await make_account(aredis, "clerk")
    signed = await form_sign_in(browser, "clerk")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/staff/"
    assert browser.cookies.get(COOKIE)
    home = await browser.get("/staff/")
    assert home.status_code == 200
    assert "Test clerk" in home.text
    assert len(await aredis.keys("mg:session:*")) == 1

    out = await sign_out(browser)
    assert out.status_code == 303
    assert out.headers["location"] == "/staff/signin"
    assert await aredis.keys("mg:session:*") == []
    again = await browser.get("/staff/")
    assert again.status_code == 303
    assert again.headers["location"] == "/staff/signin?next=/staff/"


async def test_a_wrong_password_gets_a_clear_message_and_no_session(
    browser: httpx.AsyncClient, aredis: Redis
) -> None:
    await make_account(aredis, "clerk")
    for username, password in [("clerk", "not the password"), ("nobody", PASSWORD), ("", "")]:
        refused = await form_sign_in(browser, username, password)
        assert refused.status_code == 401
        assert "The user name, password or code is not right" in refused.text
        assert COOKIE not in browser.cookies
    assert await aredis.keys("mg:session:*") == []


async def test_signing_in_gives_a_new_session_id_and_ends_the_old_one(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    await make_account(aredis, "clerk")
    await make_account(aredis, "ito")
    page = await browser.get("/staff/signin")
    planted = await store(app).create("clerk", now=app.state.clock())
    browser.cookies.set(COOKIE, planted.id, domain="testserver.local")
    assert (await browser.get("/staff/")).status_code == 200
    form = {"csrf": hidden(page, "csrf"), "username": "ito", "password": PASSWORD}
    assert (await browser.post("/staff/signin", data=form)).status_code == 303
    assert browser.cookies[COOKIE] != planted.id
    assert await store(app).get(planted.id, now=app.state.clock()) is None
    assert "Test ito" in (await browser.get("/staff/")).text


@pytest.mark.parametrize(
    ("given", "lands"),
    [
        ("/staff/console?office=kokurakita", "/staff/console?office=kokurakita"),
        ("https://evil.example/", "/staff/"),
        ("//evil.example/", "/staff/"),
        ("/\\evil.example/", "/staff/"),
        ("javascript:alert(1)", "/staff/"),
        ("", "/staff/"),
    ],
)
async def test_only_a_path_of_this_site_is_followed_after_sign_in(
    browser: httpx.AsyncClient, aredis: Redis, given: str, lands: str
) -> None:
    await make_account(aredis, "clerk")
    signed = await form_sign_in(browser, "clerk", next_path=given)
    assert signed.headers["location"] == lands


async def test_sign_out_without_a_session_just_leads_to_the_sign_in_page(
    browser: httpx.AsyncClient,
) -> None:
    out = await browser.post("/staff/signout", data={})
    assert out.status_code == 303
    assert out.headers["location"] == "/staff/signin"


async def test_a_malformed_form_is_a_clear_4xx(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/staff/signin")
    as_json = await browser.post("/staff/signin", json={"csrf": hidden(page, "csrf")})
    assert as_json.status_code == 415
    huge = await browser.post("/staff/signin", data={"password": "x" * 10_000})
    assert huge.status_code == 413


# -- timeouts, on the app's clock ----------------------------------------------------------


async def test_a_session_ends_after_the_idle_timeout(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    idle = app.state.settings.session_idle_seconds
    await make_account(aredis, "clerk")
    await form_sign_in(browser, "clerk")
    for _ in range(3):  # each request renews it
        advance(app, idle - 60)
        assert (await browser.get("/staff/")).status_code == 200
    advance(app, idle + 1)
    assert (await browser.get("/staff/")).headers["location"].startswith("/staff/signin")
    assert await aredis.keys("mg:session:*") == []


async def test_a_session_ends_after_the_absolute_timeout_however_busy(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    settings = app.state.settings
    await make_account(aredis, "clerk")
    await form_sign_in(browser, "clerk")
    elapsed = 0.0
    step = settings.session_idle_seconds - 60
    while elapsed + step <= settings.session_absolute_seconds:
        advance(app, step)
        elapsed += step
        assert (await browser.get("/staff/")).status_code == 200, elapsed
    advance(app, settings.session_absolute_seconds - elapsed + 1)
    assert (await browser.get("/staff/")).status_code == 303
    assert await aredis.keys("mg:session:*") == []


async def test_the_session_store_counts_and_ends_a_persons_sessions(
    app: Starlette, aredis: Redis
) -> None:
    sessions = store(app)
    now = app.state.clock()
    first = await sessions.create("clerk", now=now)
    await sessions.create("clerk", now=now)
    await sessions.create("ito", now=now)
    assert await sessions.count("clerk") == 2
    await aredis.delete(keys.session(hashlib.sha256(first.id.encode()).hexdigest()))
    assert await sessions.count("clerk") == 1  # one timed out on its own
    assert await sessions.end_all("clerk") == 1
    assert await sessions.count("clerk") == 0
    assert await sessions.count("ito") == 1
    assert await sessions.get("x" * 101, now=now) is None
    assert await sessions.get("", now=now) is None


# -- throttling ----------------------------------------------------------------------------


async def test_five_failures_for_a_user_name_refuse_it_for_a_while(
    app: Starlette, office: Office, aredis: Redis
) -> None:
    await make_account(aredis, "clerk")
    async with _client(app, "10.0.0.1") as http:
        for _ in range(MAX_FAILURES):
            assert (await form_sign_in(http, "clerk", "wrong password!")).status_code == 401
        throttled = await form_sign_in(http, "clerk")  # even the right password
        assert throttled.status_code == 429
        assert "Too many failed attempts" in throttled.text
        assert COOKIE not in http.cookies
    async with _client(app, "10.0.0.2") as http:  # another computer: the name is still refused
        by_api = await http.post(
            "/api/v1/session", json={"username": "clerk", "password": PASSWORD}
        )
        assert by_api.status_code == 429
        assert "too many failed sign-ins" in by_api.json()["error"]["message"]
    ttl = await aredis.ttl(keys.signin_failures("user:clerk"))
    assert 0 < ttl <= FAILURE_WINDOW


async def test_five_failures_from_an_address_refuse_it_for_a_while(
    app: Starlette, office: Office, aredis: Redis
) -> None:
    await make_account(aredis, "clerk")
    async with _client(app, "10.0.0.3") as http:
        for n in range(MAX_FAILURES):
            body = {"username": f"guess{n}", "password": "some password"}
            assert (await http.post("/api/v1/session", json=body)).status_code == 401
        body = {"username": "clerk", "password": PASSWORD}
        assert (await http.post("/api/v1/session", json=body)).status_code == 429
    async with _client(app, "10.0.0.4") as http:
        assert (await http.post("/api/v1/session", json=body)).status_code == 200


async def test_nobody_can_lock_out_an_address_by_signing_in_as_it(
    app: Starlette, office: Office, aredis: Redis
) -> None:
    await make_account(aredis, "clerk")
    async with _client(app, "10.0.0.5") as attacker:
        for _ in range(MAX_FAILURES):
            body = {"username": "addr:10.0.0.6", "password": "some password"}
            await attacker.post("/api/v1/session", json=body)
    async with _client(app, "10.0.0.6") as victim:
        assert (await form_sign_in(victim, "clerk")).status_code == 303


async def test_a_success_forgets_the_user_names_failures(
    app: Starlette, office: Office, aredis: Redis
) -> None:
    await make_account(aredis, "clerk")
    for address in ("10.0.1.1", "10.0.1.2"):
        async with _client(app, address) as http:
            for _ in range(MAX_FAILURES - 1):
                assert (await form_sign_in(http, "clerk", "wrong password!")).status_code == 401
            assert (await form_sign_in(http, "clerk")).status_code == 303


# -- the API's sign-in -----------------------------------------------------------------------


async def test_api_sign_in_and_out(client: httpx.AsyncClient, aredis: Redis) -> None:
    await make_account(aredis, "clerk")
    signed = await client.post("/api/v1/session", json={"username": "Clerk ", "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["username"] == "clerk"
    assert body["role"] == "staff"
    assert body["offices"] == ["kokurakita"]
    assert body["second_factor_required"] is False
    assert signed.headers["cache-control"] == "no-store"
    cookie = {"Cookie": signed.headers["set-cookie"].split(";")[0]}
    ticket = (
        await client.post("/api/v1/offices/kokurakita/tickets", json={"service": "certs"})
    ).json()["ticket"]
    by_id = f"/api/v1/offices/kokurakita/tickets/{ticket['id']}"
    assert (await client.get(by_id, headers=cookie)).status_code == 200

    no_token = await client.delete("/api/v1/session", headers=cookie)
    assert no_token.status_code == 403
    out = await client.delete("/api/v1/session", headers=cookie | {"X-CSRF-Token": body["csrf"]})
    assert out.status_code == 200
    assert out.json() == {"signed_out": True}
    assert (await client.get(by_id, headers=cookie)).status_code == 401
    assert (await client.delete("/api/v1/session", headers=cookie)).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"username": "clerk", "password": "not it at all"}, 401, "not right"),
        ({"username": "clerk"}, 422, '"password" is required'),
        ({"username": "clerk", "password": 7}, 422, '"password" must be a string'),
        ({"username": "clerk", "password": PASSWORD, "remember": True}, 422, "unknown field"),
        ({"username": "x" * 5000, "password": PASSWORD}, 401, "not right"),
    ],
)
async def test_api_sign_in_refuses_bad_input_clearly(
    client: httpx.AsyncClient, aredis: Redis, body: dict[str, object], status: int, says: str
) -> None:
    await make_account(aredis, "clerk")
    response = await client.post("/api/v1/session", json=body)
    assert response.status_code == status
    assert says in response.json()["error"]["message"]
    assert "set-cookie" not in response.headers


async def test_api_sign_in_needs_json(client: httpx.AsyncClient) -> None:
    form = await client.post("/api/v1/session", data={"username": "clerk", "password": PASSWORD})
    assert form.status_code == 415


# -- the second factor -----------------------------------------------------------------------


async def _enrolled(aredis: Redis, username: str = "clerk") -> pyotp.TOTP:
    await make_account(aredis, username)
    uri = await AccountStore(aredis).enroll_totp(username)
    return pyotp.parse_uri(uri)  # type: ignore[return-value]


async def test_sign_in_with_an_authenticator_asks_for_the_code(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    totp = await _enrolled(aredis)
    step_one = await form_sign_in(browser, "clerk", next_path="/staff/totp")
    assert step_one.status_code == 200
    assert "Authenticator code" in step_one.text
    assert COOKIE not in browser.cookies
    pending = hidden(step_one, "pending")
    csrf = hidden(step_one, "csrf")

    wrong = await browser.post(
        "/staff/signin/code", data={"csrf": csrf, "pending": pending, "code": "000000"}
    )
    assert wrong.status_code == 401
    assert "That code is not right" in wrong.text
    code = totp.at(app.state.clock())
    right = await browser.post(
        "/staff/signin/code", data={"csrf": csrf, "pending": pending, "code": code}
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/staff/totp"
    assert (await browser.get("/staff/")).status_code == 200

    # The same code cannot sign in twice, and the pending sign-in is used up.
    await sign_out(browser)
    again = await browser.post(
        "/staff/signin/code", data={"csrf": csrf, "pending": pending, "code": code}
    )
    assert again.status_code == 400
    step_one = await form_sign_in(browser, "clerk")
    replay = await browser.post(
        "/staff/signin/code",
        data={"csrf": csrf, "pending": hidden(step_one, "pending"), "code": code},
    )
    assert replay.status_code == 401
    advance(app, 30)
    fresh = await browser.post(
        "/staff/signin/code",
        data={
            "csrf": csrf,
            "pending": hidden(step_one, "pending"),
            "code": totp.at(app.state.clock()),
        },
    )
    assert fresh.status_code == 303


async def test_a_pending_code_step_expires(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    totp = await _enrolled(aredis)
    step_one = await form_sign_in(browser, "clerk")
    advance(app, 301)
    late = await browser.post(
        "/staff/signin/code",
        data={
            "csrf": hidden(step_one, "csrf"),
            "pending": hidden(step_one, "pending"),
            "code": totp.at(app.state.clock()),
        },
    )
    assert late.status_code == 400
    assert "expired" in late.text


async def test_wrong_codes_count_towards_throttling(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    totp = await _enrolled(aredis)
    step_one = await form_sign_in(browser, "clerk")
    data = {"csrf": hidden(step_one, "csrf"), "pending": hidden(step_one, "pending")}
    for n in range(MAX_FAILURES):
        wrong = await browser.post("/staff/signin/code", data=data | {"code": f"00000{n}"})
        assert wrong.status_code == 401
    right = await browser.post(
        "/staff/signin/code", data=data | {"code": totp.at(app.state.clock())}
    )
    assert right.status_code == 429
    assert "Too many failed attempts" in right.text


async def test_api_sign_in_with_an_authenticator(
    client: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    totp = await _enrolled(aredis)
    body = {"username": "clerk", "password": PASSWORD}
    without = await client.post("/api/v1/session", json=body)
    assert without.status_code == 401
    assert without.json()["error"]["code"] == "code_required"
    wrong = await client.post("/api/v1/session", json=body | {"code": "123456"})
    assert wrong.status_code == 401
    right = await client.post("/api/v1/session", json=body | {"code": totp.at(app.state.clock())})
    assert right.status_code == 200


async def test_a_required_authenticator_comes_before_anything_else(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    await make_account(aredis, "clerk", totp_required=True)
    signed = await form_sign_in(browser, "clerk", next_path="/staff/console")
    assert signed.headers["location"] == "/staff/totp"
    home = await browser.get("/staff/")
    assert home.status_code == 303
    assert home.headers["location"] == "/staff/totp"
    setup = await browser.get("/staff/totp")
    assert setup.status_code == 200
    assert "An administrator requires two-step sign-in" in setup.text
    assert setup.headers["cache-control"] == "no-store"
    csrf = hidden(setup, "csrf")
    api = await browser.post(
        "/api/v1/offices/kokurakita/counters/c1/open",
        json={"services": ["certs"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "second_factor_required"

    secret = re.search(r'id="secret" class="secret">([A-Z2-7 ]+)<', setup.text)
    assert secret, setup.text
    totp = pyotp.TOTP(secret.group(1).replace(" ", ""))
    assert 'src="data:image/svg+xml' in setup.text
    wrong = await browser.post("/staff/totp", data={"csrf": csrf, "code": "000000"})
    assert wrong.status_code == 400
    assert "That code is not right" in wrong.text
    done = await browser.post(
        "/staff/totp", data={"csrf": csrf, "code": totp.at(app.state.clock())}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/staff/totp?done=1"
    assert "Done." in (await browser.get("/staff/totp?done=1")).text
    assert (await browser.get("/staff/")).status_code == 200

    await sign_out(browser)
    advance(app, 30)
    step_one = await form_sign_in(browser, "clerk")
    assert "Authenticator code" in step_one.text


async def test_a_new_authenticator_replaces_the_old_one_only_once_confirmed(
    browser: httpx.AsyncClient, app: Starlette, aredis: Redis
) -> None:
    old = await _enrolled(aredis)
    accounts = AccountStore(aredis)
    session = await store(app).create("clerk", now=app.state.clock())
    browser.cookies.set(COOKIE, session.id, domain="testserver.local")
    page = await browser.get("/staff/totp")
    assert "Two-step sign-in is on" in page.text
    started = await browser.post("/staff/totp/new", data={"csrf": session.csrf})
    assert started.headers["location"] == "/staff/totp"
    setup = await browser.get("/staff/totp")
    secret = re.search(r'id="secret" class="secret">([A-Z2-7 ]+)<', setup.text)
    assert secret
    new = pyotp.TOTP(secret.group(1).replace(" ", ""))
    now = app.state.clock()
    assert await accounts.check_code("clerk", old.at(now), now=now)  # still the old one
    advance(app, 30)
    now = app.state.clock()
    confirmed = await browser.post("/staff/totp", data={"csrf": session.csrf, "code": new.at(now)})
    assert confirmed.headers["location"] == "/staff/totp?done=1"
    advance(app, 30)
    now = app.state.clock()
    assert not await accounts.check_code("clerk", old.at(now), now=now)
    assert await accounts.check_code("clerk", new.at(now), now=now)


# -- what a web process remembers about sessions ---------------------------------------------


@pytest.fixture
async def other_process(settings: Settings) -> AsyncIterator[Starlette]:
    """A second web app on the same Redis, as another web process would be; it may
    remember a session for a minute, so that only an announcement makes it forget."""
    other = create_app(dataclasses.replace(settings, session_cache_seconds=60), clock=lambda: T0)
    async with other.router.lifespan_context(other):
        deadline = time.monotonic() + 5
        while not other.state.staff_cache.listening:
            assert time.monotonic() < deadline, "the staff-changes subscription never came up"
            await asyncio.sleep(0.01)
        yield other


async def _status_at(app: Starlette, session_id: str) -> int:
    async with _client(app) as http:
        http.cookies.set(COOKIE, session_id)
        return (await http.get("/staff/")).status_code


async def _refused_soon(app: Starlette, session_id: str, seconds: float) -> float:
    """How long until ``app`` refuses the session (fails after ``seconds``)."""
    started = time.monotonic()
    while await _status_at(app, session_id) != 303:
        assert time.monotonic() - started < seconds, "the ended session is still accepted"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def _forgotten_soon(app: Starlette, session_id: str) -> None:
    deadline = time.monotonic() + 2
    while app.state.staff_cache.get(session_id, T0) is not None:
        assert time.monotonic() < deadline, "the change was never heard"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("ending", ["sign-out", "disabled", "offices changed"])
async def test_another_web_process_forgets_a_changed_session_at_once(
    app: Starlette, other_process: Starlette, aredis: Redis, office: Office, ending: str
) -> None:
    await make_account(aredis, "clerk")
    session = await store(app).create("clerk", now=T0)
    assert await _status_at(other_process, session.id) == 200
    assert other_process.state.staff_cache.get(session.id, T0) is not None  # remembered
    accounts: AccountStore = app.state.accounts
    account = await accounts.get("clerk")
    if ending == "sign-out":
        await store(app).end(session.id)
    elif ending == "disabled":
        await accounts.update(dataclasses.replace(account, disabled=True))
    else:
        await accounts.update(dataclasses.replace(account, offices=("moji",)))
    # It would keep the session for a minute: only the announcement makes it forget.
    await _forgotten_soon(other_process, session.id)
    expected = 200 if ending == "offices changed" else 303
    assert await _status_at(other_process, session.id) == expected
    if ending == "offices changed":
        staff = other_process.state.staff_cache.get(session.id, T0)
        assert staff is not None
        assert staff.account.offices == ("moji",)


async def test_a_change_nobody_announced_is_seen_within_the_cache_seconds(
    settings: Settings, aredis: Redis, office: Office
) -> None:
    quick = create_app(dataclasses.replace(settings, session_cache_seconds=0.2), clock=lambda: T0)
    async with quick.router.lifespan_context(quick):
        await make_account(aredis, "clerk")
        session = await store(quick).create("clerk", now=T0)
        assert await _status_at(quick, session.id) == 200
        await aredis.delete(keys.staff_account("clerk"))  # by hand, unannounced
        assert await _refused_soon(quick, session.id, seconds=2) >= 0


async def test_a_process_lets_go_of_sessions_it_remembered_once_out_of_date(
    other_process: Starlette, aredis: Redis, office: Office
) -> None:
    await make_account(aredis, "clerk")
    session = await store(other_process).create("clerk", now=T0)
    assert await _status_at(other_process, session.id) == 200
    cache = other_process.state.staff_cache
    assert cache.get(session.id, T0) is not None
    assert cache.get(session.id, T0 + 61) is None  # a minute on: out of date
    assert cache.get(session.id, T0) is None  # and forgotten, not merely hidden
