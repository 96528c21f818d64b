"""Every Redis key name Madoguchi uses, built in one place.

All keys of one office share the hash tag ``{office}``, so an office's Lua scripts
touch a single Redis Cluster slot. The scripts derive the keys they need from the
office hash key they are given (see ``scripts/_lib.lua``); the names here and
there must agree, and ``tests/test_keys.py`` checks that they do.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1024)
def office_from_channel(channel: str) -> str:
    """The office whose live channel ``channel`` is (remembered: one per office, every event)."""
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


def notify_watch(office: str) -> str:
    """The set of the office's tickets whose residents asked to be told (a hint: the
    contact details are the truth, and go when the ticket closes)."""
    return office_prefix(office) + "notify"


def notified(office: str, ticket_id: str, kind: str, channel: str) -> str:
    """The marker of one notification (``kind``: ``called``, or ``ahead-N`` for a
    threshold of N) sent over one ``channel`` (``email`` or ``push``); set before
    sending, so that it is sent at most once."""
    return office_prefix(office) + f"notified:{ticket_id}:{kind}:{channel}"


# -- residents on the web (not office data: no hash tag) -----------------------------------


def web_tickets(subject: str, day: str) -> str:
    """Tickets a device or an address (``subject``, hashed) took on the web on a day."""
    return f"mg:limit:web:{subject}:{day}"


def vapid() -> str:
    """The Web Push (VAPID) private key, made on first use and kept."""
    return "mg:vapid"


# -- staff accounts and sessions (not office data: no hash tag) -------------------------


def staff_account(username: str) -> str:
    return f"mg:staff:{username}"


def staff_accounts() -> str:
    """The set of every staff username."""
    return "mg:staff"


def staff_sessions(username: str) -> str:
    """The set of a staff member's live session ids, so that all can be ended at once."""
    return f"mg:staff:{username}:sessions"


def staff_changes() -> str:
    """The channel that announces a staff member's sessions ended or account changed,
    so that every web process forgets what it remembered about them."""
    return "mg:staff-changes"


def session(session_id_hash: str) -> str:
    """A session, under the hash of its id (a leaked key list does not leak sessions)."""
    return f"mg:session:{session_id_hash}"


def signin_pending(token_hash: str) -> str:
    """A sign-in whose password was right, waiting for its authenticator code."""
    return f"mg:signin:pending:{token_hash}"


def signin_failures(subject: str) -> str:
    """Failed sign-ins of a username or an address, counted for throttling."""
    return f"mg:throttle:signin:{subject}"


# -- kiosk devices (not office data: no hash tag) ---------------------------------------


def kiosks() -> str:
    """The set of every kiosk id."""
    return "mg:kiosks"


def kiosk(kiosk_id: str) -> str:
    """A kiosk's registration, its token's hash and its outstanding code's hash."""
    return f"mg:kiosk:{kiosk_id}"


def kiosk_health(kiosk_id: str) -> str:
    """A kiosk's latest health report and when it was seen."""
    return f"mg:kiosk:{kiosk_id}:health"


def kiosk_token(token_hash: str) -> str:
    """The kiosk holding a device token, under the token's hash."""
    return f"mg:kiosk-token:{token_hash}"


def kiosk_code(code_hash: str) -> str:
    """An enrollment code waiting to be used, under the code's hash."""
    return f"mg:kiosk-code:{code_hash}"


def kiosk_code_used(code_hash: str) -> str:
    """A code that was used, remembered for a while so that a retry is told so."""
    return f"mg:kiosk-code-used:{code_hash}"


def enroll_failures(address: str) -> str:
    """Wrong enrollment codes from an address, counted for throttling."""
    return f"mg:throttle:enroll:{address}"


# -- appointments (office data: hash-tagged) ---------------------------------------------


def slot_settings(office: str, service: str) -> str:
    """A service's appointment slots: length, capacity, hours per weekday, days ahead."""
    return office_prefix(office) + f"slots:{service}"


