"""Build a corpus of canonical one-shots from a person's folders and kits.

    python -m drumlayer.data.corpus --roots=DIR[,DIR...] --category=snare --out=DIR [--augment=N]
        [--holdout=DIR_OR_NAME[,...]]

writes into DIR:
    clips.npy      float32 [N, 22050], written row by row as files decode (memory grows by a few
                   KB of bookkeeping per file, not by the clips)
    manifest.csv   id, file, kit, instrument, category, source_format, licence, key, layer,
                   group (near-duplicate group), split (train/val/test by kit and group)
    rejected.csv   file, reason: every file that could not become a clip, and exact duplicates
    signatures.npy float16 [N, 1024], each clip's onset (near-duplicate detection)
    corpus.json    what was asked and what came out; written last, so its presence means done
and, with --augment=N, augmented.npy [M, 22050] + augmented.csv (id, parent) of the train split.

Decoding runs in worker processes (all cores); nothing here trains or computes model features.
"""

from __future__ import annotations

import collections
import concurrent.futures
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
from tqdm import tqdm

from drumlayer import cli
from drumlayer.data import audio as audio_lib
from drumlayer.data import augment as augment_lib
from drumlayer.data import candidates, categories, discovery, npy_rows
from drumlayer.data import procedural as procedural_lib
from drumlayer.data.dataset import (
    MANIFEST_FIELDS,
    MIN_TEST_CLIPS,
    OUTSIDE,
    POOL,
    SPLITS,
    read_manifest,
)
from drumlayer.data.split import (
    SIGNATURE_HEAD,
    SIGNATURE_POOL,
    near_duplicate_groups,
    onset_signature,
    split_ids,
    split_units,
)
from drumlayer.errors import DrumlayerError
from drumlayer.workdir import CorpusDir

log = logging.getLogger(__name__)

# Where Debian's packages put open drum kits (docs/data.md), relative to an install prefix.
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
NO_SAMPLES_HINT = (
    "to use real drum recordings, run `bash launch/fetch_open_kits.sh` (the open kits Debian "
    "ships, no root needed) or set data.roots / --roots to your own sample folders"
)


class CorpusError(DrumlayerError, RuntimeError):
    """The corpus cannot be built at all (e.g. zero usable clips)."""


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    category: str = "snare"  # one of categories.CATEGORIES, or 'all'
    spec: audio_lib.ClipSpec = audio_lib.ClipSpec()
    max_duration: float = 30.0  # seconds; longer files are loops or songs, not one-shots
    near_duplicate: float = 0.9  # waveform correlation that makes two clips one group
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    procedural: int = 300  # clips generated when no samples are found at all
    workers: int = 0  # 0: all cores
    # folders or files (absolute, or names matched as whole path components anywhere under the
    # roots) whose clips, and every near-copy of them, form the out-of-library test set
    holdout: tuple[str, ...] = ()


def default_roots() -> list[str]:
    """Open-kit folders that exist: the system's install places, then the fetch folder."""
    found = []
    for prefix in ("/", FETCH_DIR):
        for rel in OPEN_KIT_DIRS:
            d = os.path.join(prefix, rel)
            if os.path.isdir(d):
                found.append(d)
    return found


def held_out(path: str, holdout: tuple[str, ...]) -> bool:
    """Whether a file lies under one of `holdout`: an absolute path (the file itself or a folder
    above it), or a relative one matched as whole path components ('FluidR3_GM.sf2',
    'lmms/samples')."""
    path = "/" + path.replace(os.sep, "/").strip("/") + "/"
    for h in holdout:
        h = os.path.expanduser(h)
        key = h.replace(os.sep, "/").strip("/")
        if not key:
            continue
        if (path.startswith("/" + key + "/") if os.path.isabs(h) else f"/{key}/" in path):
            return True
    return False


