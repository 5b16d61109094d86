"""The evaluation's report: figures for the paper's Figures 2-5 (matplotlib, PNG), report.md
with the tables and what they say about the paper's claims, and the ablation comparison."""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from drumlayer.data.dataset import OUTSIDE  # noqa: E402
from drumlayer.evaluation.results import Interpolation, PrincipalDirections, Results  # noqa: E402
from drumlayer.features import measures  # noqa: E402
from drumlayer.workdir import EvalDir, Workdir  # noqa: E402

MEASURES = (("weights", "weight distance (L2)"), ("centroid", "centroid distance (Hz)"),
            ("mfcc", "MFCC distance (L2)"))
RECON_COLUMNS = (("log_spectral_distance_db", "LSD (dB)"), ("mfcc_distance", "MFCC dist"),
                 ("centroid_error_hz", "centroid err (Hz)"),
                 ("multi_resolution_stft", "MR-STFT"), ("feature_mse", "feature MSE"),
                 ("active_layers", "active layers"), ("nonzero_layers", "non-zero layers"))
METHOD_NAMES = {"model": "VAE (raw)", "model_pruned": "VAE (pruned < 0.04)",
                "refined": "VAE + refined and shaped", "refined_latent": "VAE + refined latent",
                "nnls": "NNLS", "nnls_simplex": "NNLS, sum to 1",
                "matching_pursuit": "matching pursuit (<= 15)", "nearest": "nearest source",
                "uniform": "uniform mix"}


def _save(fig, out: str, name: str) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


