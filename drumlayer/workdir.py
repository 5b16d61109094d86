"""The one place that knows the layout of a run's working directory: every artifact path.

    WORKDIR/config.json         the config the run was started with
    WORKDIR/.lock               held by the job writing here (drumlayer.lock)
    WORKDIR/corpus/             clips.npy, manifest.csv, rejected.csv, signatures.npy,
                                corpus.json, augmented.npy, augmented.csv, augmented.json,
                                layered.npy, layered.csv, layered.json, stamp.json
    WORKDIR/features/           clips.npy [N, D], augmented.npy [M, D], layered.npy [L, D],
                                features.json
    WORKDIR/selection/          sources.json, sources.npy [k, S], targets.json, selection.json
    WORKDIR/checkpoints/        Orbax: the latest epochs, best/ (by validation loss), inputs.json,
                                preempted/ + preempted.json (a state saved mid-epoch on SIGTERM)
    WORKDIR/train.json          stamp of a finished training; train_summary.json its numbers
    WORKDIR/metrics.jsonl       per step and per epoch; WORKDIR/tensorboard/ the same as events
    WORKDIR/profile/            a jax.profiler trace of a few training steps (train.profile)
    WORKDIR/bundle/             params.msgpack, sources.npy, full_sources.npy, standardisation.npz,
                                pca.npz, bundle.json, stamp.json
    WORKDIR/eval/               metrics.json, report.md, figures, audio/, evaluate.json
    (analyze --out=DIR)         <name>.recipe.json, <name>.wav, rejected.csv, and summary.csv
                                last: a folder without it is a run that did not finish

Every module that reads or writes one of these asks a `Workdir` (or a `CorpusDir`, for a corpus
built on its own with `python -m drumlayer.data.corpus --out=DIR`) for its path; `read_json` and
`write_json` read and write its JSON files (stamps, summaries) safely.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

from drumlayer.errors import DrumlayerError


@dataclasses.dataclass(frozen=True)
class _Folder:
    dir: str

    def __post_init__(self):
        object.__setattr__(self, "dir", os.path.abspath(os.path.expanduser(self.dir)))

    def _p(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def __str__(self) -> str:
        return self.dir


class CorpusDir(_Folder):
    """A built corpus: canonical clips, their manifest, and the augmented training targets."""

    clips = property(lambda s: s._p("clips.npy"))  # float32 [N, S]
    manifest = property(lambda s: s._p("manifest.csv"))
    rejected = property(lambda s: s._p("rejected.csv"))
    signatures = property(lambda s: s._p("signatures.npy"))  # float16 [N, 1024]
    meta = property(lambda s: s._p("corpus.json"))  # written last: what the build made
    augmented = property(lambda s: s._p("augmented.npy"))  # float32 [M, S]
    augmented_index = property(lambda s: s._p("augmented.csv"))  # id, parent
    augmented_stamp = property(lambda s: s._p("augmented.json"))
    layered = property(lambda s: s._p("layered.npy"))  # float32 [L, S]: mixes of train clips
    layered_index = property(lambda s: s._p("layered.csv"))  # id, parents, gains (';'-joined)
    layered_stamp = property(lambda s: s._p("layered.json"))
    stamp = property(lambda s: s._p("stamp.json"))  # the main job's: what it was built from


class FeaturesDir(_Folder):
    clips = property(lambda s: s._p("clips.npy"))  # [N, D] of the corpus clips
    augmented = property(lambda s: s._p("augmented.npy"))  # [M, D] of the augmented ones
    layered = property(lambda s: s._p("layered.npy"))  # [L, D] of the layered targets
    stamp = property(lambda s: s._p("features.json"))


class SelectionDir(_Folder):
    sources = property(lambda s: s._p("sources.json"))  # ids, names, files, method, ...
    audio = property(lambda s: s._p("sources.npy"))  # [k, S]
    targets = property(lambda s: s._p("targets.json"))  # {'train', 'val', 'test'}: clip ids
    stamp = property(lambda s: s._p("selection.json"))


class CheckpointsDir(_Folder):
    best = property(lambda s: s._p("best"))
    inputs = property(lambda s: s._p("inputs.json"))  # what the checkpoints were made from
    preempted = property(lambda s: s._p("preempted"))  # the state saved mid-epoch on SIGTERM
    preempted_position = property(lambda s: s._p("preempted.json"))  # epoch, batch, sums


class BundleDir(_Folder):
    params = property(lambda s: s._p("params.msgpack"))
    sources = property(lambda s: s._p("sources.npy"))  # [k, S] at 22.05 kHz: the model's
    full_sources = property(lambda s: s._p("full_sources.npy"))  # [k, R]: what is heard
    standardisation = property(lambda s: s._p("standardisation.npz"))
    pca = property(lambda s: s._p("pca.npz"))
    meta = property(lambda s: s._p("bundle.json"))  # config, source names, sample rate
    stamp = property(lambda s: s._p("stamp.json"))  # the main job's: what it was made from


class EvalDir(_Folder):
    metrics = property(lambda s: s._p("metrics.json"))
    report = property(lambda s: s._p("report.md"))
    audio = property(lambda s: s._p("audio"))
    stamp = property(lambda s: s._p("evaluate.json"))

    def figure(self, name: str) -> str:
        return self._p(name)


class AnalyzeDir(_Folder):
    """What `python -m drumlayer.recipes.analyze --out=DIR` writes: a recipe and a mix per sound,
    the summary and the files it could not read."""

    summary = property(lambda s: s._p("summary.csv"))
    rejected = property(lambda s: s._p("rejected.csv"))

    def recipe(self, name: str) -> str:
        return self._p(f"{name}.recipe.json")

    def mix(self, name: str) -> str:
        return self._p(f"{name}.wav")


@dataclasses.dataclass(frozen=True)
class LoopDir(_Folder):
    """What `python -m drumlayer.loops` writes for one loop."""

    hits = property(lambda s: s._p("hits.csv"))
    groove = property(lambda s: s._p("groove.mid"))
    rebuilt = property(lambda s: s._p("rebuilt.wav"))
    report = property(lambda s: s._p("report.json"))
    kit = property(lambda s: s._p("kit"))


@dataclasses.dataclass(frozen=True)
class LoopsDir(_Folder):
    """What `python -m drumlayer.loops --out=DIR` writes: a folder per loop, the summary and
    the files it could not analyse."""

    summary = property(lambda s: s._p("summary.csv"))
    rejected = property(lambda s: s._p("rejected.csv"))

    def loop(self, name: str) -> LoopDir:
        return LoopDir(self._p(name))


@dataclasses.dataclass(frozen=True)
class Workdir:
    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.path.abspath(os.path.expanduser(self.root)))

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    config = property(lambda s: s._p("config.json"))
    lock = property(lambda s: s._p(".lock"))  # the writer's PID, host, start, command
    corpus = property(lambda s: CorpusDir(s._p("corpus")))
    features = property(lambda s: FeaturesDir(s._p("features")))
    selection = property(lambda s: SelectionDir(s._p("selection")))
    checkpoints = property(lambda s: CheckpointsDir(s._p("checkpoints")))
    train_stamp = property(lambda s: s._p("train.json"))
    train_summary = property(lambda s: s._p("train_summary.json"))
    metrics = property(lambda s: s._p("metrics.jsonl"))
    run = property(lambda s: s._p("run.json"))  # when, where and how the last main job ended
    tensorboard = property(lambda s: s._p("tensorboard"))
    profile = property(lambda s: s._p("profile"))  # train.profile: a jax.profiler trace
    bundle = property(lambda s: BundleDir(s._p("bundle")))
    eval = property(lambda s: EvalDir(s._p("eval")))
    # the kit job (drumlayer.kit.job): one workdir per category inside, and what each came to
    kit_summary = property(lambda s: s._p("kit.json"))
    kit_report = property(lambda s: s._p("kit.md"))

    def category(self, name: str) -> Workdir:
        """The kit job's workdir of one drum category."""
        return Workdir(self._p(name))


def read_json(path: str):
    """A JSON artifact (a stamp, a summary), or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path: str, obj, indent: int | None = 2) -> None:
    """Write a JSON artifact whole or not at all (a temporary file, then a rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=indent)
    os.replace(path + ".tmp", path)


def write_file(path: str, data: bytes | str) -> None:
    """Write a file whole or not at all (a temporary name beside it, then a rename): a job
    killed while writing leaves the file as it was. str is written as UTF-8, names that are not
    (surrogate escapes of a file system's bytes) as their own bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                               prefix=f".{os.path.basename(path)[:100]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def output_folder(path: str, flag: str = "--out") -> str:
    """path as an output folder that exists and can be written (made when missing), checked
    before any work: a DrumlayerError of one line when it is a file, or cannot be made or
    written. Returns its absolute path."""
    out = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(out) and not os.path.isdir(out):
        raise DrumlayerError(f"{flag}={path} is a file, not a folder: give a folder (it is "
                             "made when missing)")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise DrumlayerError(f"{flag}={path} cannot be written ({e.strerror}): give a folder "
                             "you can write to") from None
    return out
