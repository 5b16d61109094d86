import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from drumlayer.data import audio, augment, corpus, dataset, npy_rows, split
from drumlayer.data import procedural as procedural_lib
from drumlayer.workdir import CorpusDir

from conftest import real_kits
from kitgen import hit, write_hydrogen_kit

SR = audio.SAMPLE_RATE


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def bad_folder(tmp_path):
    """A folder of one-shots where many files are broken in the ways real folders are."""
    d = tmp_path / "bad"
    d.mkdir()
    good = {
        "snare 6ch.wav": (np.repeat(hit(48000, seed=1)[:, None], 6, axis=1), 48000, "PCM_16"),
        "snare 8bit.wav": (hit(11025, seed=2), 11025, "PCM_U8"),
        "snare 192k.wav": (hit(192000, seed=3), 192000, "PCM_24"),
        "snare ünïcødé 🥁.wav": (hit(44100, seed=4), 44100, "PCM_16"),
        "snare float.wav": (hit(44100, seed=5), 44100, "FLOAT"),
        "snare.flac": (hit(44100, seed=6), 44100, "PCM_16"),
        "snare.ogg": (hit(44100, seed=7), 44100, "VORBIS"),
    }
    for name, (x, rate, subtype) in good.items():
        sf.write(d / name, x, rate, subtype=subtype)
    with sf.SoundFile(d / "snare multiminute.wav", "w", 44100, 1, "PCM_16") as f:
        for _ in range(18):  # 3 minutes
            f.write(0.5 * np.random.default_rng(0).uniform(-1, 1, 441000).astype(np.float32))
    sf.write(d / "snare silent.wav", np.zeros(44100, np.float32), 44100)
    nan = hit(44100, seed=8)
    nan[100:200] = np.nan
    sf.write(d / "snare nan.wav", nan, 44100, subtype="FLOAT")
    (d / "snare empty.wav").write_bytes(b"")
    (d / "snare notaudio.wav").write_text("<html>not a drum</html>" * 20)
    whole = (d / "snare 6ch.wav").read_bytes()
    (d / "snare truncated.wav").write_bytes(whole[:30])  # cut inside the header
    os.symlink(d / "gone.wav", d / "snare dangling.wav")  # unreadable: its target is missing
    os.symlink(d / "snare selfloop.wav", d / "snare selfloop.wav")
    os.symlink(d, d / "loop")  # a folder loop
    (d / "snare gus.pat").write_bytes(b"GF1PATCH110\0ID#000002\0" + bytes(200))
    (d / "snare headerless.raw").write_bytes(np.int16(hit(44100, seed=9) * 3e4).tobytes())
    (d / "notes.txt").write_text("kit notes")
    bad = {"snare multiminute.wav": "too long", "snare silent.wav": "silent",
           "snare nan.wav": "non-finite", "snare empty.wav": "empty",
           "snare notaudio.wav": "unreadable", "snare truncated.wav": "unreadable",
           "snare dangling.wav": "cannot open", "snare selfloop.wav": "symlink loop"}
    return d, set(good), bad


SKIPPED = {"snare gus.pat": "skipped: a GUS patch", "snare headerless.raw": "skipped: headerless",
           "notes.txt": "skipped: not audio or a kit description (.txt)"}


def test_bad_input_folder(bad_folder, tmp_path, caplog):
    d, good, bad = bad_folder
    out = tmp_path / "out"
    caplog.set_level("INFO", logger="drumlayer.data.corpus")
    meta = corpus.build([str(d)], str(out), corpus.CorpusOptions(workers=2), progress=False)
    manifest = rows(out / "manifest.csv")
    assert {os.path.basename(r["file"]) for r in manifest} == good
    rejected = {os.path.basename(r["file"]): r["reason"] for r in rows(out / "rejected.csv")}
    assert set(rejected) == set(bad) | set(SKIPPED)
    for name, reason in {**bad, **SKIPPED}.items():
        assert reason in rejected[name], (name, rejected[name])
    # one summary line per reason, pointing at the list
    summaries = [r.getMessage() for r in caplog.records if "corpus: skipped" in r.getMessage()]
    assert len(summaries) == 3 and all("rejected.csv" in m for m in summaries)
    assert meta["skipped"] == len(SKIPPED)
    clips = np.load(out / "clips.npy", mmap_mode="r")
    assert clips.shape == (len(good), SR)
    np.testing.assert_allclose(np.abs(clips).max(axis=1), 1.0, atol=1e-6)
    assert meta["clips"] == len(good) and meta["rejected"] == len(bad)


