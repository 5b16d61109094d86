// drumlayer studio: decodes and mixes in the page (the arithmetic of drumlayer/recipes/render.py),
// so a slider move never waits for the server. The server encodes, renders and exports.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {               // everything the page knows
  model: null,            // /api/model
  sources: null,          // Float32Array [k * samples]
  base: null,             // Float32Array latent of the starting sound
  sliders: null,          // Float32Array [C]: offsets along the PCA directions
  locks: new Map(),       // layer -> weight
  muted: new Set(), solo: new Set(), offsets: new Map(),  // layer -> ms
  shaping: new Map(),     // layer -> { pitch_cents, filter, cutoff_hz, decay } (recipes/shaping.py)
  prune: 0, env: { attack: 0, hold: 1, decay: 1 }, gain: 0,
  residual: null,         // Float32Array [k]: a refined recipe's weights minus its decoding
  refined: null,          // { residual, gain } of the loaded refined recipe (for the switch)
  shaped: null,           // the loaded recipe's shaping (for the switch)
  match: null,            // /api/match of the current sound against its original
  prefix: "",             // the selected pad's studio (/c/<category>) in a kit, else ""
  kit: null,              // { pads: [...], current, saved: {category: recipe}, models: {...} }
  padLatencies: [],       // ms from a pad's click to its sound starting (for the bench)
  name: "", original: null,
  slots: { A: null, B: null }, ab: "A",
  selected: -1,
  undo: [], redo: [],
  latencies: [],          // ms from an input event to the frame after the update
  played: 0,              // sounds started (for tests)
  weights: null, decoded: null, mix: null, buffer: null,
};
let audioCtx = null;

// ------------------------------------------------------------------ numerics (twins of drumlayer/recipes/render.py)

function latent() {
  const { components } = S.model.pca;
  const z = Float32Array.from(S.base);
  for (let j = 0; j < S.sliders.length; j++) {
    const c = S.sliders[j];
    if (c === 0) continue;
    const u = components[j];
    for (let l = 0; l < z.length; l++) z[l] += c * u[l];
  }
  return z;
}

function decode(z) {
  const d = S.model.decoder, H = d.hidden.bias.length, k = S.model.k;
  const h = new Float32Array(H);
  for (let j = 0; j < H; j++) {
    let s = d.hidden.bias[j];
    for (let l = 0; l < z.length; l++) s += z[l] * d.hidden.kernel[l][j];
    h[j] = s > 0 ? s : 0;
  }
  const logits = new Float32Array(k);
  for (let i = 0; i < k; i++) {
    let s = d.out.bias[i];
    for (let j = 0; j < H; j++) if (h[j] !== 0) s += h[j] * d.out.kernel[j][i];
    logits[i] = s;
  }
  return normalise(logits);
}

function normalise(x) {
  const k = x.length, w = new Float32Array(k);
  if (S.model.normaliser === "softmax") {
    let m = -Infinity, sum = 0;
    for (const v of x) m = Math.max(m, v);
    for (let i = 0; i < k; i++) { w[i] = Math.exp(x[i] - m); sum += w[i]; }
    for (let i = 0; i < k; i++) w[i] /= sum;
  } else if (S.model.normaliser === "sparsemax") {
    const s = Array.from(x).sort((a, b) => b - a);
    let cum = 0, kz = 0, cumAt = 0;
    for (let j = 0; j < k; j++) { cum += s[j]; if (1 + (j + 1) * s[j] > cum) { kz = j + 1; cumAt = cum; } }
    const tau = (cumAt - 1) / kz;
    for (let i = 0; i < k; i++) w[i] = Math.max(x[i] - tau, 0);
  } else {
    let sum = 0;
    for (let i = 0; i < k; i++) { w[i] = Math.max(x[i], 0) + 1e-6; sum += w[i]; }
    for (let i = 0; i < k; i++) w[i] /= sum;
  }
  return w;
}

function editWeights(decoded) {
  const w = Float32Array.from(decoded);
  if (S.residual) for (let i = 0; i < w.length; i++) w[i] = Math.min(Math.max(w[i] + S.residual[i], 0), 1);
  for (const [i, v] of S.locks) w[i] = v;
  for (let i = 0; i < w.length; i++) if (w[i] < S.prune) w[i] = 0;
  for (const i of S.muted) w[i] = 0;
  if (S.solo.size) for (let i = 0; i < w.length; i++) if (!S.solo.has(i)) w[i] = 0;
  return w;
}

