// zhixing web UI: plain JavaScript, no build step, no external resources. It talks to the same server's
// /v1 API: streamed completions and chat (server-sent events read from fetch), the task endpoints, and
// /v1/attention for the head view (lines between tokens) and the model view (layers x heads thumbnails).
"use strict";

const $ = (sel) => document.querySelector(sel);
let MODELS = [];
let chatHistory = [];
let controller = null;

function keyHeaders() {
  const key = $("#api-key").value.trim();
  const h = { "Content-Type": "application/json" };
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const r = await fetch(path, { method: body ? "POST" : "GET", headers: keyHeaders(),
                                body: body ? JSON.stringify(body) : undefined });
  const data = await r.json().catch(() => ({ error: { message: "HTTP " + r.status } }));
  if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
  return data;
}

function setStatus(text, isError) {
  const s = $("#status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

// ---- models -----------------------------------------------------------------------------------------

function fillSelect(sel, cap) {
  const current = sel.value;
  sel.innerHTML = "";
  for (const m of MODELS.filter((m) => m.capabilities.includes(cap))) {
    const o = document.createElement("option");
    o.value = o.textContent = m.id;
    sel.appendChild(o);
  }
  if ([...sel.options].some((o) => o.value === current)) sel.value = current;
}

async function loadModels() {
  try {
    MODELS = (await api("/v1/models")).data;
    setStatus(MODELS.length + " model(s): " + MODELS.map((m) => m.id).join(", "));
  } catch (e) {
    MODELS = [];
    setStatus(e.message, true);
  }
  fillSelect($("#gen-model"), "completions");
  fillSelect($("#task-model"), $("#task").value);
  fillSelect($("#attn-model"), "attention");
}

// ---- tabs -------------------------------------------------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
    document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("active", p.id === tab.dataset.tab));
  });
}

// ---- playground: streamed completion / chat -----------------------------------------------------------

function renderChat() {
  const log = $("#chat-log");
  log.innerHTML = chatHistory.map((m) =>
    `<div class="msg ${m.role}"><b>${m.role}:</b> ${escapeHtml(m.content)}</div>`).join("");
}

async function generate() {
  const chat = $("#mode").value === "chat";
  const text = $("#prompt").value;
  const stop = $("#stop").value.split(",").map((s) => s.replace(/\\n/g, "\n")).filter((s) => s.length);
  const body = {
    model: $("#gen-model").value, stream: true, stream_options: { include_usage: true },
    max_tokens: parseInt($("#max-tokens").value, 10) || 16,
    temperature: parseFloat($("#temperature").value), top_p: parseFloat($("#top-p").value),
  };
  if (stop.length) body.stop = stop;
  if ($("#seed").value !== "") body.seed = parseInt($("#seed").value, 10);
  if (chat) {
    chatHistory.push({ role: "user", content: text });
    body.messages = chatHistory;
    renderChat();
  } else {
    body.prompt = text;
  }
  const out = $("#output");
  out.textContent = "";
  out.dataset.chunks = "0";
  $("#usage").textContent = "";
  controller = new AbortController();
  $("#generate").disabled = true;
  $("#stop-gen").disabled = false;
  const started = performance.now();
  let first = null, answer = "", finish = "";
  try {
    const r = await fetch(chat ? "/v1/chat/completions" : "/v1/completions",
                          { method: "POST", headers: keyHeaders(), body: JSON.stringify(body),
                            signal: controller.signal });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || ("HTTP " + r.status));
    }
    for await (const data of sse(r)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) {
        const u = chunk.usage;
        $("#usage").textContent = `prompt ${u.prompt_tokens} tokens · completion ${u.completion_tokens} tokens` +
          ` · first text after ${first === null ? "-" : Math.round(first)} ms · finish: ${finish}`;
      }
      for (const c of chunk.choices || []) {
        const piece = chat ? (c.delta.content || "") : (c.text || "");
        if (piece) {
          if (first === null) first = performance.now() - started;
          answer += piece;
          out.textContent += piece;
          out.dataset.chunks = String(parseInt(out.dataset.chunks, 10) + 1);
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    if (chat) {
      chatHistory.push({ role: "assistant", content: answer });
      renderChat();
      $("#prompt").value = "";
    }
  } catch (e) {
    if (e.name !== "AbortError") {
      out.textContent += "\n[error] " + e.message;
      if (chat) chatHistory.pop();
    }
  } finally {
    $("#generate").disabled = false;
    $("#stop-gen").disabled = true;
    controller = null;
  }
}

