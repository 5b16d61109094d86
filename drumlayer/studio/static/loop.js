// The kit view's loop: drop a drum loop, see its hits (a lane per pad, velocity as shade), hear
// the original and the loop rebuilt on the pads (A/B, in sync, looping), fit the pads to the
// loop, edit a pad and hear the rebuilt loop change, export the MIDI file and the rebuilt loop.
// The rebuilt loop is played here from the pads' voices (instrument.js), so it sounds as soon
// as the transcription is back; the pads' fitted recipes replace the pads' when they arrive.
"use strict";

const L = {
  loop: null,             // POST /api/kit/loop's answer: { token, hits, tempo_bpm, seconds, ... }
  original: null,         // its AudioBuffer
  playing: null,          // { timer, t0, cycles, src }
  ab: "b",                // which one is heard: "a" the original, "b" the rebuilt
  gains: null,            // { a, b } GainNodes
  log: [],                // scheduled rebuilt hits: { cycle, category, velocity, when, t0 }
  midi: null,             // { name, blob, url } of the loop's MIDI file
  dropped: 0, heardMs: null,  // performance.now() of the drop; ms until the rebuilt loop sounded
};

function loopGains() {
  const c = ctx();
  if (!L.gains) {
    L.gains = { a: c.createGain(), b: c.createGain() };
    L.gains.a.connect(c.destination);
    L.gains.b.connect(c.destination);
  }
  L.gains.a.gain.value = L.ab === "a" ? 1 : 0;
  L.gains.b.gain.value = L.ab === "b" ? 1 : 0;
  return L.gains;
}

function drawLoop() {
  const lp = L.loop, lanes = [...new Set(lp.hits.map((h) => h.category))];
  const rows = lanes.map((c) => {
    const pad = lp.hits.find((h) => h.category === c).pad;
    const marks = lp.hits.filter((h) => h.category === c).map((h) =>
      `<span class="hit" style="left:${(100 * h.onset_s / lp.seconds).toFixed(3)}%;opacity:${(0.15 + 0.85 * h.velocity / 127).toFixed(3)}"` +
      ` data-onset="${h.onset_s}" data-category="${escapeHtml(c)}" data-velocity="${h.velocity}" title="${h.onset_s.toFixed(3)} s, velocity ${h.velocity}"></span>`).join("");
    return `<div class="lane${pad ? "" : " unassigned"}"><span class="lane-name">${escapeHtml(c)}${pad ? "" : " (no pad)"}</span><div class="lane-hits">${marks}</div></div>`;
  });
  const beats = Math.round(lp.bars * 4), bar = lp.seconds / lp.bars;
  const ticks = Array.from({ length: beats }, (_, i) => {
    const t = lp.downbeat_s + i * bar / 4;
    return t >= 0 && t < lp.seconds ? `<span class="beat${i % 4 ? "" : " bar"}" style="left:${(100 * t / lp.seconds).toFixed(3)}%"></span>` : "";
  }).join("");
  $("loop-grid").innerHTML = `<div class="lane"><span class="lane-name"></span><div class="lane-hits beats">${ticks}</div></div>` + rows.join("");
  const un = lp.hits.filter((h) => !h.pad).length + lp.unassigned.length;
  $("loop-info").textContent = `${lp.name}: ${lp.hits.length} hits, ${lp.tempo_bpm.toFixed(2)} BPM, ${lp.bars} bar${lp.bars > 1 ? "s" : ""}` +
    (lp.swing ? `, swing ${lp.swing.toFixed(2)} of a sixteenth` : "") + (un ? `; ${un} unassigned (no pad in this kit)` : "");
}

async function dropLoop(file) {
  stopLoop();
  L.dropped = performance.now(); L.heardMs = null;
  status(`listening to ${file.name}…`);
  const fd = new FormData();
  fd.append("file", file, file.name);
  try {
    const r = await api("/api/kit/loop", { method: "POST", body: fd }, true);
    L.loop = await r.json();
    const wav = await (await api(`/api/kit/loop/${L.loop.token}/original`, {}, true)).arrayBuffer();
    L.original = await ctx().decodeAudioData(wav);
    drawLoop();
    for (const id of ["loop-play", "loop-export-midi", "loop-export-rebuilt", "loop-pads"]) $(id).disabled = false;
    addLoopGroove();
    startLoop();
    status(`${L.loop.hits.length} hits at ${L.loop.tempo_bpm.toFixed(2)} BPM: playing the loop rebuilt on the pads; fitting the pads to it…`);
    loopMidi().catch(() => {});
    await fitPads();
  } catch (e) { status(e.message, true); }
}

async function fitPads() {
  const token = L.loop.token;
  const r = await api(`/api/kit/loop/${token}/pads`, { method: "POST" }, true);
  const got = await r.json();
  if (!L.loop || L.loop.token !== token) return;  // another loop meanwhile
  for (const [c, rec] of Object.entries(got.pads)) {
    if (c === padKey()) loadRecipe(rec, { keepUndo: true });
    else S.kit.saved[c] = rec;
  }
  await Promise.all(Object.keys(got.pads).map((c) => refreshVoices(c)));
  L.fitted = got;
  document.body.dataset.loopPads = "1";
  status(`the pads are fitted to ${L.loop.name}: edit a pad and hear the loop change`);
}

