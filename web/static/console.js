/**
 * The counter console: one counter of one office, live.
 *
 * State comes from the JSON API (the office's status, and the ticket the counter
 * holds); every event of the office's live stream triggers a fresh read. A read is
 * thrown away when it is older than what the page already knows (an event seen, or an
 * action of this page), so the page never steps back in time. Every action is
 * reported in the polite live region #feedback, and so is a change to the held ticket
 * made elsewhere.
 */
import { ApiError, request } from "./console-api.js";
import { compareIds, follow } from "./console-live.js";
import { announcer, strings } from "./console-text.js";

const root = document.getElementById("console");
const office = root.dataset.office;
const counterId = root.dataset.counter;
const actor = root.dataset.actor;
/** Server time minus browser time, in ms: the clocks tick in the server's time. */
const skew = Number(root.dataset.now) * 1000 - Date.now();
const $ = (id) => document.getElementById(id);
const officePath = `/api/v1/offices/${encodeURIComponent(office)}`;
const counterPath = `${officePath}/counters/${encodeURIComponent(counterId)}`;
const ticketPath = (id) => `${officePath}/tickets/${encodeURIComponent(id)}`;
const SHORTCUT_KEY = "madoguchi.console.shortcut";

/** The page's string ``key`` with its {placeholders} filled in. */
const t = strings($("console-text"));

const state = {
  status: null,
  counter: null,
  ticket: null,
  /** The newest event id the page has heard of: a read must reflect at least it. */
  heard: "",
  /** A read must reflect an event newer than this one (set by this page's actions). */
  after: "",
  busy: false,
  signedOut: false,
  /** The last ticket the live stream said had left this counter (cancelled, finished…). */
  gone: null,
};
/** Bumped by every action: a read begun before an action ended is stale. */
let actions = 0;
/** The live stream, once followed. */
let live = null;

// -- feedback ---------------------------------------------------------------------------

/** Announce ``message`` in the polite live region; ``kind`` is "ok", "note" or "problem". */
const say = announcer($("feedback"));

function failed(error) {
  if (!(error instanceof ApiError)) throw error;
  if (error.status === 0) {
    say(t("network"), "problem");
  } else if (error.status === 401) {
    signedOut();
  } else if (error.status === 409 || error.status === 404) {
    say(t("conflict", { message: error.message.replace(/\.$/, "") }), "problem");
  } else {
    say(t("refused", { message: error.message.replace(/\.$/, "") }), "problem");
  }
}

function signedOut() {
  if (state.signedOut) return;
  state.signedOut = true;
  if (live) live.stop();
  for (const button of root.querySelectorAll("button")) button.disabled = true;
  $("session-ended").hidden = false;
  say(t("signed_out"), "problem");
}

// -- reading the state ------------------------------------------------------------------

const lang = (document.documentElement.lang || "en").toLowerCase();

function serviceName(id) {
  const service = state.status?.services.find((s) => s.id === id);
  if (!service) return id;
  return lang.startsWith("ja") ? service.name_ja : service.name_en;
}

const sleep = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

let reading = null;
let readAgain = false;

/** Read the state afresh; calls made while a read runs are folded into one more read. */
function refresh() {
  if (reading) {
    readAgain = true;
    return reading;
  }
  reading = (async () => {
    try {
      do {
        readAgain = false;
        await read();
      } while (readAgain);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) signedOut();
      else if (!(error instanceof ApiError)) throw error;
    } finally {
      reading = null;
    }
  })();
  return reading;
}

async function read() {
  // The office's status is computed at most a few times a second, so a read right
  // after an event can be older than the event: then wait a little and read again.
  const attempts = 8;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const began = actions;
    const status = await request("GET", officePath);
    const counter = status.counters.find((c) => c.id === counterId) ?? null;
    let ticket = null;
    if (counter?.ticket) {
      try {
        ticket = (await request("GET", ticketPath(counter.ticket))).ticket;
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
      }
    }
    const reflected = status.last_event || "0-0";
    if (began !== actions) return; // an action ran meanwhile, and reads again when it ends
    const fresh =
      compareIds(reflected, state.heard) >= 0 &&
      (!state.after || compareIds(reflected, state.after) > 0);
    if (fresh || attempt === attempts) {
      state.after = "";
      show(status, counter, ticket);
      return;
    }
    await sleep(150 * attempt);
  }
}

// -- showing it -------------------------------------------------------------------------

function show(status, counter, ticket) {
  state.status = status;
  state.counter = counter;
  state.ticket = ticket && ["called", "serving"].includes(ticket.status) ? ticket : null;
  const focused = document.activeElement;
  showCounter();
  showTicket();
  showWaiting();
  tick();
  keepFocus(focused);
}

