"""Telling residents their turn is near: e-mail and Web Push, sent by rq jobs.

A resident asks on their ticket page to be told when ``N`` tickets are ahead, by
e-mail, by Web Push, or both. What they give is stored apart from the ticket, under
``keys.contact`` (a hash), and the queue scripts delete it when the ticket closes
(finished, cancelled, no-show, abandoned). ``keys.notify_watch`` indexes the office's
tickets that have one.

Who notices: every web process runs a :class:`Notifier`, which sees every office's
live events (``EventHub.watch``); when an event that moves people forward (a call, a
cancellation, …) happens at an office with watched tickets, it enqueues
:func:`notify_office` under a job id that names the event, so however many web
processes saw it, the job is queued
once. The job reads the office once, and for each watched ticket that has reached its
threshold (or was called) sends each notification **at most once**: an atomic marker
(``SET NX``, ``keys.notified``) is set *before* sending. A send that fails sets the
marker to ``failed`` and the job raises, so rq retries it later; a retry takes over
only a ``failed`` marker (never one that says ``sending`` or ``sent``). So a job run
twice, or two jobs at once, never send twice; a worker that dies in the middle of a
send leaves ``sending``, and that notification is lost rather than repeated.

VAPID keys: made on first use and kept in Redis (``keys.vapid``), so every web
process and worker shares them and they survive restarts (Redis is persisted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import functools
import json
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError
from rq import Retry, get_current_job
from rq.exceptions import DuplicateJobError

from ..queue import keys
from ..queue.codec import fields, mapping, text, texts
from ..queue.exceptions import NotFound
from ..queue.jobs import job_queue
from ..queue.model import Ticket, TicketStatus
from ..queue.tickets import QueueClient
from ..settings import Settings, load_settings
from .i18n import BY_CODE, DEFAULT, Catalogues, Translator
from .live import Event, EventHub
from .residents.view import positions

log = logging.getLogger(__name__)

#: "Tell me when N tickets are ahead": the choices a resident has.
THRESHOLDS = (0, 1, 2, 3, 5, 10)
#: Events after which someone may have moved forward (or been called).
TRIGGERS = frozenset({"called", "recalled", "cancelled", "abandoned", "no_show", "transferred"})
#: How long markers are kept: longer than any ticket lives.
MARKER_SECONDS = 3 * 86_400
#: Retries of a job whose send failed, and the waits before them (seconds).
RETRIES = Retry(max=3, interval=[30, 120, 600])
PUSH_TIMEOUT = 10.0
SMTP_TIMEOUT = 15.0
EMAIL_LIMIT = 254


class SendFailed(Exception):
    """At least one notification could not be sent; the job is retried."""


# -- contact details --------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    ahead: int
    email: str = ""
    #: The browser's push subscription, as it gave it (endpoint and keys).
    push: dict[str, Any] | None = None
    lang: str = "ja"

    def to_redis(self) -> dict[str, str]:
        return {
            "ahead": str(self.ahead),
            "email": self.email,
            "push": json.dumps(self.push) if self.push else "",
            "lang": self.lang,
        }

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> Contact | None:
        if not raw:
            return None
        try:
            push = json.loads(raw["push"]) if raw.get("push") else None
            return cls(int(raw.get("ahead", "0")), raw.get("email", ""), push, raw.get("lang", ""))
        except ValueError:
            return None


def valid_email(value: str) -> bool:
    """A plausible address: one @, something on each side, a dot in the domain, no spaces."""
    local, at, domain = value.rpartition("@")
    return (
        bool(at and local and domain)
        and len(value) <= EMAIL_LIMIT
        and "." in domain.strip(".")
        and not any(c.isspace() or c in "<>,;\"'\\" for c in value)
    )


def valid_subscription(value: Any, services: tuple[str, ...]) -> bool:
    """A Web Push subscription whose endpoint is one of the allowed push services (a
    resident cannot make the worker post to any address they like)."""
    if not isinstance(value, dict):
        return False
    endpoint = value.get("endpoint")
    subscription_keys = value.get("keys")
    if not isinstance(endpoint, str) or not isinstance(subscription_keys, dict):
        return False
    if not all(isinstance(subscription_keys.get(k), str) for k in ("p256dh", "auth")):
        return False
    if len(endpoint) > 1024:
        return False
    parts = urlsplit(endpoint)
    origin = f"{parts.scheme}://{parts.netloc}"
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in services)


async def save_contact(redis: Redis, office: str, ticket_id: str, contact: Contact) -> bool:
    """Store ``contact`` for a ticket that is still waiting; ``False`` when it is not.

    The ticket's state is watched, so a ticket that closes meanwhile never gets
    details (which its close would have deleted) left behind.
    """
    ticket_key = keys.ticket(office, ticket_id)
    contact_key = keys.contact(office, ticket_id)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(ticket_key)
                status = await pipe.hget(ticket_key, "status")
                if status != TicketStatus.WAITING.value:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                pipe.delete(contact_key)
                pipe.hset(contact_key, mapping=fields(contact.to_redis()))
                pipe.expire(contact_key, MARKER_SECONDS)
                pipe.sadd(keys.notify_watch(office), ticket_id)
                await pipe.execute()
                return True
            except WatchError:
                continue


async def contact_of(redis: Redis, office: str, ticket_id: str) -> Contact | None:
    return Contact.from_redis(mapping(await redis.hgetall(keys.contact(office, ticket_id))))


# -- VAPID keys ----------------------------------------------------------------------------


def _new_vapid_pem() -> str:
    vapid = Vapid02()
    vapid.generate_keys()
    pem: bytes = vapid.private_pem()
    return pem.decode()


@functools.lru_cache(maxsize=4)
def application_server_key(pem: str) -> str:
    """The public key a browser subscribes with (uncompressed point, base64url)."""
    vapid = Vapid02.from_pem(pem.encode())
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def vapid_public_key(redis: Redis) -> str:
    """The VAPID public key, made (once, whoever asks first) on first use."""
    pem = await redis.get(keys.vapid())
    if pem is None:
        await redis.set(keys.vapid(), _new_vapid_pem(), nx=True)
        pem = await redis.get(keys.vapid())
    return application_server_key(text(pem or ""))


def _vapid_pem(redis: SyncRedis) -> str:
    pem = redis.get(keys.vapid())
    if pem is None:
        redis.set(keys.vapid(), _new_vapid_pem(), nx=True)
        pem = redis.get(keys.vapid())
    return text(pem or "")


# -- the job -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A notification that a ticket has earned: ``ahead`` (its threshold) or ``called``."""

    office: str
    office_name: str
    ticket: Ticket
    kind: str
    ahead: int
    counter: str
    contact: Contact

    @property
    def marker(self) -> str:
        """What is sent at most once: the call, or reaching this threshold."""
        return self.kind if self.kind == "called" else f"{self.kind}-{self.contact.ahead}"