let envCache = { key: "", e: null };
function envelope(n, sr) {
  const { attack, hold, decay } = S.env, key = `${n} ${sr} ${attack} ${hold} ${decay}`;
  if (envCache.key === key) return envCache.e;
  const e = new Float32Array(n);
  for (let t = 0; t < n; t++) {
    const s = t / sr;
    const rise = attack * sr >= 1 ? Math.min(s / attack, 1) : 1;  // as render.envelope
    e[t] = rise * Math.pow(10, -3 * Math.max(s - (attack + hold), 0) / decay);
  }
  envCache = { key, e };
  return e;
}

// ------------------------------------------------------------------ shaping (twin of drumlayer/recipes/shaping.py)
const HALF_TAPS = 16;
function pitchOf(x, cents) {  // band-limited playback at 2^(cents/1200) times the speed
  const n = x.length, y = new Float32Array(n);
  if (cents === 0) { y.set(x); return y; }
  const r = Math.pow(2, cents / 1200);
  for (let t = 0; t < n; t++) {
    const pos = t * r, base = Math.floor(pos);
    if (base - HALF_TAPS + 1 >= n) break;
    let acc = 0;
    for (let j = -HALF_TAPS + 1; j <= HALF_TAPS; j++) {
      const i = base + j;
      if (i < 0 || i >= n) continue;
      const d = pos - base - j;
      if (Math.abs(d) >= HALF_TAPS) continue;
      const u = d / HALF_TAPS;
      const win = 0.42 + 0.5 * Math.cos(Math.PI * u) + 0.08 * Math.cos(2 * Math.PI * u);
      const sinc = d === 0 ? 1 : Math.sin(Math.PI * d) / (Math.PI * d);
      acc += x[i] * sinc * win;
    }
    y[t] = acc;
  }
  return y;
}

function biquad(kind, fc, sr) {  // RBJ's 2-pole filter, Q = 1: { b, a } with a[0] = 1
  let w0 = 2 * Math.PI * fc / sr;
  if (w0 >= Math.PI * 0.999) {
    if (kind === "lpf") return { b: [1, 0, 0], a: [1, 0, 0] };
    w0 = Math.PI * 0.999;
  }
  const alpha = Math.sin(w0) / 2, c = Math.cos(w0), a0 = 1 + alpha;
  const b = kind === "lpf" ? [(1 - c) / 2, 1 - c, (1 - c) / 2] : [(1 + c) / 2, -(1 + c), (1 + c) / 2];
  return { b: b.map((v) => v / a0), a: [1, -2 * c / a0, (1 - alpha) / a0] };
}

function shapeLayer(x, s, sr) {  // a layer's source, pitched, filtered (transposed direct form II) and faded
  let y = pitchOf(x, s.pitch_cents || 0);
  if (s.filter) {
    const { b, a } = biquad(s.filter, s.cutoff_hz, sr), out = new Float32Array(y.length);
    let z1 = 0, z2 = 0;
    for (let t = 0; t < y.length; t++) {
      const v = y[t], o = b[0] * v + z1;
      z1 = b[1] * v - a[1] * o + z2;
      z2 = b[2] * v - a[2] * o;
      out[t] = o;
    }
    y = out;
  }
  if (s.decay != null) for (let t = 0; t < y.length; t++) y[t] *= Math.fround(Math.pow(10, -3 * (t / sr) / s.decay));
  return y;
}

const isPlain = (s) => !s || ((s.pitch_cents || 0) === 0 && !s.filter && s.decay == null);
const shapedCache = new Map();  // layer -> { key, y }
function shapedSource(i) {  // Float32Array [samples] of layer i as shaped, or null when it is not
  const s = S.shaping.get(i);
  if (isPlain(s)) return null;
  const key = JSON.stringify(s), hit = shapedCache.get(i);
  if (hit && hit.key === key) return hit.y;
  const n = S.model.samples, y = shapeLayer(S.sources.subarray(i * n, (i + 1) * n), s, S.model.sample_rate);
  shapedCache.set(i, { key, y });
  return y;
}

