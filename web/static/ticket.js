/**
 * A resident's ticket page, live.
 *
 * The server renders the whole page; this module keeps it current from the ticket's
 * event stream (/o/{office}/t/{token}/events). Each event is the ticket's whole view
 * (status, position, estimate, counter), and its id is the stream id it reflects, so
 * a reconnect (the browser sends Last-Event-ID; after a refusal this module reopens
 * with ?after=) is sent only what changed meanwhile. When the ticket is called: the
 * call fills the alert region in large letters, a tone plays (Web Audio, generated:
 * no audio file) and the phone vibrates. All text comes from the page (#strings).
 */

const root = document.getElementById("ticket");
const strings = JSON.parse(document.getElementById("strings").textContent);
const $ = (id) => document.getElementById(id);
const office = root.dataset.office;
const token = root.dataset.token;
const eventsUrl = `/o/${encodeURIComponent(office)}/t/${encodeURIComponent(token)}/events`;
const CLOSED = new Set(["done", "cancelled", "no_show", "abandoned"]);

let view = JSON.parse($("view").textContent);
let last = root.dataset.lastEvent || "";
let source = null;
let retryTimer = 0;

/** The page's string ``key`` with its {placeholders} filled in. */
function t(key, values = {}) {
  return (strings[key] ?? "").replace(/\{(\w+)\}/g, (match, name) =>
    name in values ? String(values[name]) : match,
  );
}

function setText(id, text) {
  const element = $(id);
  if (element.textContent !== text) element.textContent = text;
}

// -- sound and vibration ------------------------------------------------------------------

let audio = null;

/** Browsers let a page play sound only after a tap: make the audio context then. */
function unlockAudio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  if (!audio) audio = new Context();
  if (audio.state === "suspended") audio.resume();
  return audio;
}

/** A clear two-tone chime, three times: generated, so no file is needed. */
function chime() {
  const context = unlockAudio();
  if (!context) return;
  const start = context.currentTime + 0.05;
  for (let round = 0; round < 3; round += 1) {
    [880, 660].forEach((frequency, i) => {
      const at = start + round * 0.9 + i * 0.3;
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.6, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.28);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(at);
      oscillator.stop(at + 0.3);
    });
  }
}

function vibrate() {
  if (typeof navigator.vibrate === "function") navigator.vibrate([400, 200, 400, 200, 400]);
}

// -- showing the view ----------------------------------------------------------------------

function show(next) {
  const previous = view;
  view = next;
  root.className = `ticket ticket-${next.status}`;
  const waiting = next.status === "waiting";
  $("waiting").hidden = !waiting;
  if (waiting) {
    setText("position", next.position <= 1 ? t("next") : t("position", { n: next.position }));
    setText(
      "ahead-count",
      next.ahead === 0
        ? t("ahead_none")
        : next.ahead === 1
          ? t("ahead_one")
          : t("ahead", { n: next.ahead }),
    );
    setText(
      "estimate",
      next.wait === null
        ? t("estimate_none")
        : next.high === 0
          ? t("estimate_soon")
          : t("estimate", { wait: next.wait, low: next.low, high: next.high }),
    );
  }
  const notify = $("notify");
  // "Tell me when" is for a ticket still waiting.
  if (notify && !waiting) notify.hidden = true;
  const call = $("call");
  if (next.status === "called") {
    const fresh = previous.status !== "called" || next.recalls !== previous.recalls;
    if (fresh || call.hidden) {
      call.hidden = false;
      // Filled anew, so that screen readers announce the alert again on a recall.
      call.replaceChildren();
      for (const [key, cls] of [
        ["called", "call-text"],
        ["called_hint", "call-hint"],
      ]) {
        const line = document.createElement("p");
        line.className = cls;
        line.textContent = t(key, { counter: next.counter });
        call.append(line);
      }
    }
    if (fresh) {
      chime();
      vibrate();
    }
  } else {
    call.hidden = true;
    call.replaceChildren();
  }
  const state = $("state");
  if (next.status === "serving") {
    state.hidden = false;
    setText("state", t("serving", { counter: next.counter }));
  } else if (CLOSED.has(next.status)) {
    state.hidden = false;
    setText("state", t(next.status));
  } else {
    state.hidden = true;
  }
  if (CLOSED.has(next.status) && !CLOSED.has(previous.status)) {
    // The cancel button and the "tell me" form no longer apply: show the page as it is now.
    window.setTimeout(() => window.location.reload(), 1500);
  }
}

// -- the event stream ----------------------------------------------------------------------

function compareIds(a, b) {
  const [am, as] = (a || "0-0").split("-").map(Number);
  const [bm, bs] = (b || "0-0").split("-").map(Number);
  return am - bm || as - bs;
}

function connect() {
  window.clearTimeout(retryTimer);
  if (CLOSED.has(view.status)) {
    setText("live-state", "");
    return;
  }
  source = new EventSource(last ? `${eventsUrl}?after=${encodeURIComponent(last)}` : eventsUrl);
  source.addEventListener("open", () => setText("live-state", t("live")));
  source.addEventListener("message", (event) => {
    let next;
    try {
      next = JSON.parse(event.data);
    } catch {
      return;
    }
    if (event.lastEventId && compareIds(event.lastEventId, last) >= 0) last = event.lastEventId;
    setText("live-state", t("live"));
    show(next);
    if (CLOSED.has(next.status)) {
      source.close();
      setText("live-state", "");
    }
  });
  source.addEventListener("error", () => {
    setText("live-state", t("connecting"));
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (a restart, say): the browser gives up, so try again ourselves.
      retryTimer = window.setTimeout(connect, 3000);
    }
  });
}

// -- "tell me when": Web Push ----------------------------------------------------------------

function base64UrlToBytes(text) {
  const padded = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function setUpPush() {
  const form = $("notify-form");
  const key = root.dataset.pushKey;
  if (!form || !key || !("serviceWorker" in navigator) || !("PushManager" in window)) return;
  $("push-choice").hidden = false;
  $("notify").hidden = false;
  form.addEventListener("submit", async (event) => {
    if (!$("push-on").checked || $("push").value) return;
    event.preventDefault();
    try {
      const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
      const permission = await Notification.requestPermission();
      if (permission === "granted") {
        const subscription =
          (await registration.pushManager.getSubscription()) ||
          (await registration.pushManager.subscribe({
            userVisibleOnly: true,
            applicationServerKey: base64UrlToBytes(key),
          }));
        $("push").value = JSON.stringify(subscription.toJSON());
      }
    } catch {
      // No push on this browser after all: the e-mail (if any) still goes.
    }
    form.submit();
  });
}

// -- start -------------------------------------------------------------------------------------

const soundTest = $("sound-test");
if (soundTest && (window.AudioContext || window.webkitAudioContext)) {
  soundTest.hidden = false;
  soundTest.addEventListener("click", chime);
}
// Any tap unlocks the sound, so that the call can be heard.
document.addEventListener("pointerdown", unlockAudio, { once: true });
setUpPush();
connect();
