"""Staff accounts: roles, the services each may serve, argon2 password hashes, TOTP.

Accounts live in Redis under ``mg:staff:<username>``. Passwords are hashed with
argon2id (argon2-cffi); a password must be long enough and not a common one. A
TOTP second factor (pyotp) is optional per account, and an admin can require it.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # ships no types

from ..queue import keys
from ..queue.codec import fields, mapping, texts
from ..queue.exceptions import Conflict, InvalidInput, NotFound

USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
MIN_PASSWORD = 12
#: Least zxcvbn score (0-4) a password must reach: 3 is "safely unguessable".
MIN_STRENGTH = 3
_hasher = PasswordHasher()


class Role(enum.StrEnum):
    STAFF = "staff"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"staff": 1, "supervisor": 2, "admin": 3}[self.value]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


@dataclass(frozen=True)
class StaffAccount:
    username: str
    name: str
    role: Role
    #: Offices this person works at; admins reach every office.
    offices: tuple[str, ...] = ()
    #: Services this person may serve at a counter or in a consultation.
    services: tuple[str, ...] = ()
    disabled: bool = False
    totp_required: bool = False
    has_totp: bool = False

    def __post_init__(self) -> None:
        if not USERNAME.fullmatch(self.username):
            raise InvalidInput(
                f'user name "{self.username[:40]}" must be 2-32 lowercase letters, digits or ._- '
                "and start with a letter"
            )
        if not self.name.strip() or len(self.name) > 60:
            raise InvalidInput("a display name of 1-60 characters is required")

    def works_at(self, office: str) -> bool:
        return self.role is Role.ADMIN or office in self.offices


def check_password(password: str, username: str = "") -> None:
    """Refuse a password that is too short, or common or guessable (zxcvbn's dictionaries)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 128:
        raise InvalidInput("a password may have at most 128 characters")
    verdict = zxcvbn(password, user_inputs=[username, "madoguchi", "kitakyushu"])
    if verdict["score"] < MIN_STRENGTH:
        hint = verdict["feedback"]["warning"] or "it is too easy to guess"
        raise InvalidInput(f"choose a stronger password: {hint.rstrip('.').lower()}")


class AccountStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, account: StaffAccount, password: str) -> StaffAccount:
        check_password(password, account.username)
        key = keys.staff_account(account.username)
        values = _fields(account) | {
            "password": _hasher.hash(password),
            "created_at": repr(time.time()),
        }
        # HSETNX on the username claims it atomically: two admins cannot create the same user.
        if not await self.redis.hsetnx(key, "username", account.username):
            raise Conflict(f'user "{account.username}" already exists')
        await self.redis.hset(key, mapping=fields(values))
        await self.redis.sadd(keys.staff_accounts(), account.username)
        return account

    async def get(self, username: str) -> StaffAccount:
        found = USERNAME.fullmatch(username)
        raw = mapping(await self.redis.hgetall(keys.staff_account(username))) if found else {}
        if not raw:
            raise NotFound(f'user "{username[:40]}" does not exist')
        return _account(raw)

    async def all(self) -> list[StaffAccount]:
        names = sorted(texts(await self.redis.smembers(keys.staff_accounts())))
        return [await self.get(name) for name in names]

    async def update(self, account: StaffAccount) -> StaffAccount:
        await self.get(account.username)
        key = keys.staff_account(account.username)
        await self.redis.hset(key, mapping=fields(_fields(account)))
        return account

    async def set_password(self, username: str, password: str) -> None:
        await self.get(username)
        check_password(password, username)
        await self.redis.hset(keys.staff_account(username), "password", _hasher.hash(password))

    async def verify(self, username: str, password: str, code: str | None) -> StaffAccount | None:
        """The account when the password (and the TOTP code, if it has one) is right."""
        if not USERNAME.fullmatch(username):
            _hasher.hash(password)  # take as long as a real check: no user enumeration by timing
            return None
        raw = mapping(await self.redis.hgetall(keys.staff_account(username)))
        if not raw:
            _hasher.hash(password)
            return None
        try:
            _hasher.verify(raw["password"], password)
        except (VerificationError, InvalidHashError):
            return None
        account = _account(raw)
        if account.disabled:
            return None
        secret = raw.get("totp", "")
        if secret and not pyotp.TOTP(secret).verify(code or "", valid_window=1):
            return None
        if _hasher.check_needs_rehash(raw["password"]):
            await self.redis.hset(keys.staff_account(username), "password", _hasher.hash(password))
        return account

    async def needs_code(self, username: str) -> bool:
        return bool(await self.redis.hget(keys.staff_account(username), "totp"))

    async def enroll_totp(self, username: str) -> str:
        """Give the account a new TOTP secret and return its provisioning URI."""
        account = await self.get(username)
        secret = pyotp.random_base32()
        await self.redis.hset(keys.staff_account(username), "totp", secret)
        return pyotp.TOTP(secret).provisioning_uri(name=account.username, issuer_name="Madoguchi")


def _fields(account: StaffAccount) -> dict[str, str]:
    return {
        "username": account.username,
        "name": account.name,
        "role": account.role.value,
        "offices": ",".join(account.offices),
        "services": ",".join(account.services),
        "disabled": "1" if account.disabled else "0",
        "totp_required": "1" if account.totp_required else "0",
    }


def _account(raw: dict[str, str]) -> StaffAccount:
    return StaffAccount(
        username=raw["username"],
        name=raw["name"],
        role=Role(raw["role"]),
        offices=tuple(o for o in raw.get("offices", "").split(",") if o),
        services=tuple(s for s in raw.get("services", "").split(",") if s),
        disabled=raw.get("disabled") == "1",
        totp_required=raw.get("totp_required") == "1",
        has_totp=bool(raw.get("totp")),
    )