const BLOCK = 1024;  // samples per pass over the layers: the output block stays in cache
function mixOf(w, withEdits = true) {
  const n = S.model.samples, sr = S.model.sample_rate, out = new Float32Array(n);
  const live = [], delay = [], shaped = [];
  for (let i = 0; i < w.length; i++) {
    if (w[i] === 0) continue;
    live.push(i);
    delay.push(withEdits ? Math.min(Math.round((S.offsets.get(i) || 0) * sr / 1000), n) : 0);
    shaped.push(withEdits ? shapedSource(i) : null);
  }
  const src = S.sources;
  for (let b0 = 0; b0 < n; b0 += BLOCK) {
    const b1 = Math.min(b0 + BLOCK, n);
    let j = 0;
    for (; j + 4 <= live.length; j += 4) {  // four undelayed layers per pass over the block
      if (delay[j] || delay[j + 1] || delay[j + 2] || delay[j + 3]
          || shaped[j] || shaped[j + 1] || shaped[j + 2] || shaped[j + 3]) break;
      const a = live[j] * n, b = live[j + 1] * n, c = live[j + 2] * n, e = live[j + 3] * n;
      const wa = w[live[j]], wb = w[live[j + 1]], wc = w[live[j + 2]], we = w[live[j + 3]];
      for (let t = b0; t < b1; t++) {
        out[t] += wa * src[a + t] + wb * src[b + t] + wc * src[c + t] + we * src[e + t];
      }
    }
    for (; j < live.length; j++) {
      const i = live[j], wi = w[i], d = delay[j];
      const x = shaped[j] || src, base = (shaped[j] ? 0 : i * n) - d;
      for (let t = Math.max(b0, d); t < b1; t++) out[t] += wi * x[base + t];
    }
  }
  if (withEdits) {
    const e = envelope(n, sr), g = Math.pow(10, S.gain / 20);
    for (let t = 0; t < n; t++) out[t] *= e[t] * g;
  }
  return out;
}

// ------------------------------------------------------------------ recipes

function recipe() {
  const obj = (m) => Object.fromEntries([...m].map(([k, v]) => [String(k), v]));
  return { version: 2, latent: Array.from(latent()), locks: obj(S.locks),
           muted: [...S.muted], solo: [...S.solo], prune: S.prune, offsets_ms: obj(S.offsets),
           shaping: obj(S.shaping),
           envelope: { ...S.env }, gain_db: S.gain, name: S.name, original: S.original,
           residual: S.residual ? Array.from(S.residual) : null };
}

function loadRecipe(r, { keepUndo = false } = {}) {
  if (!keepUndo) pushUndo();
  S.base = Float32Array.from(r.latent);
  S.sliders = new Float32Array(S.model.pca.components.length);
  const m = (o) => new Map(Object.entries(o || {}).map(([k, v]) => [Number(k), v]));
  S.locks = m(r.locks); S.offsets = m(r.offsets_ms); S.shaping = m(r.shaping);
  S.muted = new Set(r.muted || []); S.solo = new Set(r.solo || []);
  S.prune = r.prune || 0; S.env = { attack: 0, hold: 1, decay: 1, ...(r.envelope || {}) };
  S.gain = r.gain_db || 0; S.name = r.name || ""; S.original = r.original || null;
  S.residual = r.residual ? Float32Array.from(r.residual) : null;
  if (!keepUndo) S.refined = S.residual ? { residual: S.residual, gain: S.gain } : null;
  if (!keepUndo) S.shaped = S.shaping.size ? new Map(S.shaping) : null;  // for "shaping: on/off"
  syncControls();
  update();
}

function snapshot() { return JSON.stringify({ r: recipe(), sliders: Array.from(S.sliders || []), base: Array.from(S.base || []) }); }
function restore(s) {
  const o = JSON.parse(s);
  loadRecipe({ ...o.r, latent: o.base }, { keepUndo: true });
  S.sliders = Float32Array.from(o.sliders);
  syncControls(); update();
}
function pushUndo() { if (S.base) { S.undo.push(snapshot()); S.redo = []; if (S.undo.length > 200) S.undo.shift(); } }

// ------------------------------------------------------------------ drawing

function drawChart() {
  const c = $("chart"), g = c.getContext("2d"), k = S.model.k;
  const W = c.width, H = c.height, bw = W / k;
  g.clearRect(0, 0, W, H);
  const top = Math.max(0.05, ...S.weights);
  for (let i = 0; i < k; i++) {
    const h = (S.weights[i] / top) * (H - 12);
    g.fillStyle = S.muted.has(i) ? "#555" : S.locks.has(i) ? "#4fb3ff"
      : S.solo.has(i) ? "#7dff9a" : i === S.selected ? "#fff" : "#f0a030";
    g.fillRect(i * bw + 0.5, H - h, Math.max(bw - 1, 1), h);
    if (S.decoded[i] !== S.weights[i]) {  // the decoder's value, where an edit changed it
      g.fillStyle = "#888";
      g.fillRect(i * bw, H - (S.decoded[i] / top) * (H - 12) - 1, Math.max(bw, 2), 2);
    }
  }
}

