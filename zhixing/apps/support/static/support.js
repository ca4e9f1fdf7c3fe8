// The support chat page: POST /apps/support/turn per message, show intent / slots / sentiment / action.
"use strict";
const $ = (id) => document.getElementById(id);
const KEY = "zhixing-api-key";  // the web UI's own key storage, shared with it
let conversation = newId();

function newId() {
  return "web-" + Math.random().toString(36).slice(2, 10);
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value || localStorage.getItem(KEY);
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function tag(text, cls) {
  return el("span", "tag" + (cls ? " " + cls : ""), text);
}

function show(user, r) {
  const turn = el("div", "turn");
  const u = el("div", "msg user");
  u.append(el("b", "", "you: "), document.createTextNode(user));
  const a = el("div", "msg assistant");
  a.append(el("b", "", "bot: "), document.createTextNode(r.answer || ""));
  const tags = el("div", "tags");
  tags.append(tag("intent " + r.intent + " " + (100 * r.confidence).toFixed(0) + "%" +
                  (r.in_scope ? "" : " (out of scope)"), "intent"));
  for (const [k, v] of Object.entries(r.slots)) tags.append(tag(k + " = " + v, "slot"));
  tags.append(tag("sentiment " + r.sentiment + " " + (100 * r.negative).toFixed(0) + "% neg",
                  r.sentiment === "negative" ? "negative" : "sentiment"));
  tags.append(tag("action " + r.action, "action-" + r.action));
  turn.append(u, tags, a);
  $("log").append(turn);
  $("log").scrollTop = $("log").scrollHeight;
}

async function send() {
  const text = $("text").value.trim();
  if (!text) return;
  $("send").disabled = true;
  $("status").textContent = "…";
  try {
    const resp = await fetch("/apps/support/turn", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ conversation_id: conversation, text: text }),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.detail || (body.error && body.error.message) || resp.statusText);
    show(text, body);
    $("text").value = "";
    $("status").textContent = "";
  } catch (e) {
    $("status").textContent = "error: " + e.message;
    $("status").className = "error";
  } finally {
    $("send").disabled = false;
  }
}

async function reset() {
  await fetch("/apps/support/reset", {
    method: "POST", headers: headers(), body: JSON.stringify({ conversation_id: conversation }),
  });
  conversation = newId();
  $("log").textContent = "";
  $("conv").textContent = "conversation " + conversation;
}

$("api-key").value = localStorage.getItem(KEY) || "";
$("api-key").addEventListener("change", () => localStorage.setItem(KEY, $("api-key").value));
$("send").addEventListener("click", send);
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter") send(); });
$("reset").addEventListener("click", reset);
$("conv").textContent = "conversation " + conversation;
fetch("/apps/support/info").then((r) => r.json()).then((info) => {
  $("status").textContent = info.intents.length + " intents, " + info.faq_entries + " FAQ entries";
}).catch(() => { $("status").textContent = "info unavailable"; });
