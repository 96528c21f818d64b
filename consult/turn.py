"""ICE servers for a call: STUN and TURN from the settings, with short-lived TURN
credentials per call for coturn's REST mode (``use-auth-secret``).

coturn checks a username of the form ``"<expiry>:<anything>"`` against the password
``base64(HMAC-SHA1(static-auth-secret, username))`` and refuses it once ``<expiry>``
(seconds since the epoch) has passed; so the server hands each participant of a call
credentials good for ``MADOGUCHI_TURN_TTL`` seconds and nobody stores a password. With
no STUN or TURN set (a closed network), the list is empty and the browsers use host
candidates only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from ..settings import Settings


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str


def turn_credential(secret: str, call: str, expires: int) -> TurnCredential:
    """coturn REST-mode credentials for ``call``, good until ``expires``."""
    username = f"{expires}:{call}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode())


def ice_servers(settings: Settings, call: str, now: float) -> list[dict[str, Any]]:
    """The ``iceServers`` of an ``RTCConfiguration`` for one participant of ``call``."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls:
        credential = turn_credential(str(settings.turn_secret), call, int(now) + settings.turn_ttl)
        servers.append(
            {
                "urls": list(settings.turn_urls),
                "username": credential.username,
                "credential": credential.password,
            }
        )
    return servers
