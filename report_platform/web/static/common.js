// What every page shares: calls to the JSON API, messages, local times, dialogs, signing out.
// Data from the server is only ever put into the page as text (textContent), never as HTML.

const FLASH_KEY = "rp-flash";

export class ApiError extends Error {
  constructor(status, message, errors, retryAfter) {
    super(message);
    this.status = status;
    this.errors = errors;
    this.retryAfter = retryAfter;
  }
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function messageOf(data, response) {
  if (data && typeof data === "object") {
    for (const key of ["detail", "message", "error", "reason"]) {
      if (typeof data[key] === "string" && data[key]) return data[key];
    }
    const list = Array.isArray(data.errors) ? data.errors : Array.isArray(data.detail) ? data.detail : null;
    if (list && list.length) return list.map((e) => e.message || e.msg || String(e)).join("; ");
  }
  return `${response.status} ${response.statusText || "error"}`.trim();
}

/** Call the API; resolves with the JSON answer, rejects with an ApiError saying why. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "The console could not reach the server; try again.", [], null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (err) {
      data = null;
    }
  }
  if (response.status === 401 && path !== "/api/v1/session") {
    // The session ended (signed out elsewhere, expired): sign in again and come back.
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
  }
  if (!response.ok) {
    const errors = data && Array.isArray(data.errors) ? data.errors : [];
    throw new ApiError(response.status, messageOf(data, response), errors, response.headers.get("Retry-After"));
  }
  return data;
}

/** Show a message in the page's status area (read out by screen readers). */
export function say(text, kind = "info") {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = text;
  box.className = `flash flash-${kind}`;
  box.hidden = false;
}

/** Reload the page (the server renders the new state) and show `text` once it is back. */
export function reloadSaying(text, kind = "info") {
  sessionStorage.setItem(FLASH_KEY, JSON.stringify({ text, kind }));
  location.reload();
}

export function goSaying(url, text, kind = "info") {
  sessionStorage.setItem(FLASH_KEY, JSON.stringify({ text, kind }));
  location.assign(url);
}

/** Show an error inside a dialog or form: the element's text, made visible. */
export function showError(element, text) {
  if (!element) return;
  element.textContent = text || "";
  element.hidden = !text;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** `2026-03-10 06:00 EDT` in `timeZone` (the viewer's own when undefined). */
export function formatTime(date, timeZone) {
  const parts = {};
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  });
  for (const part of format.formatToParts(date)) parts[part.type] = part.value;
  const seconds = parts.second && parts.second !== "00" ? `:${parts.second}` : "";
  return `${parts.year}-${parts.month}-${parts.day} ${pad(parts.hour)}:${parts.minute}${seconds} ${parts.timeZoneName}`;
}

function localTimes() {
  for (const el of document.querySelectorAll("time[data-local]")) {
    const date = new Date(el.dateTime);
    if (Number.isNaN(date.getTime())) continue;
    el.title = el.textContent; // what the server wrote (UTC or the report's zone) stays on hover
    el.textContent = formatTime(date);
  }
}

function dialogs() {
  document.addEventListener("click", (event) => {
    const close = event.target.closest("[data-close]");
    if (close) close.closest("dialog")?.close();
  });
}

function signOut() {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    try {
      await api("DELETE", "/api/v1/session");
    } catch (err) {
      // Signed out already, or the server is away: the sign-in page is the right place either way.
    }
    location.assign("/login");
  });
}

function storedFlash() {
  const stored = sessionStorage.getItem(FLASH_KEY);
  if (!stored) return;
  sessionStorage.removeItem(FLASH_KEY);
  try {
    const { text, kind } = JSON.parse(stored);
    say(text, kind);
  } catch (err) {
    // A message from another version of the page: nothing to show.
  }
}

localTimes();
dialogs();
signOut();
storedFlash();
