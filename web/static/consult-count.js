/**
 * The counter console's line about video consultations: how many wait in the remote
 * services this staff member serves (read every few seconds while the page is shown),
 * with a link to the consultation console.
 */
import { ApiError, request } from "./console-api.js";

const line = document.getElementById("remote");
const count = document.getElementById("remote-waiting");
const PERIOD_MS = 5000;

async function read() {
  if (document.hidden) return;
  try {
    const answer = await request("GET", `/consult/api/offices/${encodeURIComponent(line.dataset.office)}/queue`);
    count.textContent = String(answer.calls.length);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    count.textContent = "–";
  }
}

if (line && count) {
  read();
  window.setInterval(read, PERIOD_MS);
  document.addEventListener("visibilitychange", read);
}