function startLoop() {
  if (!L.loop) return;
  stopLoop();
  const c = ctx(), g = loopGains(), len = L.loop.seconds;
  const t0 = c.currentTime + 0.1, hits = L.loop.hits.filter((h) => h.pad && I.voices.has(h.category));
  const src = c.createBufferSource();
  src.buffer = L.original; src.loop = true;
  src.connect(g.a); src.start(t0);
  const p = { t0, cycles: 0, src, timer: null };
  const tick = () => {  // a cycle of the rebuilt loop ahead, on the original's clock
    while (p.t0 + p.cycles * len < c.currentTime + 0.3) {
      for (const h of hits) {
        const when = p.t0 + p.cycles * len + h.onset_s;
        L.log.push({ cycle: p.cycles, category: h.category, velocity: h.velocity, when, t0: p.t0, onset_s: h.onset_s });
        startVoice(h.category, h.velocity, when, g.b);
      }
      p.cycles += 1;
    }
  };
  tick();
  p.timer = setInterval(tick, 50);
  L.playing = p;
  if (L.heardMs === null) L.heardMs = performance.now() - L.dropped + 100;
  $("loop-play").textContent = "stop";
}

function stopLoop() {
  if (!L.playing) return;
  clearInterval(L.playing.timer);
  L.playing.src.stop();
  for (const list of I.ringing.values()) for (const { src } of list) src.stop();
  L.playing = null;
  $("loop-play").textContent = "play A/B";
}

async function loopMidi() {
  if (L.midi && L.midi.token === L.loop.token) return L.midi;
  const r = await api(`/api/kit/loop/${L.loop.token}/groove.mid`, {}, true);
  const blob = await r.blob();
  const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] || "loop_groove.mid";
  if (L.midi) URL.revokeObjectURL(L.midi.url);
  L.midi = { token: L.loop.token, name, blob, url: URL.createObjectURL(blob) };
  return L.midi;
}

function padsNow() {  // every pad's recipe as the kit export takes them
  S.kit.saved[S.kit.current] = recipe();
  const pads = {};
  for (const p of S.kit.pads) pads[p.category] = recipeOf(p.category);
  return pads;
}

async function exportRebuilt() {
  status("rendering the rebuilt loop…");
  try {
    const r = await api(`/api/kit/loop/${L.loop.token}/rebuilt`, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pads: padsNow(), velocity_layers: layerCount(), round_robin: +$("round-robin").value, sample_rate: 48000 }) }, true);
    const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] || "rebuilt.wav";
    download(await r.blob(), name);
    status(`exported ${name}`);
  } catch (e) { status(e.message, true); }
}

function addLoopGroove() {  // the loop's own pattern in the groove player, beside the built-in ones
  let o = $("groove").querySelector("option[value='loop']");
  if (!o) { o = document.createElement("option"); o.value = "loop"; $("groove").prepend(o); }
  o.textContent = `the loop: ${L.loop.name}`;
}

function loopGrooveHits(tempo) {  // [{ t (s), pad, velocity }] and the cycle (s) of the loop at tempo
  const k = L.loop.tempo_bpm / tempo;
  return { bar: L.loop.seconds * k, hits: L.loop.hits.filter((h) => h.pad && I.voices.has(h.category)).map((h) => ({ t: h.onset_s * k, pad: h.category, velocity: h.velocity })) };
}

function initLoop() {
  if (!S.kit) return;
  $("loop").hidden = false;
  const drop = $("loop-drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) dropLoop(f);
  });
  $("loop-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) dropLoop(f); });
  $("loop-play").addEventListener("click", () => (L.playing ? stopLoop() : startLoop()));
  for (const r of document.querySelectorAll("input[name='loop-ab']")) r.addEventListener("change", (e) => { L.ab = e.target.value; loopGains(); });
  $("loop-pads").addEventListener("click", () => fitPads().catch((e) => status(e.message, true)));
  $("loop-export-midi").addEventListener("click", async () => {
    try { const m = await loopMidi(); download(m.blob, m.name); status(`exported ${m.name}`); } catch (e) { status(e.message, true); }
  });
  $("loop-drag-midi").addEventListener("dragstart", (e) => {
    if (!L.midi || !L.loop || L.midi.token !== L.loop.token) { e.preventDefault(); status("drop a loop first"); return; }
    e.dataTransfer.setData("DownloadURL", `audio/midi:${L.midi.name}:${L.midi.url}`);
    e.dataTransfer.setData("text/uri-list", L.midi.url);
    e.dataTransfer.effectAllowed = "copy";
  });
  $("loop-export-rebuilt").addEventListener("click", exportRebuilt);
}

window.loops = { L, dropLoop, startLoop, stopLoop, fitPads, loopGrooveHits, initLoop };
