"""The kiosk's pre-call check: an aiortc peer that sends back what it receives.

``POST /consult/api/echo`` (kiosk device token; JSON ``{"type": "offer", "sdp": "…"}``)
answers the kiosk's offer with a peer that returns its camera and microphone through a
:class:`~aiortc.contrib.media.MediaRelay`, so the kiosk sees and hears itself after a
round trip through the server. The peer measures what it receives — frames a second,
audio level, packet loss and round trip (from ``getStats()``) — and closes after
:data:`ECHO_SECONDS` (or sooner when the kiosk hangs up); its measurements then go to
the kiosk's health record as the ``precall`` check. The kiosk may report what it
measured itself with ``POST /consult/api/echo/result``, which replaces that.

A kiosk has one echo peer at a time (a new offer closes the old one), a process at most
:data:`MAX_PEERS`; the app's lifespan closes every peer still open. The camera probe
(:mod:`.probe`) is the same machinery with another use of the tracks received.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamError
from aiortc.stats import RTCInboundRtpStreamStats, RTCRemoteInboundRtpStreamStats
from av import AudioFrame
from av.frame import Frame
from av.packet import Packet
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..kiosk.devices import Kiosk, kiosk_of
from ..kiosk.health import KioskHealth
from ..web.bodies import maybe, need, only, read_json
from ..web.exceptions import HTTPError, Unprocessable
from ..web.responses import JSONResponse
from ..web.state import now_of

log = logging.getLogger(__name__)

#: How long an echo peer lives, in seconds.
ECHO_SECONDS = 30.0
#: Echo peers one web process keeps open at most.
MAX_PEERS = 16
#: Largest offer accepted, in bytes.
MAX_OFFER = 64 * 1024
#: Quietest audio still taken for a working microphone, in dBFS.
SILENT_DBFS = -70.0


class Busy(HTTPError):
    status = 503
    code = "busy"


@dataclass(frozen=True)
class EchoResult:
    """What a pre-call check measured."""

    #: Round trip of the media path, in milliseconds (None when not reported yet).
    round_trip_ms: float | None
    #: Share of packets lost, 0 to 1.
    loss: float
    #: Video frames a second received.
    fps: float
    #: Audio level received, in dBFS (None: no audio).
    audio_dbfs: float | None
    video_frames: int = 0
    audio_frames: int = 0

    @property
    def ok(self) -> bool:
        audio = self.audio_dbfs is not None and self.audio_dbfs > SILENT_DBFS
        return self.fps >= 5 and audio and self.loss < 0.1

    def summary(self) -> str:
        trip = "—" if self.round_trip_ms is None else f"{self.round_trip_ms:.0f} ms"
        level = "none" if self.audio_dbfs is None else f"{self.audio_dbfs:.0f} dBFS"
        return (
            f"round trip {trip}, loss {self.loss * 100:.1f} %, "
            f"{self.fps:.1f} frames/s, audio {level}"
        )


async def record_check(redis: Redis, kiosk_id: str, result: EchoResult, *, now: float) -> None:
    """Keep ``result`` as the kiosk's latest pre-call check, beside its health report."""
    await KioskHealth(redis).record_check(kiosk_id, "precall", result.ok, result.summary(), now)


@dataclass
class Meter:
    """Frames and audio level seen on the tracks a peer receives."""

    video_frames: int = 0
    audio_frames: int = 0
    first_video: float | None = None
    last_video: float | None = None
    #: Sum of squares and count of audio samples, for the RMS level.
    squares: float = 0.0
    samples: int = 0

    def see(self, frame: Frame | Packet[Any]) -> None:
        now = time.monotonic()
        if isinstance(frame, AudioFrame):
            self.audio_frames += 1
            if frame.format.name == "s16":
                values = array.array("h", bytes(frame.planes[0]))
                self.squares += sum(v * v for v in values)
                self.samples += len(values)
        elif isinstance(frame, Frame):
            self.video_frames += 1
            self.first_video = self.first_video or now
            self.last_video = now

    @property
    def fps(self) -> float:
        if self.first_video is None or self.last_video is None or self.video_frames < 2:
            return 0.0
        span = self.last_video - self.first_video
        return (self.video_frames - 1) / span if span > 0 else 0.0

    @property
    def audio_dbfs(self) -> float | None:
        if not self.samples:
            return None
        rms = math.sqrt(self.squares / self.samples)
        return 20 * math.log10(rms / 32768) if rms > 0 else -120.0


