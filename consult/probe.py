"""The camera probe: does each of a kiosk's cameras and its microphone really deliver?

A kiosk lists its cameras in every health report, but a camera can be listed and still
send a black or frozen picture, and a microphone can be there and hear nothing. The
probe asks the kiosk to send **all** its cameras (face, then document) and its
microphone to an aiortc peer of the server for :data:`PROBE_SECONDS`; the peer (the echo
peer's machinery of :mod:`.echo`, keeping what it receives instead of sending it back)
looks at every frame: a video track must bring frames whose picture is neither black nor
frozen, the audio track sound above :data:`~.echo.SILENT_DBFS`. The verdict, in words,
goes to the kiosk's health record as its ``probe`` check, which the fleet page shows.

Who asks: an admin, with the fleet page's "check cameras now" button, and the worker
every ``MADOGUCHI_KIOSK_PROBE_HOURS`` (:func:`request_probes`, an rq job that schedules
its own next run). Both only set a flag (``keys.kiosk_probe``); the kiosk's next health
report is answered with ``"probe": true``, and the kiosk runs the probe as soon as it
sits idle on its start screen (``kiosk/static/check.js``). The flag stays until a probe
is recorded, so an interrupted one (a resident touched the screen) is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rq import get_current_job
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..kiosk.devices import Kiosk, KioskStore
from ..kiosk.health import KioskHealth
from ..queue.jobs import schedule_once
from ..settings import load_settings
from ..web.accounts import Role
from ..web.admin.common import see_other
from ..web.forms import signed_form
from ..web.state import kiosks_of, now_of, path_slug
from .echo import SILENT_DBFS, EchoPeer, EchoPeers, EchoResult, Meter, answer_offer

log = logging.getLogger(__name__)

#: How long the kiosk sends its cameras and microphone, in seconds.
PROBE_SECONDS = 6.0
#: Probe peers one web process keeps open at most.
MAX_PROBES = 8
#: Fewest frames a camera must deliver in that time.
MIN_FRAMES = 10
#: A picture whose brightest frame is darker than this (0–255) is black.
BLACK_LUMA = 20.0
#: Mean change between two frames (0–255) below which they are the same picture.
STILL_CHANGE = 0.5
#: The small grey picture each frame is reduced to before it is looked at.
THUMB = (32, 24)


@dataclass
class Inspection:
    """What one received track delivered."""

    kind: str
    frames: int = 0
    #: The brightest frame's mean luma, and how many frames differed from the one before.
    brightest: float = 0.0
    changes: int = 0
    previous: bytes = b""
    audio: Meter = field(default_factory=Meter)

    def see(self, frame: object) -> None:
        self.frames += 1
        if isinstance(frame, AudioFrame):
            self.audio.see(frame)
        elif isinstance(frame, VideoFrame):
            pixels = thumbnail(frame)
            self.brightest = max(self.brightest, sum(pixels) / len(pixels))
            if self.previous:
                change = sum(abs(a - b) for a, b in zip(pixels, self.previous, strict=True))
                if change / len(pixels) > STILL_CHANGE:
                    self.changes += 1
            self.previous = pixels

    def problem(self) -> str | None:
        """What is wrong with it, in words; ``None`` when it delivers."""
        if self.kind == "audio":
            level = self.audio.audio_dbfs
            if not self.frames:
                return "sends no sound"
            if level is None or level <= SILENT_DBFS:
                return "is silent"
            return None
        if self.frames < MIN_FRAMES:
            return f"sends {'no' if not self.frames else 'too few'} frames ({self.frames})"
        if self.brightest < BLACK_LUMA:
            return "sends a black picture"
        if not self.changes:
            return "sends a frozen picture"
        return None

    def describe(self) -> str:
        if self.kind == "audio":
            level = self.audio.audio_dbfs
            return "no sound" if level is None else f"{level:.0f} dBFS"
        return f"{self.frames} frames, {self.changes} changes"


def thumbnail(frame: VideoFrame) -> bytes:
    """The frame as a small grey picture, one byte a pixel, rows without padding."""
    width, height = THUMB
    plane = frame.reformat(width=width, height=height, format="gray").planes[0]
    raw = bytes(plane)
    stride = plane.line_size
    return b"".join(raw[row * stride : row * stride + width] for row in range(height))


@dataclass(frozen=True)
class Verdict:
    ok: bool
    summary: str


def judge(kiosk: Kiosk, inspections: list[Inspection]) -> Verdict:
    """The probe's verdict on what each of the kiosk's cameras and microphone delivered.

    Video tracks come in the kiosk's order of cameras (face, then document); only the
    cameras it is registered with are judged (a kiosk may have more plugged in)."""
    videos = [i for i in inspections if i.kind == "video"]
    audios = [i for i in inspections if i.kind == "audio"]
    names = [f"{camera} camera" for camera in kiosk.cameras]
    parts: list[str] = []
    problems = 0
    for index, name in enumerate(names):
        if index >= len(videos):
            parts.append(f"{name}: not sent")
            problems += 1
            continue
        problem = videos[index].problem()
        problems += problem is not None
        parts.append(f"{name} {problem}" if problem else f"{name} ok ({videos[index].describe()})")
    if not audios:
        parts.append("microphone: not sent")
        problems += 1
    for audio in audios:
        problem = audio.problem()
        problems += problem is not None
        parts.append(f"microphone {problem}" if problem else f"microphone ok ({audio.describe()})")
    return Verdict(problems == 0, "; ".join(parts))


class ProbePeers(EchoPeers):
    """This process's open probe peers: each looks at what it receives, sending nothing."""

    gone_states = ("failed", "closed")

    def __init__(self, *, seconds: float = PROBE_SECONDS + 2, limit: int = MAX_PROBES) -> None:
        super().__init__(seconds=seconds, limit=limit)
        self.inspections: dict[str, list[tuple[int, Inspection]]] = {}
        self.interrupted: set[str] = set()

    def attach(self, peer: EchoPeer, track: MediaStreamTrack) -> None:
        transceivers = peer.pc.getTransceivers()
        order = next(
            (n for n, t in enumerate(transceivers) if t.receiver.track is track),
            len(transceivers),
        )
        inspection = Inspection(track.kind)
        self.inspections.setdefault(peer.id, []).append((order, inspection))

        async def read() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    inspection.see(await track.recv())

        peer.tasks.append(asyncio.create_task(read(), name=f"madoguchi-probe-{peer.id}"))

    def gone(self, peer: EchoPeer) -> None:
        self.interrupted.add(peer.id)

    def take(self, peer: EchoPeer) -> tuple[list[Inspection], bool]:
        """What the peer saw, in the order of its tracks, and whether it was cut short."""
        found = sorted(self.inspections.pop(peer.id, []), key=lambda pair: pair[0])
        interrupted = peer.id in self.interrupted
        self.interrupted.discard(peer.id)
        return [inspection for _, inspection in found], interrupted


