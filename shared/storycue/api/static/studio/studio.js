// storycue studio: a story in, its cue sheet seen and heard. Plain browser JavaScript, no
// framework and no network fetch beyond this gateway's own API.
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const KEY_SLOT = "storycue.apiKey";
const state = { config: null, sheet: null };

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function say(message, kind = "info") {
  const s = $("#status");
  s.textContent = message;
  s.dataset.kind = kind;
}

// ---- the API --------------------------------------------------------------------------
function apiKey() {
  return sessionStorage.getItem(KEY_SLOT) || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const key = apiKey();
  if (key) headers["Authorization"] = "Bearer " + key;
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (!resp.ok) {
    let message = resp.status + " " + resp.statusText;
    try {
      const body = await resp.json();
      if (body.error) message = body.error.message;
    } catch (_) { /* not JSON */ }
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

async function apiJSON(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
  };
  return (await api(path, options)).json();
}

function explain(err) {
  if (err.status === 401) {
    return "The API key was refused: " + err.message + ". Check the key field above.";
  }
  if (err.status === 413) return "That is too large for one request: " + err.message;
  return err.message || String(err);
}

// ---- set-up -----------------------------------------------------------------------------
async function loadConfig() {
  state.config = await (await fetch("/studio/config.json")).json();
  const c = state.config;
  $("#version").textContent = c.version;
  $("#model").textContent = c.model;
  $("#top-k").max = String(c.max_top_k);
  $("#limit-note").textContent = "A story of up to " + c.max_story_chars.toLocaleString() +
    " characters (bytes of UTF-8) goes in one request, cut into scenes at its paragraphs. For a whole book, submit" +
    " a bulk job below with one chapter per line.";
  $("#auth").hidden = !c.auth_required;
  if (c.auth_required && !apiKey()) say("This gateway needs an API key: enter it above.");
}

async function loadCatalogues() {
  const selects = [$("#catalogue"), $("#map-catalogue")];
  try {
    const body = await apiJSON("/v1/catalogues");
    for (const sel of selects) {
      const keep = sel.id === "catalogue" ? [sel.options[0]] : [];
      sel.replaceChildren(...keep);
      for (const cat of body.catalogues) {
        sel.append(el("option", { value: cat.name, text: cat.name + " (" + cat.tracks + " tracks)" }));
      }
    }
    if (!body.catalogues.length) say("No catalogue yet: ingest some music first (storycue demo does).");
  } catch (err) {
    say(explain(err), "error");
  }
}

// ---- one story --------------------------------------------------------------------------
async function cueStory(event) {
  event.preventDefault();
  const text = $("#story").value;
  if (!text.trim()) { say("Paste or open a story first.", "error"); return; }
  if (text.length > state.config.max_story_chars) {
    say("The story has " + text.length.toLocaleString() + " characters, over the limit of " +
      state.config.max_story_chars.toLocaleString() + ": use a bulk job.", "error");
    return;
  }
  const button = $("#cue");
  button.disabled = true;
  say("Reading the story and searching the catalogue…");
  const started = performance.now();
  try {
    const body = { text, top_k: Number($("#top-k").value) || 3, distinct: $("#distinct").checked };
    if ($("#catalogue").value) body.catalogue = $("#catalogue").value;
    const sheet = await apiJSON("/v1/search", body);
    const ids = [...new Set(sheet.segments.flatMap((s) => s.tracks.map((t) => t.track_id)))];
    const links = ids.length ? (await apiJSON("/v1/tracks/audio-links", { track_ids: ids })).links : {};
    state.sheet = sheet;
    renderSheet(sheet, text, links);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    say("Cue sheet ready: " + sheet.segments.length + " scenes in " + secs + " s.");
  } catch (err) {
    say(explain(err), "error");
  } finally {
    button.disabled = false;
  }
}

function fmt(x) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(2);
}