def test_cli_summary_and_zero_clips_exit_code(bad_folder, tmp_path):
    d, good, _ = bad_folder
    cmd = [sys.executable, "-m", "drumlayer.data.corpus", f"--roots={d}", "--category=snare",
           f"--out={tmp_path / 'o1'}", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith(
        f"{len(good)} clips, 8 rejected, 0 duplicates, 3 other files skipped")
    # the same folder holds no kicks: a clear error and a non-zero exit
    cmd[4] = "--category=kick"
    cmd[5] = f"--out={tmp_path / 'o2'}"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "no usable kick clips" in r.stderr and "fetch_open_kits" in r.stderr


def test_exact_duplicates_dropped_and_near_duplicates_grouped(tmp_path):
    a, b = tmp_path / "kitA", tmp_path / "kitB"
    a.mkdir()
    b.mkdir()
    x = hit(44100, seed=1)
    sf.write(a / "snare 1.wav", x, 44100, subtype="FLOAT")
    sf.write(b / "snare copy.wav", x, 44100, subtype="FLOAT")  # the same sound in another kit
    sf.write(b / "snare 2.wav", 0.7 * x + 0.01 * hit(44100, seed=9), 44100, subtype="FLOAT")
    sf.write(b / "snare 3.wav", hit(44100, freq=330, seed=3), 44100)
    # the same as snare 1 for its first 0.27 s, then not: no exact duplicate (a hash of a
    # clip's start alone would call it one)
    tail = x.copy()
    tail[12000:] += 0.02 * np.random.default_rng(5).standard_normal(len(x) - 12000)
    sf.write(a / "snare tail.wav", tail, 44100, subtype="FLOAT")
    out = tmp_path / "out"
    meta = corpus.build([str(tmp_path)], str(out), corpus.CorpusOptions(workers=1),
                        progress=False)
    assert meta["duplicates"] == 1
    m = {os.path.basename(r["file"]): r for r in rows(out / "manifest.csv")}
    assert set(m) == {"snare 1.wav", "snare 2.wav", "snare 3.wav", "snare tail.wav"}
    clips = np.load(out / "clips.npy")
    first, other = (clips[int(m[f]["id"])] for f in ("snare 1.wav", "snare tail.wav"))
    assert np.array_equal(first[:4096], other[:4096]) and not np.array_equal(first, other)
    assert m["snare 1.wav"]["group"] == m["snare 2.wav"]["group"] != m["snare 3.wav"]["group"]
    # near-duplicates across kits pull both kits to the same side of the split
    assert m["snare 1.wav"]["split"] == m["snare 2.wav"]["split"] == m["snare 3.wav"]["split"]


def _never_shared(key, splits) -> bool:
    side = {}
    return all(side.setdefault(k, sp) == sp for k, sp in zip(key, splits, strict=True))


def test_split_keeps_whole_kits_and_groups_together_when_kits_allow():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 300, 400)
    kits_ = [f"kit{g % 40}" for g in groups]  # each group inside one kit
    s, by = split.split_ids(kits_, groups, (0.8, 0.1, 0.1), seed=3)
    assert by == "kit" and _never_shared(kits_, s) and _never_shared(list(groups), s)
    assert split.split_error(s, (0.8, 0.1, 0.1)) <= split.SPLIT_TOLERANCE
    assert np.array_equal(s, split.split_ids(kits_, groups, (0.8, 0.1, 0.1), seed=3)[0])
    assert not np.array_equal(s, split.split_ids(kits_, groups, (0.8, 0.1, 0.1), seed=4)[0])