async def record_probe(
    redis: Redis, kiosk: Kiosk, inspections: list[Inspection], *, now: float
) -> Verdict:
    """Keep the probe's verdict as the kiosk's ``probe`` check; the kiosk is asked no more."""
    verdict = judge(kiosk, inspections)
    health = KioskHealth(redis)
    await health.record_check(kiosk.id, "probe", verdict.ok, verdict.summary, now)
    await health.probe_done(kiosk.id)
    return verdict


# -- the endpoints ---------------------------------------------------------------------


async def offer(request: Request) -> Response:
    """``POST /consult/api/probe``: the kiosk's offer of every camera and its microphone."""
    peers: ProbePeers = request.app.state.switchboard.probes
    redis: Redis = request.app.state.redis

    async def record(kiosk: Kiosk, peer: EchoPeer, result: EchoResult, now: float) -> None:
        inspections, interrupted = peers.take(peer)
        if interrupted and not any(i.frames for i in inspections):
            log.info("probe %s of kiosk %s: cut short; asked again later", peer.id, kiosk.id)
            return
        verdict = await record_probe(redis, kiosk, inspections, now=now)
        log.info("probe %s of kiosk %s: %s", peer.id, kiosk.id, verdict.summary)

    return await answer_offer(request, peers, record, seconds=PROBE_SECONDS)


async def ask(request: Request) -> Response:
    """``POST /admin/kiosks/{kiosk}/probe``: the fleet page's "check cameras now"."""
    await signed_form(request, Role.ADMIN)
    kiosk = await kiosks_of(request).require(path_slug(request, "kiosk", "kiosk"))
    await KioskHealth(request.app.state.redis).request_probe(kiosk.id, now_of(request))
    return see_other("/admin/kiosks?done=probe")


routes: list[BaseRoute] = [
    Route("/consult/api/probe", offer, methods=["POST"]),
    Route("/admin/kiosks/{kiosk}/probe", ask, methods=["POST"]),
]


# -- the schedule (rq) -----------------------------------------------------------------


async def flag_every_kiosk(redis: Redis, now: float) -> list[str]:
    """Ask every enrolled, unrevoked kiosk to run the probe; their ids."""
    health = KioskHealth(redis)
    asked = []
    for kiosk in await KioskStore(redis).all():
        if not kiosk.revoked:
            await health.request_probe(kiosk.id, now)
            asked.append(kiosk.id)
    return asked


def request_probes(now: float | None = None) -> list[str]:
    """The rq job: ask every kiosk to run the probe, and schedule the next run."""
    settings = load_settings()
    at = time.time() if now is None else now
    job = get_current_job()
    if job is not None:
        schedule_probes(job.connection, settings.kiosk_probe_hours, now=at)
    if settings.redis_url is None:
        raise RuntimeError("jobs need REDIS_URL: the worker runs them against that Redis")

    async def run(url: str) -> list[str]:
        redis = Redis.from_url(url, decode_responses=True)
        try:
            return await flag_every_kiosk(redis, at)
        finally:
            await redis.aclose()

    return asyncio.run(run(settings.redis_url))


def schedule_probes(connection: SyncRedis, hours: float, *, now: float) -> datetime | None:
    """Schedule :func:`request_probes` at the next multiple of ``hours`` (on the epoch)
    after ``now``, once however many schedule it; nothing when ``hours`` is 0."""
    if hours <= 0:
        return None
    period = hours * 3600
    slot = (math.floor(now / period) + 1) * period
    at = datetime.fromtimestamp(slot, UTC)
    return schedule_once(connection, request_probes, f"madoguchi-probe-kiosks-{at:%Y%m%dT%H%M}", at)
