"""Staff accounts: passwords, argon2 hashes, authenticator codes, and the demo's accounts."""

from __future__ import annotations

import pyotp
import pytest
from redis.asyncio import Redis

from madoguchi.demo import CITY, DEMO_PASSWORD, LOGINS, seed_accounts
from madoguchi.queue import keys
from madoguchi.queue.exceptions import Conflict, InvalidInput, NotFound
from madoguchi.web.accounts import (
    AccountStore,
    Role,
    StaffAccount,
    check_password,
    password_hasher,
)
from madoguchi.web.sessions import SessionStore

from conftest import PASSWORD, T0

CHEAP = password_hasher(1024, 1)


@pytest.fixture
def accounts(aredis: Redis) -> AccountStore:
    return AccountStore(aredis, hasher=CHEAP)


@pytest.fixture
def sessions(aredis: Redis) -> SessionStore:
    return SessionStore(aredis, idle_seconds=1800, absolute_seconds=43_200)


def clerk(**changes: object) -> StaffAccount:
    fields: dict[str, object] = {
        "username": "clerk",
        "name": "伊藤 さくら",
        "role": Role.STAFF,
        "offices": ("kokurakita",),
        "services": ("certs",),
    }
    return StaffAccount(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("short-1A!", "at least 12 characters"),
        ("password1234", "stronger password"),
        ("aaaaaaaaaaaaaaaa", "stronger password"),
        ("qwertyuiop123", "stronger password"),
        ("madoguchi-2026", "stronger password"),
        ("clerkclerk12", "stronger password"),
        ("x" * 129, "at most 128"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        check_password(password, "clerk")


def test_a_strong_password_passes() -> None:
    check_password(PASSWORD, "clerk")
    check_password("correct horse battery staple", "clerk")


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"username": "Clerk"}, "lowercase"),
        ({"username": "1clerk"}, "start with a letter"),
        ({"username": "c"}, "2-32"),
        ({"username": "clerk:sessions"}, "lowercase"),
        ({"name": "  "}, "display name"),
        ({"name": "x" * 61}, "display name"),
        ({"offices": ("Kokura Kita",)}, 'office id "Kokura Kita"'),
        ({"services": ("certs,moving",)}, 'service id "certs,moving"'),
    ],
)
def test_an_account_validates_itself(changes: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        clerk(**changes)


async def test_create_get_list_and_refuse_a_second_of_the_same_name(
    accounts: AccountStore,
) -> None:
    await accounts.create(clerk(), PASSWORD)
    await accounts.create(clerk(username="ito", role=Role.SUPERVISOR), PASSWORD)
    assert await accounts.get("clerk") == clerk()
    assert [a.username for a in await accounts.all()] == ["clerk", "ito"]
    with pytest.raises(Conflict, match='user "clerk" already exists'):
        await accounts.create(clerk(name="Someone else"), PASSWORD)
    with pytest.raises(NotFound, match='user "nobody" does not exist'):
        await accounts.get("nobody")
    with pytest.raises(NotFound):
        await accounts.get("../../etc")


async def test_the_password_is_stored_only_as_an_argon2id_hash(
    accounts: AccountStore, aredis: Redis
) -> None:
    await accounts.create(clerk(), PASSWORD)
    stored = await aredis.hget(keys.staff_account("clerk"), "password")
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in str(await aredis.hgetall(keys.staff_account("clerk")))


async def test_authenticate(accounts: AccountStore) -> None:
    await accounts.create(clerk(), PASSWORD)
    assert await accounts.authenticate("clerk", PASSWORD) == clerk()
    assert await accounts.authenticate("clerk", PASSWORD.lower()) is None
    assert await accounts.authenticate("nobody", PASSWORD) is None
    assert await accounts.authenticate("Not A Name", PASSWORD) is None
    assert await accounts.authenticate("clerk", PASSWORD + "x" * 200) is None
    await accounts.update(clerk(disabled=True))
    assert await accounts.authenticate("clerk", PASSWORD) is None


async def test_a_hash_made_with_other_parameters_is_redone_at_sign_in(
    accounts: AccountStore, aredis: Redis
) -> None:
    await accounts.create(clerk(), PASSWORD)
    stronger = AccountStore(aredis, hasher=password_hasher(2048, 2))
    assert await stronger.authenticate("clerk", PASSWORD) is not None
    stored = await aredis.hget(keys.staff_account("clerk"), "password")
    assert "m=2048,t=2" in stored
    assert await accounts.authenticate("clerk", PASSWORD) is not None


async def test_disabling_an_account_or_a_new_password_ends_its_sessions(
    accounts: AccountStore, sessions: SessionStore
) -> None:
    await accounts.create(clerk(), PASSWORD)
    await accounts.create(clerk(username="ito"), PASSWORD)
    first = await sessions.create("clerk", now=T0)
    other = await sessions.create("ito", now=T0)
    await accounts.update(clerk(name="伊藤 さくら (2)"))
    assert await sessions.get(first.id, now=T0) is not None
    await accounts.update(clerk(disabled=True))
    assert await sessions.get(first.id, now=T0) is None
    await accounts.set_password("ito", "a-brand-new-Counter-pass")
    assert await sessions.get(other.id, now=T0) is None
    assert await accounts.authenticate("ito", "a-brand-new-Counter-pass") is not None
    with pytest.raises(InvalidInput, match="at least 12"):
        await accounts.set_password("ito", "short")
    with pytest.raises(NotFound):
        await accounts.set_password("nobody", "a-brand-new-Counter-pass")


# -- authenticator codes ------------------------------------------------------------------


async def test_a_pending_secret_counts_only_once_confirmed(accounts: AccountStore) -> None:
    await accounts.create(clerk(), PASSWORD)
    secret = await accounts.pending_totp("clerk")
    assert await accounts.pending_totp("clerk") == secret  # reloading the page keeps it
    assert not (await accounts.get("clerk")).has_totp
    code = pyotp.TOTP(secret).at(T0)
    assert not await accounts.check_code("clerk", code, now=T0)
    assert not await accounts.confirm_totp("clerk", "000000", now=T0)
    assert await accounts.confirm_totp("clerk", code, now=T0)
    assert (await accounts.get("clerk")).has_totp
    assert not await accounts.has_pending_totp("clerk")
    # The code that confirmed it has been used.
    assert not await accounts.check_code("clerk", code, now=T0)
    assert await accounts.check_code("clerk", pyotp.TOTP(secret).at(T0 + 30), now=T0 + 30)
    fresh = await accounts.pending_totp("clerk", fresh=True)
    assert fresh != secret


async def test_codes_work_once_within_a_step_of_clock_drift(accounts: AccountStore) -> None:
    await accounts.create(clerk(), PASSWORD)
    totp = pyotp.parse_uri(await accounts.enroll_totp("clerk"))
    now = T0 + 600
    assert not await accounts.check_code("clerk", totp.at(now - 60), now=now)  # two steps old
    assert not await accounts.check_code("clerk", totp.at(now + 60), now=now)
    assert not await accounts.check_code("clerk", "12345", now=now)
    assert not await accounts.check_code("clerk", "abcdef", now=now)
    assert await accounts.check_code("clerk", totp.at(now - 30), now=now)  # the phone is slow
    assert not await accounts.check_code("clerk", totp.at(now - 30), now=now)  # once only
    assert await accounts.check_code("clerk", totp.at(now), now=now)
    # An older code than the last one used is refused, even inside the window.
    assert await accounts.check_code("clerk", totp.at(now + 30), now=now)
    assert not await accounts.check_code("clerk", totp.at(now), now=now + 1)


async def test_verify_checks_both_factors(accounts: AccountStore) -> None:
    await accounts.create(clerk(), PASSWORD)
    assert await accounts.verify("clerk", PASSWORD, None, now=T0) is not None
    totp = pyotp.parse_uri(await accounts.enroll_totp("clerk"))
    assert await accounts.needs_code("clerk")
    assert not await accounts.needs_code("nobody")
    assert await accounts.verify("clerk", PASSWORD, None, now=T0) is None
    assert await accounts.verify("clerk", "wrong password", totp.at(T0), now=T0) is None
    assert await accounts.verify("clerk", PASSWORD, totp.at(T0), now=T0) is not None


async def test_removing_the_authenticator_keeps_the_requirement(
    accounts: AccountStore,
) -> None:
    await accounts.create(clerk(totp_required=True), PASSWORD)
    assert (await accounts.get("clerk")).must_enroll
    await accounts.enroll_totp("clerk")
    assert not (await accounts.get("clerk")).must_enroll
    await accounts.remove_totp("clerk")
    account = await accounts.get("clerk")
    assert not account.has_totp
    assert account.must_enroll
    assert not await accounts.needs_code("clerk")


# -- the demo's accounts --------------------------------------------------------------------


async def test_the_demo_accounts_sign_in_with_the_printed_password(
    accounts: AccountStore,
) -> None:
    added = await seed_accounts(accounts)
    assert [a.username for a in added] == [login.account.username for login in LOGINS]
    roles = {a.username: a.role for a in added}
    assert roles["admin"] is Role.ADMIN
    assert sorted(r.value for r in roles.values()) == ["admin", "staff", "staff", "supervisor"]
    kokurakita = next(demo for demo in CITY if demo.office.id == "kokurakita")
    offered = {service.id for service in kokurakita.services}
    for login in LOGINS:
        account = await accounts.authenticate(login.account.username, DEMO_PASSWORD)
        assert account is not None, login.account.username
        assert set(account.services) <= offered
        assert account.role is Role.ADMIN or account.offices == ("kokurakita",)
        assert login.opens.startswith("/")
    clerks = [a for a in added if a.role is Role.STAFF]
    assert len(clerks) == 2
    assert all(c.services for c in clerks)


async def test_seeding_the_demo_accounts_again_changes_nothing(accounts: AccountStore) -> None:
    await seed_accounts(accounts)
    await accounts.set_password("ito", "ito-chose-her-own-pass")
    assert await seed_accounts(accounts) == []
    assert await accounts.authenticate("ito", "ito-chose-her-own-pass") is not None
