"""Whatever a client sends, the API answers with a clear 4xx (or success), never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings
from madoguchi.web.app import create_app

from conftest import OFFICE, SERVICES, T0, make_account, sign_in

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=4)
    ),
    max_leaves=12,
)
fields = st.sampled_from(
    [
        "service",
        "channel",
        "priority",
        "appointment_at",
        "idempotency_key",
        "services",
        "name",
        "reason",
        "username",
        "password",
        "code",
        "x",
    ]
)
bodies = st.one_of(
    st.dictionaries(fields, json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)
segments = st.one_of(
    st.sampled_from(["kokurakita", "certs", "c1", "00000001", "atlantis", "", "..", "%00"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)
paths = st.one_of(
    st.just("/api/v1/offices/kokurakita/tickets"),
    st.just("/api/v1/session"),
    st.builds(lambda o: f"/api/v1/offices/{o}/tickets", segments),
    st.builds(lambda o, t: f"/api/v1/offices/{o}/tickets/{t}", segments, segments),
    st.builds(
        lambda t, a: f"/api/v1/offices/kokurakita/tickets/{t}/{a}",
        segments,
        st.sampled_from(["recall", "no-show", "start", "finish", "transfer", "cancel", "x"]),
    ),
    st.builds(
        lambda c, a: f"/api/v1/offices/kokurakita/counters/{c}/{a}",
        segments,
        st.sampled_from(["open", "pause", "close", "call-next", "x"]),
    ),
)


class Harness:
    """The app and its lifespan, running in a private event loop across examples."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = create_app(settings, clock=lambda: T0)
        self.lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        self.loop.run_until_complete(self._seed())
        transport = httpx.ASGITransport(app=self.app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.staff = self.loop.run_until_complete(sign_in(self.http, "clerk"))

    async def _seed(self) -> None:
        queue: QueueClient = self.app.state.queue
        await queue.put_office(OFFICE, now=T0)
        for service in SERVICES:
            await queue.put_service(OFFICE.id, service, now=T0)
        await queue.open_counter(OFFICE.id, "c1", ["certs"], now=T0)
        await queue.issue(OFFICE.id, "certs", now=T0)
        await make_account(self.app.state.redis, "clerk")

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        return self.loop.run_until_complete(
            self.http.request(method, path, content=body, headers=headers)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    running = Harness(settings)
    yield running
    running.close()


@examples(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    path=paths,
    body=bodies,
    staff=st.booleans(),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; x"]),
)
def test_no_request_gets_a_500(
    harness: Harness, method: str, path: str, body: bytes, staff: bool, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if staff:
        headers |= harness.staff
    try:
        response = harness.request(method, path, body, headers)
    except httpx.InvalidURL:
        return  # the client refuses to send it; nothing reached the server
    assert response.status_code < 500, (method, path, body, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
    elif path == "/api/v1/session":
        harness.staff = harness.loop.run_until_complete(sign_in(harness.http, "clerk"))
