"""The JSON API: tickets for residents, counter operations for staff, and bad input."""

from __future__ import annotations

import json

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from madoguchi.queue import keys

BASE = "/api/v1/offices/kokurakita"
#: Stands for the signed-in clerk's headers (the ``staff`` fixture) in parametrized cases.
STAFF = {"as": "staff"}


async def take(client: httpx.AsyncClient, service: str = "certs", **extra: object) -> dict:
    response = await client.post(f"{BASE}/tickets", json={"service": service, **extra})
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


async def test_take_read_and_cancel_a_ticket(client: httpx.AsyncClient) -> None:
    ticket = await take(client)
    assert ticket["number"] == "A-001"
    assert ticket["status"] == "waiting"
    assert ticket["position"] == 1
    assert ticket["issued_at"].endswith("+09:00")
    assert len(ticket["token"]) == 22
    read = await client.get(ticket["url"])
    assert read.status_code == 200
    assert read.json()["ticket"]["id"] == ticket["id"]
    estimate = read.json()["ticket"]["estimate"]
    assert estimate["low_seconds"] <= estimate["wait_seconds"] <= estimate["high_seconds"]
    cancelled = await client.delete(ticket["url"])
    assert cancelled.status_code == 200
    assert cancelled.json()["ticket"]["status"] == "cancelled"
    assert cancelled.json()["ticket"]["estimate"] is None
    again = await client.delete(ticket["url"])
    assert again.status_code == 409
    assert "A-001 is cancelled" in again.json()["error"]["message"]


