"""Loops (drumlayer/loops): each stage against loops rendered here from real recordings (a
Hydrogen kit's one-shots) with known hits: onsets, categories, velocities, tempo; the MIDI file
and hits.csv; the rebuilt loop's timing; the command's bad inputs."""

import csv
import io
import os

import mido
import numpy as np
import pytest
import soundfile as sf

from drumlayer.data import audio, discovery
from drumlayer.kit import groove, midi, velocity
from drumlayer.loops import analyze, command, rebuild
from drumlayer.loops import groundtruth as gt
from drumlayer.loops import transcribe as tr

from conftest import real_kits

R = tr.RATE
PLAYED = ("-Hard.", "-Med.")  # the layers the loops are played with; the others are templates
KITS = ("GMRockKit", "TR808EmulationKit")


@pytest.fixture(scope="module")
def kit():
    """(voices {category: one-shots at 22.05 kHz} of GMRockKit's Hard and Med layers (closed
    hat: not the pedal), Templates of every other one-shot of the real kits)."""
    found, _ = discovery.discover([real_kits()])
    shots, temps, cats = {}, [], []
    for c in found:  # the two kits of Debian's hydrogen-data, wherever more kits lie beside
        if c.kit not in KITS or c.category in ("other", "clap", "rim") or "Pedal" in c.file:
            continue
        x, rate = audio.read_audio(c.file, max_seconds=1.0)
        x = audio.resample(x[:, 0], rate, R)
        if c.kit == "GMRockKit" and any(p in c.file for p in PLAYED):
            shots.setdefault(c.category, []).append(x)
        else:
            temps.append(np.pad(x, (0, max(0, R - len(x))))[:R])
            cats.append(c.category)
    assert {"kick", "snare", "closed-hat", "open-hat"} <= set(shots)
    return gt.voices(shots), tr.Templates(np.stack(temps), tuple(cats))


ROCK = {c: n for c, n in gt.PATTERNS["rock"].items() if c != "cymbal"}


def loop(kit, pattern=ROCK, tempo=96.0, bars=2, swing=0.0, jitter=0.0, seed=0):
    voices, _ = kit
    hits = gt.hits(pattern, tempo, bars, swing, jitter, seed)
    return gt.render(hits, voices, bars * 240.0 / tempo, R), hits


def onset_errors(found_s, truth_s):
    return np.array([np.min(np.abs(np.asarray(found_s) - t)) for t in truth_s])


@pytest.mark.parametrize("tempo,swing,jitter", [(96.0, 0.0, 0.0), (84.0, 0.25, 0.004),
                                                (131.0, 0.0, 0.004)])
def test_onsets_land_on_the_hits_with_swing_and_human_timing(kit, tempo, swing, jitter):
    x, hits = loop(kit, tempo=tempo, swing=swing, jitter=jitter, seed=int(tempo))
    found = tr.onsets(x) / R
    truth = gt.onsets(hits)
    assert len(found) == len(truth)
    assert np.max(onset_errors(found, truth)) < 0.005  # within 5 ms, every one
    assert gt.f1(list(found), truth, 0.01) == 1.0


def test_a_kick_and_a_hat_at_one_instant_are_two_hits_and_the_categories_are_the_drums(kit):
    x, hits = loop(kit, tempo=100.0)
    found, grid, _ = tr.transcribe(x, kit[1])
    at0 = {h.category for h in found if h.onset_s < 0.02}
    assert {"kick", "closed-hat"} <= at0  # step 0 of the rock beat: kick and hat together
    for c in ("kick", "snare"):
        f = [h.onset_s for h in found if h.category == c]
        t = [t for t, cc, _ in hits if cc == c]
        assert gt.f1(f, t, 0.025) >= 0.9, c
    hats = [h.onset_s for h in found if h.category in ("closed-hat", "open-hat")]
    assert gt.f1(hats, [t for t, c, _ in hits if c == "closed-hat"], 0.025) >= 0.8


def test_a_softer_hat_under_a_loud_kick_is_a_hit_too(kit):
    """The hat holds little of the mix's energy: found by what the mix loses without it. (A
    hat 10 dB or more below the kick is missed: docs/loops.md.)"""
    voices, templates = kit
    hits = [(0.1 + 0.6 * i, "kick", 127) for i in range(4)]
    hits += [(0.1 + 0.6 * i, "closed-hat", v) for i, v in enumerate((110, 118, 110, 118))]
    x = gt.render(hits, {c: voices[c] for c in ("kick", "closed-hat")}, 2.6, R)
    found = tr.transcribe(x, templates)[0]
    for c in ("kick", "closed-hat"):
        assert len([h for h in found if h.category == c]) == 4, (c, found)


