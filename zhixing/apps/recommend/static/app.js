// The recommendation page: choose aspects -> POST /apps/recommend/rank -> ranked items with explanations.
"use strict";
const $ = (s) => document.querySelector(s);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
const STATES = ["", "prefer", "avoid"];

async function api(path, body) {
  const r = await fetch("/apps/recommend/" + path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) throw new Error(data.error ? data.error.message : r.statusText);
  return data;
}

function chosen(state) {
  return [...document.querySelectorAll(".aspect")].filter((a) => a.dataset.state === state)
    .map((a) => a.dataset.aspect);
}

function showChoice() {
  const p = chosen("prefer"), a = chosen("avoid");
  $("#chosen").textContent = (p.length ? "prefer " + p.join("、") : "") + (a.length ? "  avoid " + a.join("、") : "");
}

function citation(c) {
  const ev = c.evidence[0] || {};
  const mark = c.polarity === "positive" ? "推荐" : "注意";
  const rid = el("a", {class: "rid", href: "#"}, ev.review_id || "");
  const full = el("div", {class: "muted review"});
  // the whole review the clause was read in, fetched from the source files by its id
  rid.addEventListener("click", async (e) => {
    e.preventDefault();
    try {
      const r = await api("reviews/" + encodeURIComponent(ev.review_id));
      full.textContent = `${r.id} (${r.item}, ${r.label || "unlabelled"}): ${r.text}`;
    } catch (err) {
      full.textContent = err.message;
    }
  });
  return el("div", {class: "cite " + c.polarity},
    el("b", {}, `${mark} ${c.aspect}`), ` (${c.positive} 好评 / ${c.negative} 差评): “${ev.clause || ""}” `, rid, full);
}

async function rank() {
  $("#error").textContent = "";
  const reviews = $("#reviews").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const body = {prefer: chosen("prefer"), avoid: chosen("avoid"), top: parseInt($("#top").value, 10) || 5};
  if (reviews.length) body.reviews = reviews;
  $("#rank").disabled = true;
  try {
    const data = await api("rank", body);
    const list = $("#ranked");
    list.replaceChildren();
    for (const r of data.ranked) {
      const name = el("a", {href: "#", "data-item": r.item}, r.item);
      name.addEventListener("click", (e) => { e.preventDefault(); profile(r.item); });
      const li = el("li", {"data-item": r.item}, el("b", {}, name), ` score ${r.score.toFixed(3)}`,
        el("div", {class: "why"}, r.explanation), ...r.citations.map(citation));
      if (r.unknown.length) li.append(el("div", {class: "muted"}, "no review mentions " + r.unknown.join("、")));
      list.append(li);
    }
    if (data.user) $("#chosen").textContent = "from your reviews: " +
      Object.entries(data.user.prefer).map(([a, w]) => `${a} ${w}`).join("、");
  } catch (e) {
    $("#error").textContent = e.message;
  } finally {
    $("#rank").disabled = false;
  }
}

async function profile(item) {
  const p = await api("items/" + encodeURIComponent(item));
  const rows = Object.entries(p.aspects).map(([a, v]) => el("tr", {},
    el("td", {}, a), el("td", {}, `+${v.positive} / −${v.negative}`),
    el("td", {}, v.phrases.positive.map(([t, n]) => `${t}×${n}`).join("、")),
    el("td", {}, v.phrases.negative.map(([t, n]) => `${t}×${n}`).join("、"))));
  $("#profile").replaceChildren(el("h3", {}, `${p.item}: ${p.reviews} reviews, ${p.reviews_with_aspects} mention an aspect`),
    el("table", {class: "scores"}, ...rows));
}

async function init() {
  try {
    const data = await api("aspects");
    for (const a of data.aspects) {
      const chip = el("span", {class: "aspect", "data-aspect": a.aspect, "data-state": ""}, a.aspect + " ",
        el("small", {}, String(a.mentions)));
      chip.addEventListener("click", () => {
        chip.dataset.state = STATES[(STATES.indexOf(chip.dataset.state) + 1) % STATES.length];
        showChoice();
      });
      $("#aspects").append(chip);
    }
    const s = data.summary;
    $("#status").textContent = `${s.items} items · ${s.reviews} reviews · ${s.aspects} aspects`;
  } catch (e) {
    $("#error").textContent = e.message;
  }
  $("#rank").addEventListener("click", rank);
}
init();
