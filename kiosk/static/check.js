// The kiosk's own checks of its camera, microphone and network, on the start screen only.
//
// - The pre-call check: the face camera and the microphone go to the server's echo peer
//   (POST /consult/api/echo) and come back; ~5 s of getStats() give the round trip, the
//   loss, the frame rate of the echoed video and the microphone's level, which go to
//   POST /consult/api/echo/result. It runs when the start screen loads and the last one
//   is older than CHECK_EVERY_MS (kept in localStorage), and every CHECK_EVERY_MS while
//   the kiosk sits idle on the start screen.
// - The camera probe: when the answer to a health report (kiosk.js sends it, and tells
//   us with a "madoguchi:health" event) says "probe": true, every camera (face, then
//   document) and the microphone go to the server's probe peer (POST /consult/api/probe)
//   for as long as it asks; the server judges and records what it got.
//
// Neither ever disturbs a resident: nothing is shown or played, they start only after
// IDLE_MS without a touch, and the first touch stops them at once (an interrupted probe
// is asked for again by the server). No text lives here.

const CHECK_EVERY_MS = 4 * 3600 * 1000;
const LAST_KEY = "madoguchi-kiosk-precall";
const IDLE_MS = 20000;
const MEASURE_MS = 5000;
const CONNECT_MS = 10000;
const PROBE_PAUSE_MS = 60000;

let lastTouch = performance.now();
let running = null; // the check under way: {name, stop()}
let probedAt = -Infinity;

class Stopped extends Error {}

function idle() {
  return performance.now() - lastTouch >= IDLE_MS && !document.hidden;
}

function interrupt() {
  lastTouch = performance.now();
  if (running) running.stop();
}

for (const type of ["pointerdown", "touchstart", "keydown", "wheel"]) {
  addEventListener(type, interrupt, { capture: true, passive: true });
}

/** Run ``check(session)`` unless another is under way or someone is at the kiosk. */
async function attempt(name, check) {
  if (running || !idle() || !navigator.mediaDevices) return false;
  const session = new Session(name);
  running = session;
  document.body.dataset.checking = name;
  try {
    // A touch ends the attempt at once, whatever the check is waiting for; what is still
    // under way finds the session stopped at its next step and posts nothing.
    const work = check(session);
    work.catch(() => {});
    await Promise.race([work, session.halted]);
    return true;
  } catch (error) {
    if (!(error instanceof Stopped)) console.warn(`kiosk ${name} check failed`, error);
    return false;
  } finally {
    session.close();
    running = null;
    delete document.body.dataset.checking;
  }
}

/** What one check holds (streams, a peer connection), released however it ends. */
class Session {
  constructor(name) {
    this.name = name;
    this.streams = [];
    this.pc = null;
    this.stopped = false;
    this.wakers = new Set();
    this.halted = new Promise((resolve, reject) => {
      this.halt = () => reject(new Stopped());
    });
    this.halted.catch(() => {});
  }

  stop() {
    this.stopped = true;
    this.halt();
    for (const wake of this.wakers) wake();
    this.close();
  }

  check() {
    if (this.stopped) throw new Stopped();
  }

  /** Wait ``ms``, or less if the check is stopped meanwhile. */
  async sleep(ms) {
    await new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wakers.delete(done);
        resolve();
      }
      this.wakers.add(done);
    });
    this.check();
  }

  async media(constraints) {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    if (this.stopped) for (const track of stream.getTracks()) track.stop();
    else this.streams.push(stream);
    this.check();
    return stream;
  }

  close() {
    for (const stream of this.streams) for (const track of stream.getTracks()) track.stop();
    this.streams = [];
    if (this.pc) this.pc.close();
    this.pc = null;
  }
}

async function post(url, payload) {
  const answer = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(payload),
    cache: "no-store",
  });
  if (!answer.ok) throw new Error(`${url}: ${answer.status}`);
  return answer.json();
}

/** Offer ``tracks`` to a server peer at ``url`` (it takes no trickled candidates). */
async function connect(session, url, tracks) {
  session.check();
  const pc = new RTCPeerConnection({ iceServers: [] });
  session.pc = pc;
  for (const [track, stream] of tracks) pc.addTrack(track, stream);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, 3000);
  });
  session.check();
  const answer = await post(url, { type: "offer", sdp: pc.localDescription.sdp });
  session.check();
  await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
  const started = performance.now();
  while (pc.connectionState !== "connected") {
    if (pc.connectionState === "failed" || performance.now() - started > CONNECT_MS) {
      throw new Error(`${url}: no connection (${pc.connectionState})`);
    }
    await session.sleep(100);
  }
  return answer;
}

