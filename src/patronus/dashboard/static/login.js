// Sign-in: POST the token; the server checks it (TokenReview + SubjectAccessReview) and sets a cookie.
// A link such as /login#token=... (what `patronus lab up` prints) signs in at once: the fragment never
// reaches a server or a log, and is removed from the address bar before anything else happens.
"use strict";

async function signIn(token) {
  const body = new URLSearchParams({ token });
  const response = await fetch("/login", { method: "POST", body, redirect: "manual", credentials: "same-origin" });
  if (response.type === "opaqueredirect" || response.ok) {
    window.location.replace("/");
    return;
  }
  let message = `sign-in refused (${response.status})`;
  try {
    message = (await response.json()).error || message;
  } catch (_) { /* not JSON */ }
  const error = document.getElementById("error");
  error.textContent = message;
  error.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(form.elements.token.value.trim());
  });
  const match = window.location.hash.match(/^#token=(.+)$/);
  if (match) {
    history.replaceState(null, "", "/login");
    signIn(decodeURIComponent(match[1]));
  }
});
