/**
 * One video call on the consultation console: the specialist's (or an invited
 * colleague's) side, over the shared /consult/static/peer.js.
 *
 * Shows the resident's face and document camera, this end's own picture and an invited
 * colleague's; asks the kiosk for a full-resolution snapshot and lets the pointer (or the
 * arrow keys and Enter) draw marks on it, which go to the kiosk as `mark` messages with
 * points from 0 to 1; sends forms from the forms library; chat with quick phrases;
 * transfer and invitation (the specialist only); the quality measured at both ends.
 * Every text comes from the page (`t`).
 */
import { request } from "./console-api.js";

const $ = (id) => document.getElementById(id);
/** Points a mark may carry (the server's limit). */
const MAX_POINTS = 256;
/** The step of the keyboard cursor on the snapshot, as a share of its size. */
const KEY_STEP = 0.02;

/**
 * The video module and this end's camera and microphone, opened before a call is taken
 * (a specialist without a camera should not take a resident off the queue).
 * @param {(key: string, values?: object) => string} t the page's strings
 * @returns {Promise<{CallPeer: Function, local: MediaStream}>} or an Error saying why not
 */
export async function prepare(t) {
  let CallPeer;
  try {
    ({ CallPeer } = await import("/consult/static/peer.js"));
  } catch {
    throw new Error(t("peer_missing"));
  }
  try {
    const local = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    return { CallPeer, local };
  } catch (error) {
    throw new Error(t("media_failed", { reason: String(error?.message || error) }));
  }
}

/**
 * @param {object} options
 * @param {object} options.call the call as the API shows it
 * @param {"specialist"|"guest"} options.role
 * @param {{CallPeer: Function, local: MediaStream}} [options.ready] from prepare()
 * @param {(key: string, values?: object) => string} options.t the page's strings
 * @param {(message: string, kind?: string) => void} options.say the live region
 * @param {(error: unknown) => void} options.failed reports a refused request
 * @param {object[]} options.services the office's remote services
 * @param {object[]} options.phrases quick phrases, {ja, en}
 * @param {string} options.me this staff member's user name
 * @param {() => object[]} options.colleagues staff of the office, as presence lists them
 * @param {(why: string) => void} options.onOver the call is over for this page
 */
export async function startCall(options) {
  const { call, role, t, onOver } = options;
  let ready = options.ready;
  if (!ready) {
    try {
      ready = await prepare(t);
    } catch (error) {
      onOver(error.message);
      return null;
    }
  }
  const { CallPeer, local } = ready;
  const view = new CallView(options, local);
  const peer = new CallPeer({ ws: call.ws, role, streams: [local] });
  view.peer = peer;
  peer.addEventListener("state", (event) => view.onState(event.detail));
  peer.addEventListener("message", (event) => view.onMessage(event.detail));
  peer.addEventListener("track", (event) => view.onTrack(event.detail));
  peer.addEventListener("quality", (event) => view.onQuality(event.detail));
  peer.addEventListener("snapshot", (event) => view.onSnapshot(event.detail));
  peer.addEventListener("closed", (event) => view.onClosed(event.detail));
  view.show();
  try {
    await peer.start();
  } catch (error) {
    view.over(t("ended_closed", { reason: String(error?.code ?? error) }));
    return null;
  }
  return view;
}

class CallView {
  constructor(options, local) {
    this.options = options;
    this.t = options.t;
    this.call = options.call;
    this.role = options.role;
    this.local = local;
    this.peer = null;
    this.finished = false;
    this.lastState = null;
    /** The marks drawn on the current snapshot, in 0–1 coordinates. */
    this.marks = [];
    this.drawing = null;
    this.cursor = { x: 0.5, y: 0.5 };
    this.snapshotUrl = "";
    this.forms = [];
    this.handlers = [];
  }

  // -- showing -----------------------------------------------------------------------------