def notify_office(office: str, event: str = "") -> dict[str, int]:
    """Send the notifications the office's watched tickets have earned (after ``event``).

    Returns how many were sent, by channel. Safe to run any number of times.
    """
    settings = load_settings()
    if settings.redis_url is None:
        raise RuntimeError("jobs need REDIS_URL: the worker runs them against that Redis")
    due = asyncio.run(_due(settings, office))
    redis = SyncRedis.from_url(settings.redis_url, decode_responses=True)
    job = get_current_job()
    by = job.id if job is not None else "direct"
    try:
        return _send_all(redis, settings, due, by)
    finally:
        redis.close()


async def _due(settings: Settings, office: str) -> list[Due]:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        queue = QueueClient(redis, settings)
        try:
            known = await queue.office(office)
        except NotFound:
            return []
        watched = sorted(texts(await redis.smembers(keys.notify_watch(office))))
        if not watched:
            return []
        snapshot = await queue.snapshot(office, now=time.time())
        places = positions(snapshot)
        names = {c.id: c.name for c in snapshot.counters}
        found: list[Due] = []
        for ticket_id in watched:
            contact = await contact_of(redis, office, ticket_id)
            try:
                ticket = await queue.ticket(office, ticket_id, now=snapshot.at)
            except NotFound:
                ticket = None
            if contact is None or ticket is None or ticket.status.closed:
                # Closed (its details went with it), or expired: forget it.
                await redis.delete(keys.contact(office, ticket_id))
                await redis.srem(keys.notify_watch(office), ticket_id)
                continue
            counter = names.get(ticket.counter or "", ticket.counter or "")
            if ticket.status in (TicketStatus.CALLED, TicketStatus.SERVING):
                kind, ahead = "called", 0
            else:
                ahead = max(places.get(ticket_id, ticket.position) - 1, 0)
                if ahead > contact.ahead:
                    continue
                kind = "ahead"
            name = translator_for(contact.lang).name(known)
            found.append(Due(office, name, ticket, kind, ahead, counter, contact))
        return found
    finally:
        await redis.aclose()


