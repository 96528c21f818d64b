/**
 * The lobby board: shows each call, announces it (a chime, then speech: Japanese then
 * English, said twice) and keeps the waits current, unattended for days.
 *
 * - Events come from /o/{office}/board/events. Each call's id is its stream id; after a
 *   dropped connection the browser resumes with Last-Event-ID, and after a refused one
 *   this module reconnects with ?after=<last id>, waiting longer each time.
 * - What to say comes from the server with each call; this file holds no words.
 * - It reloads itself when the server's version changes, and once a day.
 * - Lists are capped, so nothing grows while it runs.
 */

import { applySummary } from "./congestion.rows.js";

const board = document.getElementById("board");
const list = document.getElementById("calls");
const template = document.getElementById("call-template");
const state = document.getElementById("board-state");
const start = document.getElementById("start");
const strings = JSON.parse(document.getElementById("strings").textContent);
const office = board.dataset.office;
const shown = Number(board.dataset.shown || 6);
let last = board.dataset.last || "";
let audio = null;
let started = false;

function compareIds(a, b) {
  const [am, as] = (a || "0-0").split("-").map(Number);
  const [bm, bs] = (b || "0-0").split("-").map(Number);
  return am - bm || as - bs;
}

function setState(name) {
  const text = state.dataset[name];
  if (text && state.textContent !== text) state.textContent = text;
  board.dataset.state = name;
}

// -- sound and speech ---------------------------------------------------------------

function chime() {
  if (!audio) return 0;
  const now = audio.currentTime;
  // Two soft tones, high then low: the familiar "pin-pon".
  [[880, 0], [659.25, 0.45]].forEach(([frequency, at]) => {
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.type = "sine";
    tone.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, now + at);
    gain.gain.exponentialRampToValueAtTime(0.4, now + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.8);
    tone.connect(gain).connect(audio.destination);
    tone.start(now + at);
    tone.stop(now + at + 0.85);
  });
  return 1300;
}

function voiceFor(lang) {
  const voices = window.speechSynthesis.getVoices();
  const base = lang.split("-")[0];
  return voices.find((v) => v.lang === lang) || voices.find((v) => v.lang.startsWith(base)) || null;
}

const pending = [];
let speaking = false;
let speakingSince = 0;

function say(lines) {
  const synth = window.speechSynthesis;
  if (!synth) return;
  if (synth.speaking && Date.now() - speakingSince > 60000) synth.cancel(); // stuck engine
  speakingSince = Date.now();
  for (let round = 0; round < 2; round += 1) {
    for (const line of lines) {
      const utterance = new SpeechSynthesisUtterance(line.text);
      utterance.lang = line.lang;
      const voice = voiceFor(line.lang);
      if (voice) utterance.voice = voice;
      utterance.rate = 0.9;
      synth.speak(utterance);
    }
  }
}

/** Announce calls one after another, each after its chime. */
function announce(lines) {
  if (!started) return;
  if (pending.length >= 10) pending.shift(); // a burst: keep the latest
  pending.push(lines);
  if (!speaking) next();
}

function next() {
  const lines = pending.shift();
  if (!lines) {
    speaking = false;
    return;
  }
  speaking = true;
  const wait = chime();
  setTimeout(() => {
    say(lines);
    // Give each announcement time to be heard before the next chime.
    setTimeout(next, 4000);
  }, wait);
}

// -- the calls ----------------------------------------------------------------------

function show(id, call) {
  if (list.querySelector(`[data-id="${CSS.escape(id)}"]`)) return false;
  const item = template.content.firstElementChild.cloneNode(true);
  item.dataset.id = id;
  item.querySelector(".call-number").textContent = call.number;
  item.querySelector(".call-counter").textContent = call.counter;
  for (const old of list.querySelectorAll(".latest")) old.classList.remove("latest");
  item.classList.add("latest", "fresh");
  list.prepend(item);
  setTimeout(() => item.classList.remove("fresh"), 10000);
  while (list.children.length > shown) list.lastElementChild.remove();
  document.getElementById("no-calls").hidden = true;
  return true;
}

function onCall(event) {
  let call;
  try {
    call = JSON.parse(event.data);
  } catch {
    return;
  }
  seen(event.lastEventId);
  if (show(event.lastEventId, call) && call.announce) announce(call.say);
}

function seen(id) {
  if (id && compareIds(id, last) > 0) last = id;
}

// -- the stream ---------------------------------------------------------------------

let delay = 1000;
let source = null;

function connect() {
  const url = `/o/${encodeURIComponent(office)}/board/events` + (last ? `?after=${encodeURIComponent(last)}` : "");
  source = new EventSource(url);
  source.addEventListener("hello", (event) => {
    try {
      if (JSON.parse(event.data).version !== board.dataset.version) reload();
    } catch {
      /* a malformed hello changes nothing */
    }
  });
  source.addEventListener("ready", (event) => {
    seen(event.lastEventId);
    delay = 1000;
    setState("live");
  });
  source.addEventListener("call", onCall);
  source.addEventListener("office", (event) => {
    try {
      if (!applySummary(document, JSON.parse(event.data), strings)) reload();
    } catch {
      /* ignore */
    }
  });
  source.addEventListener("error", () => {
    setState("lost");
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, delay + Math.random() * 1000);
      delay = Math.min(delay * 2, 60000);
    }
  });
}

let reloading = false;
function reload() {
  if (reloading) return;
  reloading = true;
  // Not in the middle of an announcement.
  const go = () => (speaking ? setTimeout(go, 2000) : window.location.reload());
  setTimeout(go, 500 + Math.random() * 3000);
}

// -- starting -----------------------------------------------------------------------

function begin() {
  started = true;
  start.hidden = true;
  board.dataset.started = "1";
}

function setUpAudio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (Context) audio = new Context();
  if (audio && audio.state === "running") {
    begin(); // a kiosk that allows sound without a gesture needs no button
    return;
  }
  const button = document.getElementById("start-button");
  button.addEventListener("click", async () => {
    if (audio) await audio.resume().catch(() => {});
    begin();
  });
  button.focus();
}

setUpAudio();
setTimeout(reload, Number(board.dataset.reloadHours || 24) * 3600 * 1000);
connect();