def split_with_holdout(kept: list[candidates.Candidate], groups: np.ndarray,
                       opts: CorpusOptions) -> tuple[np.ndarray, str, list[str]]:
    """(split index [n] into SPLITS, 'kit' or 'group', holdout entries that matched nothing).

    The clips under opts.holdout and every clip of their near-duplicate groups (the same
    recording in another kit) are out of library; the rest are split by kit or group."""
    held = np.array([held_out(c.file, opts.holdout) for c in kept], bool)
    unmatched = [h for h in opts.holdout
                 if not any(held_out(c.file, (h,)) for c in kept)]
    outside = np.isin(groups, groups[held])
    splits = np.full(len(kept), SPLITS.index(OUTSIDE), np.int64)
    inside = np.flatnonzero(~outside)
    split_by = "kit"
    if inside.size:
        splits[inside], split_by = split_ids(
            [kept[i].kit for i in inside], groups[inside], opts.split, opts.seed,
            [kept[i].category for i in inside])
    return splits, split_by, unmatched


def _decode(job: tuple[candidates.Candidate, audio_lib.ClipSpec, float]):
    """Worker: candidate -> (clip, sha1 digest, onset signature) or (None, reason, None)."""
    cand, spec, max_duration = job
    try:
        clip = candidates.load_candidate(cand, spec, max_duration=max_duration)
    except audio_lib.AudioError as e:
        return None, e.reason + (f" ({e.hint})" if e.hint else ""), None
    except Exception as e:  # noqa: BLE001 - one bad file never stops the corpus
        return None, f"unexpected error: {type(e).__name__}: {e}", None
    return clip, hashlib.sha1(clip.tobytes()).digest(), onset_signature(clip)


def _decode_all(cands, spec, max_duration, workers, progress):
    """Yield (candidate, clip or None, digest or reason, signature) in order, on all cores."""
    jobs = [(c, spec, max_duration) for c in cands]
    bar = tqdm(total=len(cands), desc="decoding", unit="file", disable=not progress,
               file=sys.stderr, mininterval=1.0)
    pool = None
    if workers > 1 and len(cands) >= 64:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_decode, jobs, chunksize=32)
    else:
        results = map(_decode, jobs)
    try:
        for cand, res in zip(cands, results, strict=True):
            bar.update()
            yield cand, *res
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()


def library_state(roots: list[str], out_dir: str | None = None) -> str:
    """A digest of every file under roots (path, size, modification time), as the build walks
    them, except the corpus's own output folder: adding, removing or replacing a sample
    changes it."""
    files, problems = discovery.walk_files(roots)
    skip = os.path.abspath(out_dir) + os.sep if out_dir else None
    h = hashlib.sha1()
    for path in files:
        if skip and path.startswith(skip):
            continue
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "replace"))
        except OSError as e:
            h.update(f"{path}\0{e.errno}\n".encode("utf-8", "replace"))
    for path, why in problems:
        h.update(f"{path}\0{why}\n".encode("utf-8", "replace"))
    return h.hexdigest()


