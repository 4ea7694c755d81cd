// wgan view: the page. Plain JavaScript, no build step; charts are inline SVG drawn here.
// State (run, seed, n, checkpoint step, walk ends...) lives in the URL, so a view can be shared.
// With ?selftest=1 the page presses "generate" twice and writes what it saw into <pre id=selftest>
// (the headless-browser test reads it with --dump-dom).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
// Curves shown first, in this order; every other numeric field of metrics.jsonl follows.
const FIRST_FIELDS = ["wasserstein", "critic_loss", "gen_loss", "penalty", "w1", "modes_captured"];
const POLL_MS = 4000;

const state = {
  runs: [],          // summaries from /api/runs
  run: null,         // the summary of the chosen run
  metrics: {},       // run name -> records
  gridBytes: null,   // the last grid's PNG bytes
  gridN: 0,
  picks: [],         // walk ends picked on the grid: "SEED:INDEX"
  lastDraw: Promise.resolve(),
  busy: 0,
};

// ------------------------------------------------------------------------------------------ helpers

function api(path) {
  return "/api/runs/" + encodeURIComponent(state.run.name) + path;
}

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json().catch(() => ({ error: r.status + " " + r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// Fetches a PNG; returns its bytes and an object URL, or throws with the server's JSON message.
async function getPNG(url) {
  const r = await fetch(url);
  if (!r.ok) {
    const body = await r.json().catch(() => ({ error: r.status + " " + r.statusText }));
    throw new Error(body.error || r.statusText);
  }
  const blob = await r.blob();
  const bytes = new Uint8Array(await blob.arrayBuffer());
  return { bytes, src: URL.createObjectURL(blob) };
}

// Resolves once `img` has loaded (or failed to); its load event, not decode(), which may wait
// for a frame that a hidden tab never draws.
function loaded(img, ms = 20000) {
  if (img.complete) return Promise.resolve();
  return new Promise((resolve) => {
    img.addEventListener("load", resolve, { once: true });
    img.addEventListener("error", resolve, { once: true });
    setTimeout(resolve, ms);
  });
}

async function showImage(img, src) {
  const old = img.src;
  img.src = src;
  await loaded(img);
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
}

function showError(el, err) {
  el.hidden = !err;
  el.textContent = err ? String(err.message || err) : "";
}

function setBusy(delta) {
  state.busy += delta;
  $("status").textContent = state.busy > 0 ? "working…" : statusLine();
  for (const id of ["generate", "draw", "walk"]) $(id).disabled = state.busy > 0;
}

function statusLine() {
  const r = state.run;
  if (!r) return "";
  const parts = [r.dataset || "?", (r.loss || "").toUpperCase()];
  if (r.last_step != null) parts.push("step " + r.last_step + (r.steps ? " / " + r.steps : ""));
  if (r.live) parts.push("training");
  return parts.filter(Boolean).join(" · ");
}

function updateURL() {
  const q = new URLSearchParams();
  if (state.run) q.set("run", state.run.name);
  if ($("compare").value) q.set("compare", $("compare").value);
  if ($("checkpoint").value) q.set("step", $("checkpoint").value);
  q.set("seed", $("seed").value);
  q.set("n", $("n").value);
  q.set("a", $("walk-a").value);
  q.set("b", $("walk-b").value);
  q.set("frames", $("walk-steps").value);
  q.set("path", $("walk-mode").value);
  if (!$("live").checked) q.set("live", "0");
  if (params.get("selftest")) q.set("selftest", params.get("selftest"));
  history.replaceState(null, "", "?" + q.toString());
}

function fnv1a(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

function sameBytes(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ------------------------------------------------------------------------------------------ runs

async function loadRuns() {
  const body = await getJSON("/api/runs");
  state.runs = body.runs;
  const sel = $("run"), cmp = $("compare");
  const keep = sel.value || params.get("run");
  const keepCmp = cmp.value || params.get("compare") || "";
  sel.replaceChildren(...body.runs.map((r) => new Option(r.name, r.name)));
  cmp.replaceChildren(new Option("(none)", ""), ...body.runs.map((r) => new Option(r.name, r.name)));
  if (body.runs.length === 0) {
    showError($("error"), "No runs in " + body.root + " yet: train one with `wgan train --out " + body.root + "/NAME`.");
    return false;
  }
  showError($("error"), null);
  sel.value = body.runs.some((r) => r.name === keep) ? keep : body.runs[0].name;
  cmp.value = body.runs.some((r) => r.name === keepCmp) ? keepCmp : "";
  state.run = body.runs.find((r) => r.name === sel.value);
  $("status").textContent = statusLine();
  return true;
}

function fillCheckpoints(wanted) {
  const sel = $("checkpoint");
  const cks = state.run.checkpoints;
  const opts = [new Option("latest", "")];
  for (const c of cks) {
    if (c.step != null) opts.push(new Option("step " + c.step + (c.name !== "checkpoint" ? " (" + c.name + ")" : ""), c.step));
    else opts.push(Object.assign(new Option(c.name + ": unreadable", ""), { disabled: true }));
  }
  sel.replaceChildren(...opts);
  sel.value = cks.some((c) => String(c.step) === String(wanted)) ? wanted : "";
}

async function selectRun(first) {
  const name = $("run").value;
  state.run = state.runs.find((r) => r.name === name);
  state.picks = [];
  fillCheckpoints(first ? params.get("step") : "");
  $("status").textContent = statusLine();
  const toy = !!state.run.toy;
  $("grid").classList.toggle("toy", toy);
  $("timeline").classList.toggle("toy", toy);
  $("strip").classList.toggle("toy", toy);
  $("grid-note").textContent = toy
    ? "Real points (orange) and generated points (green) over the critic's surface, recomputed from the checkpoint."
    : "Click two samples to walk between them.";
  $("walk-slider-box").hidden = toy;
  $("walk-frame").hidden = toy;
  const ckErr = state.run.checkpoints.find((c) => c.error);
  showError($("error"), ckErr ? "Checkpoint " + ckErr.name + ": " + ckErr.error : null);
  const tasks = [loadConfig(), loadMetrics(true), Promise.resolve(fillTimeline(true))];
  if (state.run.checkpoints.some((c) => c.step != null)) {
    tasks.push(draw(), walk());
  } else {
    showError($("grid-error"), "This run has no checkpoint yet; samples appear once it saves one.");
  }
  await Promise.all(tasks);
  updateURL();
}

async function loadConfig() {
  const t = $("config");
  try {
    const cfg = await getJSON(api("/config"));
    t.replaceChildren(
      ...Object.entries(cfg).map(([k, v]) => {
        const tr = document.createElement("tr");
        const a = document.createElement("td"), b = document.createElement("td");
        a.textContent = k;
        b.textContent = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
        tr.append(a, b);
        return tr;
      })
    );
  } catch (e) {
    t.replaceChildren();
    t.insertRow().insertCell().textContent = "no configuration: " + e.message;
  }
}

// ------------------------------------------------------------------------------------------ samples

function draw() {
  const seed = $("seed").value, n = $("n").value, step = $("checkpoint").value;
  const q = new URLSearchParams({ seed, n });
  if (step) q.set("step", step);
  updateURL();
  setBusy(1);
  state.lastDraw = (async () => {
    try {
      const png = await getPNG(api("/sample.png?" + q));
      state.gridBytes = png.bytes;
      state.gridN = Number(n);
      state.gridSeed = seed;
      await showImage($("grid"), png.src);
      showError($("grid-error"), null);
      drawPicks();
    } catch (e) {
      showError($("grid-error"), e);
    } finally {
      setBusy(-1);
    }
  })();
  return state.lastDraw;
}

function generate() {
  // New noise: a fresh random seed.
  $("seed").value = Math.floor(Math.random() * 2147483647);
  return draw();
}

// The grid's tile under a click (image runs only).
function tileAt(ev) {
  const img = $("grid"), r = state.run;
  if (r.toy || !img.naturalWidth) return null;
  const cols = Math.ceil(Math.sqrt(state.gridN));
  const tile = r.image_size + 2;
  const scale = img.naturalWidth / img.clientWidth;
  const x = ev.offsetX * scale - 2, y = ev.offsetY * scale - 2;
  const col = Math.floor(x / tile), row = Math.floor(y / tile);
  if (x < 0 || y < 0 || col >= cols) return null;
  const k = row * cols + col;
  return k < state.gridN ? k : null;
}

function pickTile(ev) {
  const k = tileAt(ev);
  if (k == null) return;
  state.picks.push({ seed: state.gridSeed, k });
  if (state.picks.length > 2) state.picks.shift();
  drawPicks();
  if (state.picks.length === 2) {
    $("walk-a").value = state.picks[0].seed + ":" + state.picks[0].k;
    $("walk-b").value = state.picks[1].seed + ":" + state.picks[1].k;
    walk();
  }
}

function drawPicks() {
  const box = $("grid-box"), img = $("grid"), r = state.run;
  box.querySelectorAll(".pick").forEach((e) => e.remove());
  if (r.toy || !img.naturalWidth) return;
  const cols = Math.ceil(Math.sqrt(state.gridN));
  const tile = r.image_size + 2, s = img.clientWidth / img.naturalWidth;
  state.picks.forEach((p, i) => {
    if (String(p.seed) !== String(state.gridSeed)) return;
    const d = document.createElement("div");
    d.className = "pick " + (i === 0 ? "a" : "b");
    Object.assign(d.style, {
      left: (2 + (p.k % cols) * tile) * s - 1 + "px",
      top: (2 + Math.floor(p.k / cols) * tile) * s - 1 + "px",
      width: r.image_size * s + 2 + "px",
      height: r.image_size * s + 2 + "px",
    });
    box.append(d);
  });
}

// ------------------------------------------------------------------------------------------ walk

let stripImage = null;

function walk() {
  const q = new URLSearchParams({
    a: $("walk-a").value.trim(),
    b: $("walk-b").value.trim(),
    steps: $("walk-steps").value,
    mode: $("walk-mode").value,
  });
  if ($("checkpoint").value) q.set("step", $("checkpoint").value);
  updateURL();
  setBusy(1);
  return (async () => {
    try {
      const png = await getPNG(api("/walk.png?" + q));
      await showImage($("strip"), png.src);
      stripImage = $("strip");
      const t = $("walk-t");
      t.max = Number($("walk-steps").value) - 1;
      t.value = Math.min(Number(t.value), Number(t.max));
      showFrame();
      showError($("walk-error"), null);
    } catch (e) {
      showError($("walk-error"), e);
    } finally {
      setBusy(-1);
    }
  })();
}

// Shows the frame under the slider, enlarged: straight path left, spherical right.
function showFrame() {
  const r = state.run, img = stripImage;
  if (!img || r.toy || !img.naturalWidth) return;
  const k = Number($("walk-t").value), frames = Number($("walk-t").max) + 1;
  const s = r.image_size, tile = s + 2;
  const rows = Math.round((img.naturalHeight - 2) / tile);
  const cv = $("walk-frame"), ctx = cv.getContext("2d");
  const side = 128;
  cv.width = side * rows + 8 * (rows - 1);
  cv.height = side;
  ctx.imageSmoothingEnabled = false;
  for (let row = 0; row < rows; row++) {
    ctx.drawImage(img, 2 + k * tile, 2 + row * tile, s, s, row * (side + 8), 0, side, side);
  }
  const mode = $("walk-mode").value;
  const names = mode === "both" ? "straight | spherical" : mode === "slerp" ? "spherical" : "straight";
  $("walk-t-label").textContent = "t = " + (frames > 1 ? (k / (frames - 1)).toFixed(2) : "0") + " (" + names + ")";
}

// ------------------------------------------------------------------------------------------ charts

async function loadMetrics(full) {
  const names = [state.run.name];
  const cmp = $("compare").value;
  if (cmp && cmp !== state.run.name) names.push(cmp);
  let changed = false, skipped = 0;
  for (const name of names) {
    const have = full ? [] : state.metrics[name] || [];
    const last = have.length ? have[have.length - 1].step : null;
    const url = "/api/runs/" + encodeURIComponent(name) + "/metrics" + (last != null ? "?after=" + last : "");
    try {
      const body = await getJSON(url);
      skipped += body.skipped;
      if (full || body.records.length) {
        state.metrics[name] = have.concat(body.records);
        changed = true;
      }
    } catch (e) {
      showError($("error"), "metrics of " + name + ": " + e.message);
    }
  }
  $("metrics-note").textContent = skipped ? "(" + skipped + " unreadable line(s) skipped)" : "";
  if (changed) renderCharts(names);
}

function fieldsOf(records) {
  const seen = new Set();
  for (const r of records) for (const [k, v] of Object.entries(r)) if (k !== "step" && typeof v === "number") seen.add(k);
  const first = FIRST_FIELDS.filter((f) => seen.has(f));
  const rest = [...seen].filter((f) => !FIRST_FIELDS.includes(f)).sort();
  return first.concat(rest);
}

function renderCharts(names) {
  const box = $("charts");
  const all = names.flatMap((n) => state.metrics[n] || []);
  const fields = fieldsOf(all);
  const figs = [];
  if (names.length > 1) {
    const legend = document.createElement("div");
    legend.className = "legend";
    names.forEach((n, i) => {
      const s = document.createElement("span");
      s.style.setProperty("--c", COLORS[i % COLORS.length]);
      s.textContent = n;
      legend.append(s);
    });
    figs.push(legend);
  }
  for (const f of fields) {
    const series = names.map((n, i) => ({
      name: n,
      color: COLORS[i % COLORS.length],
      points: (state.metrics[n] || [])
        .filter((r) => typeof r.step === "number" && typeof r[f] === "number" && isFinite(r[f]))
        .map((r) => [r.step, r[f]]),
    }));
    figs.push(chart(f, series));
  }
  if (!fields.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No metrics yet.";
    figs.push(p);
  }
  box.replaceChildren(...figs);
}

// About `target` round tick values covering [lo, hi].
function ticks(lo, hi, target) {
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  const raw = (hi - lo) / target, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step && out.length < 50; v += step) out.push(v);
  return { ticks: out, step };
}

function fmt(v, step) {
  if (Math.abs(v) < step * 1e-6) return "0";
  if (Math.abs(v) >= 1e5 || (step < 1e-3 && Math.abs(v) < 1e-3)) return v.toExponential(1);
  const d = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(Math.min(d, 6));
}

const SVG = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

// One field over steps, one curve per run; long series are thinned to about 1000 points.
function chart(field, series) {
  const W = 360, H = 190, L = 52, R = 10, T = 8, B = 24;
  const pts = series.flatMap((s) => s.points);
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (!pts.length) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
  if (!(x1 > x0)) { x0 -= 0.5; x1 += 0.5; }
  if (!(y1 > y0)) { const d = y0 === 0 ? 1 : Math.abs(y0) * 0.1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + ((y1 - y) / (y1 - y0)) * (H - T - B);
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-field": field });
  const yt = ticks(y0, y1, 5);
  let xt = ticks(x0, x1, 6);
  if (xt.step < 1) xt = { ticks: xt.ticks.filter(Number.isInteger), step: 1 }; // steps are whole numbers
  for (const v of yt.ticks) {
    svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
    svg.append(el("text", { x: L - 4, y: Y(v) + 3, "text-anchor": "end" }, fmt(v, yt.step)));
  }
  for (const v of xt.ticks) {
    svg.append(el("line", { class: "grid", x1: X(v), x2: X(v), y1: T, y2: H - B }));
    svg.append(el("text", { x: X(v), y: H - B + 13, "text-anchor": "middle" }, fmt(v, xt.step)));
  }
  svg.append(el("rect", { class: "axis", x: L, y: T, width: W - L - R, height: H - T - B }));
  for (const s of series) {
    if (!s.points.length) continue;
    const stride = Math.max(1, Math.floor(s.points.length / 1000));
    let d = "";
    s.points.forEach((p, i) => {
      if (i % stride === 0 || i === s.points.length - 1) d += (d ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1);
    });
    if (s.points.length === 1) d += "h0.01";
    svg.append(el("path", { class: "series", d, stroke: s.color, "stroke-linecap": "round" }));
  }
  const fig = document.createElement("figure");
  fig.className = "chart";
  const cap = document.createElement("figcaption");
  cap.textContent = field + " ";
  const last = series[0].points[series[0].points.length - 1];
  if (last) {
    const v = document.createElement("span");
    v.className = "value";
    v.textContent = "= " + Number(last[1].toPrecision(4)) + " at step " + last[0];
    cap.append(v);
  }
  fig.append(cap, svg);
  return fig;
}

// ------------------------------------------------------------------------------------------ timeline

function fillTimeline(toEnd) {
  const steps = state.run.samples || [];
  const sl = $("timeline-step");
  const atEnd = Number(sl.value) >= Number(sl.max);
  sl.max = Math.max(0, steps.length - 1);
  if (toEnd || atEnd) sl.value = sl.max;
  showTimeline();
}

function showTimeline() {
  const steps = state.run.samples || [];
  const img = $("timeline");
  if (!steps.length) {
    img.removeAttribute("src");
    delete img.dataset.url;
    $("timeline-label").textContent = "no sample pictures yet";
    return;
  }
  const step = steps[Number($("timeline-step").value)];
  const name = "step_" + String(step).padStart(6, "0") + ".png";
  const url = api("/samples/" + name);
  $("timeline-label").textContent = "step " + step + " (" + steps.length + " pictures)";
  if (img.dataset.url === url) return state.lastTimeline;
  img.dataset.url = url;
  // Fetched like the other pictures (an error is shown, and the self-test can wait for it).
  state.lastTimeline = getPNG(url)
    .then((png) => (img.dataset.url === url ? showImage(img, png.src) : null))
    .catch((e) => { $("timeline-label").textContent = "step " + step + ": " + e.message; });
  return state.lastTimeline;
}

// ------------------------------------------------------------------------------------------ live

async function poll() {
  if (!$("live").checked || !state.run || state.busy > 0) return;
  try {
    const before = state.run;
    await loadRuns();
    if (state.run.name !== before.name) return;
    fillCheckpoints($("checkpoint").value);
    const grew = (state.run.samples || []).length !== (before.samples || []).length;
    if (grew) fillTimeline(false);
    await loadMetrics(false);
  } catch (e) {
    $("status").textContent = "server unreachable: " + e.message;
  }
}

// ------------------------------------------------------------------------------------------ start

async function selftest() {
  const out = { generated: [], errors: [] };
  const stage = (s) => { window.selftestStage = s; };
  try {
    stage("first draw");
    await state.lastDraw;
    for (let i = 0; i < 2; i++) {
      stage("generate " + (i + 1));
      $("generate").click();
      await state.lastDraw;
      out.generated.push({
        seed: $("seed").value,
        bytes: state.gridBytes ? state.gridBytes.length : 0,
        fnv1a: state.gridBytes ? fnv1a(state.gridBytes) : null,
        width: $("grid").naturalWidth,
      });
      if (i === 0) out.first = state.gridBytes;
    }
    out.images_differ = !!out.first && !!state.gridBytes && !sameBytes(out.first, state.gridBytes);
    delete out.first;
    const paths = [...document.querySelectorAll("svg.chart path.series")];
    out.charts = document.querySelectorAll("svg.chart").length;
    out.chart_paths = paths.filter((p) => (p.getAttribute("d") || "").includes("L")).length;
    out.fields = [...document.querySelectorAll("svg.chart")].map((s) => s.dataset.field);
    stage("timeline");
    await state.lastTimeline;
    stage("report");
    out.walk_width = $("strip").naturalWidth;
    out.timeline_width = $("timeline").naturalWidth;
    for (const id of ["error", "grid-error", "walk-error"]) if (!$(id).hidden) out.errors.push($(id).textContent);
  } catch (e) {
    out.errors.push(String(e));
  }
  const ok = out.images_differ && out.chart_paths > 0 && out.generated.every((g) => g.width > 0) && out.walk_width > 0;
  const pre = $("selftest");
  pre.dataset.result = ok ? "pass" : "fail";
  pre.textContent = JSON.stringify(out);
}

async function start() {
  for (const [id, key] of [["seed", "seed"], ["n", "n"], ["walk-a", "a"], ["walk-b", "b"], ["walk-steps", "frames"], ["walk-mode", "path"]]) {
    if (params.get(key) != null) $(id).value = params.get(key);
  }
  if (params.get("live") === "0") $("live").checked = false;
  $("generate").onclick = generate;
  $("draw").onclick = draw;
  $("walk").onclick = walk;
  $("grid").onclick = pickTile;
  $("walk-t").oninput = showFrame;
  $("walk-mode").onchange = walk;
  $("timeline-step").oninput = showTimeline;
  $("run").onchange = () => selectRun(false);
  $("compare").onchange = () => { loadMetrics(true); updateURL(); };
  $("checkpoint").onchange = () => { draw(); walk(); };
  $("live").onchange = updateURL;
  $("n").onchange = draw;
  $("seed").onchange = draw;
  window.selftestStage = "start";
  try {
    if (await loadRuns()) {
      window.selftestStage = "runs listed";
      await selectRun(true);
    }
  } catch (e) {
    showError($("error"), e);
  }
  if (params.get("selftest")) await selftest();
  else setInterval(poll, POLL_MS);
}

start();
