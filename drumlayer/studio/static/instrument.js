// drumlayer studio as an instrument: MIDI in, velocity layers and round robins, the kit in a
// groove, sounds dragged out as WAV files. A hit starts from buffers the page already holds:
// each pad's voices (POST <pad>/api/voices: the velocity layers of its round robins, the sounds
// the kit export writes), refreshed after its recipe changes.
"use strict";

const I = {
  voices: new Map(),      // pad ("" in the single-sound studio) -> { key, layers, rangeDb, buffers [V][RR], turn }
  wavs: new Map(),        // pad -> { key, url, name }: the export WAV, for dragging out
  centres: new Map(),     // pad -> its model's centre latent (a pad never edited plays its centre)
  notes: new Map(),       // MIDI note -> pad (the kit's GM map, from /api/kit)
  ringing: new Map(),     // pad -> [{ src, gain }] still playing (for the hi-hat choke)
  hits: [],               // every hit: { pad, note, velocity, layer, rr, gain, when, latency, handler (ms to start()) }
  grooveLog: [],          // scheduled groove hits: { step, bar, pad, velocity, when }
  grooves: null, groove: null,  // /api/kit/grooves; the playing groove { timer, t0, next }
  grooveMidi: null,       // { q, name, blob, url } of the chosen groove's MIDI file
  midi: { access: null, input: "", channel: 0 },  // channel 0: any
};
const CHOKES = { "closed-hat": ["open-hat"] };  // as drumlayer/kit/export.py's CHOKE

function padKey() { return S.kit ? S.kit.current : ""; }
function prefixOf(pad) { return pad ? `/c/${pad}` : ""; }
function layerCount() { return Math.max(1, Math.min(16, +$("velocity-layers").value || 4)); }

function recipeOf(pad) {  // the recipe a pad plays now
  if (pad === padKey()) return S.base ? recipe() : null;
  const saved = S.kit && S.kit.saved[pad];
  if (saved) return saved;
  const c = I.centres.get(pad);
  return c ? { latent: c, name: "the centre of the corpus" } : null;
}

// ------------------------------------------------------------------ voices (velocity layers x round robins)

async function refreshVoices(pad) {
  const r = recipeOf(pad);
  if (!r) return;
  const body = JSON.stringify(r), layers = layerCount(), rr = Math.max(1, +$("round-robin").value || 1);
  const key = `${layers} ${rr} ${body}`;
  if (I.voices.get(pad)?.key === key) return;
  const res = await fetch(`${prefixOf(pad)}/api/voices?layers=${layers}&round_robin=${rr}`,
    { method: "POST", headers: { "Content-Type": "application/json" }, body });
  if (!res.ok) return;  // a silent recipe has no voices; the pad keeps its last ones
  const meta = JSON.parse(res.headers.get("X-Voices"));
  const data = new Float32Array(await res.arrayBuffer()), n = meta.samples, c = ctx();
  const buffers = meta.layers.map((_, v) => Array.from({ length: meta.round_robin }, (_, j) => {
    const b = c.createBuffer(1, n, meta.rate);
    b.copyToChannel(data.subarray((v * meta.round_robin + j) * n, (v * meta.round_robin + j + 1) * n), 0);
    return b;
  }));
  I.voices.set(pad, { key, layers: meta.layers, rangeDb: meta.range_db, buffers, turn: 0 });
  refreshWav(pad, body);
  drawVoices();
}

async function refreshWav(pad, body) {  // the pad's sound as the WAV export writes it, ready to drag
  const rate = +$("rate").value, key = `${rate} ${body}`;
  if (I.wavs.get(pad)?.key === key) return;
  const res = await fetch(`${prefixOf(pad)}/api/render?export=true&sample_rate=${rate}`,
    { method: "POST", headers: { "Content-Type": "application/json" }, body });
  if (!res.ok) return;
  const old = I.wavs.get(pad);
  if (old) URL.revokeObjectURL(old.url);
  const name = `${pad || "layered"}_${rate}.wav`;
  I.wavs.set(pad, { key, url: URL.createObjectURL(await res.blob()), name });
}

const levelDb = (v, rangeDb) => -rangeDb * (127 - v) / 126;  // as drumlayer/kit/velocity.py
function velocityGain(v, lo, hi, rangeDb) {
  if (hi === lo) return 1;
  const g = Math.pow(10, (levelDb(lo, rangeDb) - levelDb(hi, rangeDb)) / 20);
  return g + (1 - g) * (v - lo) / (hi - lo);
}

