"""Staff accounts: roles, the services each may serve, argon2 password hashes, TOTP.

Accounts live in Redis under ``mg:staff:<username>``. Passwords are hashed with
argon2id (argon2-cffi); a password must be long enough and not a common one. A
TOTP second factor (pyotp) is optional per account, and an admin can require it:
a new secret waits as ``totp_pending`` until the person confirms it with a code, and
each code is accepted once (the last time step used is kept).
"""

from __future__ import annotations

import enum
import re
import secrets
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # ships no types

from ..queue import keys
from ..queue.codec import fields, mapping, text, texts
from ..queue.exceptions import Conflict, InvalidInput, NotFound
from .sessions import Forget, announce, end_sessions, forget_nothing

USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
MIN_PASSWORD = 12
MAX_PASSWORD = 128
#: Least zxcvbn score (0-4) a password must reach: 3 is "safely unguessable".
MIN_STRENGTH = 3
#: The name authenticator apps show for our codes.
ISSUER = "Madoguchi"
CODE = re.compile(r"[0-9]{6}")

# Record a code's time step only if it is later than the last one used: each code
# works once, even when two requests race with it.
_USE_STEP = """
local last = tonumber(redis.call('HGET', KEYS[1], 'totp_step') or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], 'totp_step', ARGV[1])
return 1
"""


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
        for kind, ids in (("office", self.offices), ("service", self.services)):
            for value in ids:
                if not keys.SLUG.fullmatch(value):
                    raise InvalidInput(
                        f'{kind} id "{value[:40]}" must be lowercase letters, digits and hyphens'
                    )

    def serves(self, service: str) -> bool:
        """Whether this person may serve ``service`` (admins may serve every service)."""
        return self.role is Role.ADMIN or service in self.services

    def works_at(self, office: str) -> bool:
        return self.role is Role.ADMIN or office in self.offices

    @property
    def must_enroll(self) -> bool:
        """An admin requires a second factor that this person has not set up yet."""
        return self.totp_required and not self.has_totp


def check_password(password: str, username: str = "") -> None:
    """Refuse a password that is too short, or common or guessable (zxcvbn's dictionaries)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"a password may have at most {MAX_PASSWORD} characters")
    verdict = zxcvbn(password, user_inputs=[username, "madoguchi", "kitakyushu"])
    if verdict["score"] < MIN_STRENGTH:
        hint = verdict["feedback"]["warning"] or "it is too easy to guess"
        raise InvalidInput(f"choose a stronger password: {hint.rstrip('.').lower()}")


def password_hasher(memory_kib: int = 65_536, time_cost: int = 3) -> PasswordHasher:
    """The argon2id hasher; a hash made with other parameters is redone at the next sign-in."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=4)


