"""A trained kit (configs/kit.py) exported as kits that samplers play.

    python -m drumlayer.kit.export --workdir=runs/kit --out=my_kit [--variations=4]
        [--velocity_layers=4] [--groove=rock --tempo=100]

Each trained category is a pad. Its recipes are points of that category's latent space: the
centre of its corpus's latent means, and `variations - 1` close variants (a seeded jitter
along the principal directions, scaled by their spread), its round robins. Each round robin has
`velocity_layers` velocity layers (`drumlayer.kit.velocity`: softer, and darker along the
model's own direction). Written to OUT, every pad on its General MIDI note (one table:
`drumlayer.data.categories.GM_NOTES`; kick on C1 = 36):

- `kit.sfz` + `samples/`: an SFZ kit, one group per pad and velocity layer (`lovel`/`hivel`,
  the level interpolated inside it by `amp_velcurve_N`; `one_shot`: a pad's note-off does not
  cut the sound), its round robins inside
  (`seq_length` / `seq_position`); the closed hat chokes the open hat (`group` / `off_by`);
- `kit.dspreset`: the same kit for DecentSampler, on the same samples (`loVel`/`hiVel`,
  `seqMode="round_robin"`, the open hat silenced by the closed hat's tag);
- `hydrogen/<name>/drumkit.xml` + samples: a Hydrogen drumkit, one instrument per pad, its
  velocity layers (the first round robin of each);
- `kit.adg`: an Ableton Live Drum Rack on the same samples (`drumlayer.kit.ableton`): a cell
  per pad, its velocity layers as chains with velocity zones, each a Simpler playing the
  layer's first round robin;
- `recipes.json`: every pad's latents, weights and how each velocity layer was made;
- `groove_<name>_<tempo>bpm.wav` and `.mid` (with --groove): a bar of a built-in groove on the
  kit, and the same bar as a Standard MIDI File (GM drum channel 10: `drumlayer.kit.midi`);
- `kit.zip`: all of the above in one file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import zipfile
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import soundfile as sf

from drumlayer import cli
from drumlayer.data.categories import PAD_NAMES, gm_note
from drumlayer.errors import DrumlayerError
from drumlayer.features import measures
from drumlayer.kit import ableton, midi, velocity
from drumlayer.kit import groove as groove_lib
from drumlayer.recipes import render, sfz
from drumlayer.recipes.bundle import Bundle
from drumlayer.workdir import Workdir, output_folder, read_json

log = logging.getLogger(__name__)
JITTER, jitter = measures.JITTER, measures.jitter  # the variants of a pad (shared below)
MAX_VARIATIONS = 16  # round robins, and velocity layers, of a pad: the command's and the studio's
CHOKE = {"closed-hat": ("open-hat",)}  # a hit of the key silences these pads (a hi-hat)


def pad(layers: list[dict], fits: list[dict], audio: np.ndarray, rate: int,
        recipes: list[dict]) -> dict:
    """A pad as `kit_files` takes it: its velocity layers (`velocity.voices`), their audio
    [V, RR, n] at rate, and its recipes (one per round robin, the top layer's)."""
    how = [{k: (np.asarray(v).round(6).tolist() if k == "latents" else v)
            for k, v in layer.items()} for layer in layers]
    return {"layers": [(lay["lovel"], lay["hivel"]) for lay in layers], "audio": audio,
            "sample_rate": rate, "recipes": {"recipes": recipes, "velocity_layers": how,
                                             "velocity_fit": fits}}


def pad_recipes(b: Bundle, variations: int, seed: int, layers: int = velocity.LAYERS) -> dict:
    """A pad of the bundle b's model: the centre of its latent PCA and variations - 1 seeded
    variants around it, each with its velocity layers (see `pad`)."""
    if b.pca is None:
        raise DrumlayerError("the bundle has no PCA basis: rerun the main job's bundle stage")
    center = np.asarray(b.pca["center"], np.float32)
    z = np.concatenate([center[None], jitter(b.pca, center, variations - 1, seed)])
    measure = velocity.mix_measure(lambda zs: b.mix(b.decode(zs)))

    def sound(zv, level_db):
        return b.mix_full(np.asarray(b.decode(zv[None])))[0] * np.float32(10 ** (level_db / 20))

    lays, fits, audio = velocity.voices(z, measure, sound, b.full_rate, b.pca, layers,
                                          seed=seed)
    w = np.asarray(b.decode(z))
    return pad(lays, fits, audio, b.full_rate,
               [{"latent": zi.tolist(), "weights": wi.tolist()} for zi, wi in
                zip(z, w, strict=True)])


def kit_summary(workdir: str) -> dict:
    """A kit job's kit.json, or a DrumlayerError that says to run the kit job."""
    wd = Workdir(workdir)
    summary = read_json(wd.kit_summary)
    if summary is None:
        raise DrumlayerError(f"{wd.kit_summary} is missing: run the kit job first "
                             f"(python -m drumlayer.main --config=configs/kit.py "
                             f"--workdir={workdir})")
    return summary


def pads(workdir: str, variations: int = 4, seed: int = 0,
         layers: int = velocity.LAYERS) -> dict:
    """{category: pad (see `pad`)} of every trained category of a kit workdir, in kit.json's
    order."""
    summary = kit_summary(workdir)
    out = {}
    for category, entry in summary["categories"].items():
        if "workdir" in entry:
            gm_note(category)  # said before seconds of rendering
    for category, entry in summary["categories"].items():
        if "workdir" not in entry:
            log.warning("kit export: %s has no model (%s): its pad stays empty", category,
                        entry.get("skipped") or entry.get("failed"))
            continue
        out[category] = pad_recipes(Bundle.load(entry["workdir"]), variations,
                                    seed + len(out), layers)
    if not out:
        raise DrumlayerError(f"no category of {workdir} has a trained model: nothing to export")
    return out


def sample_name(category: str, layer: int, rr: int) -> str:
    """The file of a pad's velocity layer (1 = softest) and round robin (1...)."""
    return f"{render.safe_name(category)}_v{layer}_{rr}.wav"


def _hydrogen(name: str, pads_: dict) -> str:
    """A Hydrogen drumkit.xml: one instrument per pad on its GM note, a layer per velocity
    layer (velocities 0..1), each playing the layer's first round robin."""
    def layers(category):
        return "".join(
            f"<layer><filename>{sample_name(category, v, 1)}</filename>"
            f"<min>{0 if v == 1 else (lo - 1) / 127:.4f}</min><max>{hi / 127:.4f}</max></layer>"
            for v, (lo, hi) in enumerate(pads_[category]["layers"], start=1))

    instruments = [
        f"  <instrument><id>{n}</id><name>{escape(PAD_NAMES[category])}</name>"
        f"<midiOutNote>{gm_note(category)}</midiOutNote><instrumentComponent>"
        f"{layers(category)}</instrumentComponent></instrument>"
        for n, category in enumerate(pads_)]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<drumkit_info xmlns='
            '"http://www.hydrogen-music.org/drumkit">\n'
            f" <name>{escape(ableton.xml_text(name))}</name>\n <author>drumlayer</author>\n"
            " <license>the licences of the samples the sources came from</license>\n"
            " <instrumentList>\n" + "\n".join(instruments) + "\n </instrumentList>\n"
            "</drumkit_info>\n")


