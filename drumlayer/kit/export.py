"""A trained kit (configs/kit.py) exported as kits that samplers play.

    python -m drumlayer.kit.export --workdir=runs/kit --out=my_kit [--variations=4]

Each trained category is a pad. Its recipes are points of that category's latent space: the
centre of its corpus's latent means, and `variations - 1` close variants (a seeded jitter
along the principal directions, scaled by their spread). Written to OUT:

- `kit.sfz` + `samples/`: an SFZ kit on the General MIDI drum map (kick 36, rim 37, snare 38,
  clap 39, tom 45, closed hat 42, open hat 46, cymbal 49), each pad's variants a round robin
  (`seq_length` / `seq_position`);
- `hydrogen/<name>/drumkit.xml` + samples: a Hydrogen drumkit, one instrument per pad;
- `recipes.json`: every pad's latents and weights; `kit.zip`: the WAVs and recipes.json.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import zipfile
from xml.sax.saxutils import escape

import numpy as np

from drumlayer import cli
from drumlayer.errors import DrumlayerError
from drumlayer.recipes import render
from drumlayer.recipes.bundle import Bundle
from drumlayer.workdir import Workdir, read_json

log = logging.getLogger(__name__)
GM_KEYS = {"kick": 36, "rim": 37, "snare": 38, "clap": 39, "closed-hat": 42, "tom": 45,
           "open-hat": 46, "cymbal": 49}
NAMES = {"kick": "Kick", "rim": "Rim", "snare": "Snare", "clap": "Clap",
         "closed-hat": "Closed Hat", "tom": "Tom", "open-hat": "Open Hat", "cymbal": "Cymbal"}
JITTER = 0.5  # variants: this many standard deviations along each principal direction, at most


def jitter(pca: dict, z: np.ndarray, n: int, seed: int, amount: float = JITTER) -> np.ndarray:
    """n seeded variants of z [L]: z moved by up to `amount` standard deviations along each
    principal direction of the latent PCA -> [n, L]."""
    comps = np.asarray(pca["components"], np.float32)
    spread = np.sqrt(np.asarray(pca["variance"], np.float32))
    steps = np.random.default_rng(seed).uniform(-amount, amount, (n, len(spread))) * spread
    return (np.asarray(z, np.float32)[None] + steps @ comps).astype(np.float32)


def pad_recipes(b: Bundle, variations: int, seed: int) -> dict:
    """{'latent' [V, L], 'weights' [V, k]}: the centre of the bundle's latent PCA and
    variations - 1 seeded variants around it."""
    if b.pca is None:
        raise DrumlayerError("the bundle has no PCA basis: rerun the main job's bundle stage")
    center = np.asarray(b.pca["center"], np.float32)
    z = np.concatenate([center[None], jitter(b.pca, center, variations - 1, seed)])
    return {"latent": z, "weights": np.asarray(b.decode(z))}


def pads(workdir: str, variations: int = 4, seed: int = 0) -> dict:
    """{category: {'recipes', 'audio' [V, n] (full band), 'sample_rate'}} of every trained
    category of a kit workdir, in kit.json's order."""
    wd = Workdir(workdir)
    summary = read_json(wd.kit_summary)
    if summary is None:
        raise DrumlayerError(f"{wd.kit_summary} is missing: run the kit job first "
                             f"(python -m drumlayer.main --config=configs/kit.py "
                             f"--workdir={workdir})")
    out = {}
    for category, entry in summary["categories"].items():
        if "workdir" not in entry:
            log.warning("kitexport: %s has no model (%s): its pad stays empty", category,
                        entry.get("skipped") or entry.get("failed"))
            continue
        b = Bundle.load(entry["workdir"])
        recipes = pad_recipes(b, variations, seed + len(out))
        out[category] = {"recipes": recipes, "audio": b.mix_full(recipes["weights"]),
                         "sample_rate": b.full_rate}
    if not out:
        raise DrumlayerError(f"no category of {workdir} has a trained model: nothing to export")
    return out