def slot_counts(office: str, service: str, day: str) -> str:
    """Places taken in each of a service's slots on a local day: slot start → count."""
    return office_prefix(office) + f"booked:{service}:{day}"


def appointment(office: str, appointment_id: str) -> str:
    return office_prefix(office) + f"appt:{appointment_id}"


def appointment_token(office: str, token: str) -> str:
    """The appointment a booking page's random token belongs to."""
    return office_prefix(office) + f"appttok:{token}"


def appointment_code(office: str, day: str, code: str) -> str:
    """The appointment a six-digit check-in code names on a local day."""
    return office_prefix(office) + f"apptcode:{day}:{code}"


def appointment_contact(office: str, appointment_id: str) -> str:
    """An appointment's contact e-mail, deleted when it is checked in or cancelled."""
    return office_prefix(office) + f"apptcontact:{appointment_id}"


# -- remote consultation (office data: hash-tagged) ---------------------------------------


def call(office: str, ticket_id: str) -> str:
    """A consultation: its call's state, who may join, and its record once it ended."""
    return office_prefix(office) + f"call:{ticket_id}"


def call_relay(office: str, ticket_id: str) -> str:
    """The pub/sub channel carrying a call's signaling messages between web processes."""
    return office_prefix(office) + f"call:{ticket_id}:relay"


def call_relay_pattern() -> str:
    """A pattern matching every call's relay channel."""
    return "mg:{*}:call:*:relay"


def call_from_relay(channel: str) -> tuple[str, str]:
    """The office and ticket id of a call's relay channel."""
    match = re.fullmatch(r"mg:\{(.+)\}:call:(\d+):relay", channel)
    if match is None:
        raise ValueError(f'"{channel}" is not a call relay channel')
    return match.group(1), match.group(2)


def calls_due(office: str) -> str:
    """The office's calls waiting on a timeout, scored by when it falls due."""
    return office_prefix(office) + "calls:due"


def kiosk_call(office: str, kiosk_id: str) -> str:
    """The consultation a kiosk has open (one at a time), by its ticket id."""
    return office_prefix(office) + f"kiosk-call:{kiosk_id}"


def specialist_call(office: str, username: str) -> str:
    """The consultation a specialist accepted last, by its ticket id (the accept script
    refuses another while that one still rings or runs)."""
    return office_prefix(office) + f"specialist-call:{username}"


def guest_call(office: str, username: str) -> str:
    """The consultation a staff member was last invited into, by its ticket id."""
    return office_prefix(office) + f"guest-call:{username}"


def presence(office: str, username: str) -> str:
    """A specialist's presence at the office (available, busy or away) and until when it
    holds; it expires unless the console refreshes it."""
    return office_prefix(office) + f"presence:{username}"


def forms(office: str) -> str:
    """The office's forms library: form id → its title, pages and upload (JSON)."""
    return office_prefix(office) + "forms"


def form_pdf(office: str, form_id: str) -> str:
    """A form's PDF, base64."""
    return office_prefix(office) + f"form:{form_id}:pdf"


def form_pages(office: str, form_id: str) -> str:
    """A form's pages rendered as PNG (base64), by page number from 1."""
    return office_prefix(office) + f"form:{form_id}:pages"


def kiosk_probe(kiosk_id: str) -> str:
    """Set while a kiosk is asked to run the camera probe (by an admin or the schedule)."""
    return f"mg:kiosk:{kiosk_id}:probe"


#: The set of every web process's switchboard id (not tagged: an index, never in a script).
SWITCHBOARDS = "mg:switchboards"


def switchboard_lease(board: str) -> str:
    """A web process's lease on its signaling connections; it expires when the process dies."""
    return f"mg:switchboard:{board}:lease"


def switchboard_held(board: str) -> str:
    """The signaling connections a web process holds: ``<office> <ticket> <connection>``."""
    return f"mg:switchboard:{board}:held"


def desks(office: str) -> str:
    """The specialists present for remote services at the office, the estimator's servers
    for them: username → ``"<services> <until>"`` (``snapshot.lua`` reads it)."""
    return office_prefix(office) + "desks"
