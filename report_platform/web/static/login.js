// Sign in through the API (POST /api/v1/session); the session cookie it sets is HttpOnly.
import { ApiError, api, showError } from "./common.js";

const form = document.getElementById("sign-in");
const error = document.getElementById("sign-in-error");

function retryText(seconds) {
  const n = Number.parseInt(seconds, 10);
  return Number.isFinite(n) && n > 0 ? `${n} second${n === 1 ? "" : "s"}` : "a moment";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(error, "");
  const email = form.elements.email.value.trim();
  const password = form.elements.password.value;
  if (!email || !password) {
    showError(error, "Enter your e-mail address and password.");
    (email ? form.elements.password : form.elements.email).focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await api("POST", "/api/v1/session", { email, password });
    location.assign(form.dataset.next || "/");
  } catch (err) {
    if (err instanceof ApiError && err.status === 429) {
      showError(error, `Too many attempts, try again in ${retryText(err.retryAfter)}.`);
    } else if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      showError(error, "Wrong e-mail address or password.");
      form.elements.password.select();
    } else {
      showError(error, err.message);
    }
    button.disabled = false;
  }
});
