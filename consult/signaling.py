"""Signaling: one WebSocket per participant of a call, ``/consult/ws/{call}``.

Who may connect: the kiosk that raised the consultation (its device token), the
specialist who accepted it and the one person they invited (staff sessions). The
``Origin`` header must be this site's. A refused connection is accepted and closed at
once with a code and a reason a person can read (see :data:`CLOSE`).

Every message is a JSON object with a ``type`` (see :func:`validate` for each type's
fields), at most :data:`MAX_BYTES` bytes, and a connection may send :data:`BURST`
messages at once and :data:`RATE` a second after that. A message too big or too many
close the connection (1009, 1008); a malformed one is answered with an ``error``
message and dropped. Valid messages go to the call's other participants (to one of them
with ``"to": role``) through Redis, with ``"from": role`` added by the server. Chat text
is relayed only, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..kiosk.devices import device_token, kiosk_of
from ..queue.exceptions import NotFound, QueueError
from ..web.exceptions import HTTPError
from ..web.security import require
from ..web.state import now_of
from .calls import Call, CallState, Role, connection_id, parse_call_id
from .exceptions import CallEnded, NotParticipant
from .switchboard import Participant, Switchboard, switchboard_of
from .turn import ice_servers

log = logging.getLogger(__name__)

#: Largest message accepted, in bytes (an SDP fits many times over).
MAX_BYTES = 64 * 1024
#: The token bucket of each connection: messages at once, and per second after that.
BURST = 120
RATE = 30.0
#: Close codes, and the reasons a person reads.
CLOSE = {
    "ended": 1000,
    "going_away": 1001,
    "unsupported": 1003,
    "flooding": 1008,
    "too_big": 1009,
    "relay_lost": 1012,
    "not_ready": 1013,
    "unauthorized": 4401,
    "forbidden": 4403,
    "not_found": 4404,
    "replaced": 4409,
    "gone": 4410,
}
ROLES = frozenset(r.value for r in Role)
UNAVAILABLE = "signaling is unavailable for a moment; reconnect"
#: Types only staff (the specialist, the invited person) may send.
STAFF_ONLY = frozenset({"mark", "snapshot-request", "form"})
SDP_TYPES = frozenset({"offer", "answer"})
FORM_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class Invalid(Exception):
    """A message that breaks the protocol; the sender is told why."""


@dataclass(frozen=True)
class Close:
    """How a connection ends: a close code and a reason a person can read."""

    code: int
    reason: str

    @property
    def short_reason(self) -> str:
        # A close frame's reason may hold 123 bytes of UTF-8 at most.
        return self.reason.encode()[:123].decode(errors="ignore")


@dataclass
class TokenBucket:
    """``burst`` messages at once, refilled at ``rate`` a second (by the monotonic clock)."""

    burst: float = BURST
    rate: float = RATE
    tokens: float = BURST
    at: float = 0.0

    def take(self, now: float) -> bool:
        if self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# -- the messages -------------------------------------------------------------------------


def _text(message: dict[str, Any], name: str, limit: int, *, required: bool = True) -> str | None:
    value = message.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Invalid(f'"{name}" must be a string')
    if len(value) > limit:
        raise Invalid(f'"{name}" is longer than {limit} characters')
    return value


def _number(message: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = message.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f'"{name}" must be a number')
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too big for a float
        finite = False
    if not finite:
        raise Invalid(f'"{name}" must be a number')
    if not low <= value <= high:
        raise Invalid(f'"{name}" must be from {low:g} to {high:g}')
    return float(value)


def _printable(text: str, name: str) -> str:
    if any(not (c.isprintable() or c == "\n") for c in text):
        raise Invalid(f'"{name}" holds control characters')
    return text


def _only(message: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(message) - allowed - {"type", "to"})
    if unknown:
        raise Invalid(f'unknown field "{unknown[0][:40]}" in a {message["type"]} message')


def quality_level(loss: float, rtt: float, fps: float | None) -> str:
    """A call's quality from packet loss (0–1), round trip (ms) and frame rate."""
    if loss >= 0.08 or rtt >= 800 or (fps is not None and fps < 10):
        return "poor"
    if loss >= 0.02 or rtt >= 300 or (fps is not None and fps < 20):
        return "fair"
    return "good"


