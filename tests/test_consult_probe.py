"""The camera probe: a real aiortc peer as the kiosk offers its cameras and microphone
to the server's probe peer, which judges what arrives."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame
from redis.asyncio import Redis
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from starlette.applications import Starlette
from test_consult_echo import Tone

from madoguchi.consult.probe import (
    Inspection,
    ProbePeers,
    flag_every_kiosk,
    judge,
    schedule_probes,
)
from madoguchi.kiosk.devices import Kiosk, KioskStore
from madoguchi.kiosk.health import KioskHealth
from madoguchi.queue import keys
from madoguchi.queue.jobs import QUEUE_NAME
from madoguchi.queue.model import Office

from conftest import T0
from kiosks import enrolled, kiosk_http

TIMEOUT = 30.0
KIOSK = Kiosk("k1", "kokurakita", "足原市民センター", "1F", (), ("care",), ("face", "document"))
HEALTH = {"cameras": 2, "microphones": 1, "printer": "unknown", "round_trip_ms": 4, "version": "x"}


class Moving(VideoStreamTrack):
    """A camera that sees something: grey stripes that move a little every frame."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        shift = pts // 3000
        luma, *chroma = frame.planes
        row = bytes(60 + ((x + shift * 3) % 40) * 4 for x in range(luma.line_size))
        luma.update(row * luma.height)
        for plane in chroma:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


@pytest.fixture
async def kiosk_client(
    app: Starlette, office: Office, aredis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with the device cookie of :data:`KIOSK` (face and document cameras)."""
    token = await enrolled(KioskStore(aredis), KIOSK)
    async with kiosk_http(app, token) as client:
        yield client


def probes(app: Starlette) -> ProbePeers:
    peers: ProbePeers = app.state.switchboard.probes
    return peers


async def probe(
    app: Starlette, client: httpx.AsyncClient, aredis: Redis, *tracks: MediaStreamTrack
) -> dict[str, object]:
    """Offer ``tracks`` to the probe as a kiosk does; the check it records."""
    probes(app).seconds = 3.0
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks:
        pc.addTrack(track)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        response = await client.post(
            "/consult/api/probe", json={"type": "offer", "sdp": pc.localDescription.sdp}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["type"] == "answer"
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        async with asyncio.timeout(TIMEOUT):
            while not await aredis.hexists(keys.kiosk_health("k1"), "probe"):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        await pc.close()
    check: dict[str, object] = json.loads(await aredis.hget(keys.kiosk_health("k1"), "probe"))
    return check


async def test_cameras_and_microphone_that_deliver_pass(
    app: Starlette, kiosk_client: httpx.AsyncClient, aredis: Redis
) -> None:
    check = await probe(app, kiosk_client, aredis, Moving(), Moving(), Tone())
    assert check["ok"] is True, check
    summary = str(check["summary"])
    assert "face camera ok" in summary
    assert "document camera ok" in summary
    assert "microphone ok" in summary
    assert not probes(app).open


async def test_a_black_document_camera_and_a_silent_microphone_are_problems(
    app: Starlette, kiosk_client: httpx.AsyncClient, aredis: Redis
) -> None:
    # aiortc's own VideoStreamTrack sends all-zero frames; AudioStreamTrack silence.
    check = await probe(app, kiosk_client, aredis, Moving(), VideoStreamTrack(), AudioStreamTrack())
    assert check["ok"] is False
    summary = str(check["summary"])
    assert "face camera ok" in summary
    assert "document camera sends a black picture" in summary
    assert "microphone is silent" in summary


async def test_the_flag_reaches_the_kiosk_and_the_probe_clears_it(
    app: Starlette, kiosk_client: httpx.AsyncClient, aredis: Redis
) -> None:
    answer = await kiosk_client.post("/kiosk/api/health", json=HEALTH)
    assert "probe" not in answer.json()
    await KioskHealth(aredis).request_probe("k1", T0)
    answer = await kiosk_client.post("/kiosk/api/health", json=HEALTH)
    assert answer.json()["probe"] is True
    check = await probe(app, kiosk_client, aredis, Moving(), Moving(), Tone())
    assert check["ok"] is True
    answer = await kiosk_client.post("/kiosk/api/health", json=HEALTH)
    assert "probe" not in answer.json()


async def test_bad_offers_and_strangers_are_refused(
    app: Starlette, kiosk_client: httpx.AsyncClient
) -> None:
    bad = await kiosk_client.post("/consult/api/probe", json={"type": "offer", "sdp": "v=0\r\nx"})
    assert bad.status_code == 422
    assert bad.json()["error"]["message"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as stranger:
        response = await stranger.post("/consult/api/probe", json={"type": "offer", "sdp": "v=0"})
    assert response.status_code == 401
    assert not probes(app).open


def test_the_verdict_names_what_is_missing() -> None:
    frozen = Inspection("video", frames=40, brightest=120.0, changes=0)
    verdict = judge(KIOSK, [frozen])
    assert not verdict.ok
    assert verdict.summary == (
        "face camera sends a frozen picture; document camera: not sent; microphone: not sent"
    )
    assert "too few frames (3)" in judge(KIOSK, [Inspection("video", frames=3)]).summary


async def test_the_schedule_asks_every_kiosk(aredis: Redis, redis_url: str) -> None:
    store = KioskStore(aredis)
    await store.put(KIOSK)
    await store.put(Kiosk("k2", "kokurakita", "b", "p", (), (), ("face",), revoked=True))
    assert await flag_every_kiosk(aredis, T0) == ["k1"]
    assert await KioskHealth(aredis).probe_requested("k1")
    assert not await KioskHealth(aredis).probe_requested("k2")
    sync = redis.Redis.from_url(redis_url)
    try:
        now = time.time()
        first = schedule_probes(sync, 6, now=now)
        assert first is not None
        assert schedule_probes(sync, 6, now=now) == first  # once, however many ask
        registry = ScheduledJobRegistry(QUEUE_NAME, connection=sync, serializer=JSONSerializer)
        assert len(registry.get_job_ids()) == 1
        assert 0 < first.timestamp() - now <= 6 * 3600
        assert schedule_probes(sync, 0, now=now) is None
    finally:
        sync.close()
