// One WebRTC module for every end of a consultation: the kiosk, the specialist, a guest.
//
// The signaling protocol is in consult/README.md ("Signaling"). One RTCPeerConnection per
// pair of participants; in each pair the higher rank offers (guest > specialist > kiosk)
// and creates the "snapshot" data channel. Every offer carries three m-lines in this
// order: audio, the face camera (video), the document camera (video; receive-only from
// whoever has none). The receiving end tells the two video tracks apart by that order.
//
//   const peer = new CallPeer({ws: call.ws, role, streams: [face, document?]});
//   peer.addEventListener("state" | "message" | "track" | "quality" | "snapshot" | "closed", …);
//   await peer.start(); peer.send({type: "chat", text}); peer.sendSnapshot(blob, to);
//   peer.stats(); peer.close();
//
// One more event, "link" ({socket: "open" | "away", ice: {role: iceConnectionState}}),
// tells a screen when this end's own connection is down, which the server cannot.
//
// No user-facing text lives here.

const RANK = { kiosk: 1, specialist: 2, guest: 3 };
/** Close codes after which the socket comes back by itself (server restart, network). */
const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013]);
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const RESTART_GIVE_UP_MS = 8000;
const QUALITY_MS = 2000;
const CHUNK = 16 * 1024;
const MAX_SNAPSHOT = 32 * 1024 * 1024;
const HIGH_WATER = 1024 * 1024;
/** Messages kept while the socket is away (chat, marks …; not stale offers or candidates). */
const KEPT_WHILE_AWAY = 32;
const SIGNALING = new Set(["offer", "answer", "candidate", "restart", "quality"]);

/** The level of a call's quality, by the same thresholds as the server (signaling.py). */
export function qualityLevel(loss, rtt, fps) {
  if (loss >= 0.08 || rtt >= 800 || (fps != null && fps < 10)) return "poor";
  if (loss >= 0.02 || rtt >= 300 || (fps != null && fps < 20)) return "fair";
  return "good";
}

function fingerprint(sdp) {
  const line = (sdp || "").split(/\r?\n/).find((l) => l.startsWith("a=fingerprint:"));
  return line ?? "";
}

function socketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** One pair: this end and one other participant. */
class Pair {
  constructor(role) {
    this.role = role;
    this.pc = null;
    this.channel = null;
    this.pending = []; // candidates that came before the remote description
    this.rescue = null; // the timer that gives up on an ICE restart
    this.last = null; // the previous getStats() counters
    this.figures = null; // the last quality figures
    this.incoming = null; // a snapshot being received
  }
}

export class CallPeer extends EventTarget {
  constructor({ ws, role, streams = [] }) {
    super();
    this.path = ws;
    this.role = role;
    this.streams = streams;
    this.iceServers = [];
    this.iceTransportPolicy = "all";
    this.pairs = new Map();
    this.socket = null;
    this.attempt = 0;
    this.closing = false;
    this.kept = [];
    this.specialist = null;
    this.ticker = null;
    this.work = Promise.resolve(); // signaling steps, one at a time
  }

  /** Run `step` after every step before it (offers, answers, candidates in order). */
  serial(step) {
    this.work = this.work.then(step).catch((error) => console.warn("signaling step", error));
    return this.work;
  }

  // -- the socket ------------------------------------------------------------------------