function showCounter() {
  const counter = state.counter;
  const counterState = counter ? counter.state : "closed";
  const badge = $("counter-state");
  badge.textContent = t(`state_${counterState}`);
  badge.className = `state ${counterState}`;
  const served = (counter?.services ?? []).map(serviceName).join(", ");
  $("counter-services").textContent = served ? t("serves", { services: served }) : "";
  const open = counterState === "open";
  $("pause").hidden = !open;
  $("pause").disabled = !open || state.signedOut;
  $("resume").hidden = open;
  $("resume").disabled = open || state.signedOut;
  $("close").disabled = counterState === "closed" || Boolean(state.ticket) || state.signedOut;
  const call = $("call-next");
  call.disabled = !open || Boolean(state.ticket) || state.signedOut;
  let hint = "";
  if (state.ticket) hint = t("hint_busy", { number: state.ticket.number });
  else if (counterState === "paused") hint = t("hint_paused");
  else if (counterState === "closed") hint = t("hint_closed");
  $("call-hint").textContent = hint;
  const mine = new Set(counter?.services ?? []);
  const waiting = (state.status?.services ?? [])
    .filter((s) => mine.has(s.id))
    .reduce((sum, s) => sum + s.waiting, 0);
  $("counter-waiting").textContent = String(waiting);
}

function showTicket() {
  const ticket = state.ticket;
  $("ticket").hidden = !ticket;
  $("no-ticket").hidden = Boolean(ticket);
  if (!ticket) return;
  const called = ticket.status === "called";
  $("ticket-number").textContent = ticket.number;
  $("ticket-service").textContent = serviceName(ticket.service);
  $("ticket-status").textContent = t(called ? "status_called" : "status_serving");
  $("ticket-wait-label").textContent = t(called ? "wait_label" : "waited_label");
  $("ticket-since-label").textContent = t(called ? "called_label" : "serving_label");
  const off = state.signedOut;
  $("recall").disabled = !called || off;
  $("no-show").disabled = !called || off;
  $("start").disabled = !called || off;
  $("finish").disabled = called || off;
  $("transfer").disabled = off;
  const select = $("transfer-to");
  const choices = (state.status?.services ?? []).filter(
    (s) => s.active && s.id !== ticket.service,
  );
  const wanted = choices.map((s) => s.id).join(",");
  if (select.dataset.choices !== wanted) {
    const previous = select.value;
    select.replaceChildren(
      ...choices.map((s) => {
        const option = document.createElement("option");
        option.value = s.id;
        option.textContent = `${s.prefix} · ${serviceName(s.id)}`;
        return option;
      }),
    );
    if (choices.some((s) => s.id === previous)) select.value = previous;
    select.dataset.choices = wanted;
  }
  select.disabled = off || choices.length === 0;
  $("transfer").disabled = off || choices.length === 0;
}

function showWaiting() {
  const mine = new Set(state.counter?.services ?? []);
  const rows = (state.status?.services ?? [])
    .filter((s) => s.active)
    .map((s) => {
      const row = document.createElement("tr");
      row.dataset.service = s.id;
      if (mine.has(s.id)) row.className = "mine";
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = `${s.prefix} · ${serviceName(s.id)}`;
      if (mine.has(s.id)) {
        const tag = document.createElement("span");
        tag.className = "mine-tag";
        tag.textContent = t("yours");
        name.append(tag);
      }
      const waiting = document.createElement("td");
      waiting.className = "num waiting-count";
      waiting.textContent = String(s.waiting);
      const estimate = document.createElement("td");
      const e = s.estimate_for_new_ticket;
      estimate.textContent = e
        ? t("estimate", { wait: e.wait_minutes, low: e.low_minutes, high: e.high_minutes })
        : t("no_estimate");
      const open = document.createElement("td");
      open.className = "num";
      open.textContent = String(s.open_counters);
      row.append(name, waiting, estimate, open);
      return row;
    });
  $("waiting-rows").replaceChildren(...rows);
}

/** When the focused control went away or was disabled, focus the one that comes next. */
function keepFocus(focused) {
  if (!focused || !root.contains(focused) || focused === document.body) return;
  if (!focused.disabled && !focused.closest("[hidden]")) return;
  const next = ["start", "finish", "call-next", "resume", "pause"]
    .map($)
    .find((element) => !element.disabled && !element.closest("[hidden]"));
  if (next) next.focus();
}

// -- the clocks -------------------------------------------------------------------------

function duration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

function tick() {
  const ticket = state.ticket;
  if (!ticket) return;
  const now = Date.now() + skew;
  const issued = Date.parse(ticket.issued_at);
  if (ticket.status === "called") {
    $("ticket-wait").textContent = duration(now - issued);
    $("ticket-since").textContent = duration(now - Date.parse(ticket.called_at));
  } else {
    const started = Date.parse(ticket.started_at ?? ticket.called_at);
    $("ticket-wait").textContent = duration(started - issued);
    $("ticket-since").textContent = duration(now - started);
  }
}