$("#generate").addEventListener("click", generate);
$("#stop-gen").addEventListener("click", () => controller && controller.abort());
$("#mode").addEventListener("change", () => {
  const chat = $("#mode").value === "chat";
  $("#chat-log").hidden = !chat;
  chatHistory = [];
  renderChat();
});

// ---- tasks ------------------------------------------------------------------------------------------

$("#task").addEventListener("change", () => {
  const qa = $("#task").value === "qa";
  $("#task-qa").hidden = !qa;
  $("#task-text").hidden = qa;
  fillSelect($("#task-model"), $("#task").value);
});

function highlight(text, entities) {
  // entities: [{type, text, start, end}] with character offsets into text
  let html = "", at = 0;
  for (const e of [...entities].sort((a, b) => a.start - b.start)) {
    if (e.start < at) continue;
    html += escapeHtml(text.slice(at, e.start));
    html += `<mark class="ent" data-type="${escapeHtml(e.type)}">${escapeHtml(text.slice(e.start, e.end))}` +
            `<sub>${escapeHtml(e.type)}</sub></mark>`;
    at = e.end;
  }
  return html + escapeHtml(text.slice(at));
}

async function runTask() {
  const task = $("#task").value, model = $("#task-model").value, out = $("#task-output");
  out.innerHTML = "";
  try {
    if (task === "qa") {
      const context = $("#qa-context").value;
      const r = await api("/v1/qa", { model, question: $("#qa-question").value, context });
      const a = r.data[0].result;
      out.innerHTML = `<p>Answer: <b>${escapeHtml(a.answer)}</b> <span class="muted">score ${(+a.score).toFixed(3)}</span></p>` +
        `<div class="ner-text">${highlight(context, a.answer ? [{ type: "ANSWER", start: a.start, end: a.end }] : [])}</div>`;
      return;
    }
    const texts = $("#task-input").value.split("\n").filter((t) => t.trim());
    const r = await api("/v1/" + task, { model, input: texts });
    if (task === "ner") {
      out.innerHTML = r.data.map((d, i) => `<div class="ner-text">${highlight(texts[i], d.result)}</div>`).join("");
    } else {
      out.innerHTML = r.data.map((d, i) => {
        const rows = Object.entries(d.result.scores || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) =>
          `<tr><td>${escapeHtml(k)}</td><td><span class="bar" style="width:${Math.round(v * 200)}px"></span></td>` +
          `<td>${v.toFixed(3)}</td></tr>`).join("");
        return `<p>${escapeHtml(texts[i])} → <b class="label">${escapeHtml(String(d.result.label))}</b></p>` +
               `<table class="scores">${rows}</table>`;
      }).join("");
    }
  } catch (e) {
    out.innerHTML = `<p class="error">${escapeHtml(e.message)}</p>`;
  }
}
$("#task-run").addEventListener("click", runTask);

// ---- attention --------------------------------------------------------------------------------------

let ATTN = null;

function layersOf(kind) { return ATTN ? ATTN.layers.filter((l) => l.kind === kind) : []; }

function fillOptions(sel, values, labels) {
  const current = sel.value;
  sel.innerHTML = values.map((v, i) => `<option value="${v}">${labels ? labels[i] : v}</option>`).join("");
  if (values.map(String).includes(current)) sel.value = current;
}