function drawTable() {
  const rows = [];
  const order = Array.from(S.weights.keys()).filter((i) => S.weights[i] > 0.001 || S.locks.has(i)
    || S.muted.has(i) || S.solo.has(i) || i === S.selected).sort((a, b) => S.weights[b] - S.weights[a]);
  for (const i of order.slice(0, 40)) {
    const tags = [S.locks.has(i) ? "locked" : "", S.muted.has(i) ? "muted" : "", S.solo.has(i) ? "solo" : ""].join(" ");
    rows.push(`<tr data-i="${i}" class="${i === S.selected ? "sel" : ""}"><td>${i}</td><td>${escapeHtml(S.model.names[i])}</td>` +
      `<td class="w">${S.weights[i].toFixed(3)}</td><td>${tags}</td></tr>`);
  }
  $("layer-table").tBodies[0].innerHTML = rows.join("");
}

function drawWave() {
  const c = $("wave"), g = c.getContext("2d"), W = c.width, H = c.height, n = S.mix.length;
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#f0a030";
  const step = Math.ceil(n / W);
  for (let x = 0; x < W; x++) {
    let m = 0;
    for (let t = x * step; t < Math.min(n, (x + 1) * step); t++) m = Math.max(m, Math.abs(S.mix[t]));
    g.fillRect(x, H / 2 - m * H / 2, 1, Math.max(1, m * H));
  }
}

function escapeHtml(s) { return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }

function selectLayer(i) {
  S.selected = i;
  $("layer-panel").hidden = i < 0;
  if (i >= 0) {
    $("layer-name").textContent = `${i}: ${S.model.names[i]}`;
    $("layer-weight").value = S.weights[i].toFixed(4);
    const s = S.shaping.get(i) || {};
    for (const [id, v] of [["layer-offset", S.offsets.get(i) || 0], ["layer-pitch", s.pitch_cents || 0],
      ["layer-cutoff", s.cutoff_hz || 1000], ["layer-decay", s.decay]])
      $(id).value = v == null ? "" : shown($(id), v);
    $("layer-filter").value = s.filter || "";
    for (const [id, on] of [["layer-mute", S.muted.has(i)], ["layer-solo", S.solo.has(i)], ["layer-lock", S.locks.has(i)]])
      $(id).classList.toggle("on", on);
  }
  drawChart(); drawTable();
}

// ------------------------------------------------------------------ the update loop

function update() {
  if (!S.base) return;
  S.decoded = decode(latent());
  S.weights = editWeights(S.decoded);
  S.mix = mixOf(S.weights);
  makeBuffer();
  drawChart(); drawTable(); drawWave();
  if (S.selected >= 0) $("layer-weight").value = S.weights[S.selected].toFixed(4);
  scheduleMatch();
  if (window.instrument) instrument.scheduleVoices();  // the pad's velocity layers, again
}

function makeBuffer() {  // the current mix as a playable buffer, ready before the next frame
  if (!audioCtx || !S.mix) return;
  S.buffer = audioCtx.createBuffer(1, S.mix.length, S.model.sample_rate);
  S.buffer.copyToChannel(S.mix, 0);
}

function timed(ev) {
  const t0 = ev.timeStamp;
  update();
  requestAnimationFrame(() => S.latencies.push(performance.now() - t0));
}

// ------------------------------------------------------------------ controls

function buildSliders() {
  const box = $("sliders"), p = S.model.pca;
  box.innerHTML = "";
  p.components.forEach((_, j) => {
    const r = 4 * Math.sqrt(p.variance[j]);
    const l = document.createElement("label");
    l.innerHTML = `u<sub>${j}</sub> <span class="muted">${(100 * p.explained[j]).toFixed(1)}%</span>` +
      `<input type="range" class="pc" data-j="${j}" min="${-r}" max="${r}" step="${r / 200}" value="0">`;
    box.appendChild(l);
  });
  for (const el of box.querySelectorAll("input.pc")) {
    el.addEventListener("input", (ev) => { S.sliders[+el.dataset.j] = +el.value; timed(ev); });
    el.addEventListener("pointerdown", pushUndo);
    el.addEventListener("keydown", pushUndo);
  }
}

// a number as its control shows it: to the control's step (gain 9.3227 -> "9.3" for a step of 0.5)
function shown(control, v) {
  const step = +control.step || 1;
  return (+v).toFixed(Math.max(0, Math.min(6, Math.ceil(-Math.log10(step) - 1e-9))));
}

