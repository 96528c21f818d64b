"""Staff sessions in Redis, sign-ins waiting for their second factor, and sign-in throttling.

A session id is 256 random bits held only in the browser's cookie; Redis keeps the
session under the SHA-256 of the id. A session ends after ``idle`` seconds without a
request and ``absolute`` seconds after sign-in, however busy, both measured on the
app's clock (the key's TTL only clears away what nobody ends). Ending a session
deletes it, so logout and revocation take effect at once, on every web process.

Web processes remember who a session is for a moment (``web.security.StaffCache``); so
whatever ends a session or changes an account also *announces* it, on the channel
``keys.staff_changes()``, and tells its own process's cache at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from ..queue import keys
from ..queue.codec import mapping, text, texts

#: Failed sign-ins per user name, or per address, before sign-in is refused for a while.
MAX_FAILURES = 5
#: How long failed sign-ins are remembered, in seconds.
FAILURE_WINDOW = 15 * 60
#: How long a sign-in whose password was right waits for its authenticator code, in seconds.
SECOND_FACTOR_SECONDS = 5 * 60
#: Longest session id or pending sign-in token worth looking up.
MAX_TOKEN = 100
#: A session's last use is written at most this often, in seconds: a busy console sends
#: many requests a minute, and the idle timeout does not need them all.
SEEN_PRECISION = 5.0


@dataclass(frozen=True)
class Session:
    id: str
    username: str
    csrf: str
    created_at: float


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in whose password was right, waiting for the authenticator code."""

    token: str
    username: str
    next: str


#: Told a user name when this process ends their sessions or changes their account.
Forget = Callable[[str], None]


def forget_nothing(username: str) -> None:
    """For stores used where nothing is cached (the command line, tests)."""


async def announce(redis: Redis, username: str) -> None:
    """Tell every web process that ``username``'s sessions ended or their account changed."""
    await redis.publish(keys.staff_changes(), username)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def end_sessions(redis: Redis, username: str) -> int:
    """End every session of ``username``; how many were live.

    A module function, so that the account store ends the sessions of an account it
    disables without needing a session store.
    """
    hashed = texts(await redis.smembers(keys.staff_sessions(username)))
    ended = await redis.delete(*(keys.session(h) for h in hashed)) if hashed else 0
    await redis.delete(keys.staff_sessions(username))
    await announce(redis, username)
    return int(ended)


class SessionStore:
    def __init__(
        self,
        redis: Redis,
        *,
        idle_seconds: int,
        absolute_seconds: int,
        forget: Forget = forget_nothing,
    ) -> None:
        self.redis = redis
        self.idle = idle_seconds
        self.absolute = absolute_seconds
        self.forget = forget

    async def create(self, username: str, *, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), username, secrets.token_urlsafe(32), now)
        key = keys.session(_hash(session.id))
        index = keys.staff_sessions(username)
        stale = [h for h in texts(await self.redis.smembers(index)) if h]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "username": username,
                    "csrf": session.csrf,
                    "created_at": repr(now),
                    "seen_at": repr(now),
                },
            )
            pipe.expire(key, self.idle + 60)
            pipe.sadd(index, _hash(session.id))
            pipe.expire(index, self.absolute + self.idle)
            await pipe.execute()
        await self._prune(index, stale)
        return session

    async def _prune(self, index: str, hashed: list[str]) -> None:
        """Drop from the account's index the sessions that timed out on their own."""
        if not hashed:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for h in hashed:
                pipe.exists(keys.session(h))
            live = await pipe.execute()
        gone = [h for h, exists in zip(hashed, live, strict=True) if not exists]
        if gone:
            await self.redis.srem(index, *gone)

    async def get(self, session_id: str, *, now: float) -> Session | None:
        """The live session with this id, renewing its idle timeout; ``None`` if it is over."""
        if not session_id or len(session_id) > MAX_TOKEN:
            return None
        key = keys.session(_hash(session_id))
        raw = mapping(await self.redis.hgetall(key))
        if not raw:
            return None
        created = float(raw["created_at"])
        seen = float(raw.get("seen_at", raw["created_at"]))
        if now - created > self.absolute or now - seen > self.idle:
            await self.end(session_id)
            return None
        if now - seen >= SEEN_PRECISION:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, "seen_at", repr(now))
                pipe.expire(key, self.idle + 60)
                await pipe.execute()
        return Session(session_id, raw["username"], raw["csrf"], created)

    async def alive(self, session_id: str, *, now: float) -> bool:
        """Whether the session is still live, without renewing it (for long-lived streams)."""
        if not session_id or len(session_id) > MAX_TOKEN:
            return False
        created = await self.redis.hget(keys.session(_hash(session_id)), "created_at")
        return created is not None and now - float(text(created)) <= self.absolute

    async def end(self, session_id: str) -> None:
        hashed = _hash(session_id)
        username = await self.redis.hget(keys.session(hashed), "username")
        await self.redis.delete(keys.session(hashed))
        if username:
            await self.redis.srem(keys.staff_sessions(text(username)), hashed)
            self.forget(text(username))
            await announce(self.redis, text(username))

    async def end_all(self, username: str) -> int:
        """End every session of ``username``; how many were live."""
        self.forget(username)
        return await end_sessions(self.redis, username)

    async def count(self, username: str) -> int:
        """How many sessions of ``username`` are live."""
        index = keys.staff_sessions(username)
        hashed = texts(await self.redis.smembers(index))
        await self._prune(index, hashed)
        return int(await self.redis.scard(index))

    # -- the second step of a sign-in with an authenticator code ---------------------

    async def await_code(self, username: str, next_path: str, *, now: float) -> PendingSignIn:
        """Remember that ``username`` gave the right password; the code comes next."""
        pending = PendingSignIn(secrets.token_urlsafe(32), username, next_path)
        key = keys.signin_pending(_hash(pending.token))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"username": username, "next": next_path, "at": repr(now)})
            pipe.expire(key, SECOND_FACTOR_SECONDS)
            await pipe.execute()
        return pending

    async def pending(self, token: str, *, now: float) -> PendingSignIn | None:
        """The sign-in waiting for its code under ``token``, if it has not expired."""
        if not token or len(token) > MAX_TOKEN:
            return None
        raw = mapping(await self.redis.hgetall(keys.signin_pending(_hash(token))))
        if not raw or now - float(raw["at"]) > SECOND_FACTOR_SECONDS:
            return None
        return PendingSignIn(token, raw["username"], raw["next"])

    async def end_pending(self, token: str) -> None:
        await self.redis.delete(keys.signin_pending(_hash(token)))

    # -- throttling --------------------------------------------------------------------

    @staticmethod
    def _subjects(username: str, address: str) -> tuple[str, str]:
        # Prefixed, so that nobody can lock out an address by signing in "as" it.
        return f"user:{username}", f"addr:{address}"

    async def throttled(self, username: str, address: str) -> bool:
        """Whether this user name or this address has failed too often lately."""
        subjects = self._subjects(username, address)
        counts = await self.redis.mget([keys.signin_failures(s) for s in subjects])
        return any(int(c or 0) >= MAX_FAILURES for c in counts)

    async def failed(self, username: str, address: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for subject in self._subjects(username, address):
                pipe.incr(keys.signin_failures(subject))
                pipe.expire(keys.signin_failures(subject), FAILURE_WINDOW)
            await pipe.execute()

    async def succeeded(self, username: str) -> None:
        """Forget the user name's failures (the address's stay: it may be trying many names)."""
        await self.redis.delete(keys.signin_failures(self._subjects(username, "")[0]))
