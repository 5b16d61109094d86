"""Build a corpus of canonical one-shots from a person's folders and kits.

    python -m drumlayer.corpus --roots=DIR[,DIR...] --category=snare --out=DIR [--augment=N]

writes into DIR:
    clips.npy      float32 [N, 22050], filled row by row through a memory map (100,000 files cost
                   no more memory than 1,000)
    manifest.csv   id, file, kit, instrument, category, source_format, licence, key, layer,
                   group (near-duplicate group), split (train/val/test by kit and group)
    rejected.csv   file, reason: every file that could not become a clip, and exact duplicates
    corpus.json    what was asked and what came out; written last, so its presence means done
and, with --augment=N, augmented.npy [M, 22050] + augmented.csv (id, parent) of the train split.

Decoding runs in worker processes (all cores); nothing here trains or computes model features.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
import warnings

import numpy as np
import soundfile as sf
from tqdm import tqdm

from drumlayer import audio as audio_lib
from drumlayer import augment as augment_lib
from drumlayer import kits, synth

log = logging.getLogger(__name__)

# Where Debian's packages put open drum kits (DATA.md), relative to an install prefix.
OPEN_KIT_DIRS = (
    "usr/share/hydrogen/data/drumkits",
    "usr/share/sounds/sf2",
    "usr/share/lmms/samples/drums",
    "usr/share/doc/chuck-data/examples",
)
# Where launch/fetch_open_kits.sh unpacks the same packages without root.
FETCH_DIR = os.environ.get(
    "DRUMLAYER_KITS",
    os.path.join(os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share")),
                 "drumlayer", "open-kits"),
)
MANIFEST_FIELDS = ("id", "file", "kit", "instrument", "category", "source_format", "licence",
                   "key", "layer", "group", "split")
SPLITS = ("train", "val", "test")
NO_SAMPLES_HINT = (
    "to use real drum recordings, run `bash launch/fetch_open_kits.sh` (the open kits Debian "
    "ships, no root needed) or set data.roots / --roots to your own sample folders"
)


class CorpusError(RuntimeError):
    """The corpus cannot be built at all (e.g. zero usable clips)."""


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    category: str = "snare"  # one of kits.CATEGORIES, or 'all'
    spec: audio_lib.ClipSpec = audio_lib.ClipSpec()
    max_duration: float = 30.0  # seconds; longer files are loops or songs, not one-shots
    near_duplicate: float = 0.9  # waveform correlation that makes two clips one group
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    procedural: int = 300  # clips generated when no samples are found at all
    workers: int = 0  # 0: all cores


def default_roots() -> list[str]:
    """Open-kit folders that exist: the system's install places, then the fetch folder."""
    found = []
    for prefix in ("/", FETCH_DIR):
        for rel in OPEN_KIT_DIRS:
            d = os.path.join(prefix, rel)
            if os.path.isdir(d):
                found.append(d)
    return found


# ----------------------------------------------------------------------------- decoding


def _decode(job: tuple[kits.Candidate, audio_lib.ClipSpec, float]):
    """Worker: candidate -> (clip or None, reason)."""
    cand, spec, max_duration = job
    try:
        if not cand.spans:
            try:
                info = sf.info(cand.file)
                if info.duration > max_duration:
                    return None, (f"too long for a one-shot ({info.duration:.1f} s > "
                                  f"{max_duration:g} s; raise max_duration to include it)")
            except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
                pass  # load_clip gives the precise reason
        return kits.load_candidate(cand, spec), ""
    except audio_lib.AudioError as e:
        return None, e.reason + (f" ({e.hint})" if e.hint else "")
    except Exception as e:  # noqa: BLE001 - one bad file never stops the corpus
        return None, f"unexpected error: {type(e).__name__}: {e}"