function syncControls() {
  document.querySelectorAll("input.pc").forEach((el) => { el.value = S.sliders[+el.dataset.j]; });
  $("prune").value = S.prune; $("prune-out").value = shown($("prune"), S.prune);
  for (const [id, v] of [["attack", S.env.attack], ["hold", S.env.hold], ["decay", S.env.decay], ["gain", S.gain]]) {
    $(id).value = v; $(id).nextElementSibling.value = shown($(id), v);
  }
  $("sound-name").textContent = S.name;
  $("play-original").disabled = !S.original;
  $("refined").disabled = !S.refined;
  $("refined-which").textContent = S.residual ? "on" : "off";
  $("shape").disabled = !S.original;
  $("shaping").disabled = !S.shaped;
  $("shaping-which").textContent = S.shaping.size ? "on" : "off";
}

function status(msg, error = false) {
  $("status").textContent = msg;
  $("status").classList.toggle("error", error);
}

async function api(path, opts = {}, root = false) {
  const r = await fetch((root ? "" : S.prefix) + path, opts);
  if (!r.ok) {
    let detail = r.statusText;
    try { const j = await r.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return r;
}

async function start(promise, label) {
  status(`${label}…`);
  try {
    const response = await promise;
    const r = await response.json();
    loadRecipe(r);
    // while the studio is starting, it answers at once with what is ready (the encoder's recipe,
    // or the weights refinement); the default then refines it here, unless it is edited meanwhile
    const used = response.headers.get("X-Drumlayer-Refinement");
    if (!S.original || !(used === "weights" || (used === "none" && $("refine").checked))) {
      status(`${label}: ready`);
      return;
    }
    status(`${label}: ready (${used === "weights" ? "weights only" : "the encoder's recipe"}; refining and shaping its layers…)`);
    const sent = JSON.stringify(recipe());
    const again = await (await api("/api/shape", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: sent })).json();
    if (JSON.stringify(recipe()) !== sent) {
      status(`${label}: ready (your edits are kept; "refine again" gives the refined and shaped recipe)`);
      return;
    }
    loadRecipe(again);
    status(`${label}: ready`);
  } catch (e) { status(e.message, true); }
}

function refineQuery() { return `?refine=${$("refine").checked}`; }
function encoding(what) { return `${$("refine").checked ? "encoding and refining" : "encoding"} ${what}`; }

function encodeFile(file) {
  const fd = new FormData();
  fd.append("file", file);
  start(api(`/api/encode${refineQuery()}`, { method: "POST", body: fd }), encoding(file.name));
}

let matchTimer = null, matchSeq = 0;
function scheduleMatch() {  // how close the current sound is to its original, after edits settle
  clearTimeout(matchTimer);
  if (!S.original) { $("match").hidden = true; return; }
  matchTimer = setTimeout(async () => {
    const seq = ++matchSeq;
    try {
      const m = await (await api("/api/match", { method: "POST", headers: { "Content-Type": "application/json" },
                                                 body: JSON.stringify(recipe()) })).json();
      if (seq === matchSeq) { S.match = m; drawMatch(); }
    } catch (e) { $("match").hidden = true; }
  }, 250);
}

function drawMatch() {
  const m = S.match, c = $("match-plot"), g = c.getContext("2d"), W = c.width, H = c.height;
  $("match").hidden = false;
  g.clearRect(0, 0, W, H);
  const lo = Math.log(Math.max(m.hz[1], 20)), hi = Math.log(m.hz[m.hz.length - 1]);
  const top = Math.max(...m.original_db, ...m.mix_db), floor = top - 80;
  const curve = (db, color) => {
    g.strokeStyle = color; g.beginPath();
    m.hz.forEach((f, i) => {
      if (i === 0) return;
      const x = (Math.log(f) - lo) / (hi - lo) * W, y = (top - Math.max(db[i], floor)) / 80 * H;
      if (i === 1) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  };
  curve(m.original_db, "#9ad"); curve(m.mix_db, "#f0a030");
  $("match-text").textContent = `original (blue) and mix (orange): LSD ${m.log_spectral_distance_db.toFixed(2)} dB, ` +
    `MFCC distance ${m.mfcc_distance.toFixed(1)}, centroid error ${m.centroid_error_hz.toFixed(0)} Hz`;
}

function ctx() {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === "suspended") audioCtx.resume();
  return audioCtx;
}

function play(samples) {
  const c = ctx(), b = c.createBuffer(1, samples.length, S.model.sample_rate);
  b.copyToChannel(samples, 0);
  const s = c.createBufferSource();
  s.buffer = b; s.connect(c.destination); s.start();
  S.played += 1;
}

async function playUrl(url) {
  const buf = await (await api(url)).arrayBuffer();
  const audio = await ctx().decodeAudioData(buf);
  const s = audioCtx.createBufferSource();
  s.buffer = audio; s.connect(audioCtx.destination); s.start();
  S.played += 1;
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function exportTo(path, name) {
  status(`exporting ${name}…`);
  try {
    const r = await api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                body: JSON.stringify(recipe()) });
    download(await r.blob(), name);
    status(`exported ${name}`);
  } catch (e) { status(e.message, true); }
}

function edit(fn) { pushUndo(); fn(); update(); if (S.selected >= 0) selectLayer(S.selected); }

function wire() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) encodeFile(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => { if (e.target.files.length) encodeFile(e.target.files[0]); });
  $("corpus").addEventListener("change", (e) => { if (e.target.value !== "") start(api(`/api/corpus/${e.target.value}/recipe${refineQuery()}`), encoding("the clip")); });
  $("source").addEventListener("change", (e) => { if (e.target.value !== "") start(api(`/api/sources/${e.target.value}/recipe${refineQuery()}`), encoding("the source")); });
  $("refined").addEventListener("click", () => edit(() => {
    const on = !S.residual;  // back to the refined recipe, or to the encoder's (no residual, 0 dB)
    S.residual = on ? S.refined.residual : null;
    S.gain = on ? S.refined.gain : 0;
    syncControls();
  }));
  $("shape").addEventListener("click", () => start(api("/api/shape", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(recipe()) }),
    "refining again"));
  $("shaping").addEventListener("click", () => edit(() => {  // A/B: the shaped layers, or the same unshaped
    S.shaping = S.shaping.size ? new Map() : new Map(S.shaped);
    syncControls();
  }));
  $("random").addEventListener("click", () => {
    const p = S.model.pca, z = Float32Array.from(p.center);
    p.components.forEach((u, j) => {
      const n = gauss() * Math.sqrt(p.variance[j]);
      for (let l = 0; l < z.length; l++) z[l] += n * u[l];
    });
    loadRecipe({ latent: Array.from(z), name: "random point" });
  });
  $("center-sliders").addEventListener("click", () => edit(() => { S.sliders.fill(0); syncControls(); }));
  for (const slot of ["A", "B"]) {
    $(`save-${slot.toLowerCase()}`).addEventListener("click", () => {
      S.slots[slot] = { latent: latent(), snap: snapshot() };
      S.ab = slot; $("ab-which").textContent = slot;  // what is playing now is this slot
      $("morph").disabled = !(S.slots.A && S.slots.B);
      status(`saved as ${slot}`);
    });
  }
  $("morph").addEventListener("pointerdown", pushUndo);
  $("morph").addEventListener("input", (ev) => {
    const t = +ev.target.value, a = S.slots.A.latent, b = S.slots.B.latent;
    S.base = a.map((v, l) => (1 - t) * v + t * b[l]);
    S.sliders.fill(0); syncControls(); timed(ev);
  });
  $("variations").addEventListener("click", () => edit(() => {
    const amt = +$("jitter").value, z = latent();
    S.base = z.map((v) => v + amt * gauss());
    S.shaping = jitterShaping(S.shaping, amt);
    S.sliders.fill(0); syncControls();
  }));
  $("chart").addEventListener("click", (e) => {
    const r = e.target.getBoundingClientRect();
    selectLayer(Math.min(S.model.k - 1, Math.floor((e.clientX - r.left) / r.width * S.model.k)));
  });
  $("layer-table").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-i]");
    if (tr) selectLayer(+tr.dataset.i);
  });
  const toggle = (set, i) => (set.has(i) ? set.delete(i) : set.add(i));
  $("layer-mute").addEventListener("click", () => edit(() => toggle(S.muted, S.selected)));
  $("layer-solo").addEventListener("click", () => edit(() => toggle(S.solo, S.selected)));
  $("layer-lock").addEventListener("click", () => edit(() => {
    if (S.locks.has(S.selected)) S.locks.delete(S.selected); else S.locks.set(S.selected, S.weights[S.selected]);
  }));
  $("layer-weight").addEventListener("change", (e) => edit(() => {
    S.locks.set(S.selected, Math.min(1, Math.max(0, +e.target.value || 0)));
  }));
  $("layer-offset").addEventListener("change", (e) => edit(() => {
    const ms = Math.min(500, Math.max(0, +e.target.value || 0));
    if (ms > 0) S.offsets.set(S.selected, ms); else S.offsets.delete(S.selected);
  }));
  const shapeFromPanel = () => edit(() => {
    const num = (id, lo, hi, dflt) => { const v = +$(id).value; return Number.isFinite(v) && $(id).value !== "" ? Math.min(hi, Math.max(lo, v)) : dflt; };
    const s = { pitch_cents: num("layer-pitch", -1200, 1200, 0), filter: $("layer-filter").value || null,
                cutoff_hz: num("layer-cutoff", 20, 20000, 1000), decay: num("layer-decay", 0.01, 10, null) };
    if (isPlain(s)) S.shaping.delete(S.selected); else S.shaping.set(S.selected, s);
  });
  for (const id of ["layer-pitch", "layer-filter", "layer-cutoff", "layer-decay"]) $(id).addEventListener("change", shapeFromPanel);
  $("layer-play").addEventListener("click", () => {
    const w = new Float32Array(S.model.k); w[S.selected] = 1;
    play(mixOf(w, false));
  });
  $("prune").addEventListener("pointerdown", pushUndo);
  $("prune").addEventListener("input", (ev) => { S.prune = +ev.target.value; $("prune-out").value = shown(ev.target, S.prune); timed(ev); });
  for (const id of ["attack", "hold", "decay", "gain"]) {
    $(id).addEventListener("pointerdown", pushUndo);
    $(id).addEventListener("input", (ev) => {
      const v = +ev.target.value;
      if (id === "gain") S.gain = v; else S.env[id] = v;
      ev.target.nextElementSibling.value = shown(ev.target, v);
      timed(ev);
    });
  }
  $("play-original").addEventListener("click", () => S.original && playUrl(`/api/original/${S.original}`).catch((e) => status(e.message, true)));
  $("play-recon").addEventListener("click", () => play(mixOf(decode(S.base), false)));
  $("play-current").addEventListener("click", () => play(S.mix));
  $("ab").addEventListener("click", () => {
    const other = S.ab === "A" ? "B" : "A";
    if (!S.slots[other]) { status(`save a sound as ${other} first`, true); return; }
    S.slots[S.ab] = { latent: latent(), snap: snapshot() };
    S.ab = other; $("ab-which").textContent = other;
    restore(S.slots[other].snap); play(S.mix);
  });
  $("undo").addEventListener("click", () => { if (S.undo.length) { S.redo.push(snapshot()); restore(S.undo.pop()); } });
  $("redo").addEventListener("click", () => { if (S.redo.length) { S.undo.push(snapshot()); restore(S.redo.pop()); } });
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); $(e.shiftKey ? "redo" : "undo").click(); }
  });
  const rate = () => $("rate").value;
  $("export-wav").addEventListener("click", () => exportTo(`/api/render?export=true&sample_rate=${rate()}`, `layered_${rate()}.wav`));
  $("export-stems").addEventListener("click", () => exportTo(`/api/export/stems?sample_rate=${rate()}`, "layered_stems.zip"));
  $("export-sfz").addEventListener("click", () => exportTo(`/api/export/sfz?sample_rate=${rate()}`, "layered_sfz.zip"));
  $("export-recipe").addEventListener("click", () => download(new Blob([JSON.stringify(recipe(), null, 1)], { type: "application/json" }), "recipe.json"));
  $("load-recipe").addEventListener("change", async (e) => {
    try {
      const r = JSON.parse(await e.target.files[0].text());
      if (!Array.isArray(r.latent) || r.latent.length !== S.model.latent) throw new Error(`not a recipe of this model (latent must have ${S.model.latent} numbers)`);
      loadRecipe(r); status("recipe loaded");
    } catch (err) { status(`cannot load the recipe: ${err.message}`, true); }
    e.target.value = "";
  });
  // Browsers allow audio after a user gesture: make the context then, without touching the DOM
  // (re-rendering under the pointer would swallow the click that is starting).
  for (const ev of ["pointerdown", "keydown"]) document.addEventListener(ev, () => { ctx(); makeBuffer(); }, { once: true });
}

