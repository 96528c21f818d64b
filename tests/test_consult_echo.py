"""The kiosk's pre-call check: a real aiortc peer as the kiosk, the server's echo peer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av import AudioFrame
from redis.asyncio import Redis
from starlette.applications import Starlette

from madoguchi.consult.echo import EchoPeers, EchoResult, Meter, parse_result, record_check
from madoguchi.kiosk.devices import KioskStore
from madoguchi.queue import keys
from madoguchi.queue.model import Office
from madoguchi.settings import Settings
from madoguchi.web.app import create_app
from madoguchi.web.exceptions import Unprocessable

from conftest import T0
from kiosks import CARE_KIOSK, enrolled, kiosk_http

TIMEOUT = 20.0


class Tone(AudioStreamTrack):
    """A microphone that hears something: a square wave at about -6 dBFS."""

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        samples = frame.samples
        wave = b"".join(
            (16384 if (i // 20) % 2 else -16384).to_bytes(2, "little", signed=True)
            for i in range(samples)
        )
        frame.planes[0].update(wave)
        return frame


@pytest.fixture
async def kiosk_client(
    app: Starlette, office: Office, aredis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    token = await enrolled(KioskStore(aredis), CARE_KIOSK)
    async with kiosk_http(app, token) as client:
        yield client


def echo_peers(app: Starlette) -> EchoPeers:
    peers: EchoPeers = app.state.switchboard.echoes
    return peers


async def test_the_echo_peer_sends_back_what_it_receives(
    app: Starlette, kiosk_client: httpx.AsyncClient, aredis: Redis
) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(VideoStreamTrack())
    pc.addTrack(Tone())
    back: dict[str, int] = {"audio": 0, "video": 0}
    pulls: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def pull() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    back[track.kind] += 1

        pulls.append(asyncio.create_task(pull()))

    try:
        await pc.setLocalDescription(await pc.createOffer())
        response = await kiosk_client.post(
            "/consult/api/echo", json={"type": "offer", "sdp": pc.localDescription.sdp}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["type"] == "answer"
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        async with asyncio.timeout(TIMEOUT):
            while min(back.values()) < 30:  # noqa: ASYNC110  (frames have no event to wait on)
                await asyncio.sleep(0.1)
        peers = echo_peers(app)
        peer = peers.open[answer["id"]]
        # RTCP reports (and with them the round trip) come every second or so.
        async with asyncio.timeout(TIMEOUT):
            while (await peer.measure()).round_trip_ms is None:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        result = await peers.close(answer["id"])
    finally:
        for task in pulls:
            task.cancel()
        await pc.close()
    assert result is not None
    assert result.video_frames >= 30
    assert result.audio_frames >= 30
    assert 5 <= result.fps <= 60  # VideoStreamTrack sends 30 a second
    # A -6 dBFS square wave, through Opus and averaged with the silence before it starts.
    assert result.audio_dbfs is not None
    assert -30 < result.audio_dbfs < -3
    assert 0 <= result.loss < 0.05  # one machine, no network between
    assert result.round_trip_ms is not None
    assert 0 <= result.round_trip_ms < 1000
    assert result.ok
    # The timer records it in the kiosk's health, beside its report.
    async with asyncio.timeout(TIMEOUT):
        while not await aredis.hexists(keys.kiosk_health("k1"), "precall"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    check = json.loads(await aredis.hget(keys.kiosk_health("k1"), "precall"))
    assert check["ok"] is True
    assert "frames/s" in check["summary"]
    assert not peers.open


async def test_a_peer_closes_after_its_time_limit(
    app: Starlette, kiosk_client: httpx.AsyncClient
) -> None:
    peers = echo_peers(app)
    peers.seconds = 0.5
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(VideoStreamTrack())
    try:
        await pc.setLocalDescription(await pc.createOffer())
        response = await kiosk_client.post(
            "/consult/api/echo", json={"type": "offer", "sdp": pc.localDescription.sdp}
        )
        peer = peers.open[response.json()["id"]]
        async with asyncio.timeout(TIMEOUT):
            await peer.closed.wait()
        assert peer.pc.connectionState == "closed"
        assert not peers.open
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"type": "offer", "sdp": "hello"}, 422),
        ({"type": "answer", "sdp": "v=0"}, 422),
        ({"type": "offer", "sdp": "v=0\r\nnonsense"}, 422),
        ({"type": "offer"}, 422),
        ({"type": "offer", "sdp": "v=0" + "x" * 70_000}, 413),
    ],
)
async def test_bad_offers_get_a_clear_answer(
    app: Starlette, kiosk_client: httpx.AsyncClient, body: dict[str, str], status: int
) -> None:
    response = await kiosk_client.post("/consult/api/echo", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
    assert not echo_peers(app).open


async def test_only_an_enrolled_kiosk_may_check(app: Starlette, office: Office) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.post("/consult/api/echo", json={"type": "offer", "sdp": "v=0"})
    assert response.status_code == 401


async def test_the_kiosk_reports_its_own_measurements(
    kiosk_client: httpx.AsyncClient, aredis: Redis
) -> None:
    body = {"round_trip_ms": 48, "loss": 0.001, "fps": 29.7, "audio_dbfs": -24}
    response = await kiosk_client.post("/consult/api/echo/result", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    check = json.loads(await aredis.hget(keys.kiosk_health("k1"), "precall"))
    assert check["summary"] == "round trip 48 ms, loss 0.1 %, 29.7 frames/s, audio -24 dBFS"
    bad = await kiosk_client.post("/consult/api/echo/result", json={**body, "loss": 3})
    assert bad.status_code == 422
    assert "loss" in bad.json()["error"]["message"]


def test_results_and_meters() -> None:
    assert not EchoResult(40, 0, 30, None).ok  # no sound
    assert not EchoResult(40, 0.2, 30, -20).ok  # heavy loss
    assert EchoResult(None, 0, 30, -20).summary().startswith("round trip —")
    meter = Meter()
    assert meter.fps == 0
    assert meter.audio_dbfs is None
    with pytest.raises(Unprocessable, match="fps"):
        parse_result({"loss": 0, "fps": float("inf")})


async def test_record_check_keeps_the_latest(aredis: Redis) -> None:
    await record_check(aredis, "k9", EchoResult(40, 0, 30, -20), now=T0)
    await record_check(aredis, "k9", EchoResult(40, 0, 0, None), now=T0 + 60)
    check = json.loads(await aredis.hget(keys.kiosk_health("k9"), "precall"))
    assert (check["ok"], check["at"]) == (False, T0 + 60)


async def test_the_lifespan_closes_every_peer(
    settings: Settings, office: Office, aredis: Redis
) -> None:
    token = await enrolled(KioskStore(aredis), CARE_KIOSK)
    application = create_app(settings, clock=lambda: T0)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(VideoStreamTrack())
    try:
        async with application.router.lifespan_context(application):
            await pc.setLocalDescription(await pc.createOffer())
            async with kiosk_http(application, token) as client:
                response = await client.post(
                    "/consult/api/echo", json={"type": "offer", "sdp": pc.localDescription.sdp}
                )
            peers = echo_peers(application)
            peer = peers.open[response.json()["id"]]
        assert peer.pc.connectionState == "closed"
        assert not peers.open
    finally:
        await pc.close()


@pytest.mark.parametrize("dropped", ["a=setup:", " H264/90000", "a=ice-pwd:"])
async def test_an_offer_aiortc_trips_on_gets_a_422(
    app: Starlette, kiosk_client: httpx.AsyncClient, dropped: str
) -> None:
    """aiortc answers such offers with AttributeError, RuntimeError, ValueError: all 422."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(VideoStreamTrack())
    try:
        await pc.setLocalDescription(await pc.createOffer())
        lines = pc.localDescription.sdp.split("\r\n")
        index = next(i for i, line in enumerate(lines) if dropped in line)
        broken = "\r\n".join(lines[:index] + lines[index + 1 :])
    finally:
        await pc.close()
    response = await kiosk_client.post("/consult/api/echo", json={"type": "offer", "sdp": broken})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith("the offer is not a usable")
    assert not echo_peers(app).open
