/**
 * The consultation console: the specialist's presence, the remote queue of the services
 * they serve, and the calls they accept or are invited into.
 *
 * The queue and the presence are read from the JSON API, afresh whenever the office's
 * live stream (/staff/live/{office}) tells of a consultation event; the presence the
 * specialist chose is repeated every little while, so that a closed browser falls back
 * to "away" by itself. A call runs in consult-call.js.
 */
import { ApiError, request } from "./console-api.js";
import { follow } from "./console-live.js";
import { announcer, strings } from "./console-text.js";
import { prepare, startCall } from "./consult-call.js";

const root = document.getElementById("consult");
const office = root.dataset.office;
const me = root.dataset.me;
const $ = (id) => document.getElementById(id);
const data = JSON.parse($("consult-data").textContent);
/** Server time minus browser time, in ms. */
const skew = Number(root.dataset.now) * 1000 - Date.now();
const officePath = `/consult/api/offices/${encodeURIComponent(office)}`;

const t = strings($("consult-text"));
const say = announcer($("feedback"));

const state = {
  /** What this person chose (available, busy, away), as the server last said. */
  chosen: "away",
  me: null,
  staff: [],
  calls: [],
  /** When the queue was read, by the server's clock (ms). */
  readAt: 0,
  /** The call running on this page, if any. */
  view: null,
  starting: false,
  signedOut: false,
};

// -- feedback ---------------------------------------------------------------------------

function failed(error) {
  if (!(error instanceof ApiError)) throw error;
  const message = error.message.replace(/\.$/, "");
  if (error.status === 0) say(t("network"), "problem");
  else if (error.status === 401) signedOut();
  else if (error.code === "busy") say(t("busy_refused", { message }), "problem");
  else if (error.status === 409 || error.status === 404 || error.status === 410) {
    say(t("conflict", { message }), "problem");
  } else say(t("refused", { message }), "problem");
}

function signedOut() {
  if (state.signedOut) return;
  state.signedOut = true;
  if (live) live.stop();
  for (const control of root.querySelectorAll("button, input, select, textarea")) {
    control.disabled = true;
  }
  $("session-ended").hidden = false;
  say(t("signed_out"), "problem");
}

// -- presence -----------------------------------------------------------------------------

/** Bumped whenever this page sets the presence: a read begun before is out of date. */
let choices = 0;

async function readPresence() {
  const began = choices;
  try {
    const answer = await request("GET", `${officePath}/presence`);
    if (began !== choices) return; // the person chose meanwhile: their choice stands
    state.staff = answer.staff;
    showMe(answer.me);
    state.view?.fillColleagues();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut();
    else if (!(error instanceof ApiError)) throw error;
  }
}

function showMe(presence) {
  state.me = presence;
  state.chosen = presence.chosen;
  for (const radio of document.querySelectorAll('input[name="presence"]')) {
    radio.checked = radio.value === presence.chosen;
  }
  $("presence-note").textContent = presence.call
    ? t("presence_in_call")
    : presence.chosen !== "away"
      ? t("presence_lapsed")
      : "";
  showInvitation();
  showQueue();
}

async function setPresence(value, announce) {
  choices++;
  try {
    const answer = await request("POST", `${officePath}/presence`, { state: value });
    state.staff = state.staff.map((p) =>
      p.username === me ? { ...p, state: answer.presence.state } : p,
    );
    showMe(answer.presence);
    if (announce) say(t("presence_set", { state: t(answer.presence.state) }));
  } catch (error) {
    failed(error);
  }
}

$("presence").addEventListener("change", (event) => {
  if (event.target.name === "presence") setPresence(event.target.value, true);
});

// Repeat what was chosen, so that it holds while the page is open (and lapses when not).
window.setInterval(() => {
  if (!state.signedOut && state.chosen !== "away") setPresence(state.chosen, false);
}, data.refresh * 1000);

// -- an invitation ------------------------------------------------------------------------

/** A call this person is in but this page is not: an invitation, or their own call
 *  (the page was reloaded, or another page has it), which they may join from here. */
function showInvitation() {
  const presence = state.me;
  const call = presence?.call;
  const idle = !state.view && !state.starting;
  const invited = idle && call && presence.role === "guest";
  const mine = idle && call && presence.role === "specialist";
  $("invitation").hidden = !invited;
  $("rejoin").hidden = !mine;
  if (invited) {
    const specialist = state.staff.find((p) => p.username === call.specialist);
    $("invitation-text").textContent = t("invited", {
      specialist: specialist?.name ?? call.specialist,
      number: call.number,
      topic: serviceName(call.service),
    });
  } else if (mine) {
    $("rejoin-text").textContent = t("in_call", { number: call.number, topic: serviceName(call.service) });
  }
}

for (const [button, role] of [["join-guest", "guest"], ["rejoin-call", "specialist"]]) {
  $(button).addEventListener("click", () => {
    const call = state.me?.call;
    if (call && state.me.role === role) begin(call, role);
  });
}

