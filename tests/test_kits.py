import os

import numpy as np
import pytest
import soundfile as sf

from drumlayer.data import audio, candidates, categories, discovery, kit_formats

from kitgen import hit, write_hydrogen_kit, write_sf2, write_sfz_kit


@pytest.mark.parametrize("name,category", [
    ("Snare", "snare"), ("SnareHard_03.wav", "snare"), ("Std Snr 1(L)", "snare"),
    ("d3 - snare 1", "snare"), ("SD_rock", "snare"), ("sd1", "snare"),
    ("Snare Roll", "other"), ("snare_roll_2", "other"), ("Snares Off", "other"),
    ("snare-off.wav", "other"), ("Snare Rimshot", "rim"), ("Pearl Side Stick", "rim"),
    ("sidestick01", "rim"), ("snare_rim01", "rim"), ("Stick", "rim"), ("Hand Clap", "clap"),
    ("Kick-Softest", "kick"), ("Bass Drum 1", "kick"), ("BD_909", "kick"),
    ("hihat_closed01", "closed-hat"), ("Hi-Hat Open", "open-hat"), ("Floor Tom", "tom"),
    ("Open High Hat", "open-hat"), ("Side OHH", "open-hat"), ("Hat Op Dirty", "open-hat"),
    ("Hat Semi-Open", "open-hat"), ("hihat_opened01", "open-hat"), ("Hi Hat Free", "open-hat"),
    ("Closed HH 2", "closed-hat"), ("Pedal HH", "closed-hat"), ("High Hat Foot", "closed-hat"),
    ("hihat_foot_pedal01", "closed-hat"), ("Sabian Hat Choke", "closed-hat"),
    ("VariBreaks Hat 1 Cl", "closed-hat"), ("808 Hat", "hi-hat"), ("hihat_01", "hi-hat"),
    ("tom_hi01", "tom"), ("Crash 1", "cymbal"), ("24Ride-1", "cymbal"), ("Cowbell", "other"),
    ("Brush Swirl", "other"), ("Ocean Wave", "other"), ("piano C4", None),
])
def test_category_from_name(name, category):
    assert categories.category_from_name(name) == category


def test_gm_keys_and_precedence():
    # a hat that does not say open or closed: the key says, else closed
    assert categories.classify("808 Hat", key=46) == "open-hat"
    assert categories.classify("808 Hat", key=44) == "closed-hat"
    assert categories.classify("hihat_01") == "closed-hat"
    assert categories.classify("Hat Open", key=42) == "open-hat"  # the name wins
    assert categories.classify("", key=46) == "open-hat"
    assert categories.classify("", key=42) == "closed-hat"
    assert categories.classify("", key=38) == "snare"
    assert categories.classify("", key=40) == "snare"
    assert categories.classify("", key=37) == "rim"
    assert categories.classify("Snare Roll", key=38) == "other"  # a name beats a key
    assert categories.classify("mystery", key=None) == "other"


def test_hydrogen_kit(tmp_path):
    write_hydrogen_kit(str(tmp_path / "kit"), name="My Kit", licence="CC-BY 3.0")
    cands = kit_formats.parse_hydrogen(str(tmp_path / "kit" / "drumkit.xml"))
    by_file = {os.path.basename(c.file): c for c in cands}
    assert set(by_file) == {"kick.wav", "sn_soft.wav", "sn_hard.flac", "roll.wav", "stick.wav"}
    assert by_file["sn_soft.wav"].category == "snare"
    assert by_file["sn_hard.flac"].layer == "0.50-1.00"
    assert by_file["roll.wav"].category == "other"
    assert by_file["stick.wav"].category == "rim"
    assert by_file["kick.wav"].category == "kick"
    assert all(c.kit == "My Kit" and c.licence == "CC-BY 3.0" for c in cands)


def test_sfz_kit(tmp_path):
    write_sfz_kit(str(tmp_path))
    cands = kit_formats.parse_sfz(str(tmp_path / "kit.sfz"))
    got = {os.path.basename(c.file): (c.key, c.category) for c in cands}
    assert got == {"a.wav": (36, "kick"), "b.wav": (38, "snare"), "c.wav": (40, "other"),
                   "d.wav": (42, "closed-hat")}
    assert all(os.path.exists(c.file) for c in cands)


def test_sfz_note_names():
    assert kit_formats.sfz_key("c4") == 60
    assert kit_formats.sfz_key("d2") == 38
    assert kit_formats.sfz_key("c#3") == 49
    assert kit_formats.sfz_key("eb3") == 51
    assert kit_formats.sfz_key("38") == 38


def test_sf2_reads_drum_keys_and_sample_data(tmp_path):
    rate = 32000
    snare = (hit(rate, freq=200, seed=1) * 30000).astype(np.int16)
    kick = (hit(rate, freq=60, seed=2) * 30000).astype(np.int16)
    path = str(tmp_path / "font.sf2")
    write_sf2(path, [("Snare 1", snare, rate, 38), ("Kick", kick, rate, 36)],
              drum_zones=[(38, 38, 0), (36, 36, 1), (40, 41, 0)])
    cands = kit_formats.parse_sf2(path)
    got = {(c.key, c.category, c.instrument) for c in cands}
    # the melodic preset is skipped; key 41 maps the snare sample but 'Snare' names it
    assert got == {(36, "kick", "Kick"), (38, "snare", "Snare 1"), (40, "snare", "Snare 1"),
                   (41, "snare", "Snare 1")}
    assert all(c.kit == "Test Font / Test Kit" and c.licence == "CC0 test data" for c in cands)
    by_key = {c.key: c for c in cands}
    clip = candidates.load_candidate(by_key[38])
    np.testing.assert_allclose(clip, audio.canonical(snare / 32768.0, rate), atol=1e-5)
    # key 40 plays the sample (root 38) two semitones up: a faster playback rate
    assert by_key[40].spans[0].rate == pytest.approx(rate * 2 ** (2 / 12))