def validate(message: Any, role: Role) -> dict[str, Any]:
    """The message as it is relayed (fields checked, nothing unknown), or :class:`Invalid`."""
    if not isinstance(message, dict):
        raise Invalid("a message must be a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in VALIDATORS:
        shown = json.dumps(kind)[:40]
        raise Invalid(f"unknown message type {shown}; known: {', '.join(sorted(VALIDATORS))}")
    if kind in STAFF_ONLY and role is Role.KIOSK:
        raise Invalid(f"a kiosk may not send {kind} messages")
    to = message.get("to")
    if to is not None and (not isinstance(to, str) or to not in ROLES or to == role.value):
        raise Invalid('"to" must be another participant: kiosk, specialist or guest')
    body = VALIDATORS[kind](message)
    return {"type": kind, **body, **({"to": to} if to is not None else {})}


def _sdp(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"sdp"})
    sdp = _text(message, "sdp", MAX_BYTES)
    assert sdp is not None
    if not sdp.startswith("v=0"):
        raise Invalid(f'"sdp" of an {message["type"]} must be a session description (v=0 …)')
    return {"sdp": sdp}


def _candidate(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"})
    candidate = _text(message, "candidate", 1024)
    assert candidate is not None
    if candidate and not candidate.startswith(("candidate:", "a=candidate:")):
        raise Invalid('"candidate" must be an ICE candidate line (or "" for the end)')
    index = _number(message, "sdpMLineIndex", 0, 64)
    if index is not None and not index.is_integer():
        raise Invalid('"sdpMLineIndex" must be a whole number')
    return {
        "candidate": candidate,
        "sdpMid": _text(message, "sdpMid", 64, required=False),
        "sdpMLineIndex": None if index is None else int(index),
        "usernameFragment": _text(message, "usernameFragment", 256, required=False),
    }


def _restart(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"renegotiate"})
    renegotiate = message.get("renegotiate", False)
    if not isinstance(renegotiate, bool):
        raise Invalid('"renegotiate" must be true or false')
    return {"renegotiate": renegotiate}


def _chat(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"text"})
    text = _text(message, "text", 1000)
    assert text is not None
    if not text.strip():
        raise Invalid('"text" is empty')
    return {"text": _printable(text, "text")}


def _mark(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"points", "label", "clear"})
    if message.get("clear") is True and "points" not in message:
        return {"clear": True}
    points = message.get("points")
    if not isinstance(points, list) or not 1 <= len(points) <= 256:
        raise Invalid('"points" must be a list of 1 to 256 [x, y] pairs')
    clean = []
    for point in points:
        if not (isinstance(point, list) and len(point) == 2):
            raise Invalid('each of "points" must be [x, y], from 0 to 1')
        pair = _number({"x": point[0]}, "x", 0, 1), _number({"y": point[1]}, "y", 0, 1)
        if None in pair:
            raise Invalid('each of "points" must be [x, y], from 0 to 1')
        clean.append(list(pair))
    label = _text(message, "label", 200, required=False)
    return {"points": clean, "label": None if label is None else _printable(label, "label")}


def _snapshot_request(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"camera"})
    camera = message.get("camera", "document")
    if camera not in ("document", "face"):
        raise Invalid('"camera" must be "document" or "face"')
    return {"camera": camera}


def _form(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"form", "title"})
    form = _text(message, "form", 80)
    assert form is not None
    if not form or not set(form) <= FORM_ID_CHARS:
        raise Invalid('"form" must be a form id: lowercase letters, digits, "-" and "_"')
    title = _text(message, "title", 200, required=False)
    return {"form": form, "title": None if title is None else _printable(title, "title")}


def _quality(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, {"loss", "rtt", "fps"})
    loss = _number(message, "loss", 0, 1)
    rtt = _number(message, "rtt", 0, 60_000)
    if loss is None or rtt is None:
        raise Invalid('a quality message needs "loss" (0–1) and "rtt" (ms)')
    fps = _number(message, "fps", 0, 240)
    return {"loss": loss, "rtt": rtt, "fps": fps, "level": quality_level(loss, rtt, fps)}


def _bye(message: dict[str, Any]) -> dict[str, Any]:
    _only(message, set())
    return {}