function drawHeadView() {
  const canvas = $("#head-view"), ctx = canvas.getContext("2d");
  const layers = layersOf($("#attn-kind").value);
  const layer = layers[parseInt($("#attn-layer").value, 10) || 0];
  if (!layer) return;
  const headSel = $("#attn-head").value;
  const heads = headSel === "all" ? layer.weights.map((_, i) => i) : [parseInt(headSel, 10)];
  const q = layer.q_tokens, k = layer.k_tokens, rowH = 20, top = 20;
  canvas.height = top * 2 + rowH * Math.max(q.length, k.length);
  canvas.width = 420;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = "13px sans-serif";
  ctx.textBaseline = "middle";
  const xl = 140, xr = 280;
  const colors = ["#b3261e", "#2559a8", "#2e7d32", "#8e24aa", "#ef6c00", "#00838f", "#6d4c41", "#c2185b"];
  for (const h of heads) {
    const w = layer.weights[h];
    ctx.strokeStyle = colors[h % colors.length];
    for (let i = 0; i < q.length; i++) {
      for (let j = 0; j < k.length; j++) {
        if (w[i][j] < 0.01) continue;
        ctx.globalAlpha = Math.min(1, w[i][j]);
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.moveTo(xl + 4, top + i * rowH);
        ctx.lineTo(xr - 4, top + j * rowH);
        ctx.stroke();
      }
    }
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#1d2330";
  ctx.textAlign = "right";
  q.forEach((t, i) => ctx.fillText(t, xl - 4, top + i * rowH));
  ctx.textAlign = "left";
  k.forEach((t, j) => ctx.fillText(t, xr + 4, top + j * rowH));
  canvas.dataset.drawn = `${$("#attn-kind").value}:${$("#attn-layer").value}:${headSel}`;
  document.querySelectorAll("#model-view canvas").forEach((c) => c.classList.toggle("selected",
    c.dataset.layer === $("#attn-layer").value && (headSel === "all" || c.dataset.head === headSel)));
}

function drawModelView() {
  const grid = $("#model-view");
  const layers = layersOf($("#attn-kind").value);
  grid.innerHTML = "";
  if (!layers.length) return;
  const nHeads = layers[0].weights.length;
  grid.style.gridTemplateColumns = `repeat(${nHeads}, 64px)`;
  layers.forEach((layer, li) => layer.weights.forEach((w, h) => {
    const c = document.createElement("canvas");
    c.width = c.height = 64;
    c.title = `layer ${li}, head ${h}`;
    c.dataset.layer = String(li);
    c.dataset.head = String(h);
    const ctx = c.getContext("2d"), cw = 64 / w[0].length, ch = 64 / w.length;
    for (let i = 0; i < w.length; i++) {
      for (let j = 0; j < w[i].length; j++) {
        const v = Math.round(255 * (1 - Math.min(1, w[i][j])));
        ctx.fillStyle = `rgb(${v},${v},255)`;
        ctx.fillRect(j * cw, i * ch, Math.ceil(cw), Math.ceil(ch));
      }
    }
    c.addEventListener("click", () => {
      $("#attn-layer").value = String(li);
      $("#attn-head").value = String(h);
      drawHeadView();
    });
    grid.appendChild(c);
  }));
}

function refreshSelectors() {
  const layers = layersOf($("#attn-kind").value);
  fillOptions($("#attn-layer"), layers.map((_, i) => i));
  const nHeads = layers.length ? layers[0].weights.length : 0;
  fillOptions($("#attn-head"), ["all", ...Array.from({ length: nHeads }, (_, i) => i)]);
}

async function showAttention() {
  const body = { model: $("#attn-model").value, text: $("#attn-text").value };
  if ($("#attn-target").value) body.target = $("#attn-target").value;
  try {
    ATTN = await api("/v1/attention", body);
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  const kinds = [...new Set(ATTN.layers.map((l) => l.kind))];
  fillOptions($("#attn-kind"), kinds, kinds.map((k) => k === "cross" ? "cross (decoder → encoder)" : k));
  refreshSelectors();
  drawModelView();
  drawHeadView();
}

$("#attn-run").addEventListener("click", showAttention);
$("#attn-kind").addEventListener("change", () => { refreshSelectors(); drawModelView(); drawHeadView(); });
$("#attn-layer").addEventListener("change", drawHeadView);
$("#attn-head").addEventListener("change", drawHeadView);

// ---- applications (zhixing serve --app NAME=PATH): links to their pages ------------------------------

async function loadApps() {
  const r = await fetch("/apps").catch(() => null);
  if (!r || !r.ok) return;  // no application mounted: the route does not exist
  const { apps } = await r.json();
  for (const a of apps) {
    const link = document.createElement("a");
    link.className = "tab app-link";
    link.href = a.url;
    link.textContent = a.name;
    document.querySelector("nav").appendChild(link);
  }
}

// ---- start ------------------------------------------------------------------------------------------

$("#api-key").value = localStorage.getItem("zhixing-api-key") || "";
$("#api-key").addEventListener("change", () => {
  localStorage.setItem("zhixing-api-key", $("#api-key").value.trim());
  loadModels();
});
loadModels();
loadApps();
