"""Residents have no account: a cookie names their phone, and their forms carry its token.

The cookie ``__Host-madoguchi-resident`` (``madoguchi-resident`` on plain
``http://localhost``) holds a random token. Every resident form carries the same token
in its field ``csrf``; a post whose field does not match the cookie is refused, so no
other site can take or cancel a ticket for someone (the staff sign-in form works the
same way). The token also stands for the phone in the daily limit on web tickets.

Limits: a phone and a network address may each take so many tickets on the web in
an office day (settings ``web_tickets_per_device`` and ``web_tickets_per_address``),
counted in Redis with an expiry. Staff, reception and kiosks issue through their own
paths and are never counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from ...queue import keys
from ...queue.tickets import Issued
from ..security import TokenCookie

SECURE_COOKIE = "__Host-madoguchi-resident"
PLAIN_COOKIE = "madoguchi-resident"
#: The cookie lasts as long as browsers let one last (400 days).
COOKIE_SECONDS = 400 * 86_400
#: How long a day's counters are kept: past the end of any office's day.
LIMIT_TTL = 2 * 86_400


#: The phone's cookie: its token, which its forms carry.
DEVICE = TokenCookie(SECURE_COOKIE, PLAIN_COOKIE, COOKIE_SECONDS, "lax")
cookie_name = DEVICE.name
#: The phone's token: the one its cookie holds, or a new one.
device_token = DEVICE.token
remember_device = DEVICE.set
#: Whether a form's token is the one in this phone's cookie.
form_is_ours = DEVICE.matches


def _subject(kind: str, value: str) -> str:
    # Hashed: neither a phone's token nor an address is stored as it is.
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class Allowance:
    """One web ticket counted against a phone and an address on a day; give it back
    with :meth:`release` when no new ticket came of it."""

    redis: Redis
    counted: tuple[str, ...]

    async def release(self) -> None:
        if self.counted:
            # A count back at zero goes, so that a refused request leaves nothing behind.
            # (One key per script: a device's and an address's keys need not share a slot.)
            for key in self.counted:
                await self.redis.eval(_RELEASE, 1, key)


_RELEASE = "if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end"


async def count_ticket(
    redis: Redis,
    *,
    device: str,
    address: str,
    day: str,
    per_device: int,
    per_address: int,
) -> Allowance | None:
    """Count one more web ticket for ``device`` and ``address`` on ``day``; ``None`` (and
    nothing counted) when either has reached its limit."""
    counted = (
        keys.web_tickets(_subject("device", device), day),
        keys.web_tickets(_subject("address", address), day),
    )
    async with redis.pipeline(transaction=True) as pipe:
        for key in counted:
            pipe.incr(key)
            pipe.expire(key, LIMIT_TTL)
        device_count, _, address_count, _ = await pipe.execute()
    allowance = Allowance(redis, counted)
    if int(device_count) > per_device or int(address_count) > per_address:
        await allowance.release()
        return None
    return allowance


async def issue_within_limits(
    redis: Redis,
    issue: Callable[[], Awaitable[Issued]],
    *,
    office: str,
    key: str | None,
    device: str,
    address: str,
    day: str,
    per_device: int,
    per_address: int,
) -> Issued | None:
    """Run ``issue`` if the phone and the address are within their daily limits, counting
    the ticket; ``None`` (nothing issued) when either is at its limit. A retry with the
    same idempotency ``key`` gets its ticket without being counted again, and a refused
    issue (its error goes on up) is not counted."""
    allowance = None
    if not (key and await redis.exists(keys.idempotency(office, key))):
        allowance = await count_ticket(
            redis,
            device=device,
            address=address,
            day=day,
            per_device=per_device,
            per_address=per_address,
        )
        if allowance is None:
            return None
    try:
        issued = await issue()
    except BaseException:
        if allowance is not None:
            await allowance.release()
        raise
    if issued.replayed and allowance is not None:
        await allowance.release()
    return issued
