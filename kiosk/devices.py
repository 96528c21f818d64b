"""Kiosk devices: their registration, one-time enrollment codes and device tokens.

An administrator registers a kiosk (the branch and place it stands in, the ward office
it belongs to, what it offers, its cameras and printer) and issues it a one-time code
of eight digits, good for 15 minutes. The kiosk enters the code once, on the number
pad of ``/kiosk/enroll``, and receives a device token: 256 random bits held only in
its cookie (``HttpOnly``, ``SameSite=Strict``); Redis keeps the SHA-256 of the token.
Issuing a new code or enrolling again replaces what came before; revoking deletes
the token's hash, so the kiosk is refused from its next request on, on every web
process. Codes are judged by the app's clock (``now``), so tests can drive them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from ..queue import keys
from ..queue.codec import fields, mapping, text, texts
from ..web.exceptions import Forbidden, HTTPError
from ..web.security import TokenCookie

#: How long an enrollment code is good for, in seconds.
CODE_SECONDS = 15 * 60
#: Digits in an enrollment code (the kiosk has only a number pad).
CODE_DIGITS = 8
#: How long Redis keeps a code, and a used one's marker: past its expiry, so that a late
#: kiosk is told "expired" or "already used" rather than "wrong".
CODE_KEPT_SECONDS = 24 * 3600
#: Wrong codes an address may enter within :data:`GUESS_WINDOW` seconds (a real-time
#: window, like the staff sign-in's) before enrollment there is refused for a while.
MAX_GUESSES = 10
GUESS_WINDOW = 15 * 60
#: The device cookie: ``__Host-`` and ``Secure``, except on plain ``http://localhost``.
KIOSK_COOKIE = "__Host-madoguchi-kiosk"
PLAIN_KIOSK_COOKIE = "madoguchi-kiosk"
#: How long the browser keeps the device cookie (Chromium caps cookies at 400 days);
#: every health report sets it again, so a kiosk in use never loses it.
COOKIE_SECONDS = 400 * 24 * 3600
#: Longest device token worth looking up.
MAX_TOKEN = 100

PrinterKind = Literal["browser", "escpos"]
PRINTER_KINDS: tuple[PrinterKind, ...] = ("browser", "escpos")
PAPER_WIDTHS: tuple[Literal[58, 80], ...] = (58, 80)
CAMERAS = ("face", "document")


@dataclass(frozen=True)
class Printer:
    """The kiosk's receipt printer: the browser's (silent kiosk printing) or an ESC/POS one."""

    kind: PrinterKind
    host: str = ""
    port: int = 9100
    width_mm: Literal[58, 80] = 80


@dataclass(frozen=True)
class Kiosk:
    id: str
    #: The ward office it belongs to (the queue's office slug).
    office: str
    #: Shown on screen, e.g. "小倉北 — 足原市民センター".
    branch: str
    #: Where in the building it stands.
    place: str
    #: In-person services it issues tickets for.
    services: tuple[str, ...]
    #: Remote services (consultation topics).
    topics: tuple[str, ...]
    #: Its cameras, e.g. ``("face", "document")``.
    cameras: tuple[str, ...]
    printer: Printer = field(default_factory=lambda: Printer("browser"))
    revoked: bool = False


@dataclass(frozen=True)
class Enrollment:
    """Where a kiosk stands with its device token (for the fleet page)."""

    enrolled: bool
    enrolled_at: float | None
    code_expires: float | None


class KioskUnenrolled(HTTPError):
    """The request carries no valid device token: pages send the kiosk to enroll."""

    status = 401
    code = "kiosk_unenrolled"


class CodeRefused(HTTPError):
    """An enrollment code that cannot be used; ``reason`` says why."""

    status = 400
    code = "code_refused"

    def __init__(self, reason: Literal["wrong", "expired", "used"], message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownKiosk(HTTPError):
    status = 404
    code = "not_found"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _dump(kiosk: Kiosk) -> dict[str, str]:
    data = asdict(kiosk)
    data.pop("revoked")
    return {"data": json.dumps(data, ensure_ascii=False), "revoked": "1" if kiosk.revoked else "0"}


def _load(raw: dict[str, str]) -> Kiosk:
    data: dict[str, Any] = json.loads(raw["data"])
    printer = Printer(**data.pop("printer"))
    return Kiosk(
        id=data["id"],
        office=data["office"],
        branch=data["branch"],
        place=data["place"],
        services=tuple(data["services"]),
        topics=tuple(data["topics"]),
        cameras=tuple(data["cameras"]),
        printer=printer,
        revoked=raw.get("revoked") == "1",
    )


class KioskStore:
    """Kiosks, their enrollment codes and device tokens, in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def put(self, kiosk: Kiosk) -> None:
        """Register a kiosk or change its registration (its token and code stay)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.kiosk(kiosk.id), mapping=fields(_dump(kiosk)))
            pipe.sadd(keys.kiosks(), kiosk.id)
            await pipe.execute()

    async def get(self, kiosk_id: str) -> Kiosk | None:
        raw = mapping(await self.redis.hgetall(keys.kiosk(kiosk_id)))
        return _load(raw) if "data" in raw else None

    async def require(self, kiosk_id: str) -> Kiosk:
        kiosk = await self.get(kiosk_id)
        if kiosk is None:
            raise UnknownKiosk(f'kiosk "{kiosk_id[:40]}" does not exist')
        return kiosk

    async def all(self) -> list[Kiosk]:
        """Every kiosk, by office then id."""
        ids = sorted(texts(await self.redis.smembers(keys.kiosks())))
        async with self.redis.pipeline(transaction=False) as pipe:
            for kiosk_id in ids:
                pipe.hgetall(keys.kiosk(kiosk_id))
            rows = await pipe.execute()
        found = [_load(mapping(row)) for row in rows if row]
        return sorted(found, key=lambda k: (k.office, k.id))

    async def enrollment(self, kiosk_id: str, now: float) -> Enrollment:
        raw = mapping(await self.redis.hgetall(keys.kiosk(kiosk_id)))
        expires = float(raw["code_expires"]) if raw.get("code_hash") else None
        return Enrollment(
            enrolled=bool(raw.get("token_hash")),
            enrolled_at=float(raw["enrolled_at"]) if raw.get("enrolled_at") else None,
            code_expires=expires if expires is not None and expires > now else None,
        )

    async def issue_code(self, kiosk_id: str, now: float) -> str:
        """A new one-time code for the kiosk, good for :data:`CODE_SECONDS`; the last one ends."""
        await self.require(kiosk_id)
        key = keys.kiosk(kiosk_id)
        while True:
            code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
            value = json.dumps({"kiosk": kiosk_id, "expires": now + CODE_SECONDS})
            if await self.redis.set(
                keys.kiosk_code(digest(code)), value, nx=True, ex=CODE_KEPT_SECONDS
            ):
                break
        old = await self.redis.hget(key, "code_hash")
        async with self.redis.pipeline(transaction=True) as pipe:
            if old:
                pipe.delete(keys.kiosk_code(text(old)))
            pipe.hset(
                key, mapping={"code_hash": digest(code), "code_expires": repr(now + CODE_SECONDS)}
            )
            await pipe.execute()
        return code

    async def enroll(self, code: str, now: float) -> tuple[Kiosk, str]:
        """Use a code: the kiosk it was for, and that kiosk's new device token.

        Raises :class:`CodeRefused` for a wrong, expired or used code. Only the token's
        hash is kept; a token the kiosk held before stops working.
        """
        hashed = digest(code)
        if not (code.isdigit() and len(code) == CODE_DIGITS):
            raise CodeRefused("wrong", f"the code has {CODE_DIGITS} digits")
        raw = await self.redis.getdel(keys.kiosk_code(hashed))
        if raw is None:
            if await self.redis.exists(keys.kiosk_code_used(hashed)):
                raise CodeRefused("used", "this code was used already; ask for a new one")
            raise CodeRefused("wrong", "this code is not right; check it and try again")
        entry = json.loads(text(raw))
        kiosk_id: str = entry["kiosk"]
        if float(entry["expires"]) <= now:
            raise CodeRefused("expired", "this code has expired; ask for a new one")
        await self.redis.set(keys.kiosk_code_used(hashed), kiosk_id, ex=CODE_KEPT_SECONDS)
        kiosk = await self.get(kiosk_id)
        if kiosk is None:
            raise CodeRefused("wrong", "this code's kiosk no longer exists")
        token = secrets.token_urlsafe(32)
        key = keys.kiosk(kiosk_id)
        old = await self.redis.hget(key, "token_hash")
        async with self.redis.pipeline(transaction=True) as pipe:
            if old:
                pipe.delete(keys.kiosk_token(text(old)))
            pipe.set(keys.kiosk_token(digest(token)), kiosk_id)
            pipe.hset(
                key,
                mapping={"token_hash": digest(token), "enrolled_at": repr(now), "revoked": "0"},
            )
            pipe.hdel(key, "code_hash", "code_expires")
            await pipe.execute()
        return replace(kiosk, revoked=False), token

    async def revoke(self, kiosk_id: str) -> None:
        """End the kiosk's device token and any code it was issued, at once."""
        key = keys.kiosk(kiosk_id)
        token_hash, code_hash = await self.redis.hmget(key, ["token_hash", "code_hash"])
        async with self.redis.pipeline(transaction=True) as pipe:
            if token_hash:
                pipe.delete(keys.kiosk_token(text(token_hash)))
            if code_hash:
                pipe.delete(keys.kiosk_code(text(code_hash)))
            pipe.hdel(key, "token_hash", "code_hash", "code_expires", "enrolled_at")
            pipe.hset(key, "revoked", "1")
            await pipe.execute()

    async def by_token(self, token: str) -> Kiosk | None:
        """The kiosk holding this device token, unless it was revoked or replaced."""
        if not token or len(token) > MAX_TOKEN:
            return None
        hashed = digest(token)
        kiosk_id = await self.redis.get(keys.kiosk_token(hashed))
        if kiosk_id is None:
            return None
        raw = mapping(await self.redis.hgetall(keys.kiosk(text(kiosk_id))))
        if "data" not in raw or raw.get("revoked") == "1" or raw.get("token_hash") != hashed:
            return None
        return _load(raw)

    # -- throttling of code guesses ----------------------------------------------------

    async def throttled(self, address: str) -> bool:
        count = await self.redis.get(keys.enroll_failures(address))
        return int(count or 0) >= MAX_GUESSES

    async def guessed_wrong(self, address: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(keys.enroll_failures(address))
            pipe.expire(keys.enroll_failures(address), GUESS_WINDOW)
            await pipe.execute()


# -- the device cookie -----------------------------------------------------------------


#: The device cookie (its token is the kiosk's enrollment, not a form's).
DEVICE = TokenCookie(KIOSK_COOKIE, PLAIN_KIOSK_COOKIE, COOKIE_SECONDS, "strict")
kiosk_cookie_name = DEVICE.name
set_kiosk_cookie = DEVICE.set


def device_token(connection: HTTPConnection) -> str:
    return connection.cookies.get(kiosk_cookie_name(connection), "")


async def kiosk_of(request: HTTPConnection) -> Kiosk:
    """The enrolled kiosk behind the request (cached per request), or a 401 ``kiosk_unenrolled``.

    A page (a ``GET`` under ``/kiosk/`` outside ``/kiosk/api/``) that gets this error
    sends the kiosk to ``/kiosk/enroll``.
    """
    if "kiosk" in request.scope:
        cached: Kiosk = request.scope["kiosk"]
        return cached
    store: KioskStore = request.app.state.kiosks
    kiosk = await store.by_token(device_token(request))
    if kiosk is None:
        raise KioskUnenrolled("this kiosk is not enrolled, or its enrollment was revoked")
    request.scope["kiosk"] = kiosk
    return kiosk


async def kiosk_for(request: HTTPConnection, office: str) -> Kiosk:
    """The enrolled kiosk behind the request, refused (403) unless it belongs to ``office``."""
    kiosk = await kiosk_of(request)
    if kiosk.office != office:
        raise Forbidden(f'this kiosk belongs to office "{kiosk.office}", not "{office[:40]}"')
    return kiosk