@pytest.mark.parametrize("kit_sizes", [[35], [20, 6, 4, 4], [30, 2]])
def test_split_falls_back_to_groups_when_whole_kits_cannot_come_near(kit_sizes):
    """One folder is one kit; a few uneven kits cannot be dealt near 80/10/10 either."""
    kits_ = [f"kit{i}" for i, n in enumerate(kit_sizes) for _ in range(n)]
    groups = np.arange(len(kits_)) // 2  # velocity pairs
    s, by = split.split_ids(kits_, groups, (0.8, 0.1, 0.1), seed=0)
    have = np.bincount(s, minlength=3)
    assert by == "group" and _never_shared(list(groups), s)
    assert have[1] >= 2 and have[2] >= 2 and abs(have[0] - 0.8 * len(kits_)) <= 2, have


def test_split_falls_back_to_groups_when_a_category_would_get_too_few_test_clips():
    """A small library split by kits (a kit job's corpus): 27 kicks, most in the kit that holds
    most snares, would leave the kicks 1 test clip and every kick evaluation skipped. With the
    categories given, groups are dealt within each category, and the kicks get enough."""
    kits_, cats = [], []
    for kit, kicks, snares in (("big", 23, 40), ("k2", 3, 5), ("k3", 1, 5),
                               *((f"s{i}", 0, 8) for i in range(10))):
        kits_ += [kit] * (kicks + snares)
        cats += ["kick"] * kicks + ["snare"] * snares
    groups = np.arange(len(kits_))
    fractions = (0.8, 0.1, 0.1)
    by_kit, by = split.split_ids(kits_, groups, fractions, seed=0)
    assert by == "kit" and split.short_categories(by_kit, cats, fractions) == {"kick"}
    s, by = split.split_ids(kits_, groups, fractions, seed=0, categories=cats)
    assert by == "group" and not split.short_categories(s, cats, fractions)
    for c in ("kick", "snare"):
        have = np.bincount(s[np.asarray(cats) == c], minlength=3)
        assert have[1] >= split.MIN_TEST_CLIPS and have[2] >= split.MIN_TEST_CLIPS, (c, have)
    # a category too small to give 2 clips to both at 10% each (under 20 clips) asks nothing
    assert not split.short_categories(np.zeros(19, np.int64), ["clap"] * 19, fractions)


def test_split_shares_come_close_to_targets():
    units = np.repeat(np.arange(200), 5)
    s = split.split_units(units, (0.8, 0.1, 0.1), seed=0)
    shares = np.bincount(s, minlength=3) / len(s)
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.02)


def test_kits_and_manifest_columns(tmp_path):
    write_hydrogen_kit(str(tmp_path / "k1"), name="K1", licence="CC-BY 3.0")
    out = tmp_path / "out"
    corpus.build([str(tmp_path)], str(out), corpus.CorpusOptions(category="all", workers=1),
                 progress=False)
    m = rows(out / "manifest.csv")
    assert list(m[0]) == list(dataset.MANIFEST_FIELDS)
    cats = sorted(r["category"] for r in m)
    assert cats == ["kick", "other", "rim", "snare", "snare"]
    assert all(r["licence"] == "CC-BY 3.0" and r["source_format"] == "hydrogen" for r in m)
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["fingerprint"] == corpus.fingerprint(  # its own output is not an input
        [str(tmp_path)], corpus.CorpusOptions(category="all", workers=1), str(out))
    assert meta["fingerprint"] != corpus.fingerprint([str(tmp_path)],
                                                     corpus.CorpusOptions(category="kick"))


def test_shrink_npy(tmp_path):
    p = str(tmp_path / "a.npy")
    mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=(1000, 7))
    mm[:] = np.arange(7000, dtype=np.float32).reshape(1000, 7)
    del mm
    npy_rows.shrink_npy(p, 9)
    a = np.load(p)
    assert a.shape == (9, 7)
    np.testing.assert_array_equal(a, np.arange(63, dtype=np.float32).reshape(9, 7))
    assert os.path.getsize(p) == 128 + 9 * 7 * 4
    np.testing.assert_array_equal(npy_rows.read_rows(p, 2, 5), a[2:5])


def test_row_writer(tmp_path):
    p = str(tmp_path / "w.npy")
    with npy_rows.RowWriter(p, (3,), np.float32, max_rows=100_000) as w:
        for i in range(5):
            assert w.append(np.full(3, i)) == i
    a = np.load(p)
    assert a.shape == (5, 3) and a[4, 0] == 4
    with pytest.raises(ValueError, match="shape"):
        npy_rows.RowWriter(str(tmp_path / "x.npy"), (3,), np.float32, 2).append(np.zeros(4))