// A hit: the pad's layer for the velocity, its next round robin, the level inside the layer.
// t0: the input event's time (performance.now() clock), for the latency log.
function hit(pad, velocity, t0 = performance.now(), note = null) {
  if (!I.voices.get(pad)) { status(`${pad || "the sound"} is still loading`); return null; }
  const c = ctx(), when = c.currentTime;
  const h = { pad, note, ...startVoice(pad, velocity, when), when };
  h.handler = performance.now() - t0;
  h.latency = latencyOf(c, when, t0);
  I.hits.push(h); S.played += 1;
  return h;
}

// A pad's voice at a context time: its velocity's layer, the pad's next round robin, the level
// inside the layer; it chokes what the pad chokes. -> { velocity, layer, rr, gain }
function startVoice(pad, velocity, when, out = null) {
  const vo = I.voices.get(pad), c = ctx();
  const v = Math.max(1, Math.min(127, Math.round(velocity)));
  const layer = vo.layers.findIndex(([lo, hi]) => lo <= v && v <= hi);
  const rr = vo.turn++ % vo.buffers[layer].length;
  for (const victim of CHOKES[pad] || []) choke(victim, when);
  const src = c.createBufferSource(), gain = c.createGain();
  gain.gain.value = velocityGain(v, ...vo.layers[layer], vo.rangeDb);
  src.buffer = vo.buffers[layer][rr];
  src.connect(gain).connect(out || c.destination);
  src.start(when);
  const voice = { src, gain };
  (I.ringing.get(pad) || I.ringing.set(pad, []).get(pad)).push(voice);
  src.onended = () => { const a = I.ringing.get(pad); a.splice(a.indexOf(voice), 1); };
  return { velocity: v, layer, rr, gain: gain.gain.value };
}

// ms from the input event to the scheduled start of the sound on the context's rendering
// clock: the time to the start() call, plus how far `when` lies ahead of what the context is
// rendering then (getOutputTimestamp maps the clocks at the output; outputLatency, the device's
// own buffering after rendering, is the device's and is left out: the benchmark reports it).
function latencyOf(c, when, t0) {
  const now = performance.now(), ts = c.getOutputTimestamp ? c.getOutputTimestamp() : null;
  if (!ts || !ts.performanceTime) return now - t0;
  const rendering = ts.contextTime + (now - ts.performanceTime) / 1000 + (c.outputLatency || 0);
  return now - t0 + Math.max(0, when - rendering) * 1000;
}

function choke(pad, at) {  // a 5 ms fade of what the pad still plays
  for (const { src, gain } of I.ringing.get(pad) || []) {
    gain.gain.setValueAtTime(gain.gain.value, at);
    gain.gain.linearRampToValueAtTime(0, at + 0.005);
    src.stop(at + 0.006);
  }
}

function drawVoices() {  // the current pad's velocity layers, each a button that plays it at its top velocity
  const vo = I.voices.get(padKey());
  $("voices-info").textContent = vo ? `${vo.buffers[0].length} round robin${vo.buffers[0].length > 1 ? "s" : ""} in each:` : "velocity layers: loading…";
  $("velocity-pads").innerHTML = vo ? vo.layers.map(([lo, hi], v) =>
    `<button class="vel" data-v="${hi}" title="velocity ${lo}-${hi}: play it at ${hi}">layer ${v + 1}: ${lo}-${hi}</button>`).join("") : "";
}

let voicesTimer = null;
function scheduleVoices() {  // after an edit settles: the current pad's voices and WAV again
  drawVoices();
  clearTimeout(voicesTimer);
  voicesTimer = setTimeout(() => refreshVoices(padKey()).catch((e) => status(e.message, true)), 300);
}

// ------------------------------------------------------------------ MIDI in (Web MIDI)

function onMidi(data, t0) {  // a MIDI message's bytes; t0 its time stamp (performance.now clock)
  const [st, note, vel] = data, kind = st & 0xf0, ch = (st & 0x0f) + 1;
  if (kind !== 0x90 || !vel) return null;  // note-on only; a note-on at velocity 0 is a note-off
  if (I.midi.channel && ch !== I.midi.channel) return null;
  const pad = S.kit ? I.notes.get(note) : "";
  if (pad === undefined) return null;
  return hit(pad, vel, t0, note);
}

