// The kiosk's side of a consultation (kiosk/calls.py): the waiting screen that becomes the
// call screen by itself, and the five-face question after it.
//
// No text lives here: the page carries every word (the heading of each state in
// #headings, the rest in the markup). Loaded
// before kiosk.js, so that the waiting screen's longer idle time and its reset (which
// ends the consultation) are what kiosk.js reads; while a call is on, <body data-busy>
// tells kiosk.js to leave the screen alone.

import { CallPeer } from "/consult/static/peer.js";

const VOICE_KEY = "madoguchi-kiosk-voice";
const ACTIVE = new Set(["ringing", "connected", "reconnecting"]);
const LEVELS = ["good", "fair", "poor"];
const CHAT_KEPT = 30;
const VOLUME_STEP = 0.2;

const body = document.body;
const byId = (id) => document.getElementById(id);

function speak(element) {
  const copy = element.cloneNode(true);
  for (const reading of copy.querySelectorAll("rt, rp")) reading.remove();
  const text = copy.textContent.replace(/\s+/g, " ").trim();
  if (!text) return;
  if (localStorage.getItem(VOICE_KEY) === "off" || !("speechSynthesis" in window)) return;
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.lang = body.dataset.speechLang || "ja-JP";
  speechSynthesis.cancel();
  speechSynthesis.speak(utterance);
}

// -- the cameras and the microphone -----------------------------------------------------

/** The face camera (with the microphone) and, if the kiosk has one, the document camera:
 *  picked by label, else by order (the first camera is the face one). */
async function openCameras(wanted) {
  let found = [];
  try {
    found = await navigator.mediaDevices.enumerateDevices();
  } catch {
    // no devices to list: the defaults below
  }
  const cameras = found.filter((d) => d.kind === "videoinput");
  let documentCam = cameras.find((d) => /document|書画|doc/i.test(d.label));
  if (!documentCam && wanted.includes("document") && cameras.length > 1) documentCam = cameras[1];
  const faceCam =
    cameras.find((d) => d !== documentCam && /face|front|user/i.test(d.label)) ??
    cameras.find((d) => d !== documentCam);
  const streams = [];
  const video = faceCam ? { deviceId: { exact: faceCam.deviceId } } : true;
  try {
    streams.push(await navigator.mediaDevices.getUserMedia({ audio: true, video }));
  } catch {
    try {
      streams.push(await navigator.mediaDevices.getUserMedia({ audio: true }));
    } catch {
      streams.push(new MediaStream());
    }
  }
  if (documentCam && documentCam !== faceCam) {
    try {
      const size = { width: { ideal: 1920 }, height: { ideal: 1080 } };
      streams.push(
        await navigator.mediaDevices.getUserMedia({
          video: { deviceId: { exact: documentCam.deviceId }, ...size },
        }),
      );
    } catch {
      // one camera it is
    }
  }
  return streams;
}

/** A full-resolution still of a camera's track, as a JPEG. */
async function still(track) {
  if ("ImageCapture" in window) {
    const capture = new ImageCapture(track);
    try {
      return await capture.takePhoto();
    } catch {
      const frame = await capture.grabFrame().catch(() => null);
      if (frame) return toJpeg(frame, frame.width, frame.height);
    }
  }
  const video = document.createElement("video");
  video.muted = true;
  video.srcObject = new MediaStream([track]);
  await video.play();
  const { width = video.videoWidth, height = video.videoHeight } = track.getSettings();
  const blob = await toJpeg(video, width, height);
  video.srcObject = null;
  return blob;
}