def test_procedural_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "default_roots", lambda: [])
    with pytest.warns(UserWarning, match="fetch_open_kits"):
        meta = corpus.build(None, str(tmp_path), corpus.CorpusOptions(procedural=20))
    assert meta["procedural"] and meta["clips"] == 20
    clips = np.load(tmp_path / "clips.npy")
    np.testing.assert_array_equal(clips, procedural_lib.procedural_snares(20, SR, seed=0))
    assert not np.allclose(clips[0], clips[1])  # diverse, not one sound repeated


def test_augment_is_seeded_and_changes_the_sound():
    clips = procedural_lib.procedural_snares(3, SR, seed=1)
    a, parents = augment.augment(clips, 4, seed=7)
    b, _ = augment.augment(clips, 4, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, SR) and list(parents) == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_allclose(np.abs(a).max(axis=1), 1.0, atol=1e-6)
    assert np.all(np.isfinite(a))
    for i in range(12):
        corr = np.dot(a[i], clips[parents[i]]) / np.linalg.norm(a[i]) / np.linalg.norm(
            clips[parents[i]])
        assert corr < 0.999  # a variant, not a copy
    # and the variants of one clip differ from each other (not one edit repeated), as the
    # augmentation stage makes them (`variant`) and as `augment` does
    for p in range(3):
        for v in (a[parents == p], np.stack([augment.variant(clips[p], 7, p, j)
                                             for j in range(4)])):
            c = np.corrcoef(v)[np.triu_indices(len(v), 1)]
            assert c.max() < 0.999, c