async function initMidi() {
  const note = $("midi-note");
  if (!navigator.requestMIDIAccess) {
    note.textContent = "this browser has no Web MIDI (Chromium and Edge have it): play with the keys and the mouse";
    return;
  }
  try {
    I.midi.access = await navigator.requestMIDIAccess();
  } catch (e) {
    note.textContent = `MIDI access refused (${e.message || e.name}): play with the keys and the mouse; allow MIDI for this page to use a controller`;
    return;
  }
  const fill = () => {
    const inputs = [...I.midi.access.inputs.values()];
    $("midi-input").innerHTML = `<option value="">all inputs</option>` +
      inputs.map((p) => `<option value="${escapeHtml(p.id)}">${escapeHtml(p.name || p.id)}</option>`).join("");
    $("midi-input").value = inputs.some((p) => p.id === I.midi.input) ? I.midi.input : "";
    for (const p of inputs) p.onmidimessage = (m) => { if (!I.midi.input || I.midi.input === p.id) onMidi(m.data, m.timeStamp); };
    note.textContent = inputs.length ? `MIDI: ${inputs.length} input${inputs.length > 1 ? "s" : ""}` : "MIDI: no input connected yet";
  };
  I.midi.access.onstatechange = fill;
  fill();
}

// ------------------------------------------------------------------ the groove (kit view)

function grooveHits(name, tempo) {  // { bar (s), hits: [{ t (s), step, pad, velocity }] } on this kit's pads
  if (name === "loop" && window.loops && loops.L.loop) return loops.loopGrooveHits(tempo);
  const p = I.grooves.patterns[name], stepS = 60 / tempo / 4, out = [];
  for (const [pad, notes] of Object.entries(p)) if (I.voices.has(pad)) for (const [step, velocity] of notes) out.push({ t: step * stepS, step, pad, velocity });
  return { bar: stepS * I.grooves.steps, hits: out.sort((a, b) => a.t - b.t) };
}

function startGroove() {  // schedules a bar ahead, 100 ms at a time, on the context's clock
  const c = ctx(), name = $("groove").value, tempo = +$("tempo").value;
  const { bar, hits } = grooveHits(name, tempo);
  const g = { t0: c.currentTime + 0.05, bars: 0, name, tempo, timer: null };
  const tick = () => {
    while (g.t0 + g.bars * bar < c.currentTime + 0.2) {
      for (const h of hits) {
        const when = g.t0 + g.bars * bar + h.t;
        I.grooveLog.push({ step: h.step, t: h.t, bar: g.bars, pad: h.pad, velocity: h.velocity, when, t0: g.t0, tempo });
        startVoice(h.pad, h.velocity, when);
      }
      g.bars += 1;
    }
  };
  tick();
  g.timer = setInterval(tick, 50);
  I.groove = g;
  $("groove-play").textContent = "stop";
}

function stopGroove() {
  if (!I.groove) return;
  clearInterval(I.groove.timer);
  for (const list of I.ringing.values()) for (const { src } of list) src.stop();
  I.groove = null;
  $("groove-play").textContent = "play groove";
}

async function exportGroove() {
  S.kit.saved[S.kit.current] = recipe();
  const pads = {};
  for (const p of S.kit.pads) pads[p.category] = recipeOf(p.category);
  const name = $("groove").value, tempo = +$("tempo").value;
  status(`rendering the ${name} groove…`);
  try {
    const r = await api("/api/kit/groove", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pads, groove: name, tempo, sample_rate: +$("rate").value,
                             velocity_layers: layerCount(), round_robin: +$("round-robin").value }) }, true);
    download(await r.blob(), `groove_${name}_${tempo}bpm.wav`);
    status(`exported the ${name} groove at ${tempo} BPM`);
  } catch (e) { status(e.message, true); }
}

function grooveMidiQuery() {  // the groove, tempo and sounding pads of GET /api/kit/groove.mid
  const pads = S.kit.pads.map((p) => p.category).filter((c) => recipeOf(c));
  const q = new URLSearchParams({ groove: $("groove").value, tempo: $("tempo").value, pads: pads.join(",") });
  return { q: q.toString(), name: `groove_${$("groove").value}_${+$("tempo").value}bpm.mid` };
}

async function grooveMidi() {  // { name, url: a blob URL } of the groove's MIDI file, fetched once per choice
  const { q, name } = grooveMidiQuery();
  if (I.grooveMidi && I.grooveMidi.q === q) return I.grooveMidi;
  const r = await api(`/api/kit/groove.mid?${q}`, {}, true);
  const blob = await r.blob();
  if (I.grooveMidi) URL.revokeObjectURL(I.grooveMidi.url);
  I.grooveMidi = { q, name, blob, url: URL.createObjectURL(blob) };
  return I.grooveMidi;
}