// -- the queue ------------------------------------------------------------------------------

function serviceName(id) {
  const service = data.services.find((s) => s.id === id);
  return service ? `${service.prefix} · ${service.name_en}` : id;
}

async function readQueue() {
  try {
    const answer = await request("GET", `${officePath}/queue`);
    state.calls = answer.calls;
    state.readAt = Date.now() + skew;
    showQueue();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut();
    else if (!(error instanceof ApiError)) throw error;
  }
}

function waited(call) {
  const seconds = Math.max(0, Math.floor(call.waiting_for + (Date.now() + skew - state.readAt) / 1000));
  return t("minutes", { m: Math.floor(seconds / 60), s: seconds % 60 });
}

function showQueue() {
  const busy = Boolean(state.view) || state.starting || Boolean(state.me?.call && state.me.role === "specialist");
  const focused = document.activeElement;
  const rows = state.calls.map((call) => {
    const row = document.createElement("tr");
    row.dataset.call = call.id;
    const number = document.createElement("th");
    number.scope = "row";
    number.textContent = call.number;
    const topic = document.createElement("td");
    topic.textContent = serviceName(call.service);
    const kiosk = document.createElement("td");
    kiosk.textContent = call.kiosk;
    const wait = document.createElement("td");
    wait.className = "clock";
    wait.textContent = waited(call);
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "accept";
    button.textContent = t("accept");
    button.setAttribute("aria-label", t("accept_one", { number: call.number }));
    button.dataset.call = call.id;
    button.disabled = busy || state.signedOut;
    action.append(button);
    row.append(number, topic, kiosk, wait, action);
    return row;
  });
  $("queue-rows").replaceChildren(...rows);
  $("queue-count").textContent = String(state.calls.length);
  $("queue-empty").hidden = state.calls.length > 0;
  $("accept-next").disabled = busy || state.signedOut || state.calls.length === 0;
  if (focused?.dataset?.call && !root.contains(focused)) {
    const again = $("queue-rows").querySelector(`button[data-call="${CSS.escape(focused.dataset.call)}"]`);
    (again && !again.disabled ? again : $("accept-next")).focus();
  }
}

window.setInterval(() => {
  for (const cell of $("queue-rows").querySelectorAll("tr")) {
    const call = state.calls.find((c) => c.id === cell.dataset.call);
    if (call) cell.querySelector(".clock").textContent = waited(call);
  }
}, 1000);

async function accept(callId) {
  if (state.view || state.starting || state.signedOut) return;
  state.starting = true;
  showQueue();
  let ready;
  try {
    ready = await prepare(t);
  } catch (error) {
    state.starting = false;
    showQueue();
    say(error.message, "problem");
    return;
  }
  const release = () => {
    for (const track of ready.local.getTracks()) track.stop();
  };
  try {
    const answer = await request("POST", `${officePath}/accept`, callId ? { call: callId } : {});
    state.starting = false;
    if (!answer.call) {
      release();
      say(t("nobody"), "note");
      showQueue();
      return;
    }
    say(t("accepted", { number: answer.call.number }));
    await begin(answer.call, "specialist", ready);
  } catch (error) {
    release();
    state.starting = false;
    showQueue();
    failed(error);
    readQueue();
  }
}

$("accept-next").addEventListener("click", () => accept(null));
$("queue-rows").addEventListener("click", (event) => {
  const button = event.target.closest("button.accept");
  if (button) accept(button.dataset.call);
});

// -- a call -------------------------------------------------------------------------------

async function begin(call, role, ready = undefined) {
  if (state.view || state.starting) return;
  state.starting = true;
  $("invitation").hidden = true;
  $("rejoin").hidden = true;
  showQueue();
  const view = await startCall({
    call,
    role,
    ready,
    t,
    say,
    failed,
    me,
    services: data.services,
    phrases: data.phrases,
    colleagues: () => state.staff,
    onOver: (text) => {
      state.view = null;
      state.starting = false;
      say(text, "note");
      readPresence();
      readQueue();
      $("queue-heading").focus?.();
    },
  });
  state.starting = false;
  state.view = view && !view.finished ? view : null;
  showQueue();
  if (view) $("call-heading").focus?.();
}

// -- live ------------------------------------------------------------------------------------

let pending = 0;
/** Read the queue and the presence again, soon (events come in bursts). */
function soon() {
  window.clearTimeout(pending);
  pending = window.setTimeout(() => {
    readQueue();
    readPresence();
  }, 100);
}

const live = follow(office, {
  onEvent: (id, event) => {
    if (typeof event.type === "string" && event.type.startsWith("consult_")) soon();
  },
  onReady: () => soon(),
  onState: (value) => {
    const badge = $("live-state");
    badge.className = `live ${value === "open" ? "on" : "off"}`;
    badge.textContent = t(value === "open" ? "live_on" : value === "closed" ? "live_lost" : "live_off");
  },
  onSignedOut: signedOut,
});

readPresence();
readQueue();
