"""The batch evaluation on a smoke run: the report, its numbers, the batched experiments against
one-at-a-time computations, the CLI, the ablation table and the notebooks."""

import json
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import nbformat
import numpy as np
import pytest
import soundfile as sf
from nbclient import NotebookClient

from drumlayer.evaluation import evaluate as evaluate_lib
from drumlayer.evaluation import report, results
from drumlayer.features import measures
from drumlayer.model import vae as model_lib
from drumlayer.recipes import render

from conftest import ROOT


@pytest.fixture(scope="module")
def smoke(smoke_run):
    wd = smoke_run
    b = evaluate_lib.Bundle.load(str(wd))
    test = evaluate_lib.load_test(str(wd))
    return wd, b, test, evaluate_lib.encode(b, test.features)


def test_report_metrics_figures_and_audio(smoke):
    wd, b, test, _ = smoke
    out = wd / "eval"
    s = json.loads((out / "metrics.json").read_text())
    assert s["test_clips"] == len(test.ids) and s["sources"] == b.k == 8
    assert len(s["interpolation"]["mean_weights"]) == 5  # :smoke has 5 points per path
    assert set(s["reconstruction"]) == {"model", "model_pruned", "refined", "refined_latent",
                                        "nnls", "nnls_simplex", "matching_pursuit", "nearest",
                                        "uniform"}
    assert set(s["reconstruction_ms_per_sound"]) == set(s["reconstruction"])
    assert all(v > 0 for v in s["reconstruction_ms_per_sound"].values())
    for method in s["reconstruction"].values():
        assert all(np.isfinite(v["median"]) for v in method.values())
    assert len(s["pca"]["explained"]) == 4  # latent 4 in :smoke: at most 4 directions
    md = (out / "report.md").read_text()
    for fig in ("fig1_training", "fig2_interpolation", "fig3_pairs", "fig4_pca",
                "fig4b_components", "fig5_cardinality"):
        assert f"({fig}.png)" in md
        assert (out / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    # the report's numbers are this run's: the reconstruction table and the claims' verdicts
    for name, label in report.METHOD_NAMES.items():
        row = f"| {label} | " + " | ".join(
            [f"{s['reconstruction'][name][c]['median']:.3g}" for c, _ in report.RECON_COLUMNS]
            + [f"{s['reconstruction_ms_per_sound'][name]:.3g}"]) + " |"
        assert row in md, row
    # the verdicts worked out here from the run's numbers (the paper's thresholds), not by the
    # report's own code
    it, card, rec = s["interpolation"], s["cardinality"], s["reconstruction"]

    def med(method, measure):
        return rec[method][measure]["median"]

    lsd, mfcc, cent = "log_spectral_distance_db", "mfcc_distance", "centroid_error_hz"
    by_hand = [it["r2_weights"] > 0.9, it["r2_centroid"] > 0.9 and it["r2_mfcc"] > 0.9,
               it["pairs_with_new_layers"] > 0.25, s["pca"]["centroid_span_hz"][0] > 100,
               card["above_0.01"]["p90"] <= 15, card["max_weight"]["median"] <= 0.15,
               med("model_pruned", mfcc) <= 1.2 * med("model", mfcc),
               med("matching_pursuit", lsd) < med("model", lsd),
               all(med("model", m) < med("nearest", m) for m in (lsd, mfcc, cent))]
    verdicts = report.claims(s)
    assert len(verdicts) == len(by_hand)
    for (claim, measured, _), holds in zip(verdicts, by_hand, strict=True):
        assert f"| {claim} | {measured} | {'yes' if holds else '**no**'} |" in md
    assert "Refined recipes against matching pursuit (medians): " in md
    # procedural snares: no library to hold out, and the report says how to name one
    assert "outside" not in s and "No out-of-library set: `data.holdout`" in md
    summary = json.loads((wd / "train_summary.json").read_text())
    assert (f"The best parameters by validation came after epoch {summary['best_step']} "
            "(pretraining's included); phase 2 stopped after the last epoch (2).") in md
    x, sr = sf.read(out / "audio" / "recon0_refined.wav")
    assert sr == 22050 and x.shape == (22050,)
    x, sr = sf.read(out / "audio" / "recon0_model.wav")
    assert sr == 22050 and x.shape == (22050,) and np.abs(x).max() == pytest.approx(
        10 ** (-1 / 20), abs=1e-3)
    x, _ = sf.read(out / "audio" / "interp0.wav")
    assert len(x) == 5 * 22050


def test_interpolation_batched_equals_one_pair_at_a_time(smoke):
    _, b, _, z = smoke
    ec = results.EvalConfig(pairs=6, points=5)
    it = evaluate_lib.interpolation(b, z, ec)
    alpha = np.linspace(0, 1, 5, dtype=np.float32)[:, None]
    dist = {"weights": [], "centroid": [], "mfcc": []}
    for p, (a, c) in enumerate(it.pairs):
        w = np.asarray(b.decode((1 - alpha) * z[a] + alpha * z[c]))
        cen, mf = (np.asarray(x) for x in measures.descriptors(
            model_lib.mix(jnp.asarray(w), jnp.asarray(b.sources))))
        np.testing.assert_allclose(it.weights[p], w, atol=1e-6)
        np.testing.assert_allclose(it.centroid[p], cen, rtol=1e-4)
        dist["weights"].append(np.linalg.norm(w - w[0], axis=-1))
        dist["centroid"].append(np.abs(cen - cen[0]))
        dist["mfcc"].append(np.linalg.norm(mf - mf[0], axis=-1))
    for m, curves in dist.items():
        mean = np.mean(curves, axis=0)
        np.testing.assert_allclose(getattr(it.mean, m), mean, rtol=1e-3, atol=1e-3, err_msg=m)
        ss_res = np.sum((mean - np.polyval(np.polyfit(alpha[:, 0], mean, 1), alpha[:, 0])) ** 2)
        r2 = 1 - ss_res / np.sum((mean - mean.mean()) ** 2)
        assert getattr(it.r2, m) == pytest.approx(r2, abs=1e-3), m


def test_principal_directions_move_along_the_bundles_pca(smoke):
    _, b, _, z = smoke
    pc = evaluate_lib.principal_directions(b, z, results.EvalConfig(pca_points=3, pca_range=2.0))
    u = b.pca["components"]
    want = np.asarray(b.decode(z[1] + 2.0 * u[0]))
    np.testing.assert_allclose(pc.weights[1, 0, -1], want, atol=1e-6)
    np.testing.assert_allclose(pc.weights[1, 0, 1], np.asarray(b.decode(z[1:2]))[0],
                               atol=1e-6)


def test_reconstruction_model_row_is_the_decoded_mean(smoke):
    _, b, test, z = smoke
    rec = evaluate_lib.reconstruction(b, test)
    np.testing.assert_allclose(rec["model"].weights, np.asarray(b.decode(z)), atol=1e-6)
    mixed = np.asarray(b.mix(rec["nearest"].weights[:1]))
    np.testing.assert_allclose(rec["nearest"].scores.log_spectral_distance_db[0],
                               float(measures.log_spectral_distance(mixed[0], test.audio[0])),
                               rtol=1e-4)
    raw, pruned = rec["model"].weights, rec["model_pruned"].weights
    for r, p in zip(raw, pruned, strict=True):  # < 0.04 gone (the largest always stays)
        keep = (r >= 0.04) | (np.arange(len(r)) == r.argmax())
        np.testing.assert_array_equal(p > 0, keep)
        np.testing.assert_allclose(p[keep], r[keep] * r.sum() / r[keep].sum(), rtol=1e-5)
    np.testing.assert_array_equal(rec["model_pruned"].scores.nonzero_layers, keep_count(raw))


def test_reconstruction_refined_row_is_the_recipe_as_the_studio_plays_it(smoke):
    """The default refinement's scores are those of its recipes with their shaping and start
    delays (the studio's renderer), not of the bare weights."""
    _, b, test, _ = smoke
    fit = evaluate_lib.reconstruction(b, test)["refined"]
    assert fit.layers is not None and len(fit.layers) == len(test.ids)
    shaped = [i for i, f in enumerate(fit.layers) if f["shaping"]]
    assert shaped, "the smoke model shapes some test clip: else this test guards nothing"
    env = np.ones(b.sources.shape[1], np.float32)
    for i in shaped[:2]:
        f = fit.layers[i]
        x = render.render(fit.weights[i], b.sources, render.offsets(f["offsets_ms"], 22050), env,
                          0.0, f["shaping"], 22050)
        want = float(measures.log_spectral_distance(x, test.audio[i]))
        assert fit.scores.log_spectral_distance_db[i] == pytest.approx(want, rel=1e-4)
        bare = float(measures.log_spectral_distance(fit.weights[i] @ b.sources, test.audio[i]))
        assert abs(bare - want) > 1e-3


def test_choose_pairs_and_blocks():
    p = evaluate_lib.choose_pairs(5, 7, seed=0)
    assert p.shape == (7, 2) and (p[:, 0] != p[:, 1]).all()
    assert len({tuple(x) for x in p}) == 7
    assert len(evaluate_lib.choose_pairs(3, 200, seed=0)) == 6  # all ordered pairs of 3
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    np.testing.assert_array_equal(evaluate_lib.in_blocks(lambda a: {"y": a * 2}, x, block=4)["y"],
                                  x * 2)


def test_cli_on_a_workdir_without_a_bundle(tmp_path):
    r = subprocess.run([sys.executable, "-m", "drumlayer.evaluation.evaluate",
                        f"--workdir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "bundle" in r.stderr and "run the main job" in r.stderr


def keep_count(raw):
    return ((raw >= 0.04) | (raw == raw.max(-1, keepdims=True))).sum(-1)


def test_compare_table(smoke, tmp_path):
    """Two runs side by side, each row from its own workdir."""
    wd, other = smoke[0], tmp_path / "other"
    for part in ("eval", "train_summary.json"):
        (shutil.copytree if part == "eval" else shutil.copy)(wd / part, other / part)
    s = json.loads((other / "eval" / "metrics.json").read_text())
    s["interpolation"]["r2_weights"] = 0.25
    s["reconstruction"]["model"]["mfcc_distance"]["median"] = 12.5
    (other / "eval" / "metrics.json").write_text(json.dumps(s))
    t = json.loads((other / "train_summary.json").read_text())
    t["val_kl_bits"] = 777.0
    (other / "train_summary.json").write_text(json.dumps(t))
    path = report.compare([str(wd), str(other)], str(tmp_path / "ablations"))
    md = open(path).read().strip().splitlines()
    assert len(md) == 4 and md[3].startswith("| other | ")  # header, rule, two runs
    rows = json.loads((tmp_path / "ablations.json").read_text())
    mine = json.loads((wd / "eval" / "metrics.json").read_text())
    assert rows[0]["r2_weights"] == mine["interpolation"]["r2_weights"] != 0.25
    assert (rows[1]["r2_weights"], rows[1]["mfcc_distance"], rows[1]["val_kl_bits"]) == (
        0.25, 12.5, 777.0)
    assert "| 0.25 |" in md[3] and "| 12.5 |" in md[3] and "| 777 |" in md[3]


@pytest.mark.parametrize("name", ["interpolation", "pca_directions", "sparsity", "refinement"])
def test_notebook_executes(smoke, name, monkeypatch):
    monkeypatch.setenv("DRUMLAYER_WORKDIR", str(smoke[0]))
    nb = nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for o in outputs)