def _decode_all(cands, spec, max_duration, workers, progress):
    """Yield (candidate, clip or None, reason) in order, decoding on all cores."""
    jobs = ((c, spec, max_duration) for c in cands)
    bar = tqdm(total=len(cands), desc="decoding", unit="file", disable=not progress,
               file=sys.stderr, mininterval=1.0)
    if workers == 1 or len(cands) < 16:
        results = map(_decode, jobs)
        pool = None
    else:
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_decode, jobs, chunksize=8)
    try:
        for cand, (clip, reason) in zip(cands, results, strict=True):
            bar.update()
            yield cand, clip, reason
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def shrink_npy(path: str, rows: int) -> None:
    """Cut a C-order .npy file to its first `rows` rows in place (header rewritten, same size)."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        offset = f.tell()
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
                  "shape": (rows, *shape[1:])}
        text = repr(header).encode("latin1")
        head_len = offset - 10 if version == (1, 0) else offset - 12
        f.seek(offset - head_len)
        f.write(text + b" " * (head_len - len(text) - 1) + b"\n")
        f.truncate(offset + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


# ----------------------------------------------------------------------------- grouping


def _signatures(clips: np.ndarray, n: int, head: int = 2048, chunk: int = 2048) -> np.ndarray:
    """Zero-mean, unit-norm first `head` samples of each clip: [n, head] float32 (chunked)."""
    out = np.empty((n, head), np.float32)
    for i in range(0, n, chunk):
        x = np.asarray(clips[i : i + chunk, :head], dtype=np.float32)
        x = x - x.mean(axis=1, keepdims=True)
        out[i : i + chunk] = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    return out


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def labels(self) -> np.ndarray:
        roots = np.array([self.find(i) for i in range(len(self.parent))])
        return np.unique(roots, return_inverse=True)[1]


def near_duplicate_groups(
    clips: np.ndarray, n: int, layer_keys: list[str], threshold: float, block: int = 512
) -> np.ndarray:
    """Group ids [n]: velocity layers of one instrument (same layer_key) and clips whose onset
    waveforms correlate above `threshold` (the same recording reused, e.g. across soundfonts).

    clips: [>=n, S] (a memory map is fine); compared in blocks, so memory is O(block * n).
    """
    uf = _UnionFind(n)
    first: dict[str, int] = {}
    for i, k in enumerate(layer_keys):
        uf.union(i, first.setdefault(k, i))
    sig = _signatures(clips, n)
    for i in range(0, n, block):
        sim = sig[i : i + block] @ sig[i:].T  # only pairs (a, b) with b >= a
        for a, b in zip(*np.nonzero(sim >= threshold), strict=True):
            if b > a:
                uf.union(i + int(a), i + int(b))
    return uf.labels()


def split_units(units: np.ndarray, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """Assign whole units (kits joined with near-duplicate groups) to splits.

    units: [n] int. Returns [n] int in {0: train, 1: val, 2: test}. Units are visited in a
    seeded random order and each goes to the split furthest below its target share, so the
    shares come close to `fractions` while no unit is ever on two sides.
    """
    fractions = np.asarray(fractions, np.float64) / np.sum(fractions)
    ids, sizes = np.unique(units, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    target = fractions * len(units)
    have = np.zeros(len(fractions))
    assign = {}
    for j in order:
        deficit = (target - have) / np.maximum(target, 1e-9)
        s = int(np.argmax(deficit))
        assign[ids[j]] = s
        have[s] += sizes[j]
    return np.array([assign[u] for u in units], dtype=np.int64)


def split_ids(kit_names: list[str], groups: np.ndarray, fractions, seed: int) -> np.ndarray:
    """Splits [n] in {0,1,2}: clips of one kit or one near-duplicate group share a split."""
    n = len(kit_names)
    uf = _UnionFind(n)
    first_of_kit: dict[str, int] = {}
    first_of_group: dict[int, int] = {}
    for i in range(n):
        uf.union(i, first_of_kit.setdefault(kit_names[i], i))
        uf.union(i, first_of_group.setdefault(int(groups[i]), i))
    return split_units(uf.labels(), fractions, seed)


# ----------------------------------------------------------------------------- building


def _fingerprint(roots: list[str], opts: CorpusOptions) -> str:
    blob = json.dumps({"roots": sorted(roots), "opts": dataclasses.asdict(opts)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def is_built(out_dir: str, roots: list[str], opts: CorpusOptions) -> bool:
    """True when out_dir holds a complete corpus built from the same roots and options."""
    try:
        with open(os.path.join(out_dir, "corpus.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return meta.get("fingerprint") == _fingerprint(roots, opts) and os.path.exists(
        os.path.join(out_dir, "clips.npy"))


def _write_csv(path: str, header, rows) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def build(
    roots: list[str] | None, out_dir: str, opts: CorpusOptions = CorpusOptions(),
    progress: bool = True,
) -> dict:
    """Discover, decode, deduplicate, group and split one-shots into out_dir.

    roots: folders or kit files; None or [] means the open kits found on this machine, and
    failing those, procedurally generated snares (with a warning). Returns corpus.json's dict.
    Raises CorpusError when not one usable clip results.
    """
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    roots = [os.path.abspath(os.path.expanduser(r)) for r in (roots or default_roots())]
    if not roots:
        return build_procedural(out_dir, opts)
    log.info("corpus: looking for %s one-shots under %d roots: %s", opts.category, len(roots),
             ", ".join(roots))
    cands, rejected = kits.discover(roots)
    n_found = len(cands)
    if opts.category != "all":
        cands = [c for c in cands if c.category == opts.category]
    log.info("corpus: %d candidates found, %d are %s", n_found, len(cands), opts.category)
    spec = opts.spec
    clips_path = os.path.join(out_dir, "clips.npy")
    tmp_path = os.path.join(out_dir, "clips.tmp.npy")
    mm = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.float32,
                                   shape=(max(1, len(cands)), spec.samples))
    kept: list[kits.Candidate] = []
    seen: dict[bytes, int] = {}
    n_dup = 0
    workers = opts.workers or os.cpu_count() or 1
    for cand, clip, reason in _decode_all(cands, spec, opts.max_duration, workers, progress):
        where = cand.file if not cand.spans else f"{cand.file}#{cand.kit}/{cand.instrument}"
        if clip is None:
            rejected.append((where, reason))
            continue
        digest = hashlib.sha1(clip.tobytes()).digest()
        if digest in seen:
            n_dup += 1
            rejected.append((where, f"duplicate: identical to clip {seen[digest]} "
                                    f"({kept[seen[digest]].file})"))
            continue
        seen[digest] = len(kept)
        mm[len(kept)] = clip
        kept.append(cand)
    mm.flush()
    del mm
    n = len(kept)
    _write_csv(os.path.join(out_dir, "rejected.csv"), ("file", "reason"), rejected)
    if n == 0:
        os.remove(tmp_path)
        raise CorpusError(
            f"no usable {opts.category} clips under {', '.join(roots)}: {n_found} candidates, "
            f"{len(rejected)} rejected (reasons in {out_dir}/rejected.csv); {NO_SAMPLES_HINT}")
    shrink_npy(tmp_path, n)
    os.replace(tmp_path, clips_path)
    clips = np.load(clips_path, mmap_mode="r")
    layer_keys = [f"{c.kit}\0{c.instrument}\0{c.key}" for c in kept]
    groups = near_duplicate_groups(clips, n, layer_keys, opts.near_duplicate)
    splits = split_ids([c.kit for c in kept], groups, opts.split, opts.seed)
    rows = [(i, c.file, c.kit, c.instrument, c.category, c.source_format, c.licence,
             "" if c.key is None else c.key, c.layer, int(groups[i]), SPLITS[splits[i]])
            for i, c in enumerate(kept)]
    _write_csv(os.path.join(out_dir, "manifest.csv"), MANIFEST_FIELDS, rows)
    meta = {
        "fingerprint": _fingerprint(roots, opts), "roots": roots, "category": opts.category,
        "clips": n, "samples": spec.samples, "sample_rate": spec.sample_rate,
        "candidates": len(cands), "rejected": len(rejected) - n_dup, "duplicates": n_dup,
        "groups": int(groups.max()) + 1, "kits": len({c.kit for c in kept}),
        "split": {s: int(np.sum(splits == k)) for k, s in enumerate(SPLITS)},
        "procedural": False, "seconds": round(time.time() - t0, 2),
    }
    _finish(out_dir, meta)
    return meta


def build_procedural(
    out_dir: str, opts: CorpusOptions, why: str = "no drum samples were found"
) -> dict:
    """out_dir gets opts.procedural synthetic snares, written as a corpus like any other."""
    os.makedirs(out_dir, exist_ok=True)
    msg = (f"{why}: using {opts.procedural} procedural snares instead of recordings; "
           f"{NO_SAMPLES_HINT}")
    warnings.warn(f"drumlayer: {msg}", stacklevel=2)
    log.warning("corpus: %s", msg)
    clips = synth.procedural_snares(opts.procedural, opts.spec.samples, opts.seed)
    np.save(os.path.join(out_dir, "clips.npy"), clips)
    n = len(clips)
    # Each synthetic clip is its own kit; split them like any other corpus.
    splits = split_units(np.arange(n), opts.split, opts.seed)
    rows = [(i, f"procedural:{opts.seed}:{i}", "procedural", f"snare {i}", "snare", "procedural",
             "CC0", "", "", i, SPLITS[splits[i]]) for i in range(n)]
    _write_csv(os.path.join(out_dir, "manifest.csv"), MANIFEST_FIELDS, rows)
    _write_csv(os.path.join(out_dir, "rejected.csv"), ("file", "reason"), [])
    meta = {"fingerprint": _fingerprint([], opts), "roots": [], "category": "snare", "clips": n,
            "samples": opts.spec.samples, "sample_rate": opts.spec.sample_rate, "candidates": n,
            "rejected": 0, "duplicates": 0, "groups": n, "kits": n,
            "split": {s: int(np.sum(splits == k)) for k, s in enumerate(SPLITS)},
            "procedural": True, "seconds": 0.0}
    _finish(out_dir, meta)
    return meta


def _finish(out_dir: str, meta: dict) -> None:
    tmp = os.path.join(out_dir, "corpus.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "corpus.json"))
    log.info("corpus: %d %s clips (%d kits, %d near-duplicate groups; split %s) from %d "
             "candidates; %d rejected, %d duplicates dropped -> %s (%.1f s)",
             meta["clips"], meta["category"], meta["kits"], meta["groups"], meta["split"],
             meta["candidates"], meta["rejected"], meta["duplicates"], out_dir, meta["seconds"])


def read_manifest(out_dir: str) -> list[dict[str, str]]:
    with open(os.path.join(out_dir, "manifest.csv"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_augmented(out_dir: str, per_clip: int, seed: int = 0, split: str = "train") -> int:
    """Augment the clips of one split: augmented.npy [M, S] + augmented.csv (id, parent).

    Written in chunks through a memory map. Returns M.
    """
    rows = read_manifest(out_dir)
    parents = np.array([int(r["id"]) for r in rows if r["split"] == split], dtype=np.int64)
    clips = np.load(os.path.join(out_dir, "clips.npy"), mmap_mode="r")
    path = os.path.join(out_dir, "augmented.npy")
    out = np.lib.format.open_memmap(path + ".tmp.npy", mode="w+", dtype=np.float32,
                                    shape=(len(parents) * per_clip, clips.shape[1]))
    for k, p in enumerate(tqdm(parents, desc="augmenting", unit="clip", file=sys.stderr,
                               mininterval=1.0)):
        variants, _ = augment_lib.augment(clips[p : p + 1], per_clip, seed=seed * 1_000_003 + p)
        out[k * per_clip : (k + 1) * per_clip] = variants
    out.flush()
    del out
    os.replace(path + ".tmp.npy", path)
    _write_csv(os.path.join(out_dir, "augmented.csv"), ("id", "parent"),
               [(i, int(p)) for i, p in enumerate(np.repeat(parents, per_clip))])
    log.info("corpus: %d augmented %s clips (%d per clip) -> %s", len(parents) * per_clip,
             split, per_clip, path)
    return len(parents) * per_clip


def main(argv):
    from absl import flags

    f = flags.FLAGS
    roots = [r for r in f.roots.split(",") if r] if f.roots else None
    opts = CorpusOptions(category=f.category, max_duration=f.max_duration, seed=f.seed,
                         workers=f.workers)
    try:
        meta = build(roots, f.out, opts, progress=not f.quiet)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if f.augment:
        write_augmented(f.out, f.augment, seed=f.seed)
    print(f"{meta['clips']} clips, {meta['rejected']} rejected, {meta['duplicates']} duplicates "
          f"-> {f.out}")
    return 0


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("roots", "", "comma-separated folders or kit files (default: open kits)")
    flags.DEFINE_string("category", "snare", f"one of {', '.join(kits.CATEGORIES)}, or 'all'")
    flags.DEFINE_string("out", "runs/corpus", "output folder")
    flags.DEFINE_integer("augment", 0, "augmented variants per train clip (0: none)")
    flags.DEFINE_float("max_duration", 30.0, "longest file, in seconds, taken as a one-shot")
    flags.DEFINE_integer("seed", 0, "seed of the split and the augmentation")
    flags.DEFINE_integer("workers", 0, "decoding processes (0: all cores)")
    flags.DEFINE_bool("quiet", False, "no progress bar")
    app.run(lambda argv: sys.exit(main(argv)))