async def test_idempotency_key_returns_the_same_ticket(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "kiosk-7:tap-123"}
    first = await client.post(f"{BASE}/tickets", json={"service": "certs"}, headers=headers)
    second = await client.post(f"{BASE}/tickets", json={"service": "certs"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["ticket"]["id"] == second.json()["ticket"]["id"]
    other = await client.post(f"{BASE}/tickets", json={"service": "moving"}, headers=headers)
    assert other.status_code == 409


async def test_counter_flow(client: httpx.AsyncClient, staff: dict[str, str]) -> None:
    first = await take(client)
    second = await take(client, "moving")
    opened = await client.post(
        f"{BASE}/counters/c1/open", json={"services": ["certs", "moving"]}, headers=staff
    )
    assert opened.status_code == 200, opened.text
    assert opened.json()["counter"]["state"] == "open"
    called = await client.post(f"{BASE}/counters/c1/call-next", headers=staff)
    assert called.json()["ticket"]["id"] == first["id"]
    assert called.json()["ticket"]["counter"] == "c1"
    assert "token" not in called.json()["ticket"]
    tid = first["id"]
    for action, status in [("recall", "called"), ("start", "serving"), ("finish", "done")]:
        response = await client.post(f"{BASE}/tickets/{tid}/{action}", headers=staff)
        assert response.status_code == 200, response.text
        assert response.json()["ticket"]["status"] == status
    called = await client.post(f"{BASE}/counters/c1/call-next", headers=staff)
    assert called.json()["ticket"]["id"] == second["id"]
    moved = await client.post(
        f"{BASE}/tickets/{second['id']}/transfer", json={"service": "certs"}, headers=staff
    )
    assert moved.json()["ticket"]["service"] == "certs"
    assert moved.json()["ticket"]["status"] == "waiting"
    called = await client.post(f"{BASE}/counters/c1/call-next", headers=staff)
    noshow = await client.post(f"{BASE}/tickets/{second['id']}/no-show", headers=staff)
    assert noshow.json()["ticket"]["status"] == "no_show"
    empty = await client.post(f"{BASE}/counters/c1/call-next", headers=staff)
    assert empty.status_code == 200
    assert empty.json()["ticket"] is None
    assert (await client.post(f"{BASE}/counters/c1/pause", headers=staff)).status_code == 200
    refused = await client.post(f"{BASE}/counters/c1/call-next", headers=staff)
    assert refused.status_code == 409
    assert "paused" in refused.json()["error"]["message"]
    closed = await client.post(f"{BASE}/counters/c1/close", headers=staff)
    assert closed.json()["counter"]["state"] == "closed"


async def test_office_status(client: httpx.AsyncClient, staff: dict[str, str]) -> None:
    await take(client)
    await take(client)
    await client.post(f"{BASE}/counters/c1/open", json={"services": ["certs"]}, headers=staff)
    status = (await client.get(BASE)).json()
    services = {s["id"]: s for s in status["services"]}
    assert services["certs"]["waiting"] == 2
    assert services["certs"]["open_counters"] == 1
    assert services["moving"]["open_counters"] == 0
    assert services["certs"]["estimate_for_new_ticket"]["ahead"] == 2
    listing = (await client.get("/api/v1/offices")).json()
    assert [o["id"] for o in listing["offices"]] == ["kokurakita"]


async def test_counter_operations_need_a_staff_session(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    ticket = await take(client)
    for path in [f"{BASE}/counters/c1/call-next", f"{BASE}/tickets/{ticket['id']}/finish"]:
        missing = await client.post(path)
        forged = await client.post(path, headers={"Cookie": "__Host-madoguchi=nope"})
        no_csrf = await client.post(path, headers={"Cookie": staff["Cookie"]})
        assert (missing.status_code, forged.status_code) == (401, 401)
        assert no_csrf.status_code == 403
        assert "reload and retry" in no_csrf.json()["error"]["message"]
        bearer = await client.post(path, headers={"Authorization": "Bearer test-staff-token"})
        assert bearer.status_code == 401  # the foundation's bearer token is gone
    by_id = await client.get(f"{BASE}/tickets/{ticket['id']}")
    assert by_id.status_code == 401
    priority = await client.post(f"{BASE}/tickets", json={"service": "certs", "priority": True})
    assert priority.status_code == 401
    reception = await client.post(
        f"{BASE}/tickets", json={"service": "certs", "channel": "reception"}
    )
    assert reception.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "says"),
    [
        ("POST", f"{BASE}/tickets", b"{not json", {}, 400, "not valid JSON"),
        ("POST", f"{BASE}/tickets", b"[1, 2]", {}, 400, "JSON object"),
        ("POST", f"{BASE}/tickets", b"", {}, 400, "empty"),
        ("POST", f"{BASE}/tickets", b'{"service": 7}', {}, 422, '"service" must be a string'),
        ("POST", f"{BASE}/tickets", b'{"service": null}', {}, 422, '"service" is required'),
        (
            "POST",
            f"{BASE}/tickets",
            b'{"service": "certs", "priority": "yes"}',
            {},
            422,
            "true or false",
        ),
        (
            "POST",
            f"{BASE}/tickets",
            b'{"service": "certs", "channel": "fax"}',
            {},
            422,
            "must be one of",
        ),
        (
            "POST",
            f"{BASE}/tickets",
            b'{"service": "certs", "name": "Ito"}',
            {},
            422,
            'unknown field "name"',
        ),
        (
            "POST",
            f"{BASE}/tickets",
            b'{"service": "passports"}',
            {},
            404,
            'service "passports" does not exist',
        ),
        ("POST", f"{BASE}/tickets", b'{"service": "Certs!"}', {}, 422, "lowercase"),
        (
            "POST",
            "/api/v1/offices/atlantis/tickets",
            b'{"service": "certs"}',
            {},
            404,
            'office "atlantis" does not exist',
        ),
        (
            "POST",
            f"{BASE}/tickets",
            b'{"service": "certs"}',
            {"Idempotency-Key": "a b"},
            422,
            "idempotency key",
        ),
        (
            "POST",
            f"{BASE}/tickets",
            b'{"service": "certs"}',
            {"Content-Type": "text/plain"},
            415,
            "application/json",
        ),
        ("POST", f"{BASE}/tickets", b'{"service": "' + b"x" * 20_000 + b'"}', {}, 413, "limit"),
        ("GET", f"{BASE}/tickets/AAAAAAAAAAAAAAAAAAAAAA", b"", {}, 404, "no such ticket"),
        ("GET", f"{BASE}/tickets/../../etc", b"", {}, 404, ""),
        ("GET", f"{BASE}/tickets/%00%01", b"", {}, 404, "not a ticket id or token"),
        ("GET", "/api/v1/offices/ATLANTIS", b"", {}, 404, "does not exist"),
        ("DELETE", f"{BASE}/tickets/short", b"", {}, 404, "not a ticket id or token"),
        ("PUT", f"{BASE}/tickets", b"{}", {}, 405, "not allowed"),
        (
            "POST",
            f"{BASE}/counters/c1/dance",
            b"",
            STAFF,
            404,
            "no counter action",
        ),
        (
            "POST",
            f"{BASE}/counters/c1/open",
            b'{"services": "certs"}',
            STAFF,
            422,
            "must be a list",
        ),
        (
            "POST",
            f"{BASE}/counters/c1/open",
            b'{"services": [1]}',
            STAFF,
            422,
            "list of service ids",
        ),
        (
            "POST",
            f"{BASE}/counters/c1/open",
            b'{"services": ["nope"]}',
            STAFF,
            403,
            'may not serve "nope"',
        ),
        (
            "POST",
            f"{BASE}/counters/c1/open",
            b"{}",
            STAFF,
            422,
            "at least one service",
        ),
        (
            "POST",
            f"{BASE}/tickets/00000001/finish",
            b"",
            STAFF,
            404,
            "does not exist",
        ),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    client: httpx.AsyncClient,
    aredis: Redis,
    staff: dict[str, str],
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    headers = staff if headers is STAFF else headers
    before = await aredis.xlen(keys.events("kokurakita"))
    dbsize = await aredis.dbsize()
    response = await client.request(
        method, path, content=body, headers={"Content-Type": "application/json", **headers}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"]
    assert await aredis.xlen(keys.events("kokurakita")) == before
    assert await aredis.dbsize() == dbsize


async def test_openapi_document_lists_every_api_route(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    paths = set(document["paths"])
    assert "/api/v1/offices/{office}/tickets" in paths
    for action in ("recall", "no-show", "start", "finish", "transfer", "cancel"):
        assert f"/api/v1/offices/{{office}}/tickets/{{ticket}}/{action}" in paths
    for action in ("open", "pause", "close", "call-next"):
        assert f"/api/v1/offices/{{office}}/counters/{{counter}}/{action}" in paths
    json.dumps(document)


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    await take(client)
    assert (await client.get("/livez")).json() == {"status": "alive"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    text = (await client.get("/metrics")).text
    assert 'madoguchi_waiting_tickets{office="kokurakita",service="certs"} 1.0' in text
    assert "madoguchi_estimated_wait_seconds" in text
    assert 'route="/api/v1/offices/{office}/tickets"' in text


async def test_residents_on_the_api_share_the_web_pages_daily_limit(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    limit = app.state.settings.web_tickets_per_address
    first = await take(client, idempotency_key="first-ticket-of-the-day")
    for _ in range(limit - 1):
        await take(client)
    # A retry with its idempotency key gives the same ticket and is not counted again.
    again = await client.post(
        f"{BASE}/tickets", json={"service": "certs", "idempotency_key": "first-ticket-of-the-day"}
    )
    assert again.status_code == 200
    assert again.json()["ticket"]["number"] == first["number"]
    refused = await client.post(f"{BASE}/tickets", json={"service": "certs"})
    assert refused.status_code == 429
    assert "too many tickets from this address today" in refused.json()["error"]["message"]
    # A kiosk's or the phone line's channel is not a way round it: those are staff's.
    for channel in ("kiosk", "phone"):
        other = await client.post(f"{BASE}/tickets", json={"service": "certs", "channel": channel})
        assert other.status_code == 401, channel