def test_velocities_follow_the_played_levels(kit):
    voices, templates = kit
    # one kick, at velocities across the range, far apart
    hits = [(0.5 * i, "kick", v) for i, v in enumerate((127, 100, 70, 40, 110, 20))]
    x = gt.render(hits, {"kick": voices["kick"]}, 3.0, R)
    found = [h for h in tr.transcribe(x, templates)[0] if h.category == "kick"]
    assert len(found) == 6
    got = [h.velocity for h in sorted(found, key=lambda h: h.onset_s)]
    assert got[0] == 127  # the loudest is 127
    # the kit's curve inverted: the same one-shot 24 dB down is velocity 1
    assert np.max(np.abs(np.array(got) - [v for _, _, v in hits])) <= 6


@pytest.mark.parametrize("tempo", [84.0, 97.0, 126.0])
def test_the_tempo_and_bars_of_one_pattern_at_other_tempi(kit, tempo):
    x, hits = loop(kit, gt.PATTERNS["breakbeat"], tempo=tempo, bars=2, jitter=0.003)
    found, grid, _ = tr.transcribe(x, kit[1])
    assert grid.tempo_bpm == pytest.approx(tempo, rel=0.002)
    assert grid.bars == 2
    # a loop cut on its bars: the tempo its length says, to the rounding of its last sample
    assert grid.tempo_bpm == pytest.approx(2 * 240.0 * R / len(x), rel=1e-9)
    assert abs(grid.downbeat_s) < 0.02  # the loop starts on its first bar


def test_silence_has_no_onsets_and_a_single_hit_one():
    assert len(tr.onsets(np.zeros(R))) == 0
    x = np.zeros(R)
    y = np.random.default_rng(0).standard_normal(2000) * np.exp(-np.arange(2000) / 300)
    x[5000:7000] = y
    found = tr.onsets(x)
    assert len(found) == 1 and abs(found[0] - 5000) <= 22  # 1 ms


def test_the_rebuilt_loop_plays_each_hit_on_its_own_sample():
    """Pads of clicks: the rebuilt loop's clicks sit on the hits' samples (within 1 ms)."""
    rate = 44100
    click = np.zeros((2, 1, 100), np.float32)
    click[:, :, 0] = 1.0
    pads = {c: {"layers": velocity.ranges(2), "audio": click, "sample_rate": rate}
            for c in ("kick", "snare")}
    hits = [tr.Hit(0.1234567, "kick", 100, 1.0), tr.Hit(0.61, "snare", 60, 1.0),
            tr.Hit(1.3333, "kick", 127, 1.0)]
    y = rebuild.rebuild(hits, pads, {"kick": 0.5, "snare": 0.5}, 2 * rate, rate)
    at = np.flatnonzero(np.abs(y) > 1e-4)
    want = [h.onset_s * rate for h in hits]
    assert len(at) == 3 and np.max(np.abs(at - np.array(want))) <= 0.001 * rate


def test_hits_csv_and_the_midi_file_say_the_same_hits(kit):
    x, _ = loop(kit, gt.PATTERNS["four-on-the-floor"], tempo=124.0)
    found, grid, _ = tr.transcribe(x, kit[1])
    pads = {"kick": None, "snare": None, "closed-hat": None, "open-hat": None}
    rows = list(csv.DictReader(io.StringIO(analyze.hits_csv(found, pads))))
    assert list(rows[0]) == ["onset_s", "category", "velocity", "gm_note", "pad"]
    assert [float(r["onset_s"]) for r in rows] == sorted(float(r["onset_s"]) for r in rows)
    data = analyze.groove_mid(found, pads, grid, len(x) / R, "t")
    f = mido.MidiFile(file=io.BytesIO(data))
    tempo = next(m.tempo for m in f.tracks[0] if m.type == "set_tempo")
    assert 60e6 / tempo == pytest.approx(grid.tempo_bpm, rel=1e-5)
    t, notes = 0.0, []
    for m in f:
        t += m.time
        if m.type == "note_on" and m.velocity:
            assert m.channel == 9
            notes.append((t, m.note, m.velocity))
    want = [(float(r["onset_s"]), int(r["gm_note"]), int(r["velocity"])) for r in rows
            if r["pad"]]
    assert [(n, v) for _, n, v in sorted(notes)] == [(n, v) for _, n, v in sorted(want)]
    # as played, not snapped: each note within a tick of its onset
    tick = 60.0 / grid.tempo_bpm / midi.PPQ
    assert np.max(np.abs(np.array(sorted(notes))[:, 0] - np.array(sorted(want))[:, 0])) <= tick