// A variation of the shaped layers (the plain ones stay plain): at amount 1, pitch moves by
// 50 cents, cutoff and decay by a quarter octave (standard deviations), within their ranges.
function jitterShaping(shaping, amt) {
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const out = new Map();
  for (const [i, s] of shaping) {
    if (isPlain(s)) { out.set(i, s); continue; }
    out.set(i, { ...s,
      pitch_cents: clamp(Math.round((s.pitch_cents || 0) + 50 * amt * gauss()), -1200, 1200),
      cutoff_hz: clamp(Math.round((s.cutoff_hz || 1000) * Math.pow(2, 0.25 * amt * gauss())), 20, 20000),
      decay: s.decay == null ? null : clamp(+(s.decay * Math.pow(2, 0.25 * amt * gauss())).toFixed(3), 0.01, 10) });
  }
  return out;
}

function gauss() {
  const u = 1 - Math.random(), v = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

async function loadModel() {  // the selected studio's model, sources and clips (cached per pad)
  const cache = S.kit && S.kit.models[S.prefix];
  const m = cache || {
    model: await (await api("/api/model")).json(),
    sources: new Float32Array(await (await api("/api/sources")).arrayBuffer()),
    clips: await (await api("/api/corpus")).json(),
  };
  if (S.kit) S.kit.models[S.prefix] = m;
  S.model = m.model; S.sources = m.sources;
  const opt = (v, t) => `<option value="${v}">${escapeHtml(t)}</option>`;
  $("corpus").innerHTML = opt("", "—") + m.clips.slice().sort((a, b) => (a.split === "test" ? 0 : 1) - (b.split === "test" ? 0 : 1))
    .map((c) => opt(c.id, `${c.name} (${c.split})`)).join("");
  $("source").innerHTML = opt("", "—") + S.model.names.map((n, i) => opt(i, `${i}: ${n}`)).join("");
  $("model-info").textContent = `${S.model.workdir}: ${S.model.k} sources, latent ${S.model.latent}, ${S.model.normaliser}`;
  buildSliders();
}

function centre() { return { latent: S.model.pca.center, name: "the centre of the corpus" }; }

// ------------------------------------------------------------------ the kit: one pad per category

async function initKit() {
  const r = await fetch("/api/kit");
  const k = r.ok ? await r.json() : { pads: [] };
  if (!k.pads.length) return;  // a single model's studio
  S.kit = { pads: k.pads, current: k.pads[0].category, saved: {}, models: {} };
  S.prefix = `/c/${S.kit.current}`;
  $("kit").hidden = false;
  $("pads").innerHTML = k.pads.map((p, i) => `<button class="pad" data-c="${p.category}" title="GM key ${p.gm_key}">` +
    `${i + 1}: ${escapeHtml(p.name)}</button>`).join("");
  const skipped = Object.entries(k.skipped);
  $("kit-note").textContent = skipped.length ? `no pad for: ${skipped.map(([c, why]) => `${c} (${why})`).join("; ")}` : "";
  for (const b of document.querySelectorAll("button.pad")) b.addEventListener("click", (ev) => selectPad(b.dataset.c, ev.timeStamp));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
    const p = S.kit.pads[Number(e.key) - 1];
    if (p) selectPad(p.category, e.timeStamp);
  });
  $("export-kit").addEventListener("click", exportKit);
}