async function exportGrooveMidi() {
  try {
    const m = await grooveMidi();
    download(m.blob, m.name);
    status(`exported ${m.name}`);
  } catch (e) { status(e.message, true); }
}

function dragGroove(e) {  // the MIDI file as Chromium's DownloadURL (prefetched: a drag cannot wait)
  const m = I.grooveMidi;
  if (!m || m.q !== grooveMidiQuery().q) {
    e.preventDefault();
    grooveMidi().catch((err) => status(err.message, true));
    status("the MIDI file is still being made: try again in a moment");
    return;
  }
  e.dataTransfer.setData("DownloadURL", `audio/midi:${m.name}:${m.url}`);
  e.dataTransfer.setData("text/uri-list", m.url);
  e.dataTransfer.effectAllowed = "copy";
}

// ------------------------------------------------------------------ drag a sound out as a WAV

function dragOut(e, pad) {  // Chromium's DownloadURL: "mime:name:url" (the export WAV, prefetched)
  const w = I.wavs.get(pad);
  if (!w) { e.preventDefault(); status("the WAV is still being rendered: try again in a moment"); return; }
  e.dataTransfer.setData("DownloadURL", `audio/wav:${w.name}:${w.url}`);
  e.dataTransfer.setData("text/uri-list", w.url);
  e.dataTransfer.effectAllowed = "copy";
}

// ------------------------------------------------------------------ wiring

async function initInstrument() {
  $("drag-sound").addEventListener("dragstart", (e) => dragOut(e, padKey()));
  for (const id of ["velocity-layers", "round-robin"]) $(id).addEventListener("change", () => {
    for (const pad of S.kit ? S.kit.pads.map((p) => p.category) : [""]) refreshVoices(pad);
  });
  $("velocity").addEventListener("input", (e) => { $("velocity-out").value = e.target.value; });
  $("midi-channel").addEventListener("change", (e) => { I.midi.channel = +e.target.value; });
  $("midi-input").addEventListener("change", (e) => { I.midi.input = e.target.value; });
  $("play-hit").addEventListener("click", (e) => hit(padKey(), +$("velocity").value, e.timeStamp));
  $("velocity-pads").addEventListener("click", (e) => {
    const b = e.target.closest("button.vel");
    if (b) hit(padKey(), +b.dataset.v, e.timeStamp);
  });
  if (S.kit) {
    const k = await (await fetch("/api/kit")).json();
    for (const [note, pad] of Object.entries(k.notes)) I.notes.set(Number(note), pad);
    I.grooves = await (await fetch("/api/kit/grooves")).json();
    $("groove").innerHTML = Object.keys(I.grooves.patterns).map((n) => `<option>${escapeHtml(n)}</option>`).join("");
    $("groove-controls").hidden = false;
    $("groove-play").addEventListener("click", () => (I.groove ? stopGroove() : startGroove()));
    $("export-groove").addEventListener("click", exportGroove);
    $("export-groove-midi").addEventListener("click", exportGrooveMidi);
    $("drag-groove").addEventListener("dragstart", dragGroove);
    for (const id of ["groove", "tempo"]) $(id).addEventListener("change", () => grooveMidi().catch(() => {}));
    for (const b of document.querySelectorAll("button.pad")) {
      b.draggable = true;
      b.addEventListener("dragstart", (e) => dragOut(e, b.dataset.c));
    }
    for (const p of S.kit.pads) {
      if (p.category !== padKey()) {
        const m = await (await fetch(`/c/${p.category}/api/model`)).json();
        I.centres.set(p.category, m.pca.center);
      }
    }
  }
  document.addEventListener("keydown", (e) => {  // letters play pads at the velocity slider's value
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
    const i = "qwertyui".indexOf(e.key.toLowerCase());
    const pad = S.kit ? S.kit.pads[i]?.category : (i === 0 ? "" : undefined);
    if (pad !== undefined) hit(pad, +$("velocity").value, e.timeStamp);
  });
  // one pad at a time, the current one first: the server answers a pad's first visit between them
  const pads = S.kit ? S.kit.pads.map((p) => p.category) : [""];
  for (const pad of [padKey(), ...pads.filter((p) => p !== padKey())]) await refreshVoices(pad);
  initMidi();
  if (S.kit) await grooveMidi().catch((e) => status(e.message, true));
  if (window.loops) loops.initLoop();
  document.body.dataset.instrument = "1";
}

window.instrument = { I, hit, onMidi, recipeOf, velocityGain, startGroove, stopGroove, refreshVoices, dragOut, dragGroove, grooveMidi, scheduleVoices };
