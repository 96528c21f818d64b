// Every kiosk screen: voice guidance, the idle reset, staying calm when the server is
// away, live parts of a screen, the receipt, and the health report.
//
// No text lives here: the page carries every word (the heading is what is read out;
// the offline message is in the page, hidden). Settings come from data-* attributes of
// <body>: data-idle-seconds, data-home, data-reset, data-speech-lang, data-health,
// data-version, data-printer, data-pristine; and data-busy, which a screen sets while a
// video call is on (call.js): no idle reset, and the call shows its own reconnecting.

const body = document.body;
const VOICE_KEY = "madoguchi-kiosk-voice";
const RETRY_MS = 3000;
const HEARTBEAT_MS = 10000;
const REPORT_MS = 30000;
const REPORTED_KEY = "madoguchi-kiosk-reported";

// -- the server: reachable or not -------------------------------------------------------

let offline = false;
let pending = null;
let roundTrip = null;

async function reachable() {
  const started = performance.now();
  try {
    const answer = await fetch("/livez", { cache: "no-store", signal: AbortSignal.timeout(4000) });
    roundTrip = Math.min(Math.round(performance.now() - started), 60000);
    return answer.ok;
  } catch {
    return false;
  }
}

const overlay = document.getElementById("offline");
const overlayBack = document.getElementById("offline-back");

function goOffline(target) {
  if (target) pending = target;
  if (offline) {
    overlay.hidden = false;
    return;
  }
  offline = true;
  overlay.hidden = false;
  // What still works: a ticket on screen stays readable.
  overlayBack.hidden = !document.querySelector(".ticket");
  setTimeout(retry, RETRY_MS);
}

async function retry() {
  if (await reachable()) {
    location.replace(pending ?? location.href);
  } else {
    setTimeout(retry, RETRY_MS);
  }
}

overlayBack.addEventListener("click", () => {
  overlay.hidden = true;
});

/** Go to ``url`` only if the server answers; otherwise the calm offline screen. */
async function go(url, replace = false) {
  if (await reachable()) {
    if (replace) location.replace(url);
    else location.assign(url);
  } else {
    goOffline(url);
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented) return;
  event.preventDefault();
  go(link.href);
});

let sending = false;
document.addEventListener("submit", async (event) => {
  if (event.defaultPrevented) return; // a screen's own script said no
  event.preventDefault();
  // A double tap, or a second button tapped while the first is on its way: one ticket.
  if (sending) return;
  sending = true;
  const form = event.target;
  for (const button of form.querySelectorAll("button")) button.setAttribute("aria-busy", "true");
  if (await reachable()) {
    HTMLFormElement.prototype.submit.call(form);
  } else {
    sending = false;
    goOffline();
  }
});

setInterval(async () => {
  if (!offline && !body.dataset.busy && !(await reachable())) goOffline();
}, HEARTBEAT_MS);

// -- voice guidance ---------------------------------------------------------------------

const voice = document.getElementById("voice");

function voiceOn() {
  return localStorage.getItem(VOICE_KEY) !== "off";
}

function speak() {
  if (!voiceOn() || !("speechSynthesis" in window)) return;
  const heading = document.getElementById("instruction").cloneNode(true);
  for (const reading of heading.querySelectorAll("rt, rp")) reading.remove();
  const text = heading.textContent.replace(/\s+/g, " ").trim();
  if (!text) return;
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.lang = body.dataset.speechLang || "ja-JP";
  speechSynthesis.cancel();
  speechSynthesis.speak(utterance);
}

if (voice) {
  voice.setAttribute("aria-checked", String(voiceOn()));
  voice.addEventListener("click", () => {
    const on = !voiceOn();
    localStorage.setItem(VOICE_KEY, on ? "on" : "off");
    voice.setAttribute("aria-checked", String(on));
    if (on) speak();
    else if ("speechSynthesis" in window) speechSynthesis.cancel();
  });
}

// -- the idle reset: a minute without a touch, and everything is as it was -------------

const idleMs = Number(body.dataset.idleSeconds || 60) * 1000;
let idleTimer = null;

function touched() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(idleReset, idleMs);
}

function idleReset() {
  if (body.dataset.busy) {
    touched(); // a call is on: the screen is in use
    return;
  }
  // Whatever happens next (even with the server away), the last resident's ticket goes.
  for (const shown of document.querySelectorAll(".ticket, .receipt")) shown.remove();
  overlayBack.hidden = true;
  const voiceWasDefault = localStorage.getItem(VOICE_KEY) === null;
  localStorage.removeItem(VOICE_KEY);
  if ("speechSynthesis" in window) speechSynthesis.cancel();
  if (body.dataset.pristine && voiceWasDefault) {
    touched();
    return;
  }
  go(body.dataset.reset || "/kiosk/reset", true);
}

for (const type of ["pointerdown", "touchstart", "keydown", "wheel"]) {
  addEventListener(type, touched, { passive: true, capture: true });
}
touched();

// -- the consult choice without a camera ------------------------------------------------

async function devices() {
  try {
    return await navigator.mediaDevices.enumerateDevices();
  } catch {
    return [];
  }
}

const consult = document.getElementById("consult");
if (consult) {
  devices().then((found) => {
    if (found.some((device) => device.kind === "videoinput")) return;
    consult.classList.add("unavailable");
    consult.href = consult.dataset.noCameraHref;
    consult.querySelector(".with-camera").hidden = true;
    consult.querySelector(".no-camera").hidden = false;
  });
}

// -- parts of a screen that change: refreshed in place from the server ------------------

const live = document.getElementById("live");
if (live && live.dataset.refresh) {
  setInterval(async () => {
    if (offline || body.dataset.busy) return;
    try {
      const answer = await fetch(location.pathname, { cache: "no-store" });
      if (!answer.ok) return; // an error page: keep what the screen shows
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById("live");
      if (fresh && fresh.innerHTML !== live.innerHTML) live.innerHTML = fresh.innerHTML;
    } catch {
      goOffline();
    }
  }, Number(live.dataset.refresh) * 1000);
}

// -- the receipt: printed once, by the browser's silent kiosk printing ------------------

if (document.querySelector("[data-print='1']")) {
  history.replaceState(null, "", location.pathname);
  const print = () => window.print();
  if (document.readyState === "complete") setTimeout(print, 0);
  else addEventListener("load", print, { once: true });
}

// -- health: what this kiosk sees of itself, every 30 s ---------------------------------

async function report() {
  const url = body.dataset.health;
  if (!url || offline) return;
  const found = await devices();
  const count = (kind) => Math.min(found.filter((device) => device.kind === kind).length, 16);
  const payload = {
    cameras: count("videoinput"),
    microphones: count("audioinput"),
    // A browser cannot see its printer's paper; the server knows an ESC/POS printer's.
    printer: "unknown",
    round_trip_ms: roundTrip,
    version: body.dataset.version,
  };
  try {
    const answer = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(payload),
      cache: "no-store",
    });
    sessionStorage.setItem(REPORTED_KEY, String(Date.now()));
    // What the server asks of the kiosk (the camera probe: check.js) goes to whoever listens.
    const detail = answer.ok ? await answer.json().catch(() => null) : null;
    if (detail) document.dispatchEvent(new CustomEvent("madoguchi:health", { detail }));
  } catch {
    goOffline();
  }
}

if (body.dataset.health) {
  const last = Number(sessionStorage.getItem(REPORTED_KEY) || 0);
  const due = Math.max(0, REPORT_MS - (Date.now() - last));
  setTimeout(async () => {
    await reachable();
    report();
    setInterval(report, REPORT_MS);
  }, due);
}

speak();
