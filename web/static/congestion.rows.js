/**
 * Fill an office's service rows with a live summary from the congestion feed:
 * numbers from the server, every word from the page (strings rendered in its language).
 */

function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

function setBand(row, band, strings) {
  const badge = row.querySelector('[data-field="band"]');
  if (!badge) return;
  const name = `band band-${band}`;
  if (badge.className !== name) badge.className = name;
  badge.querySelector("use").setAttribute("href", `#band-icon-${band}`);
  setText(badge.querySelector('[data-field="band-name"]'), strings.bands[band]);
}

/**
 * Apply ``summary`` ({office, services: [{id, waiting, open, wait, band}]}) inside ``root``.
 * @returns {boolean} false when the page does not show exactly these services.
 */
export function applySummary(root, summary, strings) {
  const section = root.querySelector(`[data-office="${CSS.escape(summary.office)}"]`);
  if (!section) return false;
  let known = true;
  for (const service of summary.services) {
    const row = section.querySelector(`[data-service="${CSS.escape(service.id)}"]`);
    if (!row) {
      known = false;
      continue;
    }
    setText(row.querySelector('[data-field="waiting"]'), String(service.waiting));
    setText(row.querySelector('[data-field="wait"]'), strings.wait.replace("{n}", String(service.wait)));
    setBand(row, service.band, strings);
    const closed = row.querySelector('[data-field="closed"]');
    if (closed) closed.hidden = service.open > 0;
  }
  return known && section.querySelectorAll("[data-service]").length === summary.services.length;
}