def write(pads_: dict, out: str, name: str = "drumlayer kit", rate: int = 48000) -> dict:
    """The SFZ kit, the Hydrogen kit, recipes.json and kit.zip into out; returns their paths."""
    os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    hyd = os.path.join(out, "hydrogen", render.safe_name(name))
    os.makedirs(hyd, exist_ok=True)
    sfz = ["// drumlayer: a layered kit on the General MIDI drum map; each pad's variants "
           "play as a round robin", "<control> default_path=samples/"]
    instruments, recipes, wavs = [], {}, {}
    for n, (category, pad) in enumerate(pads_.items()):
        key, audio = GM_KEYS[category], pad["audio"]
        sfz.append(f"<group> key={key} seq_length={len(audio)} // {NAMES[category]}")
        for i, x in enumerate(audio, start=1):
            fname = f"{render.safe_name(category)}_{i}.wav"
            wavs[fname] = render.export_wav(x, pad["sample_rate"], rate)
            sfz.append(f"<region> sample={fname} seq_position={i}")
        instruments.append(
            f"  <instrument><id>{n}</id><name>{escape(NAMES[category])}</name>"
            f"<midiOutNote>{key}</midiOutNote><instrumentComponent><layer>"
            f"<filename>{render.safe_name(category)}_1.wav</filename><min>0</min><max>1</max>"
            "</layer></instrumentComponent></instrument>")
        recipes[category] = {"gm_key": key, **{k: np.asarray(v).tolist() if isinstance(
            v, np.ndarray) else v for k, v in pad["recipes"].items()}}
    for fname, data in wavs.items():
        with open(os.path.join(out, "samples", fname), "wb") as f:
            f.write(data)
        if fname.endswith("_1.wav"):
            with open(os.path.join(hyd, fname), "wb") as f:
                f.write(data)
    paths = {"sfz": os.path.join(out, "kit.sfz"), "hydrogen": os.path.join(hyd, "drumkit.xml"),
             "recipes": os.path.join(out, "recipes.json"), "zip": os.path.join(out, "kit.zip")}
    with open(paths["sfz"], "w") as f:
        f.write("\n".join(sfz) + "\n")
    with open(paths["hydrogen"], "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<drumkit_info xmlns='
                '"http://www.hydrogen-music.org/drumkit">\n'
                f" <name>{escape(name)}</name>\n <author>drumlayer</author>\n"
                " <license>the licences of the samples the sources came from</license>\n"
                " <instrumentList>\n" + "\n".join(instruments) + "\n </instrumentList>\n"
                "</drumkit_info>\n")
    with open(paths["recipes"], "w") as f:
        json.dump(recipes, f, indent=1)
    with zipfile.ZipFile(paths["zip"], "w", zipfile.ZIP_DEFLATED) as z:
        for fname, data in wavs.items():
            z.writestr(f"samples/{fname}", data)
        z.writestr("recipes.json", json.dumps(recipes, indent=1))
    return paths


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "a kit job's workdir (configs/kit.py)", flag_values=fv)
    flags.DEFINE_string("out", None, "output folder", flag_values=fv)
    flags.DEFINE_integer("variations", 4, "round-robin variants per pad", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("sample_rate", 48000, "the samples' rate", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "the variants' seed", flag_values=fv)
    flags.DEFINE_string("name", "drumlayer kit", "the kit's name", flag_values=fv)


def _command(f, _args) -> int:
    if not f.workdir or not f.out:
        raise DrumlayerError("give --workdir=W (a kit job's workdir) and --out=DIR")
    paths = write(pads(f.workdir, f.variations, f.seed), f.out, f.name, f.sample_rate)
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.kit.export; argv without the program name (None: sys.argv)."""

    return cli.run(_command, argv, "python -m drumlayer.kit.export", __doc__, _define_flags)


if __name__ == "__main__":
    sys.exit(main())
