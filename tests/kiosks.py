"""Kiosks of kokurakita the tests register, and enrolling one."""

from __future__ import annotations

import dataclasses

import httpx
from starlette.applications import Starlette

from madoguchi.kiosk.devices import PLAIN_KIOSK_COOKIE, Kiosk, KioskStore

from conftest import T0

#: A kiosk in a branch of kokurakita, with a browser printer, both cameras and a topic.
ASAHARA = Kiosk(
    id="asahara",
    office="kokurakita",
    branch="足原市民センター",
    place="1階ロビー",
    services=("certs", "moving"),
    topics=("care",),
    cameras=("face", "document"),
)
#: The same branch's kiosk as an administrator names it.
ASHIHARA = dataclasses.replace(
    ASAHARA, id="kokurakita-ashihara", branch="小倉北 — 足原市民センター"
)


#: A kiosk with the face camera only and the topic "care", for consultations' echo checks.
CARE_KIOSK = Kiosk("k1", "kokurakita", "足原市民センター", "1F", (), ("care",), ("face",))


async def enrolled(store: KioskStore, kiosk: Kiosk, at: float = T0) -> str:
    """Register ``kiosk`` and enroll it with a fresh code at ``at``: its device token."""
    await store.put(kiosk)
    code = await store.issue_code(kiosk.id, at)
    _, token = await store.enroll(code, at)
    return token


def kiosk_http(app: Starlette, token: str) -> httpx.AsyncClient:
    """A client of ``app`` on plain localhost that carries a kiosk's device ``token``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://localhost",
        cookies={PLAIN_KIOSK_COOKIE: token},
    )
