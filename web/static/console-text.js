/**
 * What the staff consoles say: the page's strings (rendered, translated, into
 * [data-text] elements) and announcements in a polite live region.
 */

/**
 * The strings of the [data-text] elements inside ``container``, as a function of a key
 * and the values of its {placeholders}.
 * @param {Element} container
 * @returns {(key: string, values?: object) => string}
 */
export function strings(container) {
  const texts = {};
  for (const element of container.querySelectorAll("[data-text]")) {
    texts[element.dataset.text] = element.textContent.trim();
  }
  return (key, values = {}) =>
    (texts[key] ?? key).replace(/\{(\w+)\}/g, (match, name) =>
      name in values ? String(values[name]) : match,
    );
}

/**
 * Announce messages in the polite live region ``region``; ``kind`` is "ok", "note" or
 * "problem".
 * @param {Element} region
 * @returns {(message: string, kind?: string) => void}
 */
export function announcer(region) {
  let timer = 0;
  return (message, kind = "ok") => {
    region.className = `feedback ${kind}`;
    region.textContent = "";
    // Emptied first and refilled a moment later, so that a repeated message is read again.
    window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      region.textContent = message;
    }, 60);
  };
}
