"""report: the claims' verdicts on known numbers."""

import copy

import pytest

from drumlayer.evaluation import report


def summary(**over):
    """A metrics.json-like summary where every claim of the paper holds on the medians (and
    p90), and every one would fail on the means: a verdict read from the mean fails here."""
    def stats(median, p90=None, mean=None):
        return {"mean": median if mean is None else mean, "median": median, "p10": median,
                "p90": p90 or median}

    s = {"interpolation": {"r2_weights": 0.99, "r2_centroid": 0.98, "r2_mfcc": 0.97,
                           "pairs_with_new_layers": 0.5, "new_layers_mid_path": stats(1.5)},
         "pca": {"centroid_span_hz": [600.0, 300.0], "weight_change": [0.4, 0.2],
                 "range": 20.0},
         "cardinality": {"above_0.01": stats(8, 12, mean=30), "max_weight": stats(0.12, mean=0.4)},
         "reconstruction": {
             "model": {"log_spectral_distance_db": stats(6.0), "mfcc_distance": stats(40.0),
                       "centroid_error_hz": stats(300.0)},
             "model_pruned": {"log_spectral_distance_db": stats(6.2, mean=60),
                              "mfcc_distance": stats(44.0, mean=100.0)},
             "matching_pursuit": {"log_spectral_distance_db": stats(5.0, mean=9.0),
                                  "mfcc_distance": stats(45.0)},
             "nearest": {"log_spectral_distance_db": stats(6.5, mean=1.0),
                         "mfcc_distance": stats(50.0, mean=1.0),
                         "centroid_error_hz": stats(301.0, mean=1.0)}}}
    for path, value in over.items():
        node = s
        *parts, last = path.split("__")
        for p in parts:
            node = node[p]
        node[last] = value
    return s


def test_every_claim_holds_on_numbers_that_make_it_hold():
    verdicts = report.claims(summary())
    assert len(verdicts) == 9 and all(ok for _, _, ok in verdicts)
    assert "R² of the mean weight-distance curve 0.990" in verdicts[0][1]
    assert verdicts[8][1] == ("LSD 6.0 vs 6.5 dB, MFCC distance 40.0 vs 50.0, centroid error "
                              "300 vs 301 Hz")


def test_the_out_of_library_set_gets_the_reconstruction_claims_of_its_own():
    s = summary()
    s["outside"] = {"clips": 22, "holdout": ["FluidR3_GM.sf2"],
                    "reconstruction": copy.deepcopy(s["reconstruction"])}
    s["outside"]["reconstruction"]["model"]["centroid_error_hz"]["median"] = 302.0
    verdicts = report.claims(s)
    assert [c for c, _, _ in verdicts[6:9]] == [c for c, _, _ in report.claims(summary())[6:]]
    assert [c for c, _, _ in verdicts[9:]] == [
        "4.4 (out of library, 22 clips): pruning weights < 0.04 keeps the core timbre",
        "4.4 (out of library, 22 clips): matching pursuit may approximate a target better",
        "beyond the paper (out of library, 22 clips): the encoder's recipes beat the nearest "
        "single source"]
    assert [ok for _, _, ok in verdicts] == [True] * 11 + [False]  # 302 Hz against 301


@pytest.mark.parametrize("change, which", [
    ({"interpolation__r2_weights": 0.85}, 0),
    ({"interpolation__r2_mfcc": 0.5}, 1),
    ({"interpolation__pairs_with_new_layers": 0.2}, 2),
    ({"pca__centroid_span_hz": [80.0, 900.0]}, 3),
    ({"cardinality__above_0.01": {"mean": 9, "median": 9, "p10": 4, "p90": 16}}, 4),
    ({"cardinality__max_weight": {"mean": 0.3, "median": 0.3, "p10": 0.2, "p90": 0.5}}, 5),
    ({"reconstruction__model_pruned__mfcc_distance": {"mean": 49, "median": 49, "p10": 1,
                                                      "p90": 99}}, 6),
    ({"reconstruction__matching_pursuit__log_spectral_distance_db": {
        "mean": 7, "median": 7, "p10": 1, "p90": 9}}, 7),
    ({"reconstruction__nearest__log_spectral_distance_db": {
        "mean": 6, "median": 6, "p10": 1, "p90": 9}}, 8),
    ({"reconstruction__nearest__mfcc_distance": {"mean": 39, "median": 39, "p10": 1,
                                                 "p90": 99}}, 8),
    ({"reconstruction__nearest__centroid_error_hz": {"mean": 299, "median": 299, "p10": 1,
                                                     "p90": 999}}, 8),
])
def test_each_claim_fails_exactly_when_its_number_does(change, which):
    verdicts = report.claims(summary(**copy.deepcopy(change)))
    assert [i for i, (_, _, ok) in enumerate(verdicts) if not ok] == [which]
