"""kit_formats and categories: hand-written kit files read into the candidates a person would
name by hand, every field of them."""

import os

import numpy as np
import pytest

from drumlayer.data import categories, kit_formats
from drumlayer.data.candidates import Candidate

from kitgen import hit, write_soundfont

SFZ_KIT = r"""/* a block comment that hides a region:
<region> sample=ghost.wav key=50 */
<control> default_path=Samples\Kit One\   // Windows separators
<global> lovel=1 hivel=127
<master> group_label=Kicks
<group>
<region> sample=kick_a.wav key=36
<region> sample=kick b.wav pitch_keycenter=c2 lokey=35 hikey=36 region_label=Big Kick
<master>
<group> group_label=Snare
<region> sample=sub\snare-1.wav lokey=38 hikey=38 lovel=1 hivel=64
<region> sample=*noise key=39
<region> key=40
<group>
<region> sample=hat.wav key=42 region_label=Closed Hat
<region> sample=ride_edge.wav key=38
<region> sample=zap.wav key=41 region_label=Laser lovel=20
"""


def sfz(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return kit_formats.parse_sfz(str(path))


def test_sfz_kit_every_field_by_hand(tmp_path):
    got = sfz(tmp_path, "Tom Heaven.sfz", SFZ_KIT)
    d = os.path.join(str(tmp_path), "Samples", "Kit One")

    def c(file, instrument, category, key, layer):
        return Candidate(file=os.path.join(d, file), kit="Tom Heaven", instrument=instrument,
                         category=category, source_format="sfz", key=key, layer=layer)

    assert got == [
        c("kick_a.wav", "Kicks", "kick", 36, "1-127"),
        c("kick b.wav", "Big Kick", "kick", 36, "1-127"),  # pitch_keycenter before lokey
        c(os.path.join("sub", "snare-1.wav"), "Snare", "snare", 38, "1-64"),
        c("hat.wav", "Closed Hat", "closed-hat", 42, "1-127"),  # a bare <group> resets labels
        c("ride_edge.wav", "ride_edge", "cymbal", 38, "1-127"),  # the file's name beats a key
        # a kit's 'other' stays other (not its name's 'tom'); lovel=20 over <global>'s hivel
        c("zap.wav", "Laser", "other", 41, "20-127"),
    ]


def test_sfz_single_instrument_takes_its_category_from_the_file_name(tmp_path):
    text = "<group> lokey=60 hikey=72 pitch_keycenter=60\n<region> sample=take1.wav\n" \
           "<region> sample=take2.wav lovel=1\n"
    got = sfz(tmp_path, "Snare Deluxe.sfz", text)
    assert [(c.instrument, c.category, c.key, c.layer) for c in got] == [
        ("take1", "snare", 60, ""), ("take2", "snare", 60, "")]  # one bound is no layer


@pytest.mark.parametrize("opcode", ["key", "lokey"])
@pytest.mark.parametrize("keys,want", [
    ((36, 38, 46), ["kick", "snare", "open-hat"]),  # three keys: a kit on the GM map
    ((36, 38), ["other", "other"]),  # two: one instrument, whose name says nothing
])
def test_sfz_is_a_kit_from_three_mapped_keys(tmp_path, keys, want, opcode):
    text = "".join(f"<region> sample=x{i}.wav {opcode}={k}\n" for i, k in enumerate(keys))
    assert [c.category for c in sfz(tmp_path, "Pair.sfz", text)] == want


def test_sfz_opcode_values_keep_their_spaces_and_levels_reset_below(tmp_path):
    regions = kit_formats.parse_sfz_text(
        "<global> volume=-3 <master> group_label=A b <group> lovel=5 <region> sample=a b.wav "
        "<master> <region> sample=c.wav\n<GLOBAL> <region> sample=d.wav")
    assert regions == [
        {"volume": "-3", "group_label": "A b", "lovel": "5", "sample": "a b.wav"},
        {"volume": "-3", "sample": "c.wav"},  # a new master drops the group below it
        {"volume": "-3", "sample": "d.wav"},  # headers are lower case: <GLOBAL> is not one
    ]


def test_sfz_reads_a_file_with_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "kit.sfz"
    path.write_bytes(b"<region> sample=caf\xe9.wav key=36 region_label=Kick\n")
    (c,) = kit_formats.parse_sfz(str(path))
    assert c.file == os.path.join(str(tmp_path), "caf\ufffd.wav") and c.category == "kick"


HYDROGEN = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <instrumentList>
  <instrument><name> Kick </name><filename>k.wav</filename></instrument>
  <instrument><name></name>
   <layer><filename>Snare_hard.wav</filename><min>0.5</min><max>1</max></layer></instrument>
  <instrument><name>Ride</name><layer><filename> ride.wav </filename></layer></instrument>
  <instrument><name>Empty</name><layer><filename></filename></layer></instrument>
  <instrument><name>Hat</name><filename>legacy.wav</filename>
   <layer><filename>h1.wav</filename><min>0</min><max>0.3</max></layer>
   <layer><filename>h2.wav</filename><min>0.3</min></layer></instrument>
 </instrumentList>
</drumkit_info>
"""


def test_hydrogen_kit_every_field_by_hand(tmp_path):
    d = tmp_path / "Vintage Kit"
    d.mkdir()
    (d / "drumkit.xml").write_text(HYDROGEN)
    got = kit_formats.parse_hydrogen(str(d / "drumkit.xml"))

    def c(file, instrument, category, layer=""):
        return Candidate(file=os.path.join(str(d), file), kit="Vintage Kit",
                         instrument=instrument, category=category, source_format="hydrogen",
                         layer=layer)

    assert got == [
        c("k.wav", "Kick", "kick"),  # a kit of the old format: the file on the instrument
        c("Snare_hard.wav", "", "snare", "0.50-1.00"),  # no name: the file's says snare
        c("ride.wav", "Ride", "cymbal"),
        c("h1.wav", "Hat", "closed-hat", "0.00-0.30"),  # layers win over a legacy file
        c("h2.wav", "Hat", "closed-hat"),
    ]


@pytest.mark.parametrize("name,want", [
    ("SnareRoll_02-hard.wav", "snare roll 02 hard wav"),
    ("BD2", "bd 2"), ("hh9Open", "hh 9 open"), ("  Crash__Cymbal  ", "crash cymbal"),
    ("TR808Kick", "tr 808 kick"), ("bd2hard", "bd 2 hard"),
])
def test_normalise_name_by_hand(name, want):
    assert categories.normalise_name(name) == want


@pytest.mark.parametrize("name,want", [
    ("sd1.wav", "snare"), ("bd2", "kick"), ("KickHard", "kick"), ("SnareRoll", "other"),
    ("HiHatOpen", "open-hat"), ("Tom3", "tom"), ("Rim2", "rim"), ("mystery", None),
])
def test_category_from_name_splits_glued_words(name, want):
    assert categories.category_from_name(name) == want


@pytest.mark.parametrize("key,want", [
    (None, None), (26, None), (27, "other"), (34, "other"), (35, "kick"), (46, "open-hat"),
    (56, "other"), (59, "cymbal"), (87, "other"), (88, None), (127, None),
])
def test_gm_key_ranges(key, want):
    assert categories.category_from_gm_key(key) == want


KEY, VEL, INSTRUMENT, SAMPLE, COARSE, FINE, SCALE, ROOT = 43, 44, 41, 53, 51, 52, 56, 58


def test_sf2_keys_layers_tuning_and_stereo_by_hand(tmp_path):
    """Global zones, velocity layers, stereo pairs, tuning at every level, a ROM sample and
    references out of range, each rate worked out from the spec's formula by hand."""
    x = (hit(32000, seconds=0.05) * 20000).astype(np.int16)
    y = (-x[::-1]).copy()  # the third sample's data: another sound of the same length
    samples = [("Snare L", x, 32000, 60, 5, 4, 1), ("Snare R", x, 32000, 60, 0, 2, 0),
               ("Low 1", y, 44100, 200, 0, 1, 0), ("ROM", x, 44100, 60, 0, 0x8001, 0)]
    kit_zones = [{FINE: 10},  # the instrument's global zone: no sample
                 {KEY: (38, 38), VEL: (0, 63), SAMPLE: 0}, {KEY: (38, 38), VEL: (0, 63), SAMPLE: 1},
                 {KEY: (38, 38), VEL: (0, 63), SAMPLE: 2},  # a third channel: two are kept
                 {KEY: (38, 38), VEL: (64, 127), COARSE: 1, SCALE: 50, SAMPLE: 0},
                 {KEY: (36, 36), ROOT: 36, SAMPLE: 2},  # pitch 200 is no key: the root's set
                 {KEY: (40, 40), SAMPLE: 3}, {KEY: (39, 39), SAMPLE: 4},  # ROM; 'EOS'
                 {KEY: (41, 41), SAMPLE: 2}]  # outside the preset's keys
    presets = [("Piano", 0, [{INSTRUMENT: 1}]),  # melodic in a font with percussion: skipped
               ("Standard", 128, [{KEY: (30, 40), FINE: 3},  # the preset's global zone
                                  {COARSE: -1, INSTRUMENT: 0}, {INSTRUMENT: 7}, {INSTRUMENT: 2}])]
    path = str(tmp_path / "My Font.sf2")
    write_soundfont(path, samples, [("Kit", kit_zones), ("Piano", [{SAMPLE: 2}])], presets)
    got = kit_formats.parse_sf2(path)
    ptune = -100 + 3  # the preset zone's fine tune, its global zone's coarse tune

    def rate(hz, cents):
        return hz * 2.0 ** (cents / 1200.0)

    assert [(c.key, c.layer, c.instrument, c.category, c.kit, c.licence, c.source_format)
            for c in got] == [
        (36, "", "Low 1", "kick", "My Font / Standard", "", "sf2"),  # by its GM key
        (38, "0-63", "Snare L", "snare", "My Font / Standard", "", "sf2"),
        (38, "64-127", "Snare L", "snare", "My Font / Standard", "", "sf2")]
    kick, soft, hard = got
    assert [s.start for s in soft.spans] == [0, x.size + 46] and len(hard.spans) == 1
    assert kick.spans[0].start == 2 * (x.size + 46) and kick.spans[0].end == 3 * x.size + 92
    assert kick.spans[0].rate == pytest.approx(rate(44100, 0 + 10 + ptune))
    assert soft.spans[0].rate == pytest.approx(rate(32000, (38 - 60) * 100 + 10 + ptune + 5))
    assert soft.spans[1].rate == pytest.approx(rate(32000, (38 - 60) * 100 + 10 + ptune))
    assert hard.spans[0].rate == pytest.approx(rate(32000, (38 - 60) * 50 + 100 + 10 + ptune
                                                    + 5))
    with open(path, "rb") as f:  # each span's data offset is where the samples are
        data = f.read()
    off = kick.spans[0].data_offset  # the smpl chunk's data; the span starts in it
    assert data[off:off + 2 * x.size] == x.tobytes()
    off += 2 * kick.spans[0].start
    assert data[off:off + 2 * x.size] == y.tobytes()
    # decoded from its span's start (the third sample, not the first): the sample itself
    from drumlayer.data import candidates

    got, got_rate = candidates.read_candidate(kick)
    assert got_rate == kick.spans[0].rate and got.shape == (x.size, 1)
    np.testing.assert_array_equal(got[:, 0], y / np.float32(32768))
    both, _ = candidates.read_candidate(hard)  # the first sample
    np.testing.assert_array_equal(both[:, 0], x / np.float32(32768))


def test_sf2_fonts_of_single_drum_sounds_and_what_is_melodic(tmp_path):
    """A font without a percussion bank: presets named for a drum, or all presets of a font
    whose samples are at least half drums (here 4 of 8), give one sound per zone at its root
    key; a kit-named preset maps GM keys ('SFX' kits' keys name no drums)."""
    x = (hit(22050, seconds=0.05) * 20000).astype(np.int16)
    samples = [("Hit 1", x, 22050, 60), ("Kick 1", x, 22050, 36), ("Snare 2", x, 22050, 38),
               ("Tom", x, 22050, 128),  # 128-254 are no key: 60 it is
               ("Pad", x, 22050, 60), ("Violin", x, 22050, 64), ("Hit 9", x, 22050, 60),
               ("Clap 3", x, 22050, 39)]
    instruments = [("A", [{KEY: (30, 50), SAMPLE: 0}]),  # root 60 above the range: its top
                   ("B", [{SAMPLE: 1}, {KEY: (40, 40), SAMPLE: 1}, {SAMPLE: 2}, {SAMPLE: 3},
                          {KEY: (38, 38), SAMPLE: 2}]),  # a root below the range: its bottom
                   ("C", [{SAMPLE: 5}]), ("E", [{KEY: (50, 40), SAMPLE: 0}]),  # E: no keys
                   ("D", [{KEY: (20, 100), SAMPLE: 6}])]
    presets = [("Snares", 0, [{INSTRUMENT: 0}]), ("Bright", 0, [{INSTRUMENT: 1}]),
               ("Strings", 0, [{INSTRUMENT: 2}]), ("SFX Kit", 0, [{INSTRUMENT: 4}]),
               ("Snare Empty", 0, [{INSTRUMENT: 3}])]
    path = str(tmp_path / "font.sf2")
    write_soundfont(path, samples, instruments, presets,
                    {b"INAM": b"Single", b"ICOP": b"CC-BY"})  # odd sizes: padded chunks
    got = [(c.kit, c.key, c.instrument, c.category, c.licence)
           for c in kit_formats.parse_sf2(path)]
    assert got[:7] == [("Single / Snares", 50, "Hit 1", "snare", "CC-BY"),
                       ("Single / Bright", 36, "Kick 1", "kick", "CC-BY"),
                       ("Single / Bright", 38, "Snare 2", "snare", "CC-BY"),
                       ("Single / Bright", 40, "Kick 1", "kick", "CC-BY"),
                       ("Single / Bright", 60, "Tom", "tom", "CC-BY"),
                       ("Single / Strings", 64, "Violin", "other", "CC-BY"),
                       ("Single / SFX Kit", 27, "Hit 9", "other", "CC-BY")]
    # a kit-named preset plays the GM drum keys (27-87) of its range; an 'SFX' kit's keys are
    # no drums: its sounds are as their names say
    assert got[6:] == [("Single / SFX Kit", k, "Hit 9", "other", "CC-BY") for k in range(27, 88)]


def test_sf2_font_mostly_of_other_sounds_is_melodic(tmp_path):
    x = (hit(22050, seconds=0.05) * 20000).astype(np.int16)
    samples = [("Kick 1", x, 22050, 36), ("Snare 2", x, 22050, 38), ("Pad", x, 22050, 60),
               ("Violin", x, 22050, 64), ("Laser", x, 22050, 60)]  # 2 drums of 5
    path = str(tmp_path / "Orchestra.sf2")
    write_soundfont(path, samples, [("B", [{SAMPLE: 0}, {SAMPLE: 1}])],
                    [("Bright", 0, [{INSTRUMENT: 0}]), ("FX Laser", 0, [{INSTRUMENT: 0}])])
    assert kit_formats.parse_sf2(path) == []


def test_an_sfz_regions_offset_and_end_are_the_frames_it_plays(tmp_path):
    """offset skips the sample's first frames and end (inclusive) stops it, as a sampler plays
    the region: two regions of one file, each decoded to its own frames."""
    import soundfile as sf

    from drumlayer.data import candidates

    x = np.arange(1000, dtype=np.float32) / 2000.0 - 0.25
    sf.write(tmp_path / "two hits.wav", x, 22050, subtype="FLOAT")
    (a, b, whole) = sfz(tmp_path, "kit.sfz", "<region> sample=two hits.wav key=36 end=399\n"
                        "<region> sample=two hits.wav key=38 offset=400\n"
                        "<region> sample=two hits.wav key=42 offset=-5 end=x\n")
    assert (a.start, a.end, b.start, b.end, whole.start, whole.end) == (0, 400, 400, None, 0,
                                                                        None)
    for c, want in ((a, x[:400]), (b, x[400:]), (whole, x)):
        got, rate = candidates.read_candidate(c)
        assert rate == 22050
        np.testing.assert_array_equal(got[:, 0], want)
    past = Candidate(file=str(tmp_path / "two hits.wav"), kit="k", instrument="i",
                     category="kick", source_format="sfz", start=1000)
    with pytest.raises(candidates.audio_lib.AudioError, match="past the sample's end"):
        candidates.read_candidate(past)


def test_hydrogen_layer_and_instrument_gains_are_the_level_it_plays(tmp_path):
    import soundfile as sf

    from drumlayer.data import candidates

    x = (hit(22050, seconds=0.1) * 0.5).astype(np.float32)
    sf.write(tmp_path / "s.wav", x, 22050, subtype="FLOAT")
    (tmp_path / "drumkit.xml").write_text(
        "<drumkit_info><name>G</name><instrumentList>"
        "<instrument><name>Snare</name><volume>0.8</volume><gain>1.5</gain>"
        "<layer><filename>s.wav</filename><min>0</min><max>0.5</max><gain>0.5</gain></layer>"
        "<layer><filename>s.wav</filename><min>0.5</min><max>1</max></layer></instrument>"
        "<instrument><name>Kick</name><volume>nan</volume><gain>-2</gain>"
        "<layer><filename>s.wav</filename><gain>2</gain></layer></instrument>"
        "</instrumentList></drumkit_info>")
    soft, hard, kick = kit_formats.parse_hydrogen(str(tmp_path / "drumkit.xml"))
    assert soft.gain == pytest.approx(0.5 * 1.5 * 0.8) and hard.gain == pytest.approx(1.2)
    assert kick.gain == 2.0  # a volume or gain that is no level is left at 1
    for c in (soft, hard):
        got, _ = candidates.read_candidate(c)
        np.testing.assert_allclose(got[:, 0], x * c.gain, rtol=1e-6)