  start() {
    this.ticker ??= setInterval(() => this.measure(), QUALITY_MS);
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(socketUrl(this.path));
      this.socket = socket;
      let welcomed = false;
      socket.addEventListener("message", (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (message.type === "welcome") {
          welcomed = true;
          this.attempt = 0;
          resolve(message);
          this.link();
        }
        this.receive(message);
      });
      socket.addEventListener("close", (event) => {
        if (socket !== this.socket) return;
        if (!welcomed) reject(Object.assign(new Error("closed"), { code: event.code }));
        this.closed(event);
      });
    });
  }

  closed(event) {
    if (!this.closing && RECONNECT_CODES.has(event.code)) {
      this.link();
      const wait = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      setTimeout(() => this.start().catch(() => {}), wait * (0.75 + Math.random() / 2));
      return;
    }
    this.shutdown();
    this.emit("closed", { code: event.code, reason: event.reason });
  }

  /** Send any relayed message (`to` optional); kept for later while the socket is away. */
  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    if (!SIGNALING.has(message.type) && this.kept.length < KEPT_WHILE_AWAY) {
      this.kept.push(message);
    }
    return false;
  }

  /** Send bye (this end leaves or ends the call) and close everything. */
  close() {
    if (this.closing) return;
    this.closing = true;
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "bye" }));
      this.socket.close(1000);
    }
    this.shutdown();
  }

  shutdown() {
    clearInterval(this.ticker);
    this.ticker = null;
    for (const role of [...this.pairs.keys()]) this.drop(role);
  }

  /** Tell the screen how this end's own connections stand. */
  link() {
    const ice = {};
    for (const [role, pair] of this.pairs) if (pair.pc) ice[role] = pair.pc.iceConnectionState;
    const socket = this.socket?.readyState === WebSocket.OPEN ? "open" : "away";
    this.emit("link", { socket, ice });
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  // -- what the server says ----------------------------------------------------------------

  receive(message) {
    const from = message.from;
    switch (message.type) {
      case "welcome":
        this.role = message.role;
        this.iceServers = message.iceServers ?? [];
        this.iceTransportPolicy = message.iceTransportPolicy === "relay" ? "relay" : "all";
        for (const kept of this.kept.splice(0)) this.send(kept);
        this.onState(message.state);
        this.resume(message.state);
        return;
      case "state":
        this.onState(message);
        return;
      case "joined":
        if (this.offers(message.role)) {
          this.negotiate(message.role, { restart: true, resend: true });
        }
        this.emit("message", message);
        return;
      case "left":
      case "error":
        this.emit("message", message);
        return;
      case "offer":
        this.serial(() => this.onOffer(from, message.sdp));
        return;
      case "answer":
        this.serial(() => this.onAnswer(from, message.sdp));
        return;
      case "candidate":
        this.serial(() => this.onCandidate(from, message));
        return;
      case "restart":
        this.onRestart(from, message.renegotiate);
        return;
      case "quality":
        this.emit("quality", {
          from,
          level: message.level,
          loss: message.loss,
          rtt: message.rtt,
          fps: message.fps,
        });
        break;
    }
    this.emit("message", message);
  }

  onState(state) {
    if (!state) return;
    if (state.state === "waiting" || state.state === "ended") {
      for (const role of [...this.pairs.keys()]) this.drop(role);
    }
    if (!state.guest && this.role !== "guest") this.drop("guest");
    if (this.specialist && state.specialist !== this.specialist) this.drop("specialist");
    this.specialist = state.specialist || null;
    this.emit("state", state);
  }

  /** After (re)joining: offer to those present; ask for a fresh start where media is lost. */
  resume(state) {
    const present = state?.present ?? {};
    for (const role of Object.keys(RANK)) {
      if (role === this.role || !present[role]) continue;
      const pair = this.pairs.get(role);
      if (pair && connected(pair.pc)) continue;
      if (this.offers(role)) this.negotiate(role, { restart: true, resend: true });
      else if (pair) this.send({ type: "restart", renegotiate: true, to: role });
    }
  }

  // -- the peer connections -------------------------------------------------------------------

  offers(role) {
    return (RANK[this.role] ?? 0) > (RANK[role] ?? 0);
  }

  drop(role) {
    const pair = this.pairs.get(role);
    if (!pair) return;
    clearTimeout(pair.rescue);
    pair.channel?.close();
    pair.pc?.close();
    this.pairs.delete(role);
  }

  /** A fresh RTCPeerConnection for the pair (the old one, if any, closed). */
  fresh(role) {
    const old = this.pairs.get(role);
    if (old) {
      clearTimeout(old.rescue);
      old.channel?.close();
      old.pc?.close();
    }
    const pair = new Pair(role);
    this.pairs.set(role, pair);
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      iceTransportPolicy: this.iceTransportPolicy,
    });
    pair.pc = pc;
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (pair.pc !== pc) return;
      const line = candidate ? candidate.toJSON() : { candidate: "" };
      this.send({
        type: "candidate",
        to: role,
        candidate: line.candidate ?? "",
        ...(line.sdpMid != null && { sdpMid: line.sdpMid }),
        ...(line.sdpMLineIndex != null && { sdpMLineIndex: line.sdpMLineIndex }),
        ...(line.usernameFragment != null && { usernameFragment: line.usernameFragment }),
      });
    });
    pc.addEventListener("track", (event) => this.onTrack(pair, event));
    pc.addEventListener("datachannel", ({ channel }) => this.useChannel(pair, channel));
    pc.addEventListener("iceconnectionstatechange", () => this.onIceState(pair, pc));
    return pair;
  }

  /** This end's local tracks by slot: audio, face, document. */
  local() {
    const [face, document] = this.streams;
    return [
      { kind: "audio", stream: face, track: face?.getAudioTracks()[0] },
      { kind: "video", stream: face, track: face?.getVideoTracks()[0] },
      { kind: "video", stream: document, track: document?.getVideoTracks()[0] },
    ];
  }

  /** The offerer's next step with `role`, in turn with every other signaling step. */
  negotiate(role, options) {
    return this.serial(() => this.offer(role, options));
  }

  /** The offerer: offer afresh (a new connection) or, with `restart`, restart ICE on the
   *  one there is. An offer already on its way is left to be answered, unless `resend`
   *  (the other end, or this one, was away: it may be lost), which starts afresh. */
  async offer(role, { restart = false, fresh = false, resend = false } = {}) {
    let pair = this.pairs.get(role);
    const current = pair?.pc;
    if (restart && !fresh && current?.signalingState === "have-local-offer" && !resend) return;
    const reuse =
      restart && !fresh && current?.signalingState === "stable" && current.remoteDescription;
    if (!reuse) {
      pair = this.fresh(role);
      for (const slot of this.local()) {
        const init = slot.track
          ? { direction: "sendrecv", streams: [slot.stream] }
          : { direction: "recvonly" };
        pair.pc.addTransceiver(slot.track ?? slot.kind, init);
      }
      this.useChannel(pair, pair.pc.createDataChannel("snapshot"));
    } else {
      pair.pc.restartIce();
    }
    const pc = pair.pc;
    try {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: Boolean(reuse) }));
      if (pair.pc === pc) this.send({ type: "offer", to: role, sdp: pc.localDescription.sdp });
    } catch (error) {
      console.warn("offer to", role, "failed", error);
    }
  }

  async onOffer(from, sdp) {
    if (!from || this.offers(from)) return;
    let pair = this.pairs.get(from);
    const known = pair?.pc?.remoteDescription;
    if (!pair?.pc || !known || fingerprint(known.sdp) !== fingerprint(sdp)) pair = this.fresh(from);
    const pc = pair.pc;
    try {
      await pc.setRemoteDescription({ type: "offer", sdp });
      await this.attach(pc);
      await this.flush(pair);
      await pc.setLocalDescription(await pc.createAnswer());
      if (pair.pc === pc) this.send({ type: "answer", to: from, sdp: pc.localDescription.sdp });
    } catch (error) {
      console.warn("answer to", from, "failed", error);
    }
  }

  /** The answerer: send this end's tracks on the offer's m-lines, in slot order. */
  async attach(pc) {
    const slots = this.local();
    let video = 0;
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.stopped || transceiver.currentDirection === "stopped") continue;
      const kind = transceiver.receiver.track.kind;
      const slot = kind === "audio" ? slots[0] : slots[1 + video++];
      if (!slot) continue;
      if (slot.track) {
        await transceiver.sender.replaceTrack(slot.track);
        transceiver.sender.setStreams?.(slot.stream);
        transceiver.direction = "sendrecv";
      } else {
        transceiver.direction = "recvonly";
      }
    }
  }

  async onAnswer(from, sdp) {
    const pair = this.pairs.get(from);
    const pc = pair?.pc;
    if (!pc || pc.signalingState !== "have-local-offer") return;
    if (pc.remoteDescription && fingerprint(pc.remoteDescription.sdp) !== fingerprint(sdp)) {
      // The other end is a new connection (it reloaded): start over with it.
      await this.offer(from, { fresh: true });
      return;
    }
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
      await this.flush(pair);
    } catch (error) {
      console.warn("answer from", from, "refused", error);
    }
  }

  async onCandidate(from, message) {
    const pair = this.pairs.get(from);
    if (!pair?.pc) return;
    const candidate = {
      candidate: message.candidate,
      sdpMid: message.sdpMid ?? null,
      sdpMLineIndex: message.sdpMLineIndex ?? null,
      usernameFragment: message.usernameFragment ?? null,
    };
    if (!pair.pc.remoteDescription) {
      pair.pending.push(candidate);
      return;
    }
    await pair.pc.addIceCandidate(candidate).catch(() => {}); // one of an older session
  }

  async flush(pair) {
    for (const candidate of pair.pending.splice(0)) {
      await pair.pc.addIceCandidate(candidate).catch(() => {});
    }
  }

  onRestart(from, renegotiate) {
    if (!from) return;
    if (this.offers(from)) this.negotiate(from, { restart: true, fresh: renegotiate });
    else if (renegotiate) this.drop(from); // a fresh offer follows
  }

  onTrack(pair, event) {
    const { track, transceiver } = event;
    let kind = "audio";
    if (track.kind === "video") {
      const videos = pair.pc.getTransceivers().filter((t) => t.receiver.track.kind === "video");
      kind = videos.indexOf(transceiver) === 1 ? "document" : "face";
    }
    const stream = event.streams[0] ?? new MediaStream([track]);
    this.emit("track", { from: pair.role, track, stream, kind });
  }

  // -- staying connected -----------------------------------------------------------------------

  onIceState(pair, pc) {
    if (pair.pc !== pc) return;
    this.link();
    const state = pc.iceConnectionState;
    if (state === "connected" || state === "completed") {
      clearTimeout(pair.rescue);
      pair.rescue = null;
      return;
    }
    if ((state !== "disconnected" && state !== "failed") || pair.rescue) return;
    const role = pair.role;
    if (this.offers(role)) this.negotiate(role, { restart: true });
    else this.send({ type: "restart", to: role });
    pair.rescue = setTimeout(() => {
      const now = this.pairs.get(role);
      if (now !== pair || connected(pc)) return;
      pair.rescue = null;
      this.send({ type: "restart", renegotiate: true, to: role });
      if (this.offers(role)) this.negotiate(role, { fresh: true });
    }, RESTART_GIVE_UP_MS);
  }

  // -- quality -------------------------------------------------------------------------------

  /** The last quality figures this end measured, per other participant. */
  stats() {
    const figures = {};
    for (const [role, pair] of this.pairs) if (pair.figures) figures[role] = { ...pair.figures };
    return figures;
  }

  async measure() {
    for (const pair of [...this.pairs.values()]) {
      if (!pair.pc || !connected(pair.pc)) continue;
      let report;
      try {
        report = await pair.pc.getStats();
      } catch {
        continue;
      }
      const now = { lost: 0, received: 0, frames: 0, at: performance.now() };
      let fps = null;
      let rtt = null;
      let selected = null;
      report.forEach((s) => {
        if (s.type === "inbound-rtp") {
          now.lost += Math.max(0, s.packetsLost ?? 0);
          now.received += s.packetsReceived ?? 0;
          if (s.kind === "video") {
            now.frames += s.framesDecoded ?? 0;
            if (s.framesPerSecond != null) fps = Math.max(fps ?? 0, s.framesPerSecond);
          }
        } else if (s.type === "transport" && s.selectedCandidatePairId) {
          selected = s.selectedCandidatePairId;
        }
      });
      report.forEach((s) => {
        const chosen = selected ? s.id === selected : s.nominated && s.state === "succeeded";
        if (s.type === "candidate-pair" && chosen && s.currentRoundTripTime != null) {
          rtt = s.currentRoundTripTime * 1000;
        }
      });
      const last = pair.last;
      pair.last = now;
      if (!last || rtt == null) continue;
      const lost = now.lost - last.lost;
      const total = lost + (now.received - last.received);
      const loss = total > 0 ? Math.min(1, Math.max(0, lost / total)) : 0;
      if (fps == null && now.frames > last.frames) {
        fps = ((now.frames - last.frames) * 1000) / (now.at - last.at);
      }
      const figures = {
        loss: Math.round(loss * 1000) / 1000,
        rtt: Math.round(Math.min(rtt, 60000)),
        fps: fps == null ? null : Math.round(Math.min(fps, 240) * 10) / 10,
      };
      pair.figures = { ...figures, level: qualityLevel(figures.loss, figures.rtt, figures.fps) };
      this.emit("quality", { from: "self", peer: pair.role, ...pair.figures });
      const message = { type: "quality", to: pair.role, loss: figures.loss, rtt: figures.rtt };
      if (figures.fps != null) message.fps = figures.fps;
      this.send(message);
    }
  }

  // -- the snapshot data channel -----------------------------------------------------------------

  useChannel(pair, channel) {
    if (channel.label !== "snapshot") return;
    pair.channel = channel;
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = HIGH_WATER / 4;
    channel.addEventListener("message", ({ data }) => this.onChunk(pair, data));
  }

  onChunk(pair, data) {
    if (typeof data === "string") {
      let header;
      try {
        header = JSON.parse(data);
      } catch {
        return;
      }
      const size = Number(header.size);
      if (header.type !== "snapshot" || !(size > 0 && size <= MAX_SNAPSHOT)) return;
      const mime = String(header.mime || "image/jpeg");
      pair.incoming = { size, mime, camera: header.camera, parts: [], got: 0 };
      return;
    }
    const incoming = pair.incoming;
    if (!incoming) return;
    incoming.parts.push(data);
    incoming.got += data.byteLength;
    if (incoming.got < incoming.size) return;
    pair.incoming = null;
    if (incoming.got > incoming.size) return;
    const blob = new Blob(incoming.parts, { type: incoming.mime });
    this.emit("snapshot", { from: pair.role, blob, camera: incoming.camera });
  }

  /** Send a still over the "snapshot" data channel: to `to`, or to everyone with one open. */
  async sendSnapshot(blob, to, { camera } = {}) {
    const pairs = [...this.pairs.values()].filter(
      (p) => (!to || p.role === to) && p.channel?.readyState === "open",
    );
    if (!pairs.length) throw new Error("no open snapshot channel");
    const bytes = new Uint8Array(await blob.arrayBuffer());
    for (const { channel } of pairs) {
      const header = { type: "snapshot", size: bytes.byteLength, mime: blob.type, camera };
      channel.send(JSON.stringify(header));
      for (let at = 0; at < bytes.byteLength; at += CHUNK) {
        if (channel.bufferedAmount > HIGH_WATER) {
          await new Promise((resolve) => {
            channel.addEventListener("bufferedamountlow", resolve, { once: true });
          });
        }
        if (channel.readyState !== "open") throw new Error("snapshot channel closed");
        channel.send(bytes.subarray(at, at + CHUNK));
      }
    }
  }
}

function connected(pc) {
  return Boolean(pc) && ["connected", "completed"].includes(pc.iceConnectionState);
}
