/**
 * An office's live events, over server-sent events from /staff/live/{office}.
 *
 * Each event's id is its stream id. The browser's own reconnection sends the last one
 * as Last-Event-ID; when the stream is refused outright (the server restarted, say),
 * this module reconnects by itself with ?after=<last id>, so no event is missed either
 * way. A refusal with 401 means the session is over.
 */

/** Stream ids ("<ms>-<seq>") in order: negative, zero or positive. */
export function compareIds(a, b) {
  const [am, as] = (a || "0-0").split("-").map(Number);
  const [bm, bs] = (b || "0-0").split("-").map(Number);
  return am - bm || as - bs;
}

/**
 * @param {string} office
 * @param {{
 *   onEvent: (id: string, data: object) => void,
 *   onReady: (id: string) => void,
 *   onState: (state: "open"|"connecting"|"closed") => void,
 *   onSignedOut: () => void,
 * }} handlers
 */
export function follow(office, handlers) {
  let last = "";
  let source = null;
  let stopped = false;

  const seen = (id) => {
    if (id && compareIds(id, last) > 0) last = id;
  };

  const open = () => {
    if (stopped) return;
    const url = `/staff/live/${encodeURIComponent(office)}` + (last ? `?after=${last}` : "");
    source = new EventSource(url);
    source.addEventListener("open", () => handlers.onState("open"));
    source.addEventListener("ready", (event) => {
      seen(event.lastEventId);
      handlers.onState("open");
      handlers.onReady(event.lastEventId);
    });
    source.addEventListener("reset", (event) => {
      seen(event.lastEventId);
      handlers.onReady(event.lastEventId);
    });
    source.addEventListener("signed-out", () => stop(true));
    source.addEventListener("message", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      seen(event.lastEventId);
      handlers.onEvent(event.lastEventId, data);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        handlers.onState("closed");
        probe();
      } else {
        handlers.onState("connecting");
      }
    });
  };

  // The stream was refused: find out why without opening it for good, then retry.
  const probe = async () => {
    const controller = new AbortController();
    let status = 0;
    try {
      const response = await fetch(`/staff/live/${encodeURIComponent(office)}`, {
        signal: controller.signal,
        cache: "no-store",
        credentials: "same-origin",
      });
      status = response.status;
    } catch {
      status = 0;
    } finally {
      controller.abort();
    }
    if (status === 401) {
      stop(true);
      return;
    }
    window.setTimeout(open, status === 200 ? 500 : 5000);
  };

  const stop = (signedOut) => {
    stopped = true;
    if (source) source.close();
    handlers.onState("closed");
    if (signedOut) handlers.onSignedOut();
  };

  open();
  return { stop: () => stop(false) };
}