def _send_all(redis: SyncRedis, settings: Settings, due: list[Due], by: str) -> dict[str, int]:
    sent = {"email": 0, "push": 0}
    failures: list[str] = []
    for item in due:
        channels: list[str] = []
        if item.contact.email and settings.smtp_host:
            channels.append("email")
        if item.contact.push:
            channels.append("push")
        for channel in channels:
            marker = keys.notified(item.office, item.ticket.id, item.marker, channel)
            if not _claim(redis, marker, by):
                continue
            try:
                if channel == "email":
                    send_email(settings, item)
                else:
                    send_push(settings, _vapid_pem(redis), item)
            except PushGone:
                log.info("ticket %s: push subscription is gone; not retried", item.ticket.id)
                redis.set(marker, "gone", ex=MARKER_SECONDS)
            except (OSError, smtplib.SMTPException, WebPushException) as exc:
                log.warning(
                    "ticket %s: %s %s not sent: %s", item.ticket.id, item.kind, channel, exc
                )
                redis.set(marker, "failed", ex=MARKER_SECONDS)
                failures.append(f"{item.ticket.id} {item.kind} {channel}")
            else:
                redis.set(marker, "sent", ex=MARKER_SECONDS)
                sent[channel] += 1
                log.info("ticket %s: %s sent by %s", item.ticket.id, item.kind, channel)
    if failures:
        raise SendFailed("not sent, to retry: " + ", ".join(failures))
    return sent


def _claim(redis: SyncRedis, marker: str, by: str) -> bool:
    """Take the right to send: a new marker, or one whose earlier send failed."""
    if redis.set(marker, f"sending {by}", nx=True, ex=MARKER_SECONDS):
        return True
    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(marker)  # type: ignore[no-untyped-call]  # untyped in redis-py
            if pipe.get(marker) != "failed":
                return False
            pipe.multi()
            pipe.set(marker, f"sending {by}", ex=MARKER_SECONDS)
            pipe.execute()
        except WatchError:
            return False
    return True


# -- what is said, and how it is sent ------------------------------------------------------


@functools.cache
def _catalogues() -> Catalogues:
    return Catalogues.load()


def translator_for(lang: str) -> Translator:
    """Messages in the language the resident's page was in when they asked."""
    language = BY_CODE.get(lang, DEFAULT)
    return Translator(language, _catalogues().translations(language))


def _text(item: Due, settings: Settings) -> tuple[str, str, str]:
    """Subject, body and link of a notification, in the resident's language."""
    _ = translator_for(item.contact.lang).gettext
    link = f"{settings.public_url}/o/{item.office}/t/{item.ticket.token}"
    number, office, counter = item.ticket.number, item.office_name, item.counter
    if item.kind == "called":
        subject = _(
            "Your turn: ticket %(number)s, counter %(counter)s", number=number, counter=counter
        )
        body = _(
            "Ticket %(number)s is being called at %(office)s. Please go to counter %(counter)s.",
            number=number,
            office=office,
            counter=counter,
        )
    elif item.ahead == 0:
        subject = _("You are next: ticket %(number)s", number=number)
        body = _(
            "Ticket %(number)s is next at %(office)s. Please come to the waiting area.",
            number=number,
            office=office,
        )
    else:
        ngettext = translator_for(item.contact.lang).ngettext
        subject = ngettext(
            "%(num)s ticket ahead of ticket %(number)s",
            "%(num)s tickets ahead of ticket %(number)s",
            item.ahead,
            number=number,
        )
        body = ngettext(
            "%(num)s ticket is ahead of ticket %(number)s at %(office)s. "
            "Please come back to the waiting area.",
            "%(num)s tickets are ahead of ticket %(number)s at %(office)s. "
            "Please come back to the waiting area.",
            item.ahead,
            number=number,
            office=office,
        )
    return subject, body, link