def fig_interpolation(it: Interpolation, out: str) -> str:
    """Figure 2: distances from the start, every pair faint, their mean, and its straight line."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    a = it.alpha
    for ax, (m, label) in zip(axes, MEASURES, strict=True):
        curves = getattr(it.distance, m)
        for c in curves[:60]:
            ax.plot(a, c, color="0.75", lw=0.6)
        mean = getattr(it.mean, m)
        ax.plot(a, mean, color="C0", lw=2.2, label="mean over pairs")
        ax.plot(a, np.polyval(np.polyfit(a, mean, 1), a), "k--", lw=1, label="straight line")
        ax.set(xlabel="position between z_a and z_b", ylabel=label,
               title=f"{label.split(' (')[0]}: mean R² = {getattr(it.r2, m):.3f}")
    axes[0].legend(fontsize=8)
    return _save(fig, out, "fig2_interpolation.png")


def fig_pairs(it: Interpolation, out: str, n: int = 3) -> str:
    """Figure 3: a few individual interpolations (those where most layers appear mid-path)."""
    picks, seen = [], set()
    for p in np.argsort(-it.new_layers, kind="stable"):  # one direction of each path
        key = frozenset(int(x) for x in it.pairs[p])
        if key not in seen:
            seen.add(key)
            picks.append(p)
        if len(picks) == n:
            break
    fig, axes = plt.subplots(len(picks), 3, figsize=(13, 2.8 * len(picks)), squeeze=False)
    for row, p in zip(axes, picks, strict=True):
        for ax, (m, label) in zip(row, MEASURES, strict=True):
            ax.plot(it.alpha, getattr(it.distance, m)[p], "o-", ms=3)
            ax.set(ylabel=label, title=f"pair {tuple(int(x) for x in it.pairs[p])}: "
                   f"{int(it.new_layers[p])} layers only mid-path")
        row[1].set_xlabel("position between z_a and z_b")
    return _save(fig, out, "fig3_pairs.png")


def fig_pca(pc: PrincipalDirections, names: list[str], out: str, clip: int = 0,
            top: int = 25) -> str:
    """Figure 4: one test clip moved along u_0: the weights of its strongest layers, and how far
    centroid and MFCC move."""
    w = pc.weights[clip, 0]  # [T, k]
    order = np.argsort(-w.max(axis=0))[:top]
    if w.max() > measures.ACTIVE:
        order = order[w[:, order].max(axis=0) > measures.ACTIVE]
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(11, 8), height_ratios=(3, 1.3))
    im = ax0.imshow(w[:, order].T, aspect="auto", cmap="magma", origin="lower",
                    extent=(pc.offsets[0], pc.offsets[-1], -0.5, len(order) - 0.5))
    ax0.set_yticks(range(len(order)), [names[i][:40] for i in order], fontsize=6)
    ax0.set(title=f"weights of the {len(order)} layers above {measures.ACTIVE} along z + c u_0 "
            f"(test clip {clip})", xlabel="c")
    fig.colorbar(im, ax=ax0, label="weight")
    c = pc.offsets
    mid = len(c) // 2
    ax1.plot(c, np.abs(pc.centroid[clip, 0] - pc.centroid[clip, 0, mid]), "C0",
             label="centroid distance (Hz)")
    ax1.set(xlabel="c", ylabel="Hz")
    ax2 = ax1.twinx()
    ax2.plot(c, np.linalg.norm(pc.mfcc[clip, 0] - pc.mfcc[clip, 0, mid], axis=-1), "C1",
             label="MFCC distance")
    ax2.set_ylabel("MFCC distance")
    fig.legend(loc="lower right", fontsize=8)
    return _save(fig, out, "fig4_pca.png")


def fig_components(pc: PrincipalDirections, out: str) -> str:
    """The 11 directions: explained variance, and how much each moves the centroid."""
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.4))
    j = np.arange(len(pc.explained))
    a0.bar(j, pc.explained * 100)
    a0.set(xlabel="component", ylabel="% of latent variance", title="PCA of the latent means")
    a1.bar(j, pc.centroid_span_hz)
    a1.set(xlabel="component", ylabel="Hz", title="centroid range along each direction "
           "(mean over test clips)")
    return _save(fig, out, "fig4b_components.png")


def fig_cardinality(weights: np.ndarray, out: str) -> str:
    """Figure 5: how many weights exceed a threshold (mean over test clips), and the largest."""
    t = np.logspace(-4, 0, 60)
    counts = (weights[:, None, :] > t[None, :, None]).sum(-1).mean(0)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.6))
    a0.semilogx(t, counts)
    for th in measures.CARDINALITY_THRESHOLDS:
        v = (weights > th).sum(-1).mean()
        a0.plot(th, v, "o", color="C3")
        a0.annotate(f"> {th:g}: {v:.1f}", (th, v), textcoords="offset points", xytext=(6, 4))
    a0.set(xlabel="threshold", ylabel="weights above it (mean)",
           title=f"sparsity of the weights over {len(weights)} test clips")
    a1.hist(weights.max(-1), bins=20, range=(0, 1))
    a1.axvline(0.15, color="k", ls="--", lw=1, label="0.15 (the paper)")
    a1.set(xlabel="largest weight", ylabel="test clips")
    a1.legend(fontsize=8)
    return _save(fig, out, "fig5_cardinality.png")


def fig_training(metrics: str, out: str) -> str | None:
    """Training and validation loss per epoch of phase 2 (a run's metrics.jsonl) -> the PNG
    at out (None when there is no phase-2 epoch)."""
    epochs = {}
    if os.path.exists(metrics):
        with open(metrics) as f:
            for line in f:
                r = json.loads(line)
                if r.get("kind") == "epoch" and r.get("phase") == "train":
                    epochs[r["epoch"]] = r  # a resumed run rewrites epochs: keep the last
    if not epochs:
        return None
    e = sorted(epochs)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(e, [epochs[i]["loss"] for i in e], label="training loss")
    ax.plot(e, [epochs[i].get("val_loss", np.nan) for i in e], label="validation loss")
    ax.set(xlabel="epoch (phase 2)", ylabel="loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _training_section(wd: Workdir, out: str) -> list[str]:
    """report.md's training section: the loss curves, where the best epoch was, why it ended."""
    fig = fig_training(wd.metrics, os.path.join(out, "fig1_training.png"))
    if fig is None:
        return []
    s = {}
    if os.path.exists(wd.train_summary):
        with open(wd.train_summary) as f:
            s = json.load(f)
    stopped = f"; phase 2 stopped {s['stopped']}" if s.get("stopped") else ""
    return ["## Training", "",
            f"The best parameters by validation came after epoch {s.get('best_step', '?')} "
            f"(pretraining's included){stopped}.", "", f"![training]({os.path.basename(fig)})",
            ""]


def claims(s: dict) -> list[tuple[str, str, bool]]:
    """(the paper's claim, what we measured, whether it holds here)."""
    it, card, rec, pc = s["interpolation"], s["cardinality"], s["reconstruction"], s["pca"]
    return [
        ("4.1: on average the weights change linearly along an interpolation",
         f"R² of the mean weight-distance curve {it['r2_weights']:.3f}", it["r2_weights"] > 0.9),
        ("4.1: centroid and MFCC vary similarly",
         f"R² {it['r2_centroid']:.3f} (centroid), {it['r2_mfcc']:.3f} (MFCC)",
         min(it["r2_centroid"], it["r2_mfcc"]) > 0.9),
        ("4.1: individual paths swap layers in and out",
         f"{it['pairs_with_new_layers']:.0%} of pairs use a layer mid-path that neither end "
         f"uses (mean {it['new_layers_mid_path']['mean']:.1f})",
         it["pairs_with_new_layers"] > 0.25),
        ("4.2: moving along principal directions changes the sound",
         f"u_0 moves the centroid by {pc['centroid_span_hz'][0]:.0f} Hz over +-{pc['range']:g} "
         f"and changes the weights by {pc['weight_change'][0]:.2f} (L2)",
         pc["centroid_span_hz"][0] > 100),
        ("4.3: usually no more than ~15 weights contribute (> 0.01)",
         f"median {card['above_0.01']['median']:.0f}, 90th percentile "
         f"{card['above_0.01']['p90']:.0f}", card["above_0.01"]["p90"] <= 15),
        ("4.3: the largest weight rarely exceeds 0.15 (layers, not one sample)",
         f"median largest weight {card['max_weight']['median']:.2f}",
         card["max_weight"]["median"] <= 0.15),
        *_reconstruction_claims(rec, ""),
        *([] if OUTSIDE not in s else _reconstruction_claims(
            s[OUTSIDE]["reconstruction"], f" (out of library, {s[OUTSIDE]['clips']} clips)")),
    ]


def _reconstruction_claims(rec: dict, where: str) -> list[tuple[str, str, bool]]:
    """Section 4.4's claims, and whether the encoder's recipes beat the nearest single source,
    on one test set."""
    raw, pruned, mp, near = (rec[m] for m in ("model", "model_pruned", "matching_pursuit",
                                              "nearest"))
    lsd = "log_spectral_distance_db"
    ahead = [name for key, name in VERDICT[1:] if raw[key]["median"] < near[key]["median"]]
    return [
        (f"4.4{where}: pruning weights < 0.04 keeps the core timbre",
         f"LSD {raw[lsd]['median']:.1f} -> {pruned[lsd]['median']:.1f} dB, MFCC distance "
         f"{raw['mfcc_distance']['median']:.1f} -> {pruned['mfcc_distance']['median']:.1f}",
         pruned["mfcc_distance"]["median"] <= 1.2 * raw["mfcc_distance"]["median"]),
        (f"4.4{where}: matching pursuit may approximate a target better",
         f"LSD {mp[lsd]['median']:.1f} dB (MP) vs {raw[lsd]['median']:.1f} dB (VAE)",
         mp[lsd]["median"] < raw[lsd]["median"]),
        (f"beyond the paper{where}: the encoder's recipes beat the nearest single source",
         f"LSD {raw[lsd]['median']:.1f} vs {near[lsd]['median']:.1f} dB, MFCC distance "
         f"{raw['mfcc_distance']['median']:.1f} vs {near['mfcc_distance']['median']:.1f}, "
         f"centroid error {raw['centroid_error_hz']['median']:.0f} vs "
         f"{near['centroid_error_hz']['median']:.0f} Hz", len(ahead) == 3),
    ]


VERDICT = (("feature_mse", "feature MSE"), ("mfcc_distance", "MFCC distance"),
           ("log_spectral_distance_db", "LSD"), ("centroid_error_hz", "centroid error"))


def refined_losses(rec: dict) -> list[str]:
    """The measures of VERDICT on which the refined recipes' median is not below matching
    pursuit's (rec: a summary's 'reconstruction')."""
    r, mp = rec["refined"], rec["matching_pursuit"]
    return [name for key, name in VERDICT if r[key]["median"] >= mp[key]["median"]]


def _refined_verdict(rec: dict) -> list[str]:
    """A line: do the refined recipes beat matching pursuit on the four medians?"""
    if "refined" not in rec:
        return []
    r, lost = rec["refined"], refined_losses(rec)
    layers = r["active_layers"]["p90"]
    return ["Refined recipes against matching pursuit (medians): "
            + ("better on all four of feature MSE, MFCC distance, LSD and centroid error"
               if not lost else f"not better on {', '.join(lost)}")
            + f"; 90% of them use <= {layers:.0f} layers above 1%."]


def _reconstruction_table(s: dict) -> list[str]:
    """The table of every method's medians on one test set (s: the summary, or its OUTSIDE
    part), and the refined recipes' verdict."""
    rec = s["reconstruction"]
    return [_table(["method", *(c[1] for c in RECON_COLUMNS), "ms / sound"],
                   [[METHOD_NAMES[name], *(f"{rec[name][c]['median']:.3g}"
                                           for c, _ in RECON_COLUMNS),
                     f"{s['reconstruction_ms_per_sound'][name]:.3g}"] for name in rec]), "",
            *_refined_verdict(rec), ""]


def _outside_section(s: dict) -> list[str]:
    if OUTSIDE not in s:
        return ["No out-of-library set: `data.holdout` named no folder or file of the corpus "
                "(e.g. `--config.data.holdout=~/Samples/Other` measures every method on sounds "
                "that training never saw).", ""]
    o = s[OUTSIDE]
    return ["## Out of library", "",
            f"{o['clips']} clips of a library that training never saw (`data.holdout` = "
            f"{', '.join(o['holdout'])}, and every near-copy of its clips elsewhere): not "
            "trained on, not sources, not augmented.", "", *_reconstruction_table(o)]


GENERATED = {"random_point": "random point (the studio's)", "prior": "the prior, N(0, I)",
             "variations": "variations of the test clips",
             "random_sparse_mixes": "baseline: random sparse mixes",
             "random_single_sources": "baseline: the single sources"}


def generation_section(g: dict | None) -> list[str]:
    """The generated sounds against the held-out clips (`evaluation.generation`)."""
    if not g:
        return []
    rows = [["training clips (the real-against-real line)",
             *(f"{g['real_against_real'][m]:.2f}" for m in ("precision", "recall", "density",
                                                            "coverage")),
             f"{g['held_out_novelty']['to_train']:.2f}",
             f"{g['held_out_novelty']['to_sources']:.2f}"]]
    rows += [[GENERATED.get(name, name), *(f"{v[m]:.2f}" for m in ("precision", "recall",
                                                                 "density", "coverage")),
              f"{v['novelty']['to_train']:.2f}", f"{v['novelty']['to_sources']:.2f}"]
             for name, v in g.items() if isinstance(v, dict) and "novelty" in v]
    return ["## Generated sounds", "",
            f"Sounds drawn from the space, against the {g['held_out']} held-out clips (test "
            "split and out of library) in a standardised descriptor space (MFCC means and "
            "spreads, centroid, attack, decay): the k-nearest-neighbour manifold measures "
            f"(k = {g['k']}; each set measured in subsets as large as the held-out one) and "
            "the median distance to the nearest training clip and single source (in the "
            "first row, the held-out clips' own). Higher is better for the first four; a "
            "copy of a training clip is 0 from it.", "",
            _table(["sounds", "precision", "recall", "density", "coverage",
                    "to training clip", "to source"], rows), ""]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write(res: Results, s: dict, ed: EvalDir, audio_files: list[str]) -> str:
    """All figures and report.md into WORKDIR/eval/. Returns the report's path."""
    it, pc, out = res.interpolation, res.pca, ed.dir
    figs = [fig_interpolation(it, out), fig_pairs(it, out),
            fig_pca(pc, res.bundle.names, out), fig_components(pc, out),
            fig_cardinality(res.reconstruction["model"].weights, out)]
    n_out = f", {s[OUTSIDE]['clips']} out of library" if OUTSIDE in s else ""
    md = [f"# Evaluation: {s['sources']} sources, {s['test_clips']} test clips{n_out}", "",
          "Every number is also in `metrics.json`. Distances are medians over the test clips "
          "unless marked.", "", "## The paper's claims, measured", "",
          _table(["claim", "measured", "holds here"],
                 [[c, m, "yes" if ok else "**no**"] for c, m, ok in claims(s)]), "",
          *_training_section(Workdir(os.path.dirname(os.path.abspath(out))), out),
          "## Interpolation (Section 4.1, Figures 2 and 3)", "",
          f"{s['interpolation']['pairs']} ordered pairs of test clips, "
          f"{s['interpolation']['points']} points each.", "", f"![fig 2]({figs[0]})", "",
          f"![fig 3]({figs[1]})", "",
          "## Principal directions (Section 4.2, Figure 4)", "",
          _table(["component", "explained", "centroid range (Hz)", "MFCC change",
                  "weight change (L2)", "active layers"],
                 [[f"u_{j}", f"{s['pca']['explained'][j]:.1%}",
                   f"{s['pca']['centroid_span_hz'][j]:.0f}", f"{s['pca']['mfcc_span'][j]:.1f}",
                   f"{s['pca']['weight_change'][j]:.2f}",
                   f"{s['pca']['active_layers'][j]:.1f}"]
                  for j in range(len(s["pca"]["explained"]))]), "",
          f"![fig 4]({figs[2]})", "", f"![components]({figs[3]})", "",
          "## Cardinality (Section 4.3, Figure 5)", "",
          _table(["", "mean", "median", "10%", "90%"],
                 [[k.replace("_", " "), *(f"{v[q]:.3g}" for q in ("mean", "median", "p10",
                                                                   "p90"))]
                  for k, v in s["cardinality"].items()]), "", f"![fig 5]({figs[4]})", "",
          "## Reconstruction and baselines (Section 4.4)", "",
          "The same sources for every method; every mix is measured against the test clip. "
          "Lower is better except for the layer counts.", "",
          *_reconstruction_table(s), *_outside_section(s), *generation_section(
              s.get("generation")),
          "## Audio", "", "Peak-normalised to -1 dBFS; interpolations are 5 points of 1 s.", "",
          *[f"- [{p}]({p})" for p in audio_files], ""]
    with open(ed.report, "w") as f:
        f.write("\n".join(md))
    return ed.report


COMPARE_COLUMNS = (
    ("val_reconstruction", "val recon. (last epoch)"), ("feature_mse", "test feature MSE"),
    ("val_kl_bits", "KL (bits)"),
    ("log_spectral_distance_db", "LSD (dB)"), ("mfcc_distance", "MFCC dist"),
    ("multi_resolution_stft", "MR-STFT"), ("active_layers", "active layers"),
    ("max_weight", "largest weight"), ("r2_weights", "interp. R²"),
    ("pairs_with_new_layers", "pairs w/ new layers"), ("mp_lsd", "MP LSD (dB)"))


def compare_row(workdir: str) -> dict:
    """One ablation's numbers from its eval/metrics.json and train_summary.json."""
    wd = Workdir(workdir)
    with open(wd.eval.metrics) as f:
        s = json.load(f)
    with open(wd.train_summary) as f:
        t = json.load(f)
    raw = s["reconstruction"]["model"]
    return {"run": os.path.basename(os.path.normpath(workdir)),
            "val_reconstruction": t.get("val_reconstruction"), "val_kl_bits": t.get(
                "val_kl_bits"),
            **{k: raw[k]["median"] for k in ("feature_mse", "log_spectral_distance_db",
                                             "mfcc_distance",
                                             "multi_resolution_stft", "active_layers")},
            "max_weight": s["cardinality"]["max_weight"]["median"],
            "r2_weights": s["interpolation"]["r2_weights"],
            "pairs_with_new_layers": s["interpolation"]["pairs_with_new_layers"],
            "mp_lsd": s["reconstruction"]["matching_pursuit"]["log_spectral_distance_db"][
                "median"]}


def compare(workdirs: list[str], out: str) -> str:
    """A table of several evaluated runs (ablations): out.md and out.json."""
    rows = [compare_row(w) for w in workdirs]
    with open(out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    md = _table(["run", *(c[1] for c in COMPARE_COLUMNS)],
                [[r["run"], *(f"{r[k]:.3g}" if r[k] is not None else "-"
                              for k, _ in COMPARE_COLUMNS)] for r in rows])
    with open(out + ".md", "w") as f:
        f.write(md + "\n")
    return out + ".md"