// -- actions ----------------------------------------------------------------------------

/** Run one action; ``done`` gets its response. A second click while one runs is ignored. */
async function act(path, body, done) {
  if (state.busy || state.signedOut) return;
  state.busy = true;
  actions++;
  const before = state.status?.last_event || "0-0";
  try {
    const data = await request("POST", path, body);
    actions++;
    done(data, before);
  } catch (error) {
    actions++;
    failed(error);
  } finally {
    state.busy = false;
  }
  refresh();
}

/** Show this page's own change at once; later reads must be newer than ``before``. */
function changed(before, ticket, counter) {
  state.after = before;
  const current = { ...(state.counter ?? { id: counterId, services: [], state: "open" }) };
  if (counter) Object.assign(current, counter);
  if (ticket !== undefined) current.ticket = ticket && ticket.counter === counterId ? ticket.id : null;
  show(state.status, current, ticket === undefined ? state.ticket : ticket);
}

function callNext() {
  return act(`${counterPath}/call-next`, undefined, (data, before) => {
    if (!data.ticket) {
      say(t("nobody"), "note");
      return;
    }
    // The live stream may have told of this ticket's end before this answer came back
    // (a slow answer): then that is the news, and the ticket is no longer this counter's.
    if (state.gone === data.ticket.id) return;
    say(t("called", { number: data.ticket.number, service: serviceName(data.ticket.service) }));
    changed(before, data.ticket);
  });
}

function ticketAction(action, key, body) {
  const ticket = state.ticket;
  if (!ticket) return;
  return act(`${ticketPath(ticket.id)}/${action}`, body, (data, before) => {
    say(t(key, { number: data.ticket.number, service: serviceName(data.ticket.service) }));
    changed(before, data.ticket);
  });
}

function counterAction(action, key) {
  return act(`${counterPath}/${action}`, undefined, (data, before) => {
    say(t(key));
    changed(before, undefined, data.counter);
  });
}

$("call-next").addEventListener("click", callNext);
$("recall").addEventListener("click", () => ticketAction("recall", "recalled"));
$("no-show").addEventListener("click", () => ticketAction("no-show", "no_show"));
$("start").addEventListener("click", () => ticketAction("start", "started"));
$("finish").addEventListener("click", () => ticketAction("finish", "finished"));
$("transfer-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const service = $("transfer-to").value;
  if (service) ticketAction("transfer", "transferred", { service });
});
$("pause").addEventListener("click", () => counterAction("pause", "paused"));
$("resume").addEventListener("click", () => counterAction("open", "resumed"));
$("close").addEventListener("click", () => counterAction("close", "closed"));

// -- the keyboard shortcut: N calls the next ticket, unless typing in a field -----------

const shortcut = $("shortcut");
shortcut.checked = window.localStorage.getItem(SHORTCUT_KEY) !== "off";
shortcut.addEventListener("change", () => {
  window.localStorage.setItem(SHORTCUT_KEY, shortcut.checked ? "on" : "off");
});

const NOT_TYPED = new Set(["checkbox", "radio", "button", "submit", "reset"]);

/** Whether ``target`` takes typed text (where N is a letter, not a command). */
function typing(target) {
  if (!(target instanceof Element)) return false;
  if (target.closest("textarea, select, [contenteditable]")) return true;
  return target instanceof HTMLInputElement && !NOT_TYPED.has(target.type);
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "n" && event.key !== "N") return;
  if (event.repeat || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!shortcut.checked || event.defaultPrevented) return;
  if (typing(event.target)) return;
  event.preventDefault();
  if ($("call-next").disabled) {
    const why = $("call-hint").textContent;
    if (why) say(why, "note");
    return;
  }
  callNext();
});

// -- live -------------------------------------------------------------------------------

const GONE = {
  cancelled: "gone_cancelled",
  abandoned: "gone_abandoned",
  finished: "gone_finished",
  no_show: "gone_no_show",
  transferred: "gone_transferred",
};

function heard(id) {
  if (id && compareIds(id, state.heard) > 0) state.heard = id;
}

function showLive(connection) {
  const badge = $("live-state");
  const key = { open: "live_on", connecting: "live_off", closed: "live_lost" }[connection];
  badge.textContent = t(key);
  badge.className = `live ${connection === "open" ? "on" : "off"}`;
}

live = follow(office, {
  onReady(id) {
    heard(id);
    refresh();
  },
  onEvent(id, event) {
    heard(id);
    const held = state.ticket;
    if (held && event.ticket === held.id && event.actor !== actor && GONE[event.type]) {
      say(t(GONE[event.type], { number: held.number, service: serviceName(event.service) }), "problem");
      state.gone = held.id;
    }
    refresh();
  },
  onState: showLive,
  onSignedOut: signedOut,
});

refresh();
window.setInterval(tick, 1000);