function renderSheet(sheet, text, links) {
  $("#result").hidden = false;
  const m = sheet.model;
  $("#result-summary").textContent = sheet.segments.length + " scenes, matched by " + m.name +
    " " + m.version + (sheet.catalogue ? " in " + sheet.catalogue : " in all your catalogues") + ".";
  // The story, each scene a span that lights up with its card.
  const view = $("#story-view");
  view.replaceChildren();
  let pos = 0;
  for (const seg of sheet.segments) {
    if (seg.start > pos) view.append(text.slice(pos, seg.start));
    view.append(el("mark", { id: "scene-text-" + seg.index, "data-scene": seg.index,
      text: text.slice(seg.start, seg.end) }));
    pos = seg.end;
  }
  if (pos < text.length) view.append(text.slice(pos));

  const list = $("#scenes");
  list.replaceChildren();
  for (const seg of sheet.segments) {
    const e = seg.emotion;
    const tracks = el("ol", { class: "tracks" });
    for (const t of seg.tracks) {
      const name = t.title || t.uri.split("/").pop();
      const audio = el("audio", { controls: "", preload: "metadata", src: links[String(t.track_id)],
        "aria-label": "Play " + name });
      tracks.append(el("li", { class: "track" },
        el("span", { class: "title", text: name + (t.artist ? " — " + t.artist : "") }),
        el("span", { class: "score", title: "The model's match score: higher is better; " +
          "compare it within a scene (it can fall below 0)", text: "score " + t.score.toFixed(3) +
          (t.valence !== null && t.valence !== undefined ? " · V " + fmt(t.valence) + " A " + fmt(t.arousal) : "") }),
        audio));
    }
    if (!seg.tracks.length) {
      tracks.append(el("li", { class: "none", text: sheet.distinct
        ? "No track left: every matching track is cued in an earlier scene (untick “No track twice” to share them)."
        : "No matching track in this catalogue." }));
    }
    const card = el("li", { class: "scene", id: "scene-" + seg.index, tabindex: "0",
      "data-scene": seg.index },
      el("h3", { text: "Scene " + (seg.index + 1) }),
      el("p", { class: "emotion", text: "valence " + fmt(e.valence) + " · arousal " + fmt(e.arousal) +
        (e.mood_words.length ? " · " + e.mood_words.join(", ") : "") }),
      el("p", { class: "snippet", text: seg.text.length > 160 ? seg.text.slice(0, 159) + "…" : seg.text }),
      tracks);
    const light = () => highlight(seg.index);
    card.addEventListener("focusin", light);
    card.addEventListener("mouseenter", light);
    list.append(card);
  }
  drawArc(sheet);
}

function highlight(index) {
  for (const node of document.querySelectorAll("[data-scene]")) {
    node.classList.toggle("active", node.dataset.scene === String(index));
  }
}

// ---- the arc chart ---------------------------------------------------------------------
function drawArc(sheet) {
  const svg = $("#arc");
  svg.replaceChildren();
  const W = 640, H = 220, L = 40, R = 16, T = 14, B = 30;
  const n = sheet.segments.length;
  const x = (i) => (n === 1 ? L + (W - L - R) / 2 : L + (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (1 - v) * (H - T - B);
  for (const v of [0, 0.5, 1]) {
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: v === 0.5 ? "mid" : "grid" }));
    svg.append(el("svg:text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end", text: String(v) }));
  }
  const series = [
    ["valence", "valence", "line-v"],
    ["arousal", "arousal", "line-a"],
  ];
  for (const [key, label, cls] of series) {
    const pts = sheet.segments
      .map((s, i) => [i, s.emotion[key]])
      .filter(([, v]) => v !== null && v !== undefined);
    if (!pts.length) continue;
    svg.append(el("svg:polyline", { class: cls, points: pts.map(([i, v]) => x(i) + "," + y(v)).join(" ") }));
    for (const [i, v] of pts) {
      const dot = el("svg:circle", { cx: x(i), cy: y(v), r: 5, class: "point " + cls, "data-scene": i,
        tabindex: "0", role: "button", "aria-label": "Scene " + (i + 1) + " " + label + " " + fmt(v) });
      dot.append(el("svg:title", { text: "Scene " + (i + 1) + ": " + label + " " + fmt(v) }));
      dot.addEventListener("click", () => focusScene(i));
      dot.addEventListener("keydown", (ev) => { if (ev.key === "Enter") focusScene(i); });
      svg.append(dot);
    }
  }
  // The first track of each scene: its own valence (circle) and arousal (diamond).
  sheet.segments.forEach((s, i) => {
    const t = s.tracks[0];
    if (!t || t.valence === null || t.valence === undefined) return;
    svg.append(el("svg:circle", { cx: x(i), cy: y(t.valence), r: 3.5, class: "track-point track-v" }));
    const ya = y(t.arousal);
    svg.append(el("svg:rect", { x: x(i) - 3, y: ya - 3, width: 6, height: 6, class: "track-point track-a",
      transform: "rotate(45 " + x(i) + " " + ya + ")" }));
  });
  sheet.segments.forEach((s, i) => {
    svg.append(el("svg:text", { x: x(i), y: H - 10, class: "tick", "text-anchor": "middle", text: String(i + 1) }));
  });
}

function focusScene(i) {
  const card = document.getElementById("scene-" + i);
  if (card) { card.scrollIntoView({ block: "nearest" }); card.focus(); }
}

// ---- the catalogue mood map ------------------------------------------------------------
async function showMap() {
  const name = $("#map-catalogue").value;
  if (!name) { say("Choose a catalogue for the map.", "error"); return; }
  try {
    const m = await apiJSON("/v1/catalogues/" + encodeURIComponent(name) + "/mood-map?limit=2000");
    const ids = m.points.map((p) => p.track_id);
    const links = {};
    for (let i = 0; i < ids.length; i += 500) {  // the links route takes 500 ids a call
      Object.assign(links, (await apiJSON("/v1/tracks/audio-links", { track_ids: ids.slice(i, i + 500) })).links);
    }
    drawMap(m, links);
  } catch (err) {
    say(explain(err), "error");
  }
}