function toJpeg(source, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(source, 0, 0, width, height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

// -- the call screen --------------------------------------------------------------------

async function call(root) {
  const headings = byId("headings");
  const heading = byId("instruction");
  heading.dataset.state = root.dataset.state; // the page came with its heading
  const waiting = byId("waiting");
  const talk = byId("talk");
  const remote = byId("remote");
  const guest = byId("guest");
  const self = byId("self");
  const quality = byId("quality");
  const reconnecting = byId("reconnecting");
  const log = byId("chat-log");
  const markView = byId("mark");
  const formView = byId("form");
  let leaving = false;
  let state = root.dataset.state;
  let snapshot = null; // the last still sent: marks are drawn on it
  const levels = { self: "good", specialist: "good" };
  const link = { socket: "open", ice: "new" };

  const streams = await openCameras((root.dataset.cameras || "").split(" "));
  const [face, documentStream] = streams;
  self.srcObject = new MediaStream(face.getVideoTracks());
  byId("camera-problem").hidden = face.getVideoTracks().length > 0;

  const peer = new CallPeer({ ws: root.dataset.ws, role: "kiosk", streams });
  const remoteStream = new MediaStream();
  const guestStream = new MediaStream();

  function leave(target) {
    if (leaving) return;
    leaving = true;
    peer.close();
    for (const stream of streams) for (const track of stream.getTracks()) track.stop();
    location.replace(target);
  }

  function show() {
    const away = link.socket !== "open" || link.ice === "disconnected" || link.ice === "failed";
    const shown = state === "connected" && away ? "reconnecting" : state;
    const talking = ACTIVE.has(state);
    waiting.hidden = talking;
    talk.hidden = !talking;
    reconnecting.hidden = shown !== "reconnecting";
    if (talking) body.dataset.busy = "call";
    else delete body.dataset.busy;
    const wanted = headings.querySelector(`[data-state="${shown}"]`);
    if (wanted && heading.dataset.state !== shown) {
      heading.dataset.state = shown;
      heading.replaceChildren(...[...wanted.childNodes].map((node) => node.cloneNode(true)));
      speak(heading);
    }
  }

  function play(element) {
    element.play().catch(() => {
      element.muted = true; // a browser that will not play sound unasked still shows the picture
      element.play().catch(() => {});
    });
  }

  peer.addEventListener("state", ({ detail }) => {
    state = detail.state;
    if (state === "ended") {
      leave(detail.reason === "cancelled" ? "/kiosk/" : root.dataset.page);
      return;
    }
    if (state === "waiting") {
      // Back in the queue (no answer, transferred): nothing of the last talk stays.
      for (const track of [...remoteStream.getTracks(), ...guestStream.getTracks()]) {
        remoteStream.removeTrack(track);
        guestStream.removeTrack(track);
      }
      log.replaceChildren();
      markView.hidden = formView.hidden = true;
    }
    if (!detail.guest) guest.hidden = true;
    show();
  });

  peer.addEventListener("link", ({ detail }) => {
    link.socket = detail.socket;
    link.ice = detail.ice.specialist ?? "new";
    show();
  });

  peer.addEventListener("track", ({ detail }) => {
    if (detail.from === "specialist" && detail.kind !== "document") {
      for (const old of remoteStream.getTracks().filter((t) => t.kind === detail.track.kind)) {
        remoteStream.removeTrack(old);
      }
      remoteStream.addTrack(detail.track);
      remote.srcObject = remoteStream;
      play(remote);
    } else if (detail.from === "guest" && detail.kind !== "document") {
      guestStream.addTrack(detail.track);
      guest.srcObject = guestStream;
      guest.hidden = false;
      play(guest);
    }
  });

  peer.addEventListener("quality", ({ detail }) => {
    const key = detail.from === "self" ? "self" : detail.from;
    if (!(key in levels) || !LEVELS.includes(detail.level)) return;
    levels[key] = detail.level;
    const worst = Math.max(...Object.values(levels).map((level) => LEVELS.indexOf(level)));
    quality.dataset.level = LEVELS[worst];
  });

  peer.addEventListener("message", ({ detail }) => {
    if (detail.type === "chat") say(detail.text, "them");
    else if (detail.type === "mark") mark(detail);
    else if (detail.type === "form") showForm(detail);
    else if (detail.type === "snapshot-request") sendStill(detail);
  });

  peer.addEventListener("closed", ({ detail }) => {
    leave(detail.code === 1000 ? root.dataset.page : "/kiosk/");
  });

  // -- chat: large text both ways --------------------------------------------------------

  function say(text, who) {
    const item = document.createElement("li");
    item.className = who;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who === "me" ? log.dataset.me : log.dataset.them;
    const words = document.createElement("span");
    words.className = "words";
    words.textContent = text;
    item.append(name, words);
    log.append(item);
    while (log.children.length > CHAT_KEPT) log.firstElementChild.remove();
    item.scrollIntoView({ block: "nearest" });
  }

  for (const button of document.querySelectorAll("[data-reply]")) {
    button.addEventListener("click", () => {
      peer.send({ type: "chat", text: button.dataset.reply });
      say(button.dataset.reply, "me");
    });
  }

  // -- volume ------------------------------------------------------------------------------

  const meter = byId("volume");
  function volume(change) {
    const level = Math.min(1, Math.max(0, Math.round((remote.volume + change) * 10) / 10));
    remote.volume = guest.volume = level;
    if (level > 0) remote.muted = guest.muted = false;
    meter.value = level;
  }
  byId("louder").addEventListener("click", () => volume(VOLUME_STEP));
  byId("quieter").addEventListener("click", () => volume(-VOLUME_STEP));
  remote.volume = guest.volume = Number(meter.value);

  // -- the document: a still on request, marks drawn on it ---------------------------------

  async function sendStill({ camera = "document", from = "specialist" }) {
    const track =
      (camera === "document" ? documentStream?.getVideoTracks()[0] : null) ??
      face.getVideoTracks()[0];
    if (!track) return;
    try {
      const blob = await still(track);
      snapshot = blob;
      await peer.sendSnapshot(blob, from, { camera });
    } catch (error) {
      console.warn("no snapshot", error);
    }
  }

  async function mark(message) {
    if (message.clear) {
      markView.hidden = true;
      return;
    }
    if (!snapshot) {
      const track = documentStream?.getVideoTracks()[0] ?? face.getVideoTracks()[0];
      if (track) snapshot = await still(track).catch(() => null);
    }
    const canvas = byId("mark-canvas");
    const picture = snapshot ? await createImageBitmap(snapshot) : null;
    canvas.width = picture?.width ?? 1600;
    canvas.height = picture?.height ?? 1200;
    const pen = canvas.getContext("2d");
    pen.fillStyle = "#ffffff";
    pen.fillRect(0, 0, canvas.width, canvas.height);
    if (picture) pen.drawImage(picture, 0, 0);
    const points = message.points.map(([x, y]) => [x * canvas.width, y * canvas.height]);
    const width = Math.max(8, canvas.width / 120);
    for (const [colour, size] of [["#ffffff", width * 2], ["#c00000", width]]) {
      pen.strokeStyle = pen.fillStyle = colour;
      pen.lineWidth = size;
      pen.lineCap = pen.lineJoin = "round";
      pen.beginPath();
      if (points.length === 1) {
        pen.arc(points[0][0], points[0][1], canvas.width / 16, 0, 2 * Math.PI);
      } else {
        points.forEach(([x, y], i) => (i ? pen.lineTo(x, y) : pen.moveTo(x, y)));
      }
      pen.stroke();
    }
    byId("mark-label").textContent = message.label ?? "";
    markView.hidden = false;
    markView.scrollIntoView({ block: "start" });
    speak(byId("mark-title"));
  }

  // -- a form to print ---------------------------------------------------------------------

  function showForm(message) {
    const pages = byId("form-pages");
    pages.replaceChildren();
    byId("form-name").textContent = message.title ?? "";
    const most = Number(pages.dataset.most || 1);
    const add = (n) => {
      const image = new Image();
      image.alt = message.title || pages.dataset.alt;
      image.className = "form-page";
      image.addEventListener("load", () => {
        if (n < most) add(n + 1);
      });
      image.addEventListener("error", () => image.remove());
      image.src = `${pages.dataset.base}${encodeURIComponent(message.form)}/pages/${n}.png`;
      pages.append(image);
    };
    add(Number(pages.dataset.first || 1));
    formView.hidden = false;
    formView.scrollIntoView({ block: "start" });
    speak(byId("form-title"));
  }

  byId("print").addEventListener("click", () => window.print());
  for (const close of document.querySelectorAll("[data-close]")) {
    close.addEventListener("click", () => {
      byId(close.dataset.close).hidden = true;
    });
  }

  // -- ending: "stop waiting", "end", the start button -------------------------------------

  for (const form of document.querySelectorAll("form.end")) {
    form.addEventListener("submit", () => {
      leaving = true; // the form ends it; the page that answers comes next
      peer.close();
    });
  }
  // The page is going anyway (the idle reset, a form): the call's end must not redirect it.
  addEventListener("beforeunload", () => {
    leaving = true;
  });
  const home = document.querySelector(".kbar a.home");
  home?.addEventListener("click", (event) => {
    event.preventDefault();
    (talk.hidden ? waiting : talk).querySelector("form.end")?.requestSubmit();
  });

  show();
  try {
    await peer.start();
  } catch {
    // refused (the consultation is over, or not this kiosk's): the "closed" event moves on
  }
}

// -- the five faces ------------------------------------------------------------------------

function survey(faces) {
  let sent = false;
  for (const button of faces.querySelectorAll("button[data-rating]")) {
    button.addEventListener("click", async () => {
      if (sent) return;
      sent = true;
      button.setAttribute("aria-pressed", "true");
      try {
        await fetch(faces.dataset.rate, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ rating: Number(button.dataset.rating) }),
          cache: "no-store",
        });
      } catch {
        // the answer is lost; the resident is not kept waiting for it
      }
      byId("thanks").hidden = false;
      speak(byId("thanks"));
      setTimeout(() => location.replace(faces.dataset.done), Number(faces.dataset.pause || 2000));
    });
  }
}

const root = byId("call");
if (root) {
  // Read by kiosk.js, which runs after this: the waiting screen's idle time and reset.
  body.dataset.idleSeconds = root.dataset.idleSeconds;
  body.dataset.reset = root.dataset.reset;
  call(root);
}
const faces = document.querySelector(".faces");
if (faces) survey(faces);