def test_sf2_rejects_non_soundfont(tmp_path):
    p = tmp_path / "x.sf2"
    p.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(ValueError, match="not an SF2"):
        kit_formats.parse_sf2(str(p))


def test_walk_cuts_symlink_loops_and_reads_linked_files_once(tmp_path):
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "snare.wav", hit(44100), 44100)
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # a directory loop
    os.symlink(tmp_path / "a" / "snare.wav", tmp_path / "again.wav")  # same file twice
    files, problems = discovery.walk_files([str(tmp_path)])
    assert len([f for f in files if f.endswith(".wav")]) == 1
    assert problems == []


def test_discover_claims_kit_files_and_keeps_loose_ones(tmp_path):
    write_hydrogen_kit(str(tmp_path / "h2"))
    loose = tmp_path / "loose" / "My Snares"
    loose.mkdir(parents=True)
    sf.write(loose / "fat snare.wav", hit(44100), 44100)
    (loose / "LICENSE.txt").write_text("CC0 1.0\n")
    cands, rejected = discovery.discover([str(tmp_path)])
    assert rejected == []
    fmt = {os.path.basename(c.file): c.source_format for c in cands}
    assert fmt["sn_soft.wav"] == "hydrogen" and fmt["fat snare.wav"] == "folder"
    loose_c = next(c for c in cands if c.source_format == "folder")
    assert loose_c.category == "snare" and loose_c.licence == "CC0 1.0"
    assert loose_c.kit == os.path.join("loose", "My Snares")


@pytest.mark.parametrize(("preset", "zones", "want"), [
    # a kit on a normal preset: the GM key map
    ("Vintage Drums", [(38, 38, 0), (36, 36, 1), (40, 41, 0)],
     {(36, "kick", "Kick"), (38, "snare", "Snare 1"), (40, "snare", "Snare 1"),
      (41, "snare", "Snare 1")}),
    # a soundfont made for a few drum sounds, each zone spanning many keys: one candidate per
    # zone, at the sample's root key (38), or the zone's nearest key when the root lies outside
    ("Fat Hits", [(0, 60, 0), (61, 127, 1)],
     {(38, "snare", "Snare 1"), (61, "kick", "Kick")}),
])
def test_sf2_drum_kits_on_a_normal_preset_are_read(tmp_path, preset, zones, want):
    rate = 32000
    snare = (hit(rate, freq=200, seed=1) * 30000).astype(np.int16)
    kick = (hit(rate, freq=60, seed=2) * 30000).astype(np.int16)
    samples = [("Snare 1", snare, rate, 38), ("Kick", kick, rate, 36)]
    path = str(tmp_path / "font.sf2")
    write_sf2(path, samples, drum_zones=zones, melodic=False, kit=preset, bank=0)
    assert {(c.key, c.category, c.instrument) for c in kit_formats.parse_sf2(path)} == want
    # a general soundfont: its normal presets stay melodic beside a bank-128 kit
    write_sf2(path, samples, drum_zones=[(36, 36, 1)], melodic=True)
    assert {c.key for c in kit_formats.parse_sf2(path)} == {36}


# The General MIDI 1 percussion key map, as the MIDI Manufacturers Association publishes it:
# an independent reference for the map in drumlayer.data.categories.
GM1_PERCUSSION = {
    35: "Acoustic Bass Drum", 36: "Bass Drum 1", 37: "Side Stick", 38: "Acoustic Snare",
    39: "Hand Clap", 40: "Electric Snare", 41: "Low Floor Tom", 42: "Closed Hi-Hat",
    43: "High Floor Tom", 44: "Pedal Hi-Hat", 45: "Low Tom", 46: "Open Hi-Hat",
    47: "Low-Mid Tom", 48: "Hi-Mid Tom", 49: "Crash Cymbal 1", 50: "High Tom",
    51: "Ride Cymbal 1", 52: "Chinese Cymbal", 53: "Ride Bell", 54: "Tambourine",
    55: "Splash Cymbal", 56: "Cowbell", 57: "Crash Cymbal 2", 58: "Vibraslap",
    59: "Ride Cymbal 2", 60: "Hi Bongo", 64: "Low Conga", 81: "Open Triangle",
}


@pytest.mark.parametrize("key", sorted(GM1_PERCUSSION))
def test_gm_keys_are_the_category_their_gm_name_says(key):
    assert categories.category_from_gm_key(key) == categories.classify(GM1_PERCUSSION[key])


def test_every_kit_pad_plays_on_a_gm_note_of_its_own_category():
    assert set(categories.GM_NOTES) == set(categories.KIT_CATEGORIES) == set(
        categories.PAD_NAMES)
    assert set(categories.KIT_CATEGORIES) == set(categories.CATEGORIES) - {"other"}
    assert categories.GM_NOTES["kick"] == 36  # C1, where every drum map puts the kick
    for category, key in categories.GM_NOTES.items():
        assert categories.classify(GM1_PERCUSSION[key]) == category, (category, key)
