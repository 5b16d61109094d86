"""The shipped configs (each ablation is configs/snare.py with exactly the fields it names
changed) and `drumlayer.configs`: validation before any stage runs, loading without sys.path."""

import glob
import os
import sys

import pytest

from drumlayer import configs
from drumlayer.errors import ConfigError, DrumlayerError

from conftest import ROOT

ABLATIONS = {
    "sparsemax": {"model.normaliser": "sparsemax"},
    "random_sources": {"selection.method": "random"},
    "kmedoids_sources": {"selection.method": "k_medoids"},
    "log_features": {"features.compression": "log"},
    "no_pretrain": {"train.pretrain_epochs": 0},
    "active_kl": {"train.beta": 0.01, "train.free_bits": 64.0},
}


def load(path):
    return configs.load(path)


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_every_ablation_file_is_listed():
    files = {f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", "ablations"))
             if f.endswith(".py")}
    assert files == set(ABLATIONS)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_changes_only_its_fields(name):
    base = flat(load(os.path.join(ROOT, "configs", "snare.py")).to_dict())
    abl = flat(load(os.path.join(ROOT, "configs", "ablations", f"{name}.py")).to_dict())
    changed = {k: abl[k] for k in abl if abl[k] != base.get(k)}
    assert changed == ABLATIONS[name]


CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, ROOT))
@pytest.mark.parametrize("variant", ["", ":smoke"])
def test_every_shipped_config_passes_the_check_and_leaves_sys_path_alone(path, variant):
    before = list(sys.path)
    configs.check(configs.load(path + variant))
    assert sys.path == before


@pytest.mark.parametrize("field, value, says", [
    ("model.normaliser", "softplus", "must be one of 'softmax', 'sparsemax', 'relu'"),
    ("features.compression", "cube", "must be one of 'linear', 'log'"),
    ("selection.method", "kmeans", "must be one of 'frank_wolfe', 'random', 'k_medoids'"),
    ("selection.pool", "all", "must be one of 'train', 'train+augmented'"),
    ("data.category", "snares", "must be one of 'snare', 'kick'"),
    ("data.split", (0.5, 0.3, 0.3), "three fractions"),
    ("selection.k", 0, "must be an integer >= 1"),
    ("train.learning_rate", -1e-3, "must be a number > 0"),
    ("train.epochs", 0, "must be an integer >= 1"),
    ("features.hop", 8192, "<= 4096"),
    ("evaluate.points", 1, ">= 2"),
    ("data.train_fraction", 0.0, "must be a number > 0 and <= 1"),
    ("data.train_fraction", 1.5, "must be a number > 0 and <= 1"),
    ("data.train_fraction_of", "kit", "must be one of 'clips', 'kits'"),
])
def test_a_bad_field_is_named_with_what_is_allowed(field, value, says):
    c = configs.load(os.path.join(ROOT, "configs", "snare.py:smoke"))
    section, name = field.split(".")
    c[section][name] = value
    with pytest.raises(ConfigError) as e:
        configs.check(c)
    assert str(e.value).startswith(f"{field} = ") and says in str(e.value)


def test_an_unknown_model_field_is_refused():
    c = configs.load(os.path.join(ROOT, "configs", "snare.py:smoke"))
    c.model.latnet = 8
    with pytest.raises(ConfigError, match="unknown fields.*latnet"):
        configs.check(c)


@pytest.mark.parametrize("train, says", [(1, "test (data.split = (0.8, 0.1, 0.1)): add samples "
                                                "(at least"),
                                         (0, ": add samples (at least"),
                                         (5, "lower selection.k below 5 or add samples")])
def test_too_few_training_clips_advise_only_what_can_work(train, says):
    """One training clip cannot make a source and a target: no selection.k fits (never 'lower
    selection.k below 1')."""
    c = configs.load(os.path.join(ROOT, "configs", "snare.py"))
    with c.unlocked():
        c.selection.pool = "train"
        c.data.split = (0.8, 0.1, 0.1)
    with pytest.raises(DrumlayerError) as e:
        configs.check_split(c, {"train": train, "val": 1, "test": 2})
    assert says in str(e.value) and "below 1 " not in str(e.value) and "below 0" not in str(
        e.value), str(e.value)
