// Helpers that the server's pages share (the web UI at / and the applications' pages under /apps/, which
// load this file from /static/common.js before their own script): no build step, no external resources.
"use strict";

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// The message of a failed response: the API's {error: {message}}, FastAPI's {detail}, else the status.
async function errorOf(r) {
  try {
    const j = await r.json();
    if (j.error) return j.error.message;
    if (j.detail) return typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
  } catch (e) { /* not JSON */ }
  return "HTTP " + r.status;
}

// The `data:` payloads of a server-sent-events response, as they arrive (read from fetch, so a POST can
// stream and an AbortController can stop it).
async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}
