"""A trained kit (configs/kit.py) exported as kits that samplers play.

    python -m drumlayer.kit.export --workdir=runs/kit --out=my_kit [--variations=4]

Each trained category is a pad. Its recipes are points of that category's latent space: the
centre of its corpus's latent means, and `variations - 1` close variants (a seeded jitter
along the principal directions, scaled by their spread). Written to OUT:

- `kit.sfz` + `samples/`: an SFZ kit on the General MIDI drum map (kick 36, rim 37, snare 38,
  clap 39, tom 45, closed hat 42, open hat 46, cymbal 49), each pad's variants a round robin
  (`seq_length` / `seq_position`);
- `hydrogen/<name>/drumkit.xml` + samples: a Hydrogen drumkit, one instrument per pad;
- `recipes.json`: every pad's latents and weights; `kit.zip`: all of the above in one file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import zipfile
from xml.sax.saxutils import escape

import numpy as np

from drumlayer import cli
from drumlayer.data.categories import GM_NOTES, PAD_NAMES
from drumlayer.errors import DrumlayerError
from drumlayer.recipes import render, sfz
from drumlayer.recipes.bundle import Bundle
from drumlayer.workdir import Workdir, read_json

log = logging.getLogger(__name__)
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
            log.warning("kit export: %s has no model (%s): its pad stays empty", category,
                        entry.get("skipped") or entry.get("failed"))
            continue
        b = Bundle.load(entry["workdir"])
        recipes = pad_recipes(b, variations, seed + len(out))
        out[category] = {"recipes": recipes, "audio": b.mix_full(recipes["weights"]),
                         "sample_rate": b.full_rate}
    if not out:
        raise DrumlayerError(f"no category of {workdir} has a trained model: nothing to export")
    return out


def _hydrogen(name: str, pads_: dict) -> str:
    """A Hydrogen drumkit.xml: one instrument per pad on its GM note, playing its first sample."""
    instruments = [
        f"  <instrument><id>{n}</id><name>{escape(PAD_NAMES[category])}</name>"
        f"<midiOutNote>{GM_NOTES[category]}</midiOutNote><instrumentComponent><layer>"
        f"<filename>{render.safe_name(category)}_1.wav</filename><min>0</min><max>1</max>"
        "</layer></instrumentComponent></instrument>" for n, category in enumerate(pads_)]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<drumkit_info xmlns='
            '"http://www.hydrogen-music.org/drumkit">\n'
            f" <name>{escape(name)}</name>\n <author>drumlayer</author>\n"
            " <license>the licences of the samples the sources came from</license>\n"
            " <instrumentList>\n" + "\n".join(instruments) + "\n </instrumentList>\n"
            "</drumkit_info>\n")


def kit_files(pads_: dict, name: str = "drumlayer kit", rate: int = 48000) -> dict[str, bytes]:
    """{path in the kit: bytes} of the SFZ kit (kit.sfz, samples/), the Hydrogen kit
    (hydrogen/<name>/) and recipes.json, every sample rendered once."""
    hyd = f"hydrogen/{render.safe_name(name)}"
    groups, recipes, files = [], {}, {}
    for category, pad in pads_.items():
        key, audio = GM_NOTES[category], pad["audio"]
        groups.append(sfz.header("group", {"key": key, "seq_length": len(audio)},
                                 PAD_NAMES[category]))
        for i, x in enumerate(audio, start=1):
            fname = f"{render.safe_name(category)}_{i}.wav"
            files[f"{sfz.SAMPLES}/{fname}"] = render.export_wav(x, pad["sample_rate"], rate)
            if i == 1:
                files[f"{hyd}/{fname}"] = files[f"{sfz.SAMPLES}/{fname}"]
            groups.append(sfz.header("region", {"sample": fname, "seq_position": i}))
        recipes[category] = {"gm_key": key, **{k: np.asarray(v).tolist() if isinstance(
            v, np.ndarray) else v for k, v in pad["recipes"].items()}}
    files["kit.sfz"] = sfz.instrument(
        "drumlayer: a layered kit on the General MIDI drum map; each pad's variants play as a "
        "round robin", groups).encode()
    files[f"{hyd}/drumkit.xml"] = _hydrogen(name, pads_).encode()
    files["recipes.json"] = json.dumps(recipes, indent=1).encode()
    return files


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """The files {path: bytes} as one zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return buf.getvalue()


def write(pads_: dict, out: str, name: str = "drumlayer kit", rate: int = 48000) -> dict:
    """The kit's files (`kit_files`) into out, and all of them again as out/kit.zip; returns
    the paths of the SFZ, the Hydrogen drumkit.xml, recipes.json and the zip."""
    files = kit_files(pads_, name, rate)
    for path, data in files.items():
        os.makedirs(os.path.join(out, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(out, path), "wb") as f:
            f.write(data)
    paths = {"sfz": os.path.join(out, "kit.sfz"),
             "hydrogen": os.path.join(out, "hydrogen", render.safe_name(name), "drumkit.xml"),
             "recipes": os.path.join(out, "recipes.json"), "zip": os.path.join(out, "kit.zip")}
    with open(paths["zip"], "wb") as f:
        f.write(zip_bytes(files))
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