def _sfz(pads_: dict) -> str:
    """The SFZ kit: a group per pad and velocity layer, its round robins as regions."""
    chokers = {c: n for n, c in enumerate(CHOKE, start=1)}
    groups = []
    for category, p in pads_.items():
        choke = {"group": chokers[category]} if category in chokers else {}
        for k, victims in CHOKE.items():
            if category in victims:
                choke["off_by"] = chokers[k]
        for v, (lo, hi) in enumerate(p["layers"], start=1):
            curve = velocity.velocity_gain(lo, lo, hi)
            groups.append(sfz.header(
                "group", {"key": gm_note(category), "lovel": lo, "hivel": hi,
                          "loop_mode": "one_shot",
                          f"amp_velcurve_{lo}": f"{curve:.6f}", f"amp_velcurve_{hi}": 1,
                          "seq_length": p["audio"].shape[1], **choke},
                f"{PAD_NAMES[category]}, velocity {lo}-{hi}"))
            groups += [sfz.header("region", {"sample": sample_name(category, v, i),
                                             "seq_position": i})
                       for i in range(1, p["audio"].shape[1] + 1)]
    return sfz.instrument("drumlayer: a layered kit on the General MIDI drum map; velocity "
                          "layers, each pad's variants a round robin", groups)


def _dspreset(pads_: dict) -> str:
    """The DecentSampler preset: a group per pad and velocity layer, round robins inside."""
    groups = []
    for category, p in pads_.items():
        key, rr = gm_note(category), p["audio"].shape[1]
        cut = [k for k, victims in CHOKE.items() if category in victims]
        silenced = (f" silencedByTags={quoteattr(','.join(cut))} silencingMode=\"fast\""
                    if cut else "")
        for v, (lo, hi) in enumerate(p["layers"], start=1):
            samples = "".join(
                f"\n      <sample path={quoteattr(f'{sfz.SAMPLES}/{sample_name(category, v, i)}')}"
                f' rootNote="{key}" loNote="{key}" hiNote="{key}" loVel="{lo}" hiVel="{hi}"'
                f' seqPosition="{i}"/>' for i in range(1, rr + 1))
            groups.append(
                f"    <group name={quoteattr(f'{PAD_NAMES[category]} {lo}-{hi}')} "
                f'seqMode="round_robin" seqLength="{rr}" ampVelTrack="0" '
                f'tags={quoteattr(category)}{silenced}>{samples}\n    </group>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<DecentSampler minVersion="1.0.0">\n'
            "  <groups>\n" + "\n".join(groups) + "\n  </groups>\n</DecentSampler>\n")