def fingerprint(roots: list[str], opts: CorpusOptions, out_dir: str | None = None) -> str:
    """What a corpus (written to out_dir) is built from: its roots, the files under them and
    the options."""
    blob = json.dumps({"roots": sorted(roots), "files": library_state(roots, out_dir),
                       "opts": dataclasses.asdict(opts)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def _write_csv(path: str, header, rows) -> None:
    tmp = path + ".tmp"
    # a file name that is not UTF-8 is written as its own bytes, so that it reads back as the
    # same path (dataset.read_manifest)
    with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
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
    cd = CorpusDir(out_dir)
    os.makedirs(cd.dir, exist_ok=True)
    roots = [os.path.abspath(os.path.expanduser(r)) for r in (roots or default_roots())]
    if not roots:
        return build_procedural(out_dir, opts)
    log.info("corpus: looking for %s one-shots under %d roots: %s", opts.category, len(roots),
             ", ".join(roots))
    cands, rejected = discovery.discover(roots)
    n_found = len(cands)
    if opts.category != "all":
        cands = [c for c in cands if c.category == opts.category]
    log.info("corpus: %d candidates found, %d are %s", n_found, len(cands),
             "of any category" if opts.category == "all" else opts.category)
    spec = opts.spec
    tmp_path = cd.clips + ".tmp.npy"
    kept: list[candidates.Candidate] = []
    sig_path = cd.signatures
    seen: dict[bytes, int] = {}
    n_dup = 0
    workers = opts.workers or os.cpu_count() or 1
    rows = max(1, len(cands))
    with (npy_rows.RowWriter(tmp_path, (spec.samples,), np.float32, rows) as out,
          npy_rows.RowWriter(sig_path, (SIGNATURE_HEAD // SIGNATURE_POOL,), np.float16,
                          rows) as sig_out):
        for cand, clip, digest, sig in _decode_all(cands, spec, opts.max_duration, workers,
                                                   progress):
            where = cand.file if not cand.spans else f"{cand.file}#{cand.kit}/{cand.instrument}"
            if clip is None:
                rejected.append((where, digest))
            elif digest in seen:
                n_dup += 1
                rejected.append((where, f"duplicate: identical to clip {seen[digest]} "
                                        f"({kept[seen[digest]].file})"))
            else:
                seen[digest] = out.append(clip)
                kept.append(cand)
                sig_out.append(sig)
    n = len(kept)
    _write_csv(cd.rejected, ("file", "reason"), rejected)
    skipped = collections.Counter(r.removeprefix(discovery.SKIPPED) for _, r in rejected
                                  if r.startswith(discovery.SKIPPED))
    for reason, count in sorted(skipped.items(), key=lambda x: -x[1]):
        log.info("corpus: skipped %d file%s: %s (listed in %s)", count,
                 "" if count == 1 else "s", reason, cd.rejected)
    n_skipped = sum(skipped.values())
    if n == 0:
        os.remove(tmp_path)
        os.remove(sig_path)
        raise CorpusError(
            f"no usable {opts.category} clips under {', '.join(roots)}: {n_found} candidates, "
            f"{len(rejected)} rejected (reasons in {cd.rejected}); {NO_SAMPLES_HINT}")
    os.replace(tmp_path, cd.clips)
    layer_keys = [f"{c.kit}\0{c.instrument}\0{c.key}" for c in kept]
    groups = near_duplicate_groups(sig_path, layer_keys, opts.near_duplicate)
    splits, split_by, unmatched = split_with_holdout(kept, groups, opts)
    if opts.holdout:
        log.info("corpus: %d clips out of library (data.holdout %s and their near-copies)%s",
                 int(np.sum(splits == SPLITS.index(OUTSIDE))), ", ".join(opts.holdout),
                 f"; nothing matched {', '.join(unmatched)}" if unmatched else "")
    if split_by == "group":
        log.warning("corpus: whole kits (%d) cannot be split near %s, or leave a category "
                    "fewer than %d clips to validate or test on; split by near-duplicate group "
                    "instead (within each category), so clips of one kit may be on both sides",
                    len({c.kit for c in kept}), "/".join(f"{x:g}" for x in opts.split),
                    MIN_TEST_CLIPS)
    rows = [(i, c.file, c.kit, c.instrument, c.category, c.source_format, c.licence,
             "" if c.key is None else c.key, c.layer, int(groups[i]), SPLITS[splits[i]])
            for i, c in enumerate(kept)]
    _write_csv(cd.manifest, MANIFEST_FIELDS, rows)
    meta = {
        "fingerprint": fingerprint(roots, opts, cd.dir), "roots": roots,
        "category": opts.category,
        "clips": n, "samples": spec.samples, "sample_rate": spec.sample_rate,
        "candidates": len(cands), "rejected": len(rejected) - n_dup - n_skipped,
        "duplicates": n_dup, "skipped": n_skipped, "groups": int(groups.max()) + 1,
        "kits": len({c.kit for c in kept}),
        "split": {s: int(np.sum(splits == k)) for k, s in enumerate(SPLITS)},
        "split_by": split_by, "procedural": False, "seconds": round(time.time() - t0, 2),
    }
    _finish(cd, meta)
    return meta


def subset(src_dir: str, out_dir: str, category: str, pool: tuple[str, ...] = ()) -> dict:
    """The clips of one category of a corpus built for every category ('all'), as a corpus of
    their own in out_dir: the same clips, kits, groups and split (made over whole kits, so a
    kit's snare and its kick are on the same side), renumbered from 0. The training clips of
    the categories in `pool` follow, in split 'pool': candidate sources, never targets (a clap
    layered into a snare). Returns corpus.json's dict."""
    t0 = time.time()
    src, cd = CorpusDir(src_dir), CorpusDir(out_dir)
    os.makedirs(cd.dir, exist_ok=True)
    whole_rows = read_manifest(src)
    rows = [r for r in whole_rows if r["category"] == category]
    extra = [{**r, "split": POOL} for r in whole_rows
             if r["category"] in pool and r["category"] != category and r["split"] == "train"]
    own, rows = len(rows), rows + extra
    ids = np.array([int(r["id"]) for r in rows], np.int64)
    clips = np.load(src.clips, mmap_mode="r")
    np.save(cd.clips, np.asarray(clips[ids], np.float32))
    _write_csv(cd.manifest, MANIFEST_FIELDS,
               [(i, *(r[f] for f in MANIFEST_FIELDS[1:])) for i, r in enumerate(rows)])
    _write_csv(cd.rejected, ("file", "reason"), [])
    with open(src.meta) as f:
        whole = json.load(f)
    meta = {**whole, "category": category, "clips": own, "candidates": own,
            "rejected": 0, "duplicates": 0, "skipped": 0,
            "groups": len({r["group"] for r in rows[:own]}),
            "kits": len({r["kit"] for r in rows[:own]}),
            "split": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
            "pool": {"categories": sorted(set(pool) - {category}), "clips": len(extra)},
            "subset_of": src.dir, "seconds": round(time.time() - t0, 2)}
    _finish(cd, meta)
    return meta


def build_procedural(
    out_dir: str, opts: CorpusOptions, why: str = "no drum samples were found"
) -> dict:
    """out_dir gets opts.procedural synthetic snares, written as a corpus like any other."""
    cd = CorpusDir(out_dir)
    os.makedirs(cd.dir, exist_ok=True)
    msg = (f"{why}: using {opts.procedural} procedural snares instead of recordings; "
           f"{NO_SAMPLES_HINT}")
    warnings.warn(f"drumlayer: {msg}", stacklevel=2)
    log.warning("corpus: %s", msg)
    clips = procedural_lib.procedural_snares(opts.procedural, opts.spec.samples, opts.seed)
    np.save(cd.clips, clips)
    n = len(clips)
    # Each synthetic clip is its own kit; split them like any other corpus.
    splits = split_units(np.arange(n), opts.split, opts.seed)
    rows = [(i, f"procedural:{opts.seed}:{i}", "procedural", f"snare {i}", "snare", "procedural",
             "CC0", "", "", i, SPLITS[splits[i]]) for i in range(n)]
    _write_csv(cd.manifest, MANIFEST_FIELDS, rows)
    _write_csv(cd.rejected, ("file", "reason"), [])
    meta = {"fingerprint": fingerprint([], opts), "roots": [], "category": "snare", "clips": n,
            "samples": opts.spec.samples, "sample_rate": opts.spec.sample_rate, "candidates": n,
            "rejected": 0, "duplicates": 0, "skipped": 0, "groups": n, "kits": n,
            "split": {s: int(np.sum(splits == k)) for k, s in enumerate(SPLITS)},
            "procedural": True, "seconds": 0.0}
    _finish(cd, meta)
    return meta


def _finish(cd: CorpusDir, meta: dict) -> None:
    with open(cd.meta + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(cd.meta + ".tmp", cd.meta)
    log.info("corpus: %d %s clips (%d kits, %d near-duplicate groups; split %s) from %d "
             "candidates; %d rejected, %d duplicates dropped -> %s (%.1f s)",
             meta["clips"], meta["category"], meta["kits"], meta["groups"], meta["split"],
             meta["candidates"], meta["rejected"], meta["duplicates"], cd.dir, meta["seconds"])


def write_augmented(out_dir: str, per_clip: int, seed: int = 0,
                    splits: tuple[str, ...] = ("train",)) -> int:
    """Augment the clips of some splits: augmented.npy [M, S] + augmented.csv (id, parent),
    in corpus order. A variant depends only on (seed, parent, j), whichever splits are varied.

    Written in chunks through a memory map. Returns M.
    """
    cd = CorpusDir(out_dir)
    rows = read_manifest(cd)
    parents = np.array([int(r["id"]) for r in rows if r["split"] in splits], dtype=np.int64)
    path = cd.augmented
    def variants(p: int) -> list[np.ndarray]:
        clip = npy_rows.read_rows(cd.clips, p, p + 1)[0]
        return [augment_lib.variant(clip, seed, p, j) for j in range(per_clip)]

    # Every variant depends only on (seed, parent, j): the clips are augmented on every core
    # (numpy, scipy and soxr release the GIL), a window of them at a time, and written in order.
    window = 8 * (os.cpu_count() or 1)
    with (npy_rows.RowWriter(path + ".tmp.npy", (npy_rows.read_rows(cd.clips, 0, 1).shape[1],),
                          np.float32, len(parents) * per_clip) as out,
          concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool,
          tqdm(total=len(parents), desc="augmenting", unit="clip", file=sys.stderr,
               mininterval=1.0) as bar):
        for lo in range(0, len(parents), window):
            for vs in pool.map(variants, parents[lo:lo + window].tolist()):
                for v in vs:
                    out.append(v)
                bar.update()
    os.replace(path + ".tmp.npy", path)
    _write_csv(cd.augmented_index, ("id", "parent"),
               [(i, int(p)) for i, p in enumerate(np.repeat(parents, per_clip))])
    log.info("corpus: %d augmented variants of the %s clips (%d per clip) -> %s",
             len(parents) * per_clip, " and ".join(splits), per_clip, path)
    return len(parents) * per_clip


def write_layered(out_dir: str, per_clip: int, seed: int = 0) -> int:
    """Layered targets of the train split: layered.npy [L, S] (L = per_clip x its clips), each
    a training clip with one or two others mixed under it (`augment.layered`), and layered.csv
    (id, parents, gains). Training targets only: never sources, never measured. Returns L."""
    cd = CorpusDir(out_dir)
    ids = np.array([int(r["id"]) for r in read_manifest(cd) if r["split"] == "train"], np.int64)
    if len(ids) < 2:
        raise CorpusError(f"data.layered_per_clip needs 2 training clips to layer; "
                          f"{cd.manifest} has {len(ids)}")
    clips = np.load(cd.clips, mmap_mode="r")[ids]
    index = []
    with npy_rows.RowWriter(cd.layered + ".tmp.npy", (clips.shape[1],), np.float32,
                            len(ids) * per_clip) as out:
        for i in range(len(ids)):
            for j in range(per_clip):
                mix, idx, gains = augment_lib.layered(clips, seed, i, j)
                index.append((out.append(mix), ";".join(str(int(ids[k])) for k in idx),
                              ";".join(f"{g:.4f}" for g in gains)))
    os.replace(cd.layered + ".tmp.npy", cd.layered)
    _write_csv(cd.layered_index, ("id", "parents", "gains"), index)
    log.info("corpus: %d layered targets (%d per training clip) -> %s", len(index), per_clip,
             cd.layered)
    return len(index)


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("roots", "", "comma-separated folders or kit files (default: open kits)",
                        flag_values=fv)
    flags.DEFINE_string("category", "snare", f"one of {', '.join(categories.CATEGORIES)}, or 'all'",
                        flag_values=fv)
    flags.DEFINE_string("out", "runs/corpus", "output folder", flag_values=fv)
    flags.DEFINE_string("holdout", "", "comma-separated folders or file names held out of the "
                        "library: the 'outside' split (out-of-library test set)", flag_values=fv)
    flags.DEFINE_integer("augment", 0, "augmented variants per train clip (0: none)",
                         flag_values=fv)
    flags.DEFINE_float("max_duration", 30.0, "longest file, in seconds, taken as a one-shot",
                       flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed of the split and the augmentation", flag_values=fv)
    flags.DEFINE_integer("workers", 0, "decoding processes (0: all cores)", flag_values=fv)
    flags.DEFINE_bool("quiet", False, "no progress bar", flag_values=fv)


def _command(f, _) -> int:
    roots = [r for r in f.roots.split(",") if r] if f.roots else None
    opts = CorpusOptions(category=f.category, max_duration=f.max_duration, seed=f.seed,
                         workers=f.workers, holdout=tuple(h for h in f.holdout.split(",") if h))
    meta = build(roots, f.out, opts, progress=not f.quiet)
    if f.augment:
        write_augmented(f.out, f.augment, seed=f.seed)
    print(f"{meta['clips']} clips, {meta['rejected']} rejected, {meta['duplicates']} duplicates, "
          f"{meta.get('skipped', 0)} other files skipped -> {f.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.data.corpus [flags]; argv without the program name (None: sys.argv)."""

    return cli.run(_command, argv, "python -m drumlayer.data.corpus", __doc__, _define_flags)


if __name__ == "__main__":
    sys.exit(main())
