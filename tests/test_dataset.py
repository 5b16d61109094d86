"""dataset: one id space for corpus clips and their augmented variants, read without the
corpus builder."""

import subprocess
import sys

import numpy as np

from drumlayer.data import augment, npy_rows
from drumlayer.data.dataset import Dataset
from drumlayer.workdir import Workdir


def test_ids_past_the_corpus_are_augmented_variants(smoke_run):
    wd = Workdir(smoke_run)
    ds = Dataset(wd.corpus, wd.features)
    n, m = ds.n, len(ds.parents)
    assert n == 48 and m == 2 * (len(ds.ids("train")) + len(ds.ids("val"))) == len(ds) - n
    np.testing.assert_array_equal(ds.audio([n + 3])[0], npy_rows.read_rows(wd.corpus.augmented,
                                                                         3, 4)[0])
    np.testing.assert_array_equal(ds.audio([5])[0], npy_rows.read_rows(wd.corpus.clips, 5, 6)[0])
    parent = int(ds.parents[3])
    assert ds.corpus_id(n + 3) == parent and ds.rows[parent]["split"] in ("train", "val")
    assert ds.name(n + 3) == ds.name(parent) + " (variant 3)"
    assert ds.file(n + 3) == ds.file(parent)
    feats = ds.features()
    assert feats.shape == (n + m, 2049)
    np.testing.assert_array_equal(feats[n:], np.load(wd.features.augmented))
    train = ds.ids("train", augmented=True)
    assert set(train[train >= n]) == {n + j for j in range(m)
                                      if ds.rows[ds.parents[j]]["split"] == "train"}
    assert all(ds.rows[i]["split"] == "train" for i in train[train < n])


def test_validation_variants_join_the_val_ids_and_leave_the_training_variants_as_they_were(
        smoke_run, tmp_path):
    """data.validate_variants: the val clips are varied too; each split's augmented ids are its
    own clips' variants, and a training clip's variants are the same bits either way."""
    import shutil

    from drumlayer.data import corpus
    from drumlayer.workdir import CorpusDir

    src = Workdir(smoke_run).corpus
    for d in ("both", "train"):
        (tmp_path / d).mkdir()
        for name in ("clips.npy", "manifest.csv"):
            shutil.copy(f"{src.dir}/{name}", tmp_path / d / name)
    cd = CorpusDir(str(tmp_path / "both"))
    m = corpus.write_augmented(cd.dir, 2, seed=0, splits=("train", "val"))
    corpus.write_augmented(str(tmp_path / "train"), 2, seed=0)
    ds = Dataset(cd)
    train, val = ds.ids("train"), ds.ids("val")
    assert m == 2 * (len(train) + len(val)) == len(ds.parents)
    for split, own in (("train", train), ("val", val)):
        ids = ds.ids(split, augmented=True)
        assert set(ids[:len(own)]) == set(own) and len(ids) == 3 * len(own)
        assert {ds.corpus_id(i) for i in ids[len(own):]} == set(own.tolist())
    assert not set(ds.ids("test", augmented=True)) - set(ds.ids("test"))
    only_train = Dataset(CorpusDir(str(tmp_path / "train")))
    assert not set(only_train.ids("val", augmented=True)) - set(val)
    for i in only_train.ids("train", augmented=True)[len(train):][:6]:
        parent, j = only_train.variant(i)
        k = next(x for x in ds.ids("train", augmented=True)[len(train):]
                 if ds.variant(x) == (parent, j))
        np.testing.assert_array_equal(ds.audio([k])[0], only_train.audio([i])[0])


def test_the_evaluation_and_the_studio_do_not_import_the_corpus_builder():
    code = ("import sys, drumlayer.evaluation.evaluate, drumlayer.studio.server; "
            "print(sorted(m for m in ('drumlayer.data.corpus', 'drumlayer.data.discovery', "
            "'scipy.sparse.csgraph', 'multiprocessing.pool') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_data_modules_do_not_import_jax():
    code = ("import sys, drumlayer.data.corpus, drumlayer.data.dataset, drumlayer.data.augment, "
            "drumlayer.data.procedural, drumlayer.data.fullband; print('jax' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_every_augmented_row_is_the_variant_its_id_names(smoke_run):
    # The augmentation stage makes the variants on several threads: each must still land in
    # the row that `variant` (and the full-band rebuild of a variant source) says it is.
    wd = Workdir(smoke_run)
    ds = Dataset(wd.corpus, wd.features)
    rows = np.load(wd.corpus.augmented)
    for a in range(len(rows)):
        parent, j = ds.variant(ds.n + a)
        clip = npy_rows.read_rows(wd.corpus.clips, parent, parent + 1)[0]
        np.testing.assert_array_equal(rows[a], augment.variant(clip, 0, parent, j), err_msg=a)


def test_a_learning_curve_keeps_whole_clips_and_drops_the_rest():
    from drumlayer.data.split import clip_subset

    # targets: 10 clips, 3 targets each (the clip and two variants), in the pipeline's order
    clips = np.concatenate([np.arange(10), np.repeat(np.arange(10), 2)])
    for fraction, n in ((0.3, 3), (0.5, 5), (0.04, 1)):
        keep = clip_subset(clips, fraction, seed=1)
        kept = set(clips[keep].tolist())
        assert len(kept) == n and keep.sum() == 3 * n  # every target of a kept clip
        assert not set(clips[~keep].tolist()) & kept  # and none of a dropped one
        assert (clip_subset(clips, fraction, seed=1) == keep).all()
    assert clip_subset(clips, 1.0, seed=1).all()
    # drawn by kit: clips 0-3 in kit a, 4-5 in b, 6-9 in c; whole kits until 5 clips are in
    kits = np.array(list("aaaabbcccc"))[clips]
    keep = clip_subset(clips, 0.5, seed=1, units=kits)
    kept = set(kits[keep].tolist())
    # no kit alone holds 5 clips and any two do: two whole kits, nothing of the third
    assert len(kept) == 2 and not set(kits[~keep].tolist()) & kept
    assert keep.sum() == 3 * sum({"a": 4, "b": 2, "c": 4}[k] for k in kept)
    assert len({tuple(np.flatnonzero(clip_subset(clips, 0.5, seed=s))) for s in range(8)}) > 1