def voices_at(pads_: dict, rate: int) -> dict:
    """{category: (velocity ranges, audio [V, RR, n] at rate, exported as the kit's samples
    are: one scale per pad)} for `groove.render`."""
    out = {}
    for category, p in pads_.items():
        a = p["audio"]
        y = render.export_arrays(a.reshape(-1, a.shape[-1]), p["sample_rate"], rate)
        out[category] = (p["layers"], y.reshape(*a.shape[:2], -1))
    return out


def groove_wav(pads_: dict, name: str, tempo: float, rate: int = 48000) -> bytes:
    """A bar of the groove `name` at tempo on the kit's pads: a 24-bit WAV at rate."""
    x = groove_lib.render(name, tempo, voices_at(pads_, rate), rate)
    return render.export_wav(x, rate, rate)


def _drum_rack(name: str, pads_: dict, files: dict[str, bytes]) -> bytes:
    """The Ableton Live Drum Rack over the kit's samples (files: {path: WAV bytes})."""
    def layer(category, v, lo, hi):
        path = f"{sfz.SAMPLES}/{sample_name(category, v, 1)}"
        info = sf.info(io.BytesIO(files[path]))
        return {"lovel": lo, "hivel": hi, "path": path, "frames": info.frames,
                "rate": info.samplerate, "size": len(files[path])}

    return ableton.drum_rack(name, {c: [layer(c, v, lo, hi) for v, (lo, hi) in
                                        enumerate(p["layers"], start=1)]
                                    for c, p in pads_.items()})