  show() {
    const t = this.t;
    $("call").hidden = false;
    $("call-over").hidden = true;
    $("call-number").textContent = this.call.number;
    $("call-topic").textContent = this.serviceName(this.call.service);
    $("call-state").textContent = t("state_ringing");
    $("video-self").srcObject = this.local;
    $("end").textContent = t(this.role === "guest" ? "leave" : "end");
    $("manage").hidden = this.role !== "specialist";
    for (const id of ["quality-self", "quality-kiosk"]) {
      $(id).textContent = "–";
      $(id).className = "level";
    }
    $("chat-log").replaceChildren();
    this.clearSnapshot();
    this.fillServices();
    this.fillColleagues();
    this.fillPhrases();
    this.loadForms();
    this.listen($("end"), "click", () => this.end());
    this.listen($("snapshot"), "click", () => this.askSnapshot());
    this.listen($("mark-clear"), "click", () => this.clearMarks(true));
    this.listen($("chat-form"), "submit", (event) => {
      event.preventDefault();
      const text = $("chat-text").value.trim();
      if (text) this.chat(text);
      $("chat-text").value = "";
    });
    this.listen($("form-form"), "submit", (event) => {
      event.preventDefault();
      this.sendForm();
    });
    this.listen($("transfer-form"), "submit", (event) => {
      event.preventDefault();
      this.transfer();
    });
    this.listen($("invite-form"), "submit", (event) => {
      event.preventDefault();
      this.invite();
    });
    const canvas = $("snapshot-marks");
    this.listen(canvas, "pointerdown", (event) => this.penDown(event));
    this.listen(canvas, "pointermove", (event) => this.penMove(event));
    this.listen(canvas, "pointerup", (event) => this.penUp(event));
    this.listen(canvas, "pointercancel", () => {
      this.drawing = null;
      this.redraw();
    });
    this.listen(canvas, "keydown", (event) => this.onKey(event));
    this.listen(window, "resize", () => this.redraw());
    this.listen($("snapshot-image"), "load", () => this.redraw());
  }

  listen(target, type, handler) {
    target.addEventListener(type, handler);
    this.handlers.push([target, type, handler]);
  }

  serviceName(id) {
    const service = this.options.services.find((s) => s.id === id);
    return service ? `${service.prefix} · ${service.name_en}` : id;
  }

  fillServices() {
    const choices = this.options.services.filter((s) => s.id !== this.call.service);
    const select = $("transfer-to");
    select.replaceChildren(
      ...choices.map((s) => new Option(`${s.prefix} · ${s.name_en} (${s.name_ja})`, s.id)),
    );
    if (!choices.length) select.append(new Option(this.t("service_none"), ""));
    select.disabled = $("transfer").disabled = !choices.length;
  }

  fillColleagues() {
    const people = this.options
      .colleagues()
      .filter((p) => p.username !== this.call.specialist && p.username !== this.options.me);
    const select = $("invite-who");
    const previous = select.value;
    select.replaceChildren(
      ...people.map((p) => new Option(`${p.name} (${this.t(p.state)})`, p.username)),
    );
    if (!people.length) select.append(new Option(this.t("colleague_none"), ""));
    if (people.some((p) => p.username === previous)) select.value = previous;
    select.disabled = $("invite").disabled = !people.length;
  }

