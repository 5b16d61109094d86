"""The edge where an ml_collections config becomes what the stages take: `check` validates every
field before any stage runs (a `ConfigError` naming the field and what is allowed), and the
converters turn sections into the small frozen dataclasses of the numerical modules.

Nothing deeper than the pipeline reads a ConfigDict.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import types

import ml_collections

from drumlayer.data import audio, categories
from drumlayer.data import corpus as corpus_lib
from drumlayer.errors import ConfigError, DrumlayerError
from drumlayer.features import extractor, selection
from drumlayer.model import vae as model_lib
from drumlayer.training import losses, options

POOLS = ("train", "train+augmented")


def _need(ok: bool, field: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{field} = {value!r}: {allowed}")


def _one_of(config, field: str, allowed) -> None:
    value = _get(config, field)
    _need(value in allowed, field, value, f"must be one of {', '.join(map(repr, allowed))}")


def _number(config, field: str, low: float, high: float = math.inf, integer: bool = False,
            low_open: bool = False) -> None:
    value = _get(config, field)
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        is_num = is_num and float(value).is_integer()
    ok = is_num and math.isfinite(value) and (value > low if low_open else value >= low) and (
        value <= high)
    bound = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else
                                                      f" and <= {high:g}")
    _need(ok, field, value, f"must be {'an integer' if integer else 'a number'} {bound}")


def _get(config, field: str):
    node = config
    for part in field.split("."):
        if part not in node:
            raise ConfigError(f"{field} is missing from the config (start from "
                              "configs/default.py)")
        node = node[part]
    return node


def check(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError for the first field the run cannot use."""
    _one_of(config, "data.category", (*categories.CATEGORIES, "all"))
    split = tuple(_get(config, "data.split"))
    _need(len(split) == 3 and all(isinstance(x, (int, float)) and x >= 0 for x in split)
          and abs(sum(split) - 1.0) < 1e-6 and split[0] > 0, "data.split", split,
          "must be three fractions (train, val, test) >= 0 summing to 1, train > 0")
    holdout = _get(config, "data.holdout")
    _need(isinstance(holdout, (tuple, list)) and all(isinstance(h, str) for h in holdout),
          "data.holdout", holdout, "must be a tuple of folders or file names")
    _number(config, "data.max_duration", 0, low_open=True)
    _number(config, "data.near_duplicate", 0, 1, low_open=True)
    _number(config, "data.augment_per_clip", 0, integer=True)
    _number(config, "data.layered_per_clip", 0, integer=True)
    _number(config, "data.train_fraction", 0, 1, low_open=True)
    _one_of(config, "data.train_fraction_of", ("clips", "kits"))
    _one_of(config, "data.validate_variants", (False, True))
    _number(config, "data.procedural", 1, integer=True)
    _number(config, "features.n_fft", 16, integer=True)
    _number(config, "features.hop", 1, config.features.n_fft, integer=True)
    _one_of(config, "features.compression", extractor.COMPRESSIONS)
    _number(config, "features.batch", 1, integer=True)
    _number(config, "selection.k", 1, integer=True)
    _number(config, "selection.beta", 0, low_open=True)
    _one_of(config, "selection.method", selection.METHODS)
    _one_of(config, "selection.pool", POOLS)
    pool_categories = tuple(_get(config, "selection.pool_categories"))
    _need(all(c in categories.CATEGORIES for c in pool_categories), "selection.pool_categories",
          pool_categories, f"must be categories among {', '.join(categories.CATEGORIES)}")
    try:
        model_lib.ModelConfig.from_mapping(_get(config, "model"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for f in ("latent", "encoder_hidden", "decoder_hidden"):
        _number(config, f"model.{f}", 1, integer=True)
    _one_of(config, "model.normaliser", model_lib.NORMALISERS)
    _number(config, "train.batch", 1, integer=True)
    _number(config, "train.learning_rate", 0, low_open=True)
    _number(config, "train.grad_clip", 0, low_open=True)
    _number(config, "train.weight_decay", 0)
    _number(config, "train.input_dropout", 0, 0.9)
    _number(config, "train.pretrain_epochs", 0, integer=True)
    _number(config, "train.epochs", 1, integer=True)
    _number(config, "train.beta", 0)
    _number(config, "train.free_bits", 0)
    _number(config, "train.db_weight", 0)
    _number(config, "train.steps_per_call", 1, integer=True)
    _one_of(config, "train.spectrum", losses.SPECTRA)
    _one_of(config, "train.profile", (False, True))
    _number(config, "train.checkpoint_every_s", 0)
    _number(config, "evaluate.components", 1, integer=True)
    _number(config, "evaluate.pairs", 1, integer=True)
    _number(config, "evaluate.points", 2, integer=True)
    _number(config, "evaluate.pca_range", 0, low_open=True)
    _number(config, "evaluate.pca_points", 2, integer=True)
    _number(config, "evaluate.audio_examples", 0, integer=True)


def check_single(config: ml_collections.ConfigDict) -> None:
    """What a main job of one category (not the kit job) cannot use."""
    pool = tuple(config.selection.pool_categories)
    _need(not pool, "selection.pool_categories", pool, "needs a corpus of every category: use "
          "it with the kit job (configs/kit.py)")


def roots(config: ml_collections.ConfigDict) -> list[str]:
    """data.roots as absolute paths, or the open kits found on this machine."""
    found = list(config.data.roots) or corpus_lib.default_roots()
    return [os.path.abspath(os.path.expanduser(r)) for r in found]


def corpus_options(config: ml_collections.ConfigDict) -> corpus_lib.CorpusOptions:
    d = config.data
    return corpus_lib.CorpusOptions(
        category=d.category, spec=audio.ClipSpec(), max_duration=float(d.max_duration),
        near_duplicate=float(d.near_duplicate), split=tuple(float(x) for x in d.split),
        seed=int(config.seed), procedural=int(d.procedural),
        holdout=tuple(str(h) for h in d.get("holdout", ())),
    )


def model_config(config: ml_collections.ConfigDict) -> model_lib.ModelConfig:
    return model_lib.ModelConfig.from_mapping(config.model)


def train_config(config: ml_collections.ConfigDict) -> options.TrainConfig:
    t, f = config.train, config.features
    return options.TrainConfig(
        batch=int(t.batch), learning_rate=float(t.learning_rate), grad_clip=float(t.grad_clip),
        weight_decay=float(t.get("weight_decay", 0.0)),
        pretrain_epochs=int(t.pretrain_epochs), epochs=int(t.epochs),
        patience=int(t.get("patience", 0)), seed=int(config.seed),
        steps_per_call=int(t.steps_per_call), profile=bool(t.profile),
        checkpoint_every_s=float(t.checkpoint_every_s),
        loss=losses.LossConfig(beta=float(t.beta), free_bits=float(t.free_bits),
                              db_weight=float(t.db_weight),
                              input_dropout=float(t.get("input_dropout", 0.0)),
                              n_fft=int(f.n_fft), hop=int(f.hop),
                              compression=f.compression,
                              spectrum=str(t.get("spectrum", "auto"))),
        model=model_config(config))


def load_module(path: str) -> types.ModuleType:
    """A config file (or any Python file) as a module, without touching sys.path."""
    name = "drumlayer_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load a config from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sibling(config_file: str, name: str) -> types.ModuleType:
    """The config file `name` beside config_file (pass __file__): how a variant config imports
    the one it varies, e.g. `snare = configs.sibling(__file__, "snare.py")`."""
    return load_module(os.path.join(os.path.dirname(os.path.abspath(config_file)), name))


def load(spec: str) -> ml_collections.ConfigDict:
    """'configs/snare.py:smoke' -> that file's get_config('smoke'), as --config= reads it."""
    path, _, arg = spec.partition(":")
    return load_module(path).get_config(arg or None)


def check_kit(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError for the first field of config.kit the kit job cannot use."""
    cats = tuple(_get(config, "kit.categories"))
    _need(bool(cats) and all(c in categories.CATEGORIES for c in cats), "kit.categories", cats,
          f"must be categories among {', '.join(categories.CATEGORIES)}")
    if "max_targets" in config.kit:
        _number(config, "kit.max_targets", 0, integer=True)


def check_split(config: ml_collections.ConfigDict, split: dict[str, int]) -> None:
    """Right after the corpus, before any stage that needs its split: raise a DrumlayerError
    when the corpus cannot train this config (no validation clip, or not more training clips
    than sources), naming the minimum; warn when the evaluation will have too few test clips."""
    f = [float(x) for x in config.data.split]
    k, pool = int(config.selection.k), config.selection.pool
    n = sum(split.values())
    per_clip = 1 + (int(config.data.augment_per_clip) if pool == "train+augmented" else 0)
    need = max(math.ceil(1 / f[1]) if f[1] > 0 else 0,  # one validation clip
               math.ceil(2 / f[2]) if f[2] > 0 else 0,  # two test clips (the evaluation)
               math.ceil((k / per_clip + 1) / f[0]))  # the sources, plus a target
    what = (f"{n} clips split {split['train']} train / {split['val']} val / {split['test']} "
            f"test (data.split = {tuple(f)})")
    if split["val"] < 1:
        raise DrumlayerError(f"the corpus is too small to split: {what}; training needs a "
                             f"validation clip: add samples (at least {need} distinct clips for "
                             "this config) or change data.split")
    pool_size = split["train"] * per_clip
    if k >= pool_size:
        fix = (f"lower selection.k below {pool_size} or add samples" if pool_size > 1 else
               "add samples")  # one source and no target: no k can train
        raise DrumlayerError(f"selection.k = {k} sources but the corpus has {what}: {fix} "
                             f"(at least {need} distinct clips for this config)")
    if split["test"] < 2:
        logging.getLogger(__name__).warning(
            "corpus: %s: the evaluation needs 2 test clips and will be skipped; at least %d "
            "distinct clips for this config", what, need)
