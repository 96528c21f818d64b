"""Every Redis key name Madoguchi uses, built in one place.

All keys of one office share the hash tag ``{office}``, so an office's Lua scripts
touch a single Redis Cluster slot. The scripts derive the keys they need from the
office hash key they are given (see ``scripts/_lib.lua``); the names here and
there must agree, and ``tests/test_keys.py`` checks that they do.
"""

from __future__ import annotations

import re

#: Office and service ids: lowercase ASCII words joined by hyphens.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")

#: The set of every office id (not tagged: it is only an index, never touched by a script).
OFFICES = "mg:offices"


def office_prefix(office: str) -> str:
    return f"mg:{{{office}}}:"


def office(office: str) -> str:
    """The office's settings hash; ``KEYS[1]`` of every queue script."""
    return office_prefix(office) + "office"


def events(office: str) -> str:
    """The office's event stream: audit trail, statistics and estimator source."""
    return office_prefix(office) + "events"


def live(office: str) -> str:
    """The office's pub/sub channel; each message is ``"<stream id> <event JSON>"``."""
    return office_prefix(office) + "live"


def live_pattern() -> str:
    """A pattern matching every office's live channel."""
    return "mg:{*}:live"


def office_from_channel(channel: str) -> str:
    match = re.fullmatch(r"mg:\{(.+)\}:live", channel)
    if match is None:
        raise ValueError(f'"{channel}" is not an office live channel')
    return match.group(1)


def ticket(office: str, ticket_id: str) -> str:
    return office_prefix(office) + f"ticket:{ticket_id}"


def token(office: str, token: str) -> str:
    return office_prefix(office) + f"tok:{token}"


def line(office: str, service: str, kind: str) -> str:
    """A service's waiting line; ``kind`` is ``appt``, ``priority`` or ``regular``."""
    return office_prefix(office) + f"q:{service}:{kind}"


def service(office: str, service: str) -> str:
    return office_prefix(office) + f"service:{service}"


def services(office: str) -> str:
    return office_prefix(office) + "services"


def counter(office: str, counter: str) -> str:
    return office_prefix(office) + f"counter:{counter}"


def counters(office: str) -> str:
    return office_prefix(office) + "counters"


def service_history(office: str, service: str) -> str:
    """Recent service times of a service, newest first."""
    return office_prefix(office) + f"svc:{service}:times"


def day_stats(office: str, day: str) -> str:
    return office_prefix(office) + f"day:{day}"


def stats_days(office: str) -> str:
    """The office's statistics roll-ups: a hash of one compact JSON value per final day."""
    return office_prefix(office) + "stats:days"


def contact(office: str, ticket_id: str) -> str:
    """Contact details for a notification, deleted when the ticket closes."""
    return office_prefix(office) + f"contact:{ticket_id}"


def idempotency(office: str, key: str) -> str:
    return office_prefix(office) + f"idem:{key}"


# -- staff accounts and sessions (not office data: no hash tag) -------------------------


def staff_account(username: str) -> str:
    return f"mg:staff:{username}"


def staff_accounts() -> str:
    """The set of every staff username."""
    return "mg:staff"


def staff_sessions(username: str) -> str:
    """The set of a staff member's live session ids, so that all can be ended at once."""
    return f"mg:staff:{username}:sessions"


def session(session_id_hash: str) -> str:
    """A session, under the hash of its id (a leaked key list does not leak sessions)."""
    return f"mg:session:{session_id_hash}"


def signin_pending(token_hash: str) -> str:
    """A sign-in whose password was right, waiting for its authenticator code."""
    return f"mg:signin:pending:{token_hash}"


def signin_failures(subject: str) -> str:
    """Failed sign-ins of a username or an address, counted for throttling."""
    return f"mg:throttle:signin:{subject}"
