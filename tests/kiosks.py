"""Kiosks of kokurakita the tests register, and enrolling one."""

from __future__ import annotations

import dataclasses

from madoguchi.kiosk.devices import Kiosk, KioskStore

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


async def enrolled(store: KioskStore, kiosk: Kiosk, at: float = T0) -> str:
    """Register ``kiosk`` and enroll it with a fresh code at ``at``: its device token."""
    await store.put(kiosk)
    code = await store.issue_code(kiosk.id, at)
    _, token = await store.enroll(code, at)
    return token
