/**
 * The JSON API as the counter console uses it: the session cookie for who is asking,
 * the session's CSRF token (from <meta name="csrf-token">) on every change, and
 * failures as ApiError values carrying the status and the server's message.
 */

const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") ?? "";

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, or 0 when the server could not be reached
   * @param {string} code the API's error code ("wrong_state", "busy", …)
   * @param {string} message the server's explanation
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {"GET"|"POST"} method
 * @param {string} path
 * @param {object} [body] sent as JSON
 * @returns {Promise<any>} the response's JSON
 */
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "network", String(error));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
  }
  return data;
}
