"""workdir: every artifact path comes from one place."""

import os
import re

import pytest

from drumlayer import workdir
from drumlayer.workdir import Workdir

from conftest import ROOT


def _paths(obj, prefix=""):
    for name in dir(type(obj)):
        if name.startswith("_") or not isinstance(getattr(type(obj), name), property):
            continue
        value = getattr(obj, name)
        if isinstance(value, str):
            yield prefix + name, value
        else:
            yield prefix + name, value.dir
            yield from _paths(value, prefix + name + ".")


def test_every_path_is_inside_the_workdir_and_distinct(tmp_path):
    wd = Workdir(str(tmp_path / "w"))
    paths = dict(_paths(wd))
    assert len(paths) > 30
    assert all(p.startswith(wd.root + os.sep) for p in paths.values()), paths
    assert len(set(paths.values())) == len(paths)
    assert wd.corpus.clips == os.path.join(wd.root, "corpus", "clips.npy")
    assert wd.checkpoints.best == os.path.join(wd.root, "checkpoints", "best")
    assert Workdir("~/x").root == os.path.expanduser("~/x")


def test_no_module_builds_an_artifact_path_itself():
    """The artifact file names appear in workdir.py only (a module that joins 'clips.npy' or
    'sources.json' itself would bypass the layout)."""
    source = open(workdir.__file__).read()
    names = {n for n in re.findall(r'_p\("([\w.]+)"\)', source) if "." in n}  # files
    assert {"clips.npy", "manifest.csv", "sources.json", "params.msgpack"} <= names
    pkg = os.path.join(ROOT, "drumlayer")
    offenders = []
    for dirpath, _, files in os.walk(pkg):
        for f in files:
            if f.endswith(".py") and f != "workdir.py":
                text = open(os.path.join(dirpath, f)).read()
                offenders += [(f, n) for n in names if f'"{n}"' in text]
    assert offenders == []


@pytest.mark.parametrize("folder", ["corpus", "features", "selection", "checkpoints", "bundle",
                                    "eval"])
def test_folders_print_as_their_path(tmp_path, folder):
    wd = Workdir(str(tmp_path))
    assert str(getattr(wd, folder)) == os.path.join(wd.root, folder)