VALIDATORS = {
    "offer": _sdp,
    "answer": _sdp,
    "candidate": _candidate,
    "restart": _restart,
    "chat": _chat,
    "mark": _mark,
    "snapshot-request": _snapshot_request,
    "form": _form,
    "quality": _quality,
    "bye": _bye,
}


# -- the connection ----------------------------------------------------------------------


def origin_allowed(websocket: WebSocket) -> bool:
    """Whether the ``Origin`` is this site (the scheme and host the browser connected to)."""
    origin = websocket.headers.get("origin", "")
    host = websocket.headers.get("host", "")
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return bool(host) and origin.lower() == f"{scheme}://{host}".lower()


async def refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close at once with ``code`` and ``reason`` (which a browser can read;
    a refused handshake would show it only a failed connection)."""
    await websocket.accept()
    await websocket.close(code, Close(code, reason).short_reason)


@dataclass(frozen=True)
class Who:
    kiosk: str = ""
    staff: str = ""


async def identify(websocket: WebSocket, office: str) -> Who:
    """The kiosk (by device token) or the staff member (by session) behind the connection."""
    if device_token(websocket):
        kiosk = await kiosk_of(websocket)
        if kiosk.office != office:
            raise NotParticipant(f'this kiosk belongs to office "{kiosk.office}"')
        return Who(kiosk=kiosk.id)
    staff = await require(websocket, office=office)
    return Who(staff=staff.account.username)


async def call_socket(websocket: WebSocket) -> None:
    """``/consult/ws/{call}``: a participant's signaling connection."""
    board = switchboard_of(websocket)
    try:
        office, ticket = parse_call_id(websocket.path_params["call"])
    except NotFound as exc:
        await refuse(websocket, CLOSE["not_found"], exc.message)
        return
    if not origin_allowed(websocket):
        await refuse(websocket, CLOSE["forbidden"], "connections from other sites are refused")
        return
    try:
        who = await identify(websocket, office)
    except HTTPError as exc:
        code = CLOSE["unauthorized"] if exc.status == 401 else CLOSE["forbidden"]
        await refuse(websocket, code, exc.message)
        return
    except NotParticipant as exc:
        await refuse(websocket, CLOSE["forbidden"], exc.message)
        return
    try:
        await asyncio.wait_for(board.ready.wait(), 5.0)
    except TimeoutError:
        await refuse(websocket, CLOSE["not_ready"], "signaling is not ready; try again shortly")
        return
    participant = Participant(office, ticket, connection_id())
    async with board.attend(participant):
        try:
            joined = await board.calls.join(
                office,
                ticket,
                kiosk=who.kiosk,
                staff=who.staff,
                connection=participant.connection,
                now=now_of(websocket),
            )
        except (NotParticipant, CallEnded, NotFound) as exc:
            why = {403: "forbidden", 410: "gone"}.get(exc.status, "not_found")
            await refuse(websocket, CLOSE[why], exc.message)
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("call %s.%s: redis unreachable at join (%s)", office, ticket, exc)
            await refuse(websocket, CLOSE["not_ready"], UNAVAILABLE)
            return
        participant.role = joined.role
        await websocket.accept()
        try:
            await _converse(websocket, board, participant, who, joined.call.id)
        finally:
            with contextlib.suppress(QueueError, RedisConnectionError, RedisTimeoutError):
                await board.calls.leave(
                    office,
                    ticket,
                    joined.role,
                    connection=participant.connection,
                    now=now_of(websocket),
                )


