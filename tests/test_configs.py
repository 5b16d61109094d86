"""Each ablation config is configs/snare.py with exactly the fields it names changed."""

import importlib.util
import os

import pytest

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
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


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