async function selectPad(category, t0 = performance.now()) {
  if (category !== S.kit.current) {
    S.kit.saved[S.kit.current] = recipe();
    S.kit.current = category; S.prefix = `/c/${category}`;
    await loadModel();
    loadRecipe(S.kit.saved[category] || centre(), { keepUndo: true });
    S.undo = []; S.redo = []; S.slots = { A: null, B: null };
  }
  for (const b of document.querySelectorAll("button.pad")) b.classList.toggle("on", b.dataset.c === category);
  play(S.mix);
  S.padLatencies.push(performance.now() - t0);
}

async function exportKit() {
  S.kit.saved[S.kit.current] = recipe();
  const pads = {};
  for (const p of S.kit.pads) pads[p.category] = S.kit.saved[p.category] || (window.instrument && instrument.recipeOf(p.category)) || null;
  status("exporting the kit…");
  try {
    const r = await api("/api/kit/export", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pads, round_robin: +$("round-robin").value, velocity_layers: +$("velocity-layers").value,
                             amount: +$("jitter").value, sample_rate: +$("rate").value }) }, true);
    download(await r.blob(), "drumlayer_kit.zip");
    const empty = r.headers.get("X-Empty-Pads");
    status(`exported the kit${empty ? ` (empty pads, left out: ${empty.split(",").join(", ")})` : ""}`);
  } catch (e) { status(e.message, true); }
}

async function init() {
  try {
    await initKit();
    await loadModel(); wire();
    loadRecipe(centre(), { keepUndo: true });
    if (S.kit) for (const b of document.querySelectorAll("button.pad")) b.classList.toggle("on", b.dataset.c === S.kit.current);
    S.undo = [];
    document.body.dataset.ready = "1";
    status("ready: upload a sample, pick a clip, or move a slider");
    initInstrument().catch((e) => status(`the instrument could not start: ${e.message}`, true));
  } catch (e) { status(`cannot load the model: ${e.message}`, true); }
}

window.studio = { S, recipe, loadRecipe, syncControls, decode, editWeights, mixOf, latent, update, selectPad, jitterShaping };
init();