def test_augment_edits():
    x = procedural_lib.procedural_snares(1, SR, seed=2)[0].astype(np.float64)
    # an octave up doubles every frequency and halves the time the sound takes to decay
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 440.0 * t) * np.exp(-t / 0.1)
    freqs = np.fft.rfftfreq(SR, 1 / SR)

    def peak_hz(y):
        return freqs[np.argmax(np.abs(np.fft.rfft(y)))]

    def time_centroid(y):
        return np.sum(t * y**2) / np.sum(y**2)

    for semitones, ratio in ((12.0, 2.0), (-12.0, 0.5)):
        shifted = augment.pitch(tone, semitones)
        assert peak_hz(shifted) == pytest.approx(440.0 * ratio, abs=3.0)
        assert time_centroid(shifted) == pytest.approx(time_centroid(tone) / ratio, rel=0.05)
    # decay removes energy from the tail, not the head
    d = augment.decay(x, 0.05)
    assert np.sum(d[SR // 4 :] ** 2) < 0.01 * np.sum(x[SR // 4 :] ** 2)
    assert d[0] == x[0]
    # tilt up brightens: more energy above 5 kHz relative to below
    spec = lambda y: np.abs(np.fft.rfft(y))  # noqa: E731
    hi = slice(5000, None)
    bright = augment.tilt(x, 6.0)
    assert spec(bright)[hi].sum() / spec(bright).sum() > spec(x)[hi].sum() / spec(x).sum()


OPEN_KITS = [p for p in ("/usr/share/hydrogen/data/drumkits",
                         os.path.join(corpus.FETCH_DIR, "usr/share/hydrogen/data/drumkits"))
             if os.path.isdir(p)]


@pytest.mark.skipif(not OPEN_KITS, reason="the open kits are not installed or fetched")
def test_open_kits_hold_real_snares(tmp_path):
    meta = corpus.build(corpus.default_roots(), str(tmp_path), corpus.CorpusOptions(),
                        progress=False)
    assert 120 <= meta["clips"] <= 200
    names = [r["instrument"].lower() for r in rows(tmp_path / "manifest.csv")]
    assert not any(w in n for n in names for w in ("roll", "rimshot", "stick", "clap"))


def test_real_hydrogen_kits_are_read_and_classified(tmp_path):
    """Real recordings (CI fetches Debian's hydrogen-data: GMRockKit and TR808EmulationKit)."""
    kits_dir = real_kits()
    meta = corpus.build([kits_dir], str(tmp_path), corpus.CorpusOptions(category="all"),
                        progress=False)
    m = rows(tmp_path / "manifest.csv")
    assert meta["clips"] >= 50 and meta["kits"] >= 2 and not meta["procedural"]
    assert "hydrogen" in {r["source_format"] for r in m}  # (loose samples beside kits: folder)
    gm = {os.path.basename(r["file"]): r["category"] for r in m if "GMRockKit" in r["file"]}
    if gm:  # Debian's hydrogen-data: its kits state their licence (GPL)
        assert all(r["licence"] for r in m if "GMRockKit" in r["file"])
        want = {"Snare-Hard.wav": "snare", "SnareRimshot-Hard.wav": "rim",
                "SideStick-Hard.wav": "rim", "Kick-Hard.wav": "kick",
                "HatClosed-Hard.wav": "closed-hat", "Tom1-Hard.wav": "tom",
                "HandClap.wav": "clap", "Crash-Hard.wav": "cymbal"}
        assert {f: gm.get(f) for f in want} == want
    # velocity layers of one instrument share a near-duplicate group, hence a split
    by_inst = {}
    for r in m:
        by_inst.setdefault((r["kit"], r["instrument"]), set()).add((r["group"], r["split"]))
    assert all(len(v) == 1 for v in by_inst.values())


def test_near_duplicate_groups_blocked_equals_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    sig = rng.standard_normal((23, 16)).astype(np.float32)
    sig[7] = sig[2] + 0.05 * rng.standard_normal(16)  # planted near-duplicates
    sig[20] = sig[7] + 0.05 * rng.standard_normal(16)
    sig[11] = sig[19]
    sig /= np.linalg.norm(sig, axis=1, keepdims=True)
    keys = [str(i) for i in range(23)]
    keys[5] = keys[13] = "same instrument"
    path = str(tmp_path / "sig.npy")
    np.save(path, sig.astype(np.float16))
    for arg, block in ((sig, 3), (path, 4), (sig, 100)):
        g = split.near_duplicate_groups(arg, keys, 0.95, block=block)
        same = g[:, None] == g[None, :]
        expect = {(2, 7), (7, 20), (2, 20), (11, 19), (5, 13)}
        got = {(a, b) for a in range(23) for b in range(a + 1, 23) if same[a, b]}
        assert got == expect


def distinct_snares(folder, n, seed=0):
    """n different snare hits (frequency, noise and decay vary) as WAV files in one folder."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        x = hit(44100, freq=float(rng.uniform(150, 400)), noise=float(rng.uniform(0.3, 1.5)),
                seed=100 + i)
        sf.write(os.path.join(folder, f"snare {i:02d}.wav"), x, 44100)


def test_a_library_in_one_folder_splits_into_train_val_and_test(tmp_path):
    distinct_snares(tmp_path / "Snares", 35)
    meta = corpus.build([str(tmp_path / "Snares")], str(tmp_path / "out"),
                        corpus.CorpusOptions(workers=1), progress=False)
    assert meta["kits"] == 1 and meta["split_by"] == "group"
    assert meta["split"]["val"] >= 2 and meta["split"]["test"] >= 2, meta["split"]


def test_the_fingerprint_follows_the_files(tmp_path):
    lib = tmp_path / "lib"
    distinct_snares(lib, 3)
    opts = corpus.CorpusOptions()
    before = corpus.fingerprint([str(lib)], opts)
    assert corpus.fingerprint([str(lib)], opts) == before  # unchanged library: same
    distinct_snares(lib / "more", 1, seed=5)  # a sample added
    added = corpus.fingerprint([str(lib)], opts)
    assert added != before
    os.remove(lib / "snare 01.wav")  # removed
    removed = corpus.fingerprint([str(lib)], opts)
    assert removed != added
    path = lib / "snare 00.wav"
    st = os.stat(path)
    sf.write(path, hit(44100, freq=333, seed=9), 44100)  # replaced in place, same name
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert corpus.fingerprint([str(lib)], opts) != removed


def test_saturation_transient_and_room_edits():
    t = np.arange(SR) / SR
    tone = 0.9 * np.sin(2 * np.pi * 200.0 * t) * np.exp(-t / 0.2)
    # saturation: tanh of the driven signal, odd harmonics appear, the peak stays
    sat = augment.saturate(tone, 4.0)
    np.testing.assert_allclose(sat, np.tanh(4.0 * tone) / np.tanh(4.0))
    spec = np.abs(np.fft.rfft(sat[: SR // 4]))
    third = spec[3 * 50 - 2: 3 * 50 + 3].max()  # 600 Hz in 4 Hz bins
    assert third > 0.05 * spec.max() > 0
    # transient: the first 15 ms gain up to (1 + amount), linearly back to 1; the rest untouched
    n = int(0.015 * SR)
    tr = augment.transient(tone, 1.0)
    np.testing.assert_allclose(tr[1:n] / tone[1:n], 1 + np.linspace(1, 0, n)[1:], rtol=1e-9)
    np.testing.assert_array_equal(tr[n:], tone[n:])
    # room: a reverberant tail after the dry sound ends, seeded, energy well below the dry hit
    click = np.zeros(SR)
    click[:50] = np.hanning(50)
    r1 = augment.room(click, np.random.default_rng(0), rt=0.3, wet=0.3)
    r2 = augment.room(click, np.random.default_rng(0), rt=0.3, wet=0.3)
    np.testing.assert_array_equal(r1, r2)
    tail = r1[int(0.05 * SR): int(0.2 * SR)]
    assert np.sqrt(np.mean(tail**2)) > 1e-4  # the dry click is silent there
    assert np.sum(r1[int(0.4 * SR):] ** 2) < 1e-3 * np.sum(r1**2)  # -60 dB by rt, then quiet

    def rms_db(a, b):
        return 10 * np.log10(np.mean(r1[int(a * SR):int(b * SR)] ** 2))

    # it decays at the rate rt names: -60 dB per 0.3 s, so -30 dB from 0.05-0.1 s to 0.2-0.25 s
    assert rms_db(0.2, 0.25) - rms_db(0.05, 0.1) == pytest.approx(-30.0, abs=6.0)


def test_a_file_name_that_is_not_utf8_joins_the_corpus_and_reads_back(tmp_path):
    """Old kits name files in Latin-1: such a file is a clip like any other, and the manifest
    keeps its path byte for byte, so that its recording can be read again (full band)."""
    from drumlayer.data import candidates, fullband

    src = tmp_path / "kit"
    src.mkdir()
    name = os.path.join(os.fsencode(src), b"caisse_claire_\xe9t\xe9.wav")
    sf.write(name, hit(44100, freq=300, seed=1), 44100)
    sf.write(src / "snare_2.wav", hit(44100, freq=500, seed=2), 44100)
    out = tmp_path / "corpus"
    corpus.build([str(src)], str(out), corpus.CorpusOptions(category="all", workers=1),
                 progress=False)
    rows = dataset.read_manifest(CorpusDir(str(out)))
    files = [r["file"] for r in rows]
    assert os.fsdecode(name) in files, files
    row = rows[files.index(os.fsdecode(name))]
    recording, rate = candidates.read_candidate(fullband.candidate(row))
    assert rate == 44100 and recording.shape[0] > 0


def test_held_out_matches_absolute_folders_and_whole_path_components():
    f = "/data/sounds/sf2/FluidR3_GM.sf2"
    assert corpus.held_out(f, ("FluidR3_GM.sf2",))
    assert corpus.held_out(f, ("sounds/sf2",)) and corpus.held_out(f, ("/data/sounds/",))
    assert corpus.held_out(f, (f,))  # the file itself
    assert not corpus.held_out(f, ("Fluid",))  # part of a name is not a name
    assert not corpus.held_out(f, ("/sounds/sf2",))  # absolute: from the root only
    assert not corpus.held_out(f, ("FluidR3_GM.sf",)) and not corpus.held_out(f, ("", "/"))
    assert not corpus.held_out("/data/kit18b/snare.wav", ("kit18",))
    assert corpus.held_out(os.path.expanduser("~/x/a.wav"), ("~/x",))


def test_a_held_out_library_and_its_near_copies_are_out_of_library(tmp_path, caplog):
    """data.holdout: its clips, and a copy of one of them in another kit, form the 'outside'
    split; the other clips are split as before and nothing of theirs is outside."""
    rng = np.random.default_rng(0)
    for n, folder in enumerate([f"lib/kit{k:02d}" for k in range(12)] + ["other"] * 2):
        os.makedirs(tmp_path / folder, exist_ok=True)
        for i in range(2):
            x = hit(44100, freq=float(rng.uniform(150, 400)),
                    noise=float(rng.uniform(0.3, 1.5)), seed=1000 + 2 * n + i)
            sf.write(tmp_path / folder / f"snare {2 * n + i:02d}.wav", x, 44100)
    x, _ = sf.read(tmp_path / "other" / "snare 24.wav")
    sf.write(tmp_path / "lib" / "kit00" / "snare copy.wav", 0.8 * x, 44100)  # a near-copy
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        meta = corpus.build([str(tmp_path)], str(out), corpus.CorpusOptions(
            workers=1, holdout=("other", "nowhere")), progress=False)
    m = rows(out / "manifest.csv")
    outside = {r["file"] for r in m if r["split"] == dataset.OUTSIDE}
    assert outside == {str(tmp_path / "other" / f"snare {i}.wav") for i in range(24, 28)} | {
        str(tmp_path / "lib" / "kit00" / "snare copy.wav")}
    assert meta["split"][dataset.OUTSIDE] == 5 and sum(meta["split"].values()) == len(m) == 29
    inside = [r for r in m if r["split"] != dataset.OUTSIDE]
    assert {r["split"] for r in inside} == {"train", "val", "test"}
    assert "5 clips out of library" in caplog.text and "nothing matched nowhere" in caplog.text
    # an augmentation varies training clips only: none of the held-out library
    corpus.write_augmented(str(out), 1)
    index = rows(out / "augmented.csv")
    assert {m[int(r["parent"])]["split"] for r in index} == {"train"}


def test_a_layered_target_is_its_clip_with_one_or_two_others_under_it(tmp_path):
    clips = procedural_lib.procedural_snares(5, SR, seed=2)
    sizes, drawn = set(), []
    for i in range(5):
        for j in range(6):
            mix, idx, gains = augment.layered(clips, 3, i, j)
            again = augment.layered(clips, 3, i, j)
            np.testing.assert_array_equal(mix, again[0])
            assert idx[0] == i and gains[0] == 1.0 and len(set(idx.tolist())) == len(idx)
            assert all(0.15 <= g <= 0.8 for g in gains[1:]) and 0 <= idx.min() < idx.max() < 5
            sizes.add(len(idx))
            drawn += gains[1:].tolist()
            by_hand = clips[i].astype(np.float64) + sum(
                g * clips[k].astype(np.float64) for k, g in zip(idx[1:], gains[1:], strict=True))
            np.testing.assert_allclose(mix, by_hand / np.abs(by_hand).max(), atol=1e-6)
    assert sizes == {2, 3}
    assert np.std(drawn) > 0.12 and min(drawn) < 0.3 and max(drawn) > 0.65  # uniform draws
    assert not np.array_equal(augment.layered(clips, 3, 0, 0)[0],
                              augment.layered(clips, 4, 0, 0)[0])  # the seed draws anew
    # write_layered: the train split's clips only, with their ids and gains in layered.csv
    distinct_snares(tmp_path / "Snares", 30)
    out = tmp_path / "out"
    corpus.build([str(tmp_path / "Snares")], str(out), corpus.CorpusOptions(workers=1),
                 progress=False)
    n = corpus.write_layered(str(out), 2, seed=5)
    m = rows(out / "manifest.csv")
    train = [int(r["id"]) for r in m if r["split"] == "train"]
    index = rows(out / "layered.csv")
    assert n == len(index) == 2 * len(train) == len(np.load(out / "layered.npy"))
    mixes = np.load(out / "layered.npy")
    all_clips = np.load(out / "clips.npy")
    for r, mix in zip(index, mixes, strict=True):
        parents = [int(p) for p in r["parents"].split(";")]
        gains = [float(g) for g in r["gains"].split(";")]
        assert set(parents) <= set(train)
        by_hand = np.asarray(gains) @ all_clips[parents].astype(np.float64)
        np.testing.assert_allclose(mix, by_hand / np.abs(by_hand).max(), atol=2e-4)
