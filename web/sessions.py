"""Staff sessions in Redis, and sign-in throttling.

A session id is 256 random bits held only in the browser's cookie; Redis keeps the
session under the SHA-256 of the id, with an idle timeout (the key's TTL, renewed
on use) and an absolute one (checked against its creation time). Ending a session
deletes it, so logout and revocation take effect at once, on every web process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from ..queue import keys
from ..queue.codec import mapping, text, texts

#: Failed sign-ins per user name, or per address, before sign-in is refused for a while.
MAX_FAILURES = 5
#: How long failed sign-ins are remembered, in seconds.
FAILURE_WINDOW = 15 * 60


@dataclass(frozen=True)
class Session:
    id: str
    username: str
    csrf: str
    created_at: float


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, redis: Redis, *, idle_seconds: int, absolute_seconds: int) -> None:
        self.redis = redis
        self.idle = idle_seconds
        self.absolute = absolute_seconds

    async def create(self, username: str, *, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), username, secrets.token_urlsafe(32), now)
        key = keys.session(_hash(session.id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={"username": username, "csrf": session.csrf, "created_at": repr(now)},
            )
            pipe.expire(key, self.idle)
            pipe.sadd(keys.staff_sessions(username), _hash(session.id))
            await pipe.execute()
        return session

    async def get(self, session_id: str, *, now: float) -> Session | None:
        """The live session with this id, renewing its idle timeout; ``None`` if it is over."""
        if not session_id or len(session_id) > 100:
            return None
        key = keys.session(_hash(session_id))
        raw = mapping(await self.redis.hgetall(key))
        if not raw:
            return None
        created = float(raw["created_at"])
        if now - created > self.absolute:
            await self.end(session_id)
            return None
        await self.redis.expire(key, self.idle)
        return Session(session_id, raw["username"], raw["csrf"], created)

    async def end(self, session_id: str) -> None:
        hashed = _hash(session_id)
        username = await self.redis.hget(keys.session(hashed), "username")
        await self.redis.delete(keys.session(hashed))
        if username:
            await self.redis.srem(keys.staff_sessions(text(username)), hashed)

    async def end_all(self, username: str) -> int:
        """End every session of ``username``; how many there were."""
        hashed = texts(await self.redis.smembers(keys.staff_sessions(username)))
        if hashed:
            await self.redis.delete(*(keys.session(h) for h in hashed))
        await self.redis.delete(keys.staff_sessions(username))
        return len(hashed)

    async def throttled(self, *subjects: str) -> bool:
        """Whether any of these user names or addresses has failed too often lately."""
        counts = [await self.redis.get(keys.signin_failures(s)) for s in subjects]
        return any(int(c or 0) >= MAX_FAILURES for c in counts)

    async def failed(self, *subjects: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for subject in subjects:
                pipe.incr(keys.signin_failures(subject))
                pipe.expire(keys.signin_failures(subject), FAILURE_WINDOW)
            await pipe.execute()

    async def succeeded(self, username: str) -> None:
        await self.redis.delete(keys.signin_failures(username))
