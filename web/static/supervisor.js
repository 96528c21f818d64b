// Keeps the supervisor's page live. The office's event stream (server-sent events
// from /staff/live/{office}) says when something changed; the page then re-reads
// its live regions from the server and swaps in each one that changed. A region
// holding the keyboard focus or an open "Change services" panel is left alone
// until the person is done with it. Waits drift even when nothing happens, so the
// page also re-reads itself every 15 seconds; without the event stream, every 5.

const root = document.getElementById("supervisor");
const QUIET_MS = 15000;
const POLL_MS = 5000;
const SETTLE_MS = 250;

let timer = null;
let reading = false;
let again = false;
let fresh = null;

function busy(region) {
  return region.contains(document.activeElement) || region.querySelector("details[open]") !== null;
}

function apply() {
  if (fresh === null) return;
  let waiting = false;
  for (const region of document.querySelectorAll("[data-live]")) {
    const next = fresh.querySelector(`[data-live="${region.dataset.live}"]`);
    if (next === null || next.innerHTML === region.innerHTML) continue;
    if (busy(region)) {
      waiting = true;
      continue;
    }
    region.replaceWith(document.importNode(next, true));
  }
  if (!waiting) fresh = null;
}

async function refresh() {
  if (reading) {
    again = true;
    return;
  }
  reading = true;
  try {
    const response = await fetch(root.dataset.board, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (response.redirected || response.status === 401) {
      window.location.reload(); // the session ended: the server asks to sign in again
      return;
    }
    if (response.ok) {
      fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      apply();
    }
  } catch (error) {
    // Offline for a moment: the next event or tick tries again.
  } finally {
    reading = false;
    if (again) {
      again = false;
      soon();
    }
  }
}

function soon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, SETTLE_MS);
}

function poll(every) {
  return setInterval(refresh, every);
}

if (root !== null) {
  let ticker = poll(QUIET_MS);
  // A region left alone while in use is brought up to date once the person leaves it.
  document.addEventListener("focusout", () => setTimeout(apply, 0));
  document.addEventListener("toggle", () => setTimeout(apply, 0), true);
  if ("EventSource" in window) {
    const events = new EventSource(root.dataset.events);
    // Every queue event is an unnamed message; "ready" comes on each (re)connection,
    // after which nothing is missed, and "reset" after a long gap: re-read for both.
    events.addEventListener("message", soon);
    events.addEventListener("ready", soon);
    events.addEventListener("reset", soon);
    events.addEventListener("signed-out", () => window.location.reload());
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) {
        // No event stream here: fall back to reading the page every few seconds.
        clearInterval(ticker);
        ticker = poll(POLL_MS);
      }
    };
  } else {
    clearInterval(ticker);
    ticker = poll(POLL_MS);
  }
}