def provisioning_uri(secret: str, username: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (from a QR code) to add the account."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def _matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step (this one, or one either side for clock drift) whose code ``code`` is."""
    if not CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    for candidate in (step, step - 1, step + 1):
        if secrets.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


class AccountStore:
    def __init__(
        self,
        redis: Redis,
        *,
        hasher: PasswordHasher | None = None,
        forget: Forget = forget_nothing,
    ) -> None:
        self.redis = redis
        self.hasher = hasher or password_hasher()
        self.forget = forget
        self._use_step = redis.register_script(_USE_STEP)

    async def _changed(self, username: str) -> None:
        """The account changed: no web process may go on with what it remembered of it."""
        self.forget(username)
        await announce(self.redis, username)

    async def create(self, account: StaffAccount, password: str) -> StaffAccount:
        check_password(password, account.username)
        key = keys.staff_account(account.username)
        values = _fields(account) | {
            "password": self.hasher.hash(password),
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
        """Save the account's name, role, offices, services and flags.

        Disabling an account ends its sessions at once.
        """
        await self.get(account.username)
        key = keys.staff_account(account.username)
        await self.redis.hset(key, mapping=fields(_fields(account)))
        self.forget(account.username)
        if account.disabled:
            await end_sessions(self.redis, account.username)
        else:
            await announce(self.redis, account.username)
        return account

    async def set_password(self, username: str, password: str) -> None:
        """Give the account a new password; every session signed in with the old one ends."""
        await self.get(username)
        check_password(password, username)
        await self.redis.hset(keys.staff_account(username), "password", self.hasher.hash(password))
        self.forget(username)
        await end_sessions(self.redis, username)

    async def authenticate(self, username: str, password: str) -> StaffAccount | None:
        """The account, if it is enabled and ``password`` is its password (the first factor)."""
        key = keys.staff_account(username)
        valid = USERNAME.fullmatch(username) and len(password) <= MAX_PASSWORD
        raw = mapping(await self.redis.hgetall(key)) if valid else {}
        if not raw:
            # As slow as a real check, so that timing does not tell who has an account.
            self.hasher.hash(password[:MAX_PASSWORD])
            return None
        try:
            self.hasher.verify(raw["password"], password)
        except (VerificationError, InvalidHashError):
            return None
        account = _account(raw)
        if account.disabled:
            return None
        if self.hasher.check_needs_rehash(raw["password"]):
            await self.redis.hset(key, "password", self.hasher.hash(password))
        return account

    async def check_code(self, username: str, code: str, *, now: float) -> bool:
        """Whether ``code`` is the account's current authenticator code, not used before."""
        secret = await self.redis.hget(keys.staff_account(username), "totp")
        if not secret:
            return False
        step = _matching_step(text(secret), code, now)
        return step is not None and await self._spend(username, step)

    async def _spend(self, username: str, step: int) -> bool:
        return bool(await self._use_step(keys=[keys.staff_account(username)], args=[step]))

    async def verify(
        self, username: str, password: str, code: str | None, *, now: float | None = None
    ) -> StaffAccount | None:
        """The account when the password (and the TOTP code, if it has one) is right."""
        account = await self.authenticate(username, password)
        if account is None:
            return None
        if account.has_totp and not await self.check_code(
            username, code or "", now=time.time() if now is None else now
        ):
            return None
        return account

    async def needs_code(self, username: str) -> bool:
        return USERNAME.fullmatch(username) is not None and bool(
            await self.redis.hget(keys.staff_account(username), "totp")
        )

    # -- enrolling an authenticator ----------------------------------------------------

    async def pending_totp(self, username: str, *, fresh: bool = False) -> str:
        """The secret waiting for confirmation, made now if there is none (or ``fresh``)."""
        await self.get(username)
        key = keys.staff_account(username)
        if not fresh:
            pending = await self.redis.hget(key, "totp_pending")
            if pending:
                return text(pending)
        secret = pyotp.random_base32()
        await self.redis.hset(key, "totp_pending", secret)
        return secret

    async def has_pending_totp(self, username: str) -> bool:
        return bool(await self.redis.hget(keys.staff_account(username), "totp_pending"))

    async def confirm_totp(self, username: str, code: str, *, now: float) -> bool:
        """Make the pending secret the account's, if ``code`` is its current code."""
        key = keys.staff_account(username)
        pending = await self.redis.hget(key, "totp_pending")
        if not pending:
            return False
        step = _matching_step(text(pending), code, now)
        if step is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"totp": text(pending), "totp_step": str(step)})
            pipe.hdel(key, "totp_pending")
            await pipe.execute()
        await self._changed(username)
        return True

    async def enroll_totp(self, username: str) -> str:
        """Give the account a new TOTP secret at once and return its provisioning URI.

        For set-up by an operator; people enrol through ``/staff/totp``, which confirms
        the secret with a code before it counts.
        """
        account = await self.get(username)
        secret = pyotp.random_base32()
        key = keys.staff_account(username)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "totp", secret)
            pipe.hdel(key, "totp_pending", "totp_step")
            await pipe.execute()
        await self._changed(username)
        return provisioning_uri(secret, account.username)

    async def remove_totp(self, username: str) -> None:
        """Forget the account's authenticator (the person lost their phone, say)."""
        await self.get(username)
        await self.redis.hdel(keys.staff_account(username), "totp", "totp_pending", "totp_step")
        await self._changed(username)


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