def test_groove_play_keeps_the_built_in_grooves():
    """groove.render is groove.play on the pattern's samples (the loops share it)."""
    a = np.zeros((1, 1, 10), np.float32)
    a[0, 0, 0] = 1.0
    x = groove.render("rock", 120.0, {"kick": ([(1, 127)], a)}, 48000)
    assert np.flatnonzero(x).tolist() == [0, 48000, 60000]  # steps 0, 8, 10 at 6000 a step


def test_the_command_rejects_what_it_cannot_analyse_and_goes_on(tmp_path, monkeypatch, kit):
    """Silence, too long, unreadable, no drums: each in rejected.csv with why; a loop is
    analysed beside them (the kit's models replaced by the templates: the command's files)."""
    voices, templates = kit
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "silence.wav", np.zeros(22050), 22050)
    sf.write(src / "long.wav", np.zeros(22050 * 5), 22050)
    (src / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    t = np.arange(44100) / 44100
    sf.write(src / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 44100)

    class Kit:  # the templates, and no studio: nothing here is playable
        studios = {"cowbell": None}
        categoriser = None  # the decomposition says which drums

    Kit.templates = templates
    monkeypatch.setattr(analyze.LoopKit, "open", lambda workdir: Kit())
    res = command.run("unused", [str(src)], str(tmp_path / "out"), max_seconds=3.0)
    assert res["written"] == 0
    rows = dict(list(csv.reader(open(tmp_path / "out" / "rejected.csv")))[1:])
    assert rows[str(src / "silence.wav")] == "silence: no hits"
    assert "longer than" in rows[str(src / "long.wav")] or "3" in rows[str(src / "long.wav")]
    assert str(src / "broken.wav") in rows
    assert "no drums the kit's models recognise" in rows[str(src / "tone.wav")]
    assert os.path.exists(tmp_path / "out" / "summary.csv")


@pytest.fixture(scope="module")
def categoriser(kit):
    """A small categoriser trained on the templates' one-shots (never the played layers)."""
    from drumlayer.loops import categorise

    _, templates = kit
    pool: dict = {}
    for a, c in zip(templates.audio, templates.categories, strict=True):
        pool.setdefault(c, []).append(np.asarray(a, np.float64))
    return categorise.for_clips(pool, n=3000, steps=1500)


def test_the_patch_is_the_mel_bands_of_the_frames_around_the_onset_in_db_below_the_loudest():
    """A 1 kHz tone from the onset on, silence before: the frames before the onset sit on the
    floor, the loudest band after it is 0 dB and holds 1 kHz (librosa's mel bands: an
    independent reference for the band's edges)."""
    import librosa

    from drumlayer.loops import categorise

    at = 8000
    x = np.zeros(R)
    x[at:] = np.sin(2 * np.pi * 1000.0 * np.arange(R - at) / R)
    p = categorise.patch(x, at, tr.filterbank()).reshape(categorise.FRAMES, tr.BANDS)
    assert p.shape == (14, 40)
    # frame 0 ends 2 * HOP - FRAME / 2 + FRAME = 1024 samples ... before the onset: silent
    assert np.all(p[0] == categorise.FLOOR_DB)
    assert p[categorise.BEFORE:].max() == 0.0
    band = int(np.argmax(p[-1]))
    edges = librosa.mel_frequencies(tr.BANDS + 2, fmin=0.0, fmax=R / 2, htk=True)
    assert edges[band] < 1000.0 < edges[band + 2]
    # the level of the hit does not matter
    q = categorise.patch(0.1 * x, at, tr.filterbank()).reshape(categorise.FRAMES, tr.BANDS)
    heard = p > -50.0  # (far below, the power's floor of 1e-10 shows)
    assert heard[categorise.BEFORE:].sum() > 50
    assert np.allclose(q[heard], p[heard], atol=1e-3)


def test_the_mixtures_are_labelled_with_the_drums_they_hold():
    """Each category a tone burst of its own (a Gaussian 2 ms wide: no click spreads it over
    the bands) that dies within a few ms: in the frame on a mixture's
    onset, the band of every labelled category sounds (at most 22 dB below the loudest) and
    the band of every other is silent (earlier hits, 30 ms or more before, have died; the next
    comes 30 ms or more after); an onset holds 1 to 3 drums."""
    from drumlayer.loops import categorise

    tones = {"kick": 150.0, "snare": 1500.0, "closed-hat": 7000.0}
    t = np.arange(int(0.25 * R)) / R
    pool = {c: [np.sin(2 * np.pi * f * t) * np.exp(-((t - 0.005) / 0.002) ** 2)]
            for c, f in tones.items()}
    xs, ys, cats = categorise.mixtures(pool, 300, seed=1)
    assert cats == tuple(tones) and xs.shape == (300, categorise.FRAMES * tr.BANDS)
    assert set(ys.sum(axis=1)) == {1.0, 2.0, 3.0}
    fb = tr.filterbank()
    freqs = np.fft.rfftfreq(categorise.FRAME, 1.0 / R)
    bands = {c: int(np.argmax(fb[:, np.argmin(np.abs(freqs - f))])) for c, f in tones.items()}
    on = xs.reshape(300, categorise.FRAMES, tr.BANDS)[:, categorise.BEFORE]
    for j, c in enumerate(cats):
        assert np.all(on[ys[:, j] == 1, bands[c]] > -30.0), c
        assert np.all(on[ys[:, j] == 0, bands[c]] < -30.0), c


def test_the_categoriser_hears_each_drum_of_a_loop_the_kit_never_played(kit, categoriser):
    """Trained on the templates alone, it hears the played layers' kick, snare and hats
    (kick and hat at one instant: both), and the velocities follow the played levels."""
    x, hits = loop(kit, tempo=100.0)
    found, grid, _ = tr.transcribe(x, kit[1], categoriser=categoriser)
    assert {"kick", "closed-hat"} <= {h.category for h in found if h.onset_s < 0.02}
    for c in ("kick", "snare"):
        f = [h.onset_s for h in found if h.category == c]
        assert gt.f1(f, [t for t, cc, _ in hits if cc == c], 0.025) >= 0.9, c
    hats = [h.onset_s for h in found if h.category in ("closed-hat", "open-hat")]
    assert gt.f1(hats, [t for t, c, _ in hits if c == "closed-hat"], 0.025) >= 0.8
    kicks = [(t, v) for t, c, v in hits if c == "kick"]
    got = {round(h.onset_s, 2): h.velocity for h in found if h.category == "kick"}
    pairs = [(v, got[round(t, 2)]) for t, v in kicks if round(t, 2) in got]
    assert len(pairs) >= len(kicks) - 1 and max(g for _, g in pairs) == 127


def test_a_categoriser_is_trained_once_for_a_corpus_and_read_back(tmp_path, monkeypatch,
                                                                   categoriser):
    """Kept under the workdir with its corpus's fingerprint: the second call reads it (the
    same weights, no training); another fingerprint or version trains again."""
    from drumlayer.loops import categorise

    trained = []

    def fit(pool, n, steps):
        trained.append(n)
        return categoriser

    monkeypatch.setattr(categorise, "for_clips", fit)
    a = categorise.for_workdir(str(tmp_path), lambda: {}, "corpus-1", 10, 1)
    b = categorise.for_workdir(str(tmp_path), lambda: {}, "corpus-1", 10, 1)
    assert trained == [10]
    assert b.categories == a.categories and np.array_equal(b.w1, a.w1)
    categorise.for_workdir(str(tmp_path), lambda: {}, "corpus-2", 10, 1)
    monkeypatch.setattr(categorise, "VERSION", categorise.VERSION + 1)
    categorise.for_workdir(str(tmp_path), lambda: {}, "corpus-2", 10, 1)
    assert trained == [10, 10, 10]


def test_a_drum_keeps_its_velocity_whether_another_sounds_with_it_or_not(kit, categoriser):
    """The same kick at one velocity, alone and under a hat: its levels are read in one unit
    (every onset's mix whitened alike), so its velocities stay close (the hat takes a little of
    the kick's energy, or gives it some)."""
    voices, templates = kit
    hits = [(0.1 + 0.6 * i, "kick", 120) for i in range(6)]
    hits += [(0.1 + 0.6 * i, "closed-hat", 110) for i in (1, 3, 5)]
    x = gt.render(hits, {c: voices[c] for c in ("kick", "closed-hat")}, 3.8, R)
    found, _, _ = tr.transcribe(x, templates, categoriser=categoriser)
    kicks = [h.velocity for h in sorted(found, key=lambda h: h.onset_s) if h.category == "kick"]
    assert len(kicks) == 6
    # (each onset's mix whitened by its own templates read the lone kicks 15 below the loudest
    # and the six 19 apart: 112, 127, 112, 108, 112, 127)
    assert max(kicks) - min(kicks) <= 14 and min(kicks[0::2]) >= 118, kicks


def test_a_kit_workdir_without_a_corpus_has_no_categoriser(tmp_path):
    """(The transcription then falls back to the decomposition.)"""
    from drumlayer.workdir import Workdir

    assert analyze.categoriser(Workdir(str(tmp_path))) is None
