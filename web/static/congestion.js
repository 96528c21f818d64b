/**
 * The congestion page, kept live over server-sent events from /live.
 *
 * Each "waits" event carries numbers only, for the offices that changed (or all of
 * them, first and after falling behind); every word comes from the page itself
 * (#strings, data-* attributes), in the page's language.
 */

import { applySummary } from "./congestion.rows.js";

const strings = JSON.parse(document.getElementById("strings").textContent);
const state = document.getElementById("live-state");
const updated = document.getElementById("updated");
const lang = document.documentElement.lang || "ja";

function setState(name) {
  const text = state.dataset[name];
  if (text && state.textContent !== text) state.textContent = text;
}

function stamp(at) {
  const when = new Date(at * 1000);
  updated.dateTime = when.toISOString();
  updated.textContent = when.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

let reloading = false;
function onWaits(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  let latest = 0;
  let known = true;
  for (const summary of data.offices || []) {
    known = applySummary(document, summary, strings) && known;
    latest = Math.max(latest, summary.at || 0);
  }
  if (latest) stamp(latest);
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  if (!known && !reloading) {
    // A service or an office was added or removed: the page itself must change.
    reloading = true;
    setTimeout(() => window.location.reload(), 1000 + Math.random() * 4000);
  }
}

let delay = 1000;
function connect() {
  const source = new EventSource("/live");
  source.addEventListener("open", () => {
    delay = 1000;
    setState("live");
  });
  source.addEventListener("waits", onWaits);
  source.addEventListener("error", () => {
    setState("lost");
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (a restart, a proxy): try again, waiting longer each time.
      setTimeout(connect, delay + Math.random() * 1000);
      delay = Math.min(delay * 2, 60000);
    }
  });
}

connect();