class Metered(MediaStreamTrack):
    """A track that passes on what ``source`` gives, letting ``meter`` see it first."""

    def __init__(self, source: MediaStreamTrack, meter: Meter) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.meter = meter

    async def recv(self) -> Frame | Packet[Any]:
        frame = await self.source.recv()
        self.meter.see(frame)
        return frame


@dataclass(eq=False)
class EchoPeer:
    id: str
    kiosk: str
    pc: RTCPeerConnection
    meter: Meter = field(default_factory=Meter)
    relay: MediaRelay = field(default_factory=MediaRelay)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    result: EchoResult | None = None
    #: Tasks reading the tracks received (the probe's), cancelled when the peer closes.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Whether to hand the result to ``finished`` when it closes (not when the kiosk
    #: reported its own measurements, nor when the peer was given up).
    keep: bool = True

    async def measure(self) -> EchoResult:
        """The measurements so far: frames and level from the tracks, the rest from stats."""
        lost = received = 0
        trips: list[float] = []
        if self.pc.connectionState != "closed":
            report = await self.pc.getStats()
            for stats in report.values():
                if isinstance(stats, RTCInboundRtpStreamStats):
                    lost += max(0, stats.packetsLost)
                    received += stats.packetsReceived
                elif (
                    isinstance(stats, RTCRemoteInboundRtpStreamStats)
                    and stats.roundTripTime is not None
                ):
                    trips.append(stats.roundTripTime * 1000)
        loss = lost / (lost + received) if lost + received else 0.0
        return EchoResult(
            round_trip_ms=round(max(trips), 1) if trips else None,
            loss=round(loss, 4),
            fps=round(self.meter.fps, 1),
            audio_dbfs=None if self.meter.audio_dbfs is None else round(self.meter.audio_dbfs, 1),
            video_frames=self.meter.video_frames,
            audio_frames=self.meter.audio_frames,
        )


#: What to do with a peer's result once it closed (record it in the kiosk's health).
Finished = Callable[[EchoPeer, EchoResult], Awaitable[None]]


