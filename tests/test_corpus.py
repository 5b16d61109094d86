import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from drumlayer import audio, augment, corpus, dataset, npyio, synth

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
    bad = {"snare multiminute.wav": "too long", "snare silent.wav": "silent",
           "snare nan.wav": "non-finite", "snare empty.wav": "empty",
           "snare notaudio.wav": "unreadable", "snare truncated.wav": "unreadable",
           "snare dangling.wav": "cannot open", "snare selfloop.wav": "symlink loop"}
    return d, set(good), bad


def test_bad_input_folder(bad_folder, tmp_path):
    d, good, bad = bad_folder
    out = tmp_path / "out"
    meta = corpus.build([str(d)], str(out), corpus.CorpusOptions(workers=2), progress=False)
    manifest = rows(out / "manifest.csv")
    assert {os.path.basename(r["file"]) for r in manifest} == good
    rejected = {os.path.basename(r["file"]): r["reason"] for r in rows(out / "rejected.csv")}
    assert set(rejected) == set(bad)
    for name, reason in bad.items():
        assert reason in rejected[name], (name, rejected[name])
    clips = np.load(out / "clips.npy", mmap_mode="r")
    assert clips.shape == (len(good), SR)
    np.testing.assert_allclose(np.abs(clips).max(axis=1), 1.0, atol=1e-6)
    assert meta["clips"] == len(good) and meta["rejected"] == len(bad)


def test_cli_summary_and_zero_clips_exit_code(bad_folder, tmp_path):
    d, good, _ = bad_folder
    cmd = [sys.executable, "-m", "drumlayer.corpus", f"--roots={d}", "--category=snare",
           f"--out={tmp_path / 'o1'}", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith(f"{len(good)} clips, 8 rejected")
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
    out = tmp_path / "out"
    meta = corpus.build([str(tmp_path)], str(out), corpus.CorpusOptions(workers=1),
                        progress=False)
    assert meta["duplicates"] == 1
    m = {os.path.basename(r["file"]): r for r in rows(out / "manifest.csv")}
    assert set(m) == {"snare 1.wav", "snare 2.wav", "snare 3.wav"}
    assert m["snare 1.wav"]["group"] == m["snare 2.wav"]["group"] != m["snare 3.wav"]["group"]
    # near-duplicates across kits pull both kits to the same side of the split
    assert m["snare 1.wav"]["split"] == m["snare 2.wav"]["split"] == m["snare 3.wav"]["split"]


def test_split_never_shares_a_kit_or_group(tmp_path):
    rng = np.random.default_rng(0)
    kits_ = [f"kit{k}" for k in rng.integers(0, 40, 400)]
    groups = rng.integers(0, 300, 400)
    s = corpus.split_ids(kits_, groups, (0.8, 0.1, 0.1), seed=3)
    for key in (kits_, list(groups)):
        side = {}
        for k, sp in zip(key, s, strict=True):
            assert side.setdefault(k, sp) == sp
    assert set(np.unique(s)) <= {0, 1, 2}
    # a different seed gives a different split; the same seed the same
    assert np.array_equal(s, corpus.split_ids(kits_, groups, (0.8, 0.1, 0.1), seed=3))


def test_split_shares_come_close_to_targets():
    units = np.repeat(np.arange(200), 5)
    s = corpus.split_units(units, (0.8, 0.1, 0.1), seed=0)
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
    assert meta["fingerprint"] == corpus.fingerprint(
        [str(tmp_path)], corpus.CorpusOptions(category="all", workers=1))
    assert meta["fingerprint"] != corpus.fingerprint([str(tmp_path)],
                                                     corpus.CorpusOptions(category="kick"))


def test_shrink_npy(tmp_path):
    p = str(tmp_path / "a.npy")
    mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=(1000, 7))
    mm[:] = np.arange(7000, dtype=np.float32).reshape(1000, 7)
    del mm
    npyio.shrink_npy(p, 9)
    a = np.load(p)
    assert a.shape == (9, 7)
    np.testing.assert_array_equal(a, np.arange(63, dtype=np.float32).reshape(9, 7))
    assert os.path.getsize(p) == 128 + 9 * 7 * 4
    np.testing.assert_array_equal(npyio.read_rows(p, 2, 5), a[2:5])


def test_row_writer(tmp_path):
    p = str(tmp_path / "w.npy")
    with npyio.RowWriter(p, (3,), np.float32, max_rows=100_000) as w:
        for i in range(5):
            assert w.append(np.full(3, i)) == i
    a = np.load(p)
    assert a.shape == (5, 3) and a[4, 0] == 4
    with pytest.raises(ValueError, match="shape"):
        npyio.RowWriter(str(tmp_path / "x.npy"), (3,), np.float32, 2).append(np.zeros(4))


def test_procedural_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "default_roots", lambda: [])
    with pytest.warns(UserWarning, match="fetch_open_kits"):
        meta = corpus.build(None, str(tmp_path), corpus.CorpusOptions(procedural=20))
    assert meta["procedural"] and meta["clips"] == 20
    clips = np.load(tmp_path / "clips.npy")
    np.testing.assert_array_equal(clips, synth.procedural_snares(20, SR, seed=0))
    assert not np.allclose(clips[0], clips[1])  # diverse, not one sound repeated


def test_augment_is_seeded_and_changes_the_sound():
    clips = synth.procedural_snares(3, SR, seed=1)
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


def test_augment_edits():
    x = synth.procedural_snares(1, SR, seed=2)[0].astype(np.float64)
    # pitch up one octave halves the length of the sound
    up = augment.pitch(x, 12.0)
    assert np.sum(up[SR // 2 :] ** 2) < 1e-3 * np.sum(x**2) + np.sum(x[SR // 2 :] ** 2)
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
        g = corpus.near_duplicate_groups(arg, keys, 0.95, block=block)
        same = g[:, None] == g[None, :]
        expect = {(2, 7), (7, 20), (2, 20), (11, 19), (5, 13)}
        got = {(a, b) for a in range(23) for b in range(a + 1, 23) if same[a, b]}
        assert got == expect