/** The kiosk's cameras, the face camera first (the call screen tells them apart alike). */
async function cameras() {
  const found = (await navigator.mediaDevices.enumerateDevices()).filter(
    (device) => device.kind === "videoinput",
  );
  let documentCam = found.find((device) => /document|書画|doc/i.test(device.label));
  if (!documentCam && found.length > 1) documentCam = found[1];
  const rest = found.filter((device) => device !== documentCam);
  return documentCam ? [rest[0], documentCam, ...rest.slice(1)].filter(Boolean) : rest;
}

// -- the pre-call check -------------------------------------------------------------------

function figures(report) {
  const found = { video: null, microphone: null, lost: 0, received: 0, rtt: null };
  for (const stats of report.values()) {
    if (stats.type === "media-source" && stats.kind === "audio") {
      found.microphone = stats;
    } else if (stats.type === "inbound-rtp") {
      if (stats.kind === "video") found.video = stats;
      found.lost += Math.max(0, stats.packetsLost || 0);
      found.received += stats.packetsReceived || 0;
    } else if (stats.type === "candidate-pair" && stats.nominated && stats.currentRoundTripTime) {
      found.rtt = stats.currentRoundTripTime;
    } else if (stats.type === "remote-inbound-rtp" && found.rtt === null && stats.roundTripTime) {
      found.rtt = stats.roundTripTime;
    }
  }
  return found;
}

async function echoCheck(session) {
  const [face] = await cameras();
  const video = face ? { deviceId: { exact: face.deviceId } } : true;
  const stream = await session.media({ audio: true, video });
  const tracks = stream.getTracks().map((track) => [track, stream]);
  await connect(session, "/consult/api/echo", tracks);
  // Nothing is played: Chromium decodes the echoed video by itself (its frame rate is
  // measured); it measures received audio only as played out loud, so the audio level
  // is the microphone's as it is sent.
  await session.sleep(1000);
  const first = figures(await session.pc.getStats());
  await session.sleep(MEASURE_MS);
  const last = figures(await session.pc.getStats());
  const seconds = MEASURE_MS / 1000;
  const frames = (last.video?.framesDecoded ?? 0) - (first.video?.framesDecoded ?? 0);
  const lost = last.lost - first.lost;
  const received = last.received - first.received;
  const result = {
    loss: lost + received > 0 ? Math.min(1, Math.max(0, lost / (lost + received))) : 0,
    fps: Math.min(240, Math.max(0, frames / seconds)),
  };
  if (last.rtt !== null) result.round_trip_ms = Math.min(60000, last.rtt * 1000);
  const [was, is] = [first.microphone, last.microphone];
  const energy = (is?.totalAudioEnergy ?? 0) - (was?.totalAudioEnergy ?? 0);
  const duration = (is?.totalSamplesDuration ?? 0) - (was?.totalSamplesDuration ?? 0);
  if (duration > 0) {
    // The mean power of the samples heard, as dBFS (silence: the floor of -200).
    const level = energy > 0 ? 10 * Math.log10(energy / duration) : -200;
    result.audio_dbfs = Math.max(-200, Math.min(0, level));
  }
  session.check();
  await post("/consult/api/echo/result", result);
  localStorage.setItem(LAST_KEY, String(Date.now()));
}

function echoDue() {
  return Date.now() - Number(localStorage.getItem(LAST_KEY) || 0) >= CHECK_EVERY_MS;
}

// -- the camera probe -----------------------------------------------------------------------

async function probe(session) {
  const tracks = [];
  for (const camera of await cameras()) {
    const stream = await session.media({ video: { deviceId: { exact: camera.deviceId } } });
    for (const track of stream.getVideoTracks()) tracks.push([track, stream]);
  }
  const microphone = await session.media({ audio: true });
  for (const track of microphone.getAudioTracks()) tracks.push([track, microphone]);
  const answer = await connect(session, "/consult/api/probe", tracks);
  await session.sleep(answer.seconds * 1000 + 500);
}

let probeWanted = false;

document.addEventListener("madoguchi:health", (event) => {
  if (event.detail && event.detail.probe) probeWanted = true;
});

// -- when -------------------------------------------------------------------------------------

async function tick() {
  if (running || !idle()) return;
  if (probeWanted && performance.now() - probedAt > PROBE_PAUSE_MS) {
    probeWanted = false;
    if (await attempt("probe", probe)) {
      probedAt = performance.now();
      document.body.dataset.probed = String(Date.now());
    }
  } else if (echoDue()) {
    if (await attempt("echo", echoCheck)) document.body.dataset.echoed = String(Date.now());
  }
}

setInterval(tick, 5000);