  fillPhrases() {
    const box = $("phrases");
    box.replaceChildren(
      ...this.options.phrases.map((phrase) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "phrase";
        button.textContent = `${phrase.ja} / ${phrase.en}`;
        button.lang = "ja";
        button.dataset.ja = phrase.ja;
        button.dataset.en = phrase.en;
        return button;
      }),
    );
    this.listen(box, "click", (event) => {
      const button = event.target.closest("button.phrase");
      if (!button) return;
      const lang = document.querySelector('input[name="phrase-lang"]:checked')?.value ?? "ja";
      this.chat(button.dataset[lang] ?? button.dataset.ja);
    });
  }

  async loadForms() {
    const select = $("form-pick");
    select.replaceChildren();
    try {
      const data = await request("GET", `/consult/forms/${encodeURIComponent(this.call.id.split(".")[0])}`);
      this.forms = Array.isArray(data?.forms) ? data.forms : [];
    } catch {
      this.forms = [];
      $("forms-none").textContent = this.t("forms_failed");
    }
    select.append(...this.forms.map((f) => new Option(f.title, f.id)));
    const none = !this.forms.length;
    $("forms-none").hidden = !none;
    select.disabled = $("form-send").disabled = none;
  }

  // -- what the call says ----------------------------------------------------------------

  onState(state) {
    this.lastState = state;
    const t = this.t;
    if (state.service && state.service !== this.call.service && state.state !== "waiting") {
      this.call = { ...this.call, service: state.service };
      $("call-topic").textContent = this.serviceName(state.service);
      this.fillServices();
    }
    if (state.state === "ringing") $("call-state").textContent = t("state_ringing");
    else if (state.state === "connected") $("call-state").textContent = t("state_connected");
    else if (state.state === "reconnecting") $("call-state").textContent = t("state_reconnecting");
    else if (state.state === "ended") this.over(this.endedText(state.reason));
    else if (state.state === "waiting") this.over(this.backText(state));
    $("colleague").hidden = !this.colleagueRole(state);
  }

  /** The other staff member in the call, if any (the guest, or for a guest the specialist). */
  colleagueRole(state) {
    if (this.role === "guest") return state.specialist ? "specialist" : null;
    return state.guest ? "guest" : null;
  }

  endedText(reason) {
    const key = `ended_${reason}`;
    const text = this.t(key);
    return text === key ? this.t("ended_completed") : text;
  }

  backText(state) {
    if (state.reason === "transferred") {
      return this.t("ended_transferred", {
        number: this.call.number,
        service: this.serviceName(state.service),
      });
    }
    return this.t("ended_back", { reason: state.reason });
  }

  onMessage(message) {
    if (message.type === "chat") this.addChat(message.from, message.text);
    else if (message.type === "joined" || message.type === "left") this.fillColleagues();
  }

  onTrack({ from, track, stream, kind }) {
    if (kind === "audio") {
      const audio = document.createElement("audio");
      audio.autoplay = true;
      audio.dataset.from = from;
      audio.srcObject = new MediaStream([track]);
      $("audio").append(audio);
      track.addEventListener("ended", () => audio.remove());
      return;
    }
    let video;
    if (from === "kiosk") video = $(kind === "document" ? "video-document" : "video-face");
    else if (kind === "face") video = $("video-colleague");
    if (!video) return;
    video.srcObject = new MediaStream([track]);
    video.dataset.from = from;
    video.play?.().catch(() => {});
  }

  onQuality(detail) {
    // Measured here (of the link to the kiosk), or measured at the kiosk.
    let target = null;
    if (detail.from === "self" && detail.peer === "kiosk") target = "quality-self";
    else if (detail.from === "kiosk") target = "quality-kiosk";
    if (!target) return;
    const element = $(target);
    element.className = `level ${detail.level}`;
    element.textContent = this.t("quality", {
      level: this.t(detail.level),
      loss: Math.round((detail.loss ?? 0) * 1000) / 10,
      rtt: Math.round(detail.rtt ?? 0),
      fps: detail.fps == null ? "–" : Math.round(detail.fps),
    });
  }

  onClosed({ code, reason }) {
    if (this.finished) return;
    if (code === 1000 && this.lastState?.state === "ended") {
      this.over(this.endedText(this.lastState.reason));
    } else if (this.lastState?.state === "waiting") {
      this.over(this.backText(this.lastState));
    } else {
      this.over(this.t("ended_closed", { reason: reason || String(code) }));
    }
  }

  // -- the snapshot and the marks --------------------------------------------------------

  askSnapshot() {
    this.peer.send({ type: "snapshot-request", camera: "document", to: "kiosk" });
    this.options.say(this.t("snapshot_asked"), "note");
  }

  onSnapshot({ blob }) {
    if (this.snapshotUrl) URL.revokeObjectURL(this.snapshotUrl);
    this.snapshotUrl = URL.createObjectURL(blob);
    this.marks = [];
    $("snapshot-box").hidden = false;
    $("snapshot-hint").hidden = true;
    $("snapshot-image").src = this.snapshotUrl;
    $("mark-clear").disabled = false;
    this.options.say(this.t("snapshot_arrived"));
  }

  clearSnapshot() {
    if (this.snapshotUrl) URL.revokeObjectURL(this.snapshotUrl);
    this.snapshotUrl = "";
    this.marks = [];
    $("snapshot-box").hidden = true;
    $("snapshot-hint").hidden = false;
    $("snapshot-image").removeAttribute("src");
    $("mark-clear").disabled = true;
  }

  clearMarks(send) {
    this.marks = [];
    this.redraw();
    if (send) {
      this.peer.send({ type: "mark", clear: true });
      this.options.say(this.t("marks_cleared"));
    }
  }

  /** A pointer position as a share (0–1) of the snapshot. */
  at(event) {
    const box = $("snapshot-marks").getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [
      Math.round(clamp((event.clientX - box.left) / box.width) * 10000) / 10000,
      Math.round(clamp((event.clientY - box.top) / box.height) * 10000) / 10000,
    ];
  }

  penDown(event) {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    event.currentTarget.setPointerCapture?.(event.pointerId);
    this.drawing = [this.at(event)];
    this.redraw();
  }

  penMove(event) {
    if (!this.drawing) return;
    const point = this.at(event);
    const last = this.drawing[this.drawing.length - 1];
    if (Math.hypot(point[0] - last[0], point[1] - last[1]) < 0.004) return;
    this.drawing.push(point);
    this.redraw();
  }

  penUp(event) {
    if (!this.drawing) return;
    this.drawing.push(this.at(event));
    const points = thin(this.drawing, MAX_POINTS);
    this.drawing = null;
    this.sendMark(points);
  }

  onKey(event) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (event.key in moves) {
      event.preventDefault();
      const [dx, dy] = moves[event.key];
      this.cursor.x = Math.min(1, Math.max(0, this.cursor.x + dx * KEY_STEP));
      this.cursor.y = Math.min(1, Math.max(0, this.cursor.y + dy * KEY_STEP));
      this.redraw();
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      const x = Math.round(this.cursor.x * 10000) / 10000;
      const y = Math.round(this.cursor.y * 10000) / 10000;
      this.sendMark([[x, y]]);
    }
  }

  sendMark(points) {
    const label = $("mark-label").value.trim().slice(0, 200);
    const mark = { type: "mark", points, ...(label && { label }) };
    this.marks.push(mark);
    this.redraw();
    this.peer.send(mark);
    this.options.say(this.t("mark_sent"));
  }

  redraw() {
    const canvas = $("snapshot-marks");
    const image = $("snapshot-image");
    if ($("snapshot-box").hidden) return;
    const width = image.clientWidth;
    const height = image.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.classList.add("sized");
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.lineCap = g.lineJoin = "round";
    const strokes = [...this.marks.map((m) => m.points), ...(this.drawing ? [this.drawing] : [])];
    for (const points of strokes) {
      g.strokeStyle = "#d00000";
      g.fillStyle = "#d00000";
      g.lineWidth = 4;
      if (points.length === 1 || points.every((p) => p[0] === points[0][0] && p[1] === points[0][1])) {
        g.beginPath();
        g.arc(points[0][0] * width, points[0][1] * height, 12, 0, Math.PI * 2);
        g.stroke();
        continue;
      }
      g.beginPath();
      points.forEach(([x, y], i) => (i ? g.lineTo(x * width, y * height) : g.moveTo(x * width, y * height)));
      g.stroke();
    }
    if (document.activeElement === canvas) {
      g.strokeStyle = "#0b4f8a";
      g.lineWidth = 2;
      const x = this.cursor.x * width;
      const y = this.cursor.y * height;
      g.beginPath();
      g.moveTo(x - 14, y);
      g.lineTo(x + 14, y);
      g.moveTo(x, y - 14);
      g.lineTo(x, y + 14);
      g.stroke();
    }
  }

  // -- chat, forms, transfer, invitation ------------------------------------------------------

  chat(text) {
    this.peer.send({ type: "chat", text });
    this.addChat("me", text);
  }

  addChat(from, text) {
    const item = document.createElement("p");
    item.className = `chat from-${from}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = `${this.t(`from_${from}`)}: `;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(who, body);
    $("chat-log").append(item);
    item.scrollIntoView?.({ block: "nearest" });
  }

  sendForm() {
    const form = this.forms.find((f) => f.id === $("form-pick").value);
    if (!form) return;
    this.peer.send({ type: "form", form: form.id, title: String(form.title).slice(0, 200) });
    this.options.say(this.t("form_sent", { title: form.title }));
  }

  async transfer() {
    const service = $("transfer-to").value;
    if (!service) return;
    this.options.say(this.t("transferring", { service: this.serviceName(service) }), "note");
    try {
      await request("POST", `/consult/api/calls/${encodeURIComponent(this.call.id)}/transfer`, { service });
    } catch (error) {
      this.options.failed(error);
    }
  }

  async invite() {
    const username = $("invite-who").value;
    if (!username) return;
    try {
      await request("POST", `/consult/api/calls/${encodeURIComponent(this.call.id)}/invite`, { username });
      const person = this.options.colleagues().find((p) => p.username === username);
      this.options.say(this.t("invite_sent", { name: person?.name ?? username }));
    } catch (error) {
      this.options.failed(error);
    }
  }

  // -- the end ---------------------------------------------------------------------------

  end() {
    if (this.finished) return;
    this.peer?.close();
    this.over(this.t(this.role === "guest" ? "ended_left" : "ended_completed"));
  }

  over(text) {
    if (this.finished) return;
    this.finished = true;
    this.peer?.close();
    for (const track of this.local.getTracks()) track.stop();
    for (const [target, type, handler] of this.handlers) target.removeEventListener(type, handler);
    this.handlers = [];
    for (const id of ["video-face", "video-document", "video-self", "video-colleague"]) {
      $(id).srcObject = null;
    }
    $("audio").replaceChildren();
    this.clearSnapshot();
    $("call").hidden = true;
    const notice = $("call-over");
    notice.textContent = text;
    notice.hidden = false;
    this.options.onOver(text);
  }
}

/** At most ``limit`` of ``points``, evenly spread, the first and last kept. */
function thin(points, limit) {
  if (points.length <= limit) return points;
  const step = (points.length - 1) / (limit - 1);
  return Array.from({ length: limit }, (_, i) => points[Math.round(i * step)]);
}