def kit_files(pads_: dict, name: str = "drumlayer kit", rate: int = 48000,
              groove: str | None = None, tempo: float = 100.0) -> dict[str, bytes]:
    """{path in the kit: bytes} of the SFZ kit (kit.sfz, samples/), the DecentSampler preset,
    the Ableton Live Drum Rack (kit.adg), the Hydrogen kit (hydrogen/<name>/), recipes.json,
    and (groove given) the groove's WAV and MIDI file; each pad's samples exported with one
    scale, so its layers keep their levels."""
    for category in pads_:
        gm_note(category)  # a pad on no GM note is refused before any rendering
    hyd = f"hydrogen/{render.safe_name(name)}"
    recipes, files = {}, {}
    for category, p in pads_.items():
        n_layers, rr = p["audio"].shape[:2]
        wavs = render.export_wavs(p["audio"].reshape(n_layers * rr, -1), p["sample_rate"], rate)
        for j, data in enumerate(wavs):
            fname = sample_name(category, j // rr + 1, j % rr + 1)
            files[f"{sfz.SAMPLES}/{fname}"] = data
            if j % rr == 0:
                files[f"{hyd}/{fname}"] = data
        recipes[category] = {"gm_key": gm_note(category), **p["recipes"]}
    files["kit.sfz"] = _sfz(pads_).encode()
    files["kit.dspreset"] = _dspreset(pads_).encode()
    files["kit.adg"] = _drum_rack(name, pads_, files)
    files[f"{hyd}/drumkit.xml"] = _hydrogen(name, pads_).encode()
    files["recipes.json"] = json.dumps(recipes, indent=1).encode()
    if groove:
        files[groove_lib.file_name(groove, tempo, "wav")] = groove_wav(pads_, groove, tempo, rate)
        files[groove_lib.file_name(groove, tempo, "mid")] = midi.groove_midi(groove, tempo, pads_)
    return files


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """The files {path: bytes} as one zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return buf.getvalue()


def write(pads_: dict, out: str, name: str = "drumlayer kit", rate: int = 48000,
          groove: str | None = None, tempo: float = 100.0) -> dict:
    """The kit's files (`kit_files`) into out, and all of them again as out/kit.zip; returns
    the paths of the SFZ, the DecentSampler preset, the Drum Rack, the Hydrogen drumkit.xml,
    recipes.json, the groove's WAV and MIDI file (when given) and the zip."""
    if groove:
        groove_lib.check(groove, tempo)
    files = kit_files(pads_, name, rate, groove, tempo)
    for path, data in files.items():
        os.makedirs(os.path.join(out, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(out, path), "wb") as f:
            f.write(data)
    paths = {"sfz": os.path.join(out, "kit.sfz"),
             "decentsampler": os.path.join(out, "kit.dspreset"),
             "ableton": os.path.join(out, "kit.adg"),
             "hydrogen": os.path.join(out, "hydrogen", render.safe_name(name), "drumkit.xml"),
             "recipes": os.path.join(out, "recipes.json"),
             "zip": os.path.join(out, "kit.zip")}
    if groove:
        paths["groove"] = os.path.join(out, groove_lib.file_name(groove, tempo, "wav"))
        paths["groove_midi"] = os.path.join(out, groove_lib.file_name(groove, tempo, "mid"))
    with open(paths["zip"], "wb") as f:
        f.write(zip_bytes(files))
    return paths


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "a kit job's workdir (configs/kit.py)", flag_values=fv)
    flags.DEFINE_string("out", None, "output folder", flag_values=fv)
    flags.DEFINE_integer("variations", 4, "round-robin variants per pad (at most "
                         f"{MAX_VARIATIONS}, as the studio's export)", lower_bound=1,
                         upper_bound=MAX_VARIATIONS, flag_values=fv)
    flags.DEFINE_integer("sample_rate", 48000, "the samples' rate", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "the variants' seed", flag_values=fv)
    flags.DEFINE_string("name", "drumlayer kit", "the kit's name", flag_values=fv)
    flags.DEFINE_integer("velocity_layers", velocity.LAYERS, "velocity layers per pad",
                         lower_bound=1, upper_bound=MAX_VARIATIONS, flag_values=fv)
    flags.DEFINE_enum("groove", None, list(groove_lib.PATTERNS), "also write a bar of this "
                      "built-in groove on the kit as a WAV and as a MIDI file", flag_values=fv)
    flags.DEFINE_float("tempo", 100.0, "the groove's tempo (BPM)", lower_bound=groove_lib.TEMPO[0],
                       upper_bound=groove_lib.TEMPO[1], flag_values=fv)


def _command(f, _args) -> int:
    if not f.workdir or not f.out:
        raise DrumlayerError("give --workdir=W (a kit job's workdir) and --out=DIR")
    if f.sample_rate not in render.EXPORT_RATES:
        raise DrumlayerError(f"--sample_rate must be one of {render.EXPORT_RATES}, got "
                             f"{f.sample_rate}")
    output_folder(f.out)  # a bad --out is said before seconds of rendering
    paths = write(pads(f.workdir, f.variations, f.seed, f.velocity_layers), f.out, f.name,
                  f.sample_rate, f.groove, f.tempo)
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.kit.export; argv without the program name (None: sys.argv)."""

    return cli.run(_command, argv, "python -m drumlayer.kit.export", __doc__, _define_flags)


if __name__ == "__main__":
    sys.exit(main())
