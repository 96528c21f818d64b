"""Health reports and the fleet page: a kiosk that stops reporting shows as offline within
two minutes of the app's clock, and its problems are shown in words."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from madoguchi import __version__
from madoguchi.kiosk.devices import Kiosk, KioskStore, Printer
from madoguchi.kiosk.health import OFFLINE_AFTER, KioskHealth, State, parse_report
from madoguchi.queue.model import Office
from madoguchi.web.accounts import Role
from madoguchi.web.exceptions import Unprocessable

from conftest import T0, sign_in_form
from test_kiosk_printing import PAPER_OK, PAPER_OUT, FakePrinter, printer_on_the_network

KIOSK = Kiosk(
    "kokurakita-ashihara",
    "kokurakita",
    "小倉北 — 足原市民センター",
    "1階ロビー",
    ("certs",),
    ("care",),
    ("face", "document"),
    Printer("browser"),
)
GOOD = {
    "cameras": 2,
    "microphones": 1,
    "printer": "unknown",
    "round_trip_ms": 42,
    "version": __version__,
}


@pytest.fixture
async def token(app: Starlette) -> str:
    """The device token of KIOSK, enrolled."""
    store: KioskStore = app.state.kiosks
    await store.put(KIOSK)
    await store.put(dataclasses.replace(KIOSK, id="moji-dairi", office="moji", branch="門司"))
    _, token = await store.enroll(await store.issue_code(KIOSK.id, T0), T0)
    return token


async def report(http: httpx.AsyncClient, token: str, body: Any) -> httpx.Response:
    return await http.post(
        "/kiosk/api/health", json=body, headers={"Cookie": f"madoguchi-kiosk={token}"}
    )


def row(page: httpx.Response, kiosk_id: str) -> str:
    found = re.search(
        rf'<tr class="state-([a-z-]+)" data-kiosk="{kiosk_id}">(.*?)</tr>', page.text, re.S
    )
    assert found is not None, page.text
    return f"{found.group(1)}: " + re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(2)))


async def test_the_fleet_shows_a_kiosk_offline_within_two_minutes(
    app: Starlette, http: httpx.AsyncClient, office: Office, token: str
) -> None:
    answer = await report(http, token, GOOD)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"kiosk": KIOSK.id, "problems": [], "every": 30}
    # The report renews the device cookie, so a kiosk in use keeps it for good.
    assert "madoguchi-kiosk=" + token in answer.headers["set-cookie"]
    await sign_in_form(http, app, "boss", Role.ADMIN)
    fleet = await http.get("/admin/kiosks")
    assert fleet.status_code == 200
    online = row(fleet, KIOSK.id)
    assert online.startswith("online: ")
    assert "42 ms" in online
    assert __version__ in online
    assert row(fleet, "moji-dairi").startswith("not-enrolled: ")
    # No report since: still online just before two minutes, offline at two minutes.
    app.state.offset = OFFLINE_AFTER - 1
    assert row(await http.get("/admin/kiosks"), KIOSK.id).startswith("online: ")
    app.state.offset = OFFLINE_AFTER
    offline = row(await http.get("/admin/kiosks"), KIOSK.id)
    assert offline.startswith("offline: ")
    assert "No report for 2 minutes" in offline
    # A new report brings it back.
    await report(http, token, GOOD)
    assert row(await http.get("/admin/kiosks"), KIOSK.id).startswith("online: ")


async def test_problems_are_shown_in_words(
    app: Starlette, http: httpx.AsyncClient, office: Office, token: str
) -> None:
    bad = {**GOOD, "cameras": 1, "microphones": 0, "printer": "no_paper", "round_trip_ms": 2500}
    answer = await report(http, token, bad)
    codes = [p["code"] for p in answer.json()["problems"]]
    assert codes == ["cameras", "microphone", "printer_no_paper", "slow_network"]
    await sign_in_form(http, app, "boss", Role.ADMIN)
    shown_row = row(await http.get("/admin/kiosks"), KIOSK.id)
    assert shown_row.startswith("problem: ")
    for words in (
        "Cameras: 1 of 2 found",
        "No microphone found",
        "The printer is out of paper",
        "Slow network: 2500 ms round trip",
    ):
        assert words in shown_row
    await report(http, token, {**GOOD, "version": "0.0.9"})
    assert "Runs app version 0.0.9" in row(await http.get("/admin/kiosks"), KIOSK.id)


async def test_pre_call_check_and_camera_probe_results_have_their_columns(
    app: Starlette, http: httpx.AsyncClient, office: Office, token: str
) -> None:
    health = KioskHealth(app.state.redis)
    await health.record_check(KIOSK.id, "precall", True, "38 ms, no loss, 30 fps", T0)
    await health.record_check(KIOSK.id, "probe", False, "document camera: no frames", T0)
    await sign_in_form(http, app, "boss", Role.ADMIN)
    page = await http.get("/admin/kiosks")
    assert "Pre-call check" in page.text
    assert "Camera probe" in page.text
    shown_row = row(page, KIOSK.id)
    assert "Passed: 38 ms, no loss, 30 fps" in shown_row
    assert "Failed: document camera: no frames" in shown_row


async def test_a_revoked_kiosk_is_refused_and_shown_as_revoked(
    app: Starlette, http: httpx.AsyncClient, office: Office, token: str
) -> None:
    assert (await report(http, token, GOOD)).status_code == 200
    await app.state.kiosks.revoke(KIOSK.id)
    refused = await report(http, token, GOOD)
    assert refused.status_code == 401
    await sign_in_form(http, app, "boss", Role.ADMIN)
    assert row(await http.get("/admin/kiosks"), KIOSK.id).startswith("revoked: ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "cameras": -1}, "cameras"),
        ({**GOOD, "cameras": 17}, "cameras"),
        ({**GOOD, "cameras": True}, "cameras"),
        ({**GOOD, "cameras": 1.5}, "cameras"),
        ({**GOOD, "microphones": "1"}, "microphones"),
        ({k: v for k, v in GOOD.items() if k != "microphones"}, "microphones"),
        ({**GOOD, "printer": "jammed"}, "printer"),
        ({**GOOD, "round_trip_ms": -5}, "round_trip_ms"),
        ({**GOOD, "round_trip_ms": 1e9}, "round_trip_ms"),
        ({**GOOD, "version": ""}, "version"),
        ({**GOOD, "version": "x" * 41}, "version"),
        ({**GOOD, "version": "1.0\n"}, "version"),
        ({**GOOD, "extra": 1}, "extra"),
    ],
)
def test_bad_reports_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(Unprocessable, match=f'"{field}"'):
        parse_report(body)


async def test_bad_reports_get_a_4xx_and_change_nothing(
    app: Starlette, http: httpx.AsyncClient, office: Office, token: str
) -> None:
    headers = {"Cookie": f"madoguchi-kiosk={token}"}
    for content, kind, status in (
        (b'{"cameras": -1}', "application/json", 422),
        (b"not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"cameras=2", "application/x-www-form-urlencoded", 415),
        (b"x" * 5000, "application/json", 413),
    ):
        answer = await http.post(
            "/kiosk/api/health", content=content, headers={**headers, "Content-Type": kind}
        )
        assert answer.status_code == status, (content[:20], answer.text)
        assert "error" in answer.json()
    assert await KioskHealth(app.state.redis).latest(KIOSK.id) is None
    assert (await report(http, token, {**GOOD, "round_trip_ms": None})).status_code == 200
    latest = await KioskHealth(app.state.redis).latest(KIOSK.id)
    assert latest is not None
    assert latest.round_trip_ms is None


async def test_the_fleet_state_is_judged_from_the_clock(app: Starlette, token: str) -> None:
    health = KioskHealth(app.state.redis)
    await health.record(KIOSK.id, parse_report(GOOD), T0)
    fleet = {s.kiosk.id: s for s in await health.fleet(app.state.kiosks, T0 + 119.9)}
    assert fleet[KIOSK.id].state is State.ONLINE
    fleet = {s.kiosk.id: s for s in await health.fleet(app.state.kiosks, T0 + 120)}
    assert fleet[KIOSK.id].state is State.OFFLINE
    assert fleet["moji-dairi"].state is State.NOT_ENROLLED


async def test_an_escpos_printer_is_asked_by_the_server(
    app: Starlette,
    http: httpx.AsyncClient,
    office: Office,
    token: str,
) -> None:
    """A browser cannot see an ESC/POS printer: the server asks it, and keeps its answer."""
    with printer_on_the_network() as (fake, port):
        await _asked_by_the_server(app, http, token, fake, port)


async def _asked_by_the_server(
    app: Starlette, http: httpx.AsyncClient, token: str, fake: FakePrinter, port: int
) -> None:
    store: KioskStore = app.state.kiosks
    await store.put(dataclasses.replace(KIOSK, printer=Printer("escpos", "127.0.0.1", port, 80)))
    fake.paper = PAPER_OUT
    answer = await report(http, token, GOOD)  # the page says "unknown"
    assert [p["code"] for p in answer.json()["problems"]] == ["printer_no_paper"]
    latest = await KioskHealth(app.state.redis).latest(KIOSK.id)
    assert latest is not None
    assert latest.printer == "no_paper"
    fake.paper = PAPER_OK
    await report(http, token, GOOD)
    latest = await KioskHealth(app.state.redis).latest(KIOSK.id)
    assert latest is not None
    assert latest.printer == "ok"