function drawMap(m, links) {
  const svg = $("#map");
  svg.hidden = false;
  svg.replaceChildren();
  const S = 420, P = 30;
  const sx = (v) => P + v * (S - 2 * P);
  const sy = (a) => S - P - a * (S - 2 * P);
  svg.append(el("svg:rect", { x: P, y: P, width: S - 2 * P, height: S - 2 * P, class: "frame" }));
  svg.append(el("svg:line", { x1: sx(0.5), x2: sx(0.5), y1: P, y2: S - P, class: "mid" }));
  svg.append(el("svg:line", { x1: P, x2: S - P, y1: sy(0.5), y2: sy(0.5), class: "mid" }));
  svg.append(el("svg:text", { x: S / 2, y: S - 6, class: "tick", "text-anchor": "middle", text: "valence →" }));
  svg.append(el("svg:text", { x: 10, y: S / 2, class: "tick", "text-anchor": "middle",
    transform: "rotate(-90 10 " + S / 2 + ")", text: "arousal →" }));
  for (const [label, qx, qy] of [["Q1", 0.97, 0.97], ["Q2", 0.03, 0.97], ["Q3", 0.03, 0.03], ["Q4", 0.97, 0.03]]) {
    svg.append(el("svg:text", { x: sx(qx), y: sy(qy), class: "quad", "text-anchor": qx > 0.5 ? "end" : "start", text: label }));
  }
  for (const p of m.points) {
    const name = p.title || "track " + p.track_id;
    const dot = el("svg:circle", { cx: sx(p.valence), cy: sy(p.arousal), r: 4, class: "map-point",
      tabindex: "0", role: "button", "aria-label": "Play " + name });
    dot.append(el("svg:title", { text: name + " (V " + fmt(p.valence) + ", A " + fmt(p.arousal) + ")" }));
    const play = () => {
      const player = $("#map-player");
      player.hidden = false;
      player.src = links[String(p.track_id)];
      $("#map-now").textContent = "Playing " + name + " (valence " + fmt(p.valence) + ", arousal " + fmt(p.arousal) + ")";
      player.play().catch(() => { /* autoplay refused: the controls remain */ });
    };
    dot.addEventListener("click", play);
    dot.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") play(); });
    svg.append(dot);
  }
  $("#map-note").textContent = m.total === 0
    ? "No track of " + m.catalogue + " has a valence-arousal reading under " + m.model.name + "."
    : m.points.length + " of " + m.total + " tracks" + (m.sampled ? " (every k-th by id, an even sample)" : "") +
      ", placed by " + m.model.name + " " + m.model.version + ". Click a point to play it.";
}

// ---- bulk jobs --------------------------------------------------------------------------
async function submitBulk(event) {
  event.preventDefault();
  const file = $("#bulk-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("top_k", String(Number($("#top-k").value) || 3));
  form.append("distinct", String($("#distinct").checked));
  if ($("#catalogue").value) form.append("catalogue", $("#catalogue").value);
  const progress = $("#bulk-progress");
  const status = $("#bulk-status");
  $("#bulk-download").hidden = true;
  try {
    let job = await (await api("/v1/jobs/match/upload", { method: "POST", body: form })).json();
    progress.hidden = false;
    while (!["succeeded", "failed", "cancelled"].includes(job.state)) {
      progress.max = Math.max(job.progress.total, 1);
      progress.value = job.progress.done;
      status.textContent = "Job " + job.id + ": " + job.state + ", " + job.progress.done + " of " +
        job.progress.total + " stories.";
      await new Promise((r) => setTimeout(r, 1000));
      job = await apiJSON("/v1/jobs/" + job.id);
    }
    progress.value = progress.max;
    status.textContent = "Job " + job.id + " " + job.state +
      (job.error ? ": " + (job.error.message || job.error.code) : ".");
    if (job.state === "succeeded") await offerResults(job.id);
  } catch (err) {
    status.textContent = explain(err);
  }
}

async function offerResults(jobId) {
  const lines = [];
  let cursor = null;
  do {
    const page = await apiJSON("/v1/jobs/" + jobId + "/results?limit=1000" +
      (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    for (const r of page.results) lines.push(JSON.stringify(r));
    cursor = page.next_cursor;
  } while (cursor);
  const link = $("#bulk-download");
  link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "application/x-ndjson" }));
  link.download = jobId + "-results.jsonl";
  link.hidden = false;
}

// ---- wiring -----------------------------------------------------------------------------
function wire() {
  const keyField = $("#api-key");
  keyField.value = apiKey();
  keyField.addEventListener("change", () => {
    sessionStorage.setItem(KEY_SLOT, keyField.value.trim());
    say("");
    loadCatalogues();
  });
  const story = $("#story");
  story.addEventListener("input", () => { $("#char-count").textContent = story.value.length.toLocaleString(); });
  $("#story-file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    story.value = await file.text();
    story.dispatchEvent(new Event("input"));
  });
  $("#story-form").addEventListener("submit", cueStory);
  $("#show-map").addEventListener("click", showMap);
  $("#bulk-form").addEventListener("submit", submitBulk);
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  await loadConfig();
  await loadCatalogues();
});