class EchoPeers:
    """This process's open echo peers: each sends back what it receives."""

    def __init__(self, *, seconds: float = ECHO_SECONDS, limit: int = MAX_PEERS) -> None:
        self.seconds = seconds
        self.limit = limit
        self.open: dict[str, EchoPeer] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}

    async def answer(
        self, kiosk: str, offer: str, *, finished: Finished | None = None
    ) -> tuple[EchoPeer, str]:
        """A new echo peer for ``kiosk`` and its answer to ``offer``.

        ``finished(peer, result)``, if given, is awaited when the peer closes."""
        for peer in [p for p in self.open.values() if p.kiosk == kiosk]:
            await self.close(peer.id)
        if len(self.open) >= self.limit:
            raise Busy("too many pre-call checks are running; try again in a minute")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer = EchoPeer(secrets.token_urlsafe(12), kiosk, pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.attach(peer, track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in self.gone_states and peer.id in self.open:
                self.gone(peer)
                await self.close(peer.id)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            if not pc.getTransceivers():
                raise ValueError("it offers neither audio nor video")
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            # Untrusted SDP meets aiortc's parser, which answers a malformed offer with
            # whatever it trips on (ValueError, AssertionError, AttributeError, …): every
            # one of them means "this offer cannot be used", never a server error.
            log.info("echo for kiosk %s: offer refused (%r)", kiosk, exc)
            await pc.close()
            raise Unprocessable(f"the offer is not a usable session description: {exc}") from exc
        self.open[peer.id] = peer
        self._timers[peer.id] = asyncio.create_task(self._expire(peer, finished))
        return peer, pc.localDescription.sdp

    #: Connection states after which the peer closes.
    gone_states: tuple[str, ...] = ("failed",)

    def attach(self, peer: EchoPeer, track: MediaStreamTrack) -> None:
        """What the peer does with a track it receives: send it back, metered."""
        peer.pc.addTrack(Metered(peer.relay.subscribe(track), peer.meter))

    def gone(self, peer: EchoPeer) -> None:
        """The connection failed or ended before its time (the echo still records)."""

    def forget(self, kiosk: str) -> list[EchoPeer]:
        """Let ``kiosk``'s open peers close without recording (it reported for itself)."""
        found = [p for p in self.open.values() if p.kiosk == kiosk]
        for peer in found:
            peer.keep = False
            peer.closed.set()
        return found

    async def _expire(self, peer: EchoPeer, finished: Finished | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(peer.closed.wait(), self.seconds)
        result = await self.close(peer.id) or peer.result
        if finished is not None and result is not None and peer.keep:
            try:
                await finished(peer, result)
            except Exception:  # a background task's side effect: log it, never lose it silently
                log.exception("echo %s of kiosk %s: recording failed", peer.id, peer.kiosk)

    async def close(self, peer_id: str) -> EchoResult | None:
        """Close a peer; its final measurements (``None`` if it was closed already)."""
        peer = self.open.pop(peer_id, None)
        if peer is None:
            return None
        try:
            peer.result = await peer.measure()
        except (MediaStreamError, InvalidStateError, AttributeError) as exc:
            log.warning("echo %s: measuring failed (%s)", peer_id, exc)
            peer.result = EchoResult(None, 0.0, peer.meter.fps, peer.meter.audio_dbfs)
        for task in peer.tasks:
            task.cancel()
        await peer.pc.close()
        peer.closed.set()
        self._timers.pop(peer_id, None)  # the timer sees the peer closed and records it
        return peer.result

    async def close_all(self) -> None:
        """Close every peer (at shutdown: nothing more is recorded)."""
        timers = list(self._timers.values())
        for timer in timers:
            timer.cancel()
        for timer in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        for peer_id in list(self.open):
            await self.close(peer_id)


# -- the endpoints ---------------------------------------------------------------------


async def read_offer(request: Request) -> str:
    """The session description of a kiosk's ``{"type": "offer", "sdp"}``, or a 422."""
    body = await read_json(request, MAX_OFFER + 1024)
    only(body, {"type", "sdp"})
    if need(body, "type", str) != "offer":
        raise Unprocessable('field "type" must be "offer"')
    sdp = need(body, "sdp", str)
    if not sdp.startswith("v=0"):
        raise Unprocessable('field "sdp" must be a session description (v=0 …)')
    return sdp


#: What to keep of a peer once it closed: ``record(kiosk, peer, result, now)``.
Record = Callable[[Kiosk, EchoPeer, EchoResult, float], Awaitable[None]]


async def answer_offer(
    request: Request, peers: EchoPeers, record: Record, *, seconds: float
) -> Response:
    """The requesting kiosk's offer in, an answer of a new peer of ``peers`` out
    (``seconds``: how long the kiosk should send); ``record`` runs when the peer closes."""
    kiosk = await kiosk_of(request)
    sdp = await read_offer(request)
    clock = request.app.state.clock

    async def finished(peer: EchoPeer, result: EchoResult) -> None:
        await record(kiosk, peer, result, clock())

    peer, answer = await peers.answer(kiosk.id, sdp, finished=finished)
    return JSONResponse({"id": peer.id, "type": "answer", "sdp": answer, "seconds": seconds})


async def offer(request: Request) -> Response:
    """``POST /consult/api/echo``: the kiosk's offer in, the echo peer's answer out."""
    peers: EchoPeers = request.app.state.switchboard.echoes
    redis: Redis = request.app.state.redis

    async def record(kiosk: Kiosk, peer: EchoPeer, result: EchoResult, now: float) -> None:
        await record_check(redis, kiosk.id, result, now=now)

    return await answer_offer(request, peers, record, seconds=peers.seconds)


def parse_result(body: dict[str, Any]) -> EchoResult:
    """A pre-call check's result as the kiosk reports it, or a 422 naming the field."""
    only(body, {"round_trip_ms", "loss", "fps", "audio_dbfs"})
    trip = maybe(body, "round_trip_ms", float)
    loss = need(body, "loss", float)
    fps = need(body, "fps", float)
    level = maybe(body, "audio_dbfs", float)
    for name, value, low, high in (
        ("round_trip_ms", trip, 0, 60_000),
        ("loss", loss, 0, 1),
        ("fps", fps, 0, 240),
        ("audio_dbfs", level, -200, 0),
    ):
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise Unprocessable(f'field "{name}" must be from {low} to {high}')
    return EchoResult(trip, loss, fps, level)


async def report(request: Request) -> Response:
    """``POST /consult/api/echo/result``: what the kiosk measured of its pre-call check."""
    kiosk = await kiosk_of(request)
    result = parse_result(await read_json(request, 1024))
    request.app.state.switchboard.echoes.forget(kiosk.id)  # its own figures win
    await record_check(request.app.state.redis, kiosk.id, result, now=now_of(request))
    return JSONResponse({"ok": result.ok, "summary": result.summary(), **asdict(result)})


routes: list[BaseRoute] = [
    Route("/consult/api/echo", offer, methods=["POST"]),
    Route("/consult/api/echo/result", report, methods=["POST"]),
]
