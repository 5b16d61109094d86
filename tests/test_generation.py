"""Generated sounds measured (drumlayer/evaluation/generation.py): the descriptors against
hand-worked clips, the baselines' mixes, and the measures in a trained run's report."""

import json

import numpy as np
import pytest

from drumlayer.evaluation import generation

R = 22050


def test_the_descriptors_of_clips_worked_by_hand():
    """440 Hz tones decaying by exp(-t / tau): the decay time (20 dB below the loudest frame)
    is tau ln 10 (to a hop of 23 ms), the centroid 3 octaves above 55 Hz; a steady tone's
    MFCCs spread far less than those of a tone that leaps an octave halfway."""
    t = np.arange(R) / R
    decaying = np.sin(2 * np.pi * 440 * t) * np.exp(-t / 0.1)
    faster = np.sin(2 * np.pi * 440 * t) * np.exp(-t / 0.04)
    steady = 0.5 * np.sin(2 * np.pi * 440 * t)
    leap = 0.5 * np.sin(2 * np.pi * np.where(t < 0.5, 440, 880) * t)
    d = generation.descriptor_matrix(np.stack([decaying, steady, leap, faster]))
    assert d.shape == (4, 29)
    assert d[0, 28] == pytest.approx(0.1 * np.log(10), abs=512 / R)
    assert d[3, 28] == pytest.approx(0.04 * np.log(10), abs=512 / R)
    # (the window's leakage lifts a tone's magnitude centroid a little, as librosa's)
    assert d[0, 26] == pytest.approx(3.0, abs=0.15) and d[1, 26] == pytest.approx(3.0, abs=0.15)
    # (c0 and c1 spread at the clip's edges, where the frames hold padding)
    assert np.sum(d[2, 15:26]) > 3 * np.sum(d[1, 15:26])


def test_random_sparse_mixes_hold_that_many_layers_summing_to_one():
    w = generation.dirichlet_mixes(10, 3, 50, np.random.default_rng(0))
    assert w.shape == (50, 10)
    assert set((w > 0).sum(axis=1)) == {3}
    assert np.allclose(w.sum(axis=1), 1.0)
    assert len({tuple(np.flatnonzero(r)) for r in w}) > 10  # the layers are drawn anew
    assert set((generation.dirichlet_mixes(4, 9, 5, np.random.default_rng(0)) > 0).sum(1)) \
        == {4}  # no more layers than sources


def test_measure_scores_a_copy_of_the_training_clips_as_real_and_not_new():
    """Sets that are the training clips themselves: precision = recall = 1 and 0 from the
    nearest training clip; the sources' own set is 0 from the nearest source."""
    rng = np.random.default_rng(0)
    held, train, sources = (rng.standard_normal((n, 29)) for n in (30, 60, 12))
    g = generation.measure(held, train, sources, {"copies": train.copy(),
                                                  "sources": sources.copy()})
    assert g["k"] == 5 and g["held_out"] == 30
    assert g["copies"]["novelty"]["to_train"] == pytest.approx(0.0, abs=1e-6)
    assert g["sources"]["novelty"]["to_sources"] == pytest.approx(0.0, abs=1e-6)
    assert g["copies"]["precision"] == g["real_against_real"]["precision"]
    same = generation.measure(train, train, sources, {"copies": train.copy()})
    assert same["copies"]["precision"] == same["copies"]["recall"] == 1.0
    # k shrinks to the smallest set
    assert generation.measure(held[:4], train, sources, {"s": sources})["k"] == 3


def test_the_report_measures_the_generated_sounds_of_a_trained_run(smoke_run):
    """The smoke run's metrics.json and report.md hold every set, its manifold measures
    within [0, 1] (density aside) and novelty; the single sources are 0 from a source and the
    training clips' line is there."""
    s = json.loads((smoke_run / "eval" / "metrics.json").read_text())
    g = s["generation"]
    assert set(generation.SETS) <= set(g)
    for name in generation.SETS:
        assert all(0.0 <= g[name][m] <= 1.0 for m in ("precision", "recall", "coverage"))
        assert g[name]["novelty"]["to_train"] > 0.0
    assert g["random_single_sources"]["novelty"]["to_sources"] == pytest.approx(0.0, abs=1e-5)
    assert g["random_point"]["novelty"]["to_sources"] > 0.0
    report = (smoke_run / "eval" / "report.md").read_text()
    assert "## Generated sounds" in report and "the real-against-real line" in report


def test_the_generated_sets_of_a_trained_bundle(smoke_run):
    """Every set holds `draws` weight vectors over the bundle's sources (the single sources:
    each source once); the random points decode the studio's draw, not the prior's: their
    latents follow the PCA's spread, and the sparse mixes have as many layers as they do."""
    from drumlayer.evaluation import evaluate
    from drumlayer.features import measures
    from drumlayer.recipes.bundle import Bundle

    b = Bundle.load(str(smoke_run))
    test = evaluate.load_test(str(smoke_run))
    z = evaluate.encode(b, test.features)
    sets = generation.generated(b, z, evaluate.decode, seed=0, draws=40)
    assert set(sets) == set(generation.SETS)
    for name, w in sets.items():
        assert w.shape == ((b.k if name == "random_single_sources" else 40), b.k), name
        assert np.all(w >= 0), name
    single = sets["random_single_sources"]
    assert sorted(np.argmax(single, axis=1).tolist()) == list(range(b.k))
    assert np.all(single.sum(axis=1) == 1.0)
    active = np.median(np.asarray(measures.active_layers(sets["random_point"])))
    assert set((sets["random_sparse_mixes"] > 0).sum(axis=1)) == {int(round(active))}
    again = generation.generated(b, z, evaluate.decode, seed=0, draws=40)
    assert all(np.array_equal(again[k], sets[k]) for k in sets)  # seeded
    # the latents decoded: the prior's N(0, I); the random points' the PCA's centre and spread
    decoded = []
    generation.generated(b, z, lambda b_, z_: decoded.append(z_) or evaluate.decode(b_, z_),
                         seed=1, draws=4000)
    point, prior = decoded[0], decoded[1]
    assert np.abs(prior.mean(axis=0)).max() < 0.1 and np.abs(prior.std(axis=0) - 1).max() < 0.1
    along = (point - b.pca["center"]) @ np.asarray(b.pca["components"]).T
    assert np.abs(point.mean(axis=0) - b.pca["center"]).max() < 0.1 * np.sqrt(
        b.pca["variance"]).max()
    assert along.std(axis=0) == pytest.approx(np.sqrt(b.pca["variance"]), rel=0.1)