async def _converse(
    websocket: WebSocket, board: Switchboard, participant: Participant, who: Who, call: str
) -> None:
    assert participant.role is not None
    state = await board.calls.get(participant.office, participant.ticket)
    await websocket.send_json(
        {
            "type": "welcome",
            "call": call,
            "role": participant.role.value,
            # coturn checks the credentials' expiry against its own clock: real time.
            "iceServers": ice_servers(websocket.app.state.settings, call, time.time()),
            "iceTransportPolicy": websocket.app.state.settings.ice_transport_policy,
            "state": state_message(state),
            "limits": {"bytes": MAX_BYTES, "burst": BURST, "rate": RATE},
        }
    )
    reading = asyncio.create_task(_read(websocket, board, participant, who))
    writing = asyncio.create_task(_write(websocket, participant, who))
    done, pending = await asyncio.wait({reading, writing}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await task
    close = None
    for task in done:
        try:
            close = task.result() or close
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("call %s: redis unreachable (%s)", call, exc)
            close = Close(CLOSE["not_ready"], UNAVAILABLE)
        except (WebSocketDisconnect, OSError):
            return  # the other end went away while something was being sent to it
    if close is not None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(close.code, close.short_reason)


def state_message(call: Call) -> dict[str, Any]:
    """The ``state`` message of a :class:`~madoguchi.consult.calls.Call`, as the scripts send it."""
    return {
        "type": "state",
        "call": call.id,
        "state": call.state.value,
        "reason": call.reason,
        "service": call.service,
        "specialist": call.specialist,
        "guest": call.guest,
        "present": {r.value: r in call.present for r in Role},
        "deadline": call.deadline,
        "rating": "" if call.rating is None else str(call.rating),
    }


async def _read(
    websocket: WebSocket, board: Switchboard, participant: Participant, who: Who
) -> Close | None:
    assert participant.role is not None
    bucket = TokenBucket()
    while True:
        raw = await websocket.receive()
        if raw["type"] == "websocket.disconnect":
            return None
        text = raw.get("text")
        if text is None:
            return Close(CLOSE["unsupported"], "send JSON text messages, not binary")
        if len(text) > MAX_BYTES or len(text.encode()) > MAX_BYTES:
            return Close(CLOSE["too_big"], f"a message may be at most {MAX_BYTES} bytes")
        if not bucket.take(time.monotonic()):
            return Close(CLOSE["flooding"], f"too many messages: at most {RATE:g} a second")
        try:
            message = validate(json.loads(text), participant.role)
        except (ValueError, RecursionError):
            await _error(websocket, "invalid", "a message must be JSON")
            continue
        except Invalid as exc:
            await _error(websocket, "invalid", str(exc))
            continue
        if message["type"] == "bye":
            await _hang_up(websocket, board, participant, who)
            continue
        to = message.pop("to", None)
        await board.send(participant, message, to=to)


async def _error(websocket: WebSocket, code: str, text: str) -> None:
    await websocket.send_json({"type": "error", "code": code, "message": text})


async def _hang_up(
    websocket: WebSocket, board: Switchboard, participant: Participant, who: Who
) -> None:
    assert participant.role is not None
    try:
        await board.calls.end(
            participant.office,
            participant.ticket,
            participant.role,
            who.kiosk or who.staff,
            now=now_of(websocket),
        )
    except QueueError as exc:
        await _error(websocket, exc.code, exc.message)
    else:
        participant.left = True


async def _write(websocket: WebSocket, participant: Participant, who: Who) -> Close | None:
    while True:
        message = await participant.inbox.get()
        if participant.overflowed:
            return Close(CLOSE["not_ready"], "too far behind; reconnect")
        if message is None:
            return Close(CLOSE["relay_lost"], "signaling restarted; reconnect")
        if message.get("type") == "replaced":
            return Close(CLOSE["replaced"], "joined again from another connection")
        await websocket.send_json(message)
        if message.get("type") == "state":
            close = _still_in(message, participant, who)
            if close is not None and participant.left and close.code != CLOSE["ended"]:
                return Close(CLOSE["ended"], "you left the consultation")
            if close is not None:
                return close


def _still_in(state: dict[str, Any], participant: Participant, who: Who) -> Close | None:
    """Whether the participant is still in the call after a state change, or how it ends."""
    current = state.get("state")
    if current == CallState.ENDED.value:
        return Close(CLOSE["ended"], f"the consultation ended ({state.get('reason', '')})")
    if participant.role is Role.KIOSK:
        return None
    if current == CallState.WAITING.value:
        return Close(
            CLOSE["gone"], f"the consultation went back to the queue ({state.get('reason')})"
        )
    field = "specialist" if participant.role is Role.SPECIALIST else "guest"
    if state.get(field) != who.staff:
        return Close(CLOSE["gone"], "you are no longer in this consultation")
    return None


routes: list[BaseRoute] = [WebSocketRoute("/consult/ws/{call}", call_socket)]