def send_email(settings: Settings, item: Due) -> None:
    subject, body, link = _text(item, settings)
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = item.contact.email
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="madoguchi")
    message.set_content(f"{body}\n\n{link}\n")
    password = str(settings.smtp_password)
    if settings.smtp_tls == "tls":
        context = ssl.create_default_context()
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT, context=context
        )
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT)
    with smtp:
        if settings.smtp_tls == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, password)
        smtp.send_message(message)


class PushGone(Exception):
    """The push service says the subscription no longer exists (404 or 410)."""


def send_push(settings: Settings, pem: str, item: Due) -> None:
    subject, body, link = _text(item, settings)
    payload = json.dumps(
        {"title": subject, "body": body, "url": link, "tag": f"{item.ticket.id}-{item.kind}"},
        ensure_ascii=False,
    )
    assert item.contact.push is not None
    try:
        webpush(
            item.contact.push,
            data=payload,
            vapid_private_key=Vapid02.from_pem(pem.encode()),
            vapid_claims={"sub": settings.push_contact},
            timeout=PUSH_TIMEOUT,
            ttl=3600,
        )
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (404, 410):
            raise PushGone(str(status)) from exc
        raise


# -- noticing when to send -------------------------------------------------------------------


def enqueue_check(connection: SyncRedis, office: str, event: str) -> bool:
    """Queue :func:`notify_office` for ``event`` once, however many processes ask."""
    job_id = f"madoguchi-notify-{office}-{event}"
    try:
        job_queue(connection).enqueue(
            notify_office,
            office,
            event,
            job_id=job_id,
            unique=True,
            retry=RETRIES,
            result_ttl=3600,
            failure_ttl=86_400,
        )
    except DuplicateJobError:
        return False
    return True


class Notifier:
    """Notices, in a web process, when an office's watched tickets may have moved, and
    queues :func:`notify_office`. Events are only noted as they pass (the hub's task must
    not wait); a task of its own queues one job per office per burst. Once a minute it
    also queues a sweep of every office with watched tickets, which covers events the
    process missed while it had lost Redis."""

    #: Seconds between sweeps.
    SWEEP_SECONDS = 60.0
    #: Seconds a burst of events is gathered before its offices are looked at.
    GATHER_SECONDS = 0.1

    def __init__(self, redis: Redis, hub: EventHub, redis_url: str) -> None:
        self.redis = redis
        self.hub = hub
        self.redis_url = redis_url
        self._pending: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watching: contextlib.ExitStack | None = None
        self._sync: SyncRedis | None = None

    def start(self) -> None:
        self._watching = contextlib.ExitStack()
        self._watching.enter_context(self.hub.watch(self._note))
        self._task = asyncio.create_task(self._run(), name="madoguchi-notifier")

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sync is not None:
            self._sync.close()

    def _note(self, event: Event) -> None:
        if event.type in TRIGGERS:
            self._pending[event.office] = event.id
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.SWEEP_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                await self._sweep()
                continue
            # Gather the burst: one look per office, not one per event (a busy office
            # has hundreds of events a second, each a round trip to Redis here).
            await asyncio.sleep(self.GATHER_SECONDS)
            self._wake.clear()
            pending, self._pending = self._pending, {}
            for office, event in pending.items():
                try:
                    if await self.redis.scard(keys.notify_watch(office)):
                        await self.check(office, event)
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    log.warning("office %s: notification check not queued: %s", office, exc)

    async def _sweep(self) -> None:
        minute = f"sweep-{int(time.time() // 60)}"
        try:
            for office in await self.redis.smembers(keys.OFFICES):
                if await self.redis.scard(keys.notify_watch(str(office))):
                    await self.check(str(office), minute)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("notification sweep not queued: %s", exc)

    async def check(self, office: str, event: str) -> bool:
        """Queue the job for ``event`` at ``office`` (rq's client is synchronous: a thread)."""
        if self._sync is None:
            self._sync = SyncRedis.from_url(self.redis_url)
        return await asyncio.to_thread(enqueue_check, self._sync, office, event)
