"""The manifold measures (drumlayer/evaluation/manifold.py) against a case worked by hand,
identical sets and disjoint ones."""

import numpy as np
import pytest

from drumlayer.evaluation import manifold


def test_a_small_case_worked_by_hand():
    """1-D, k = 1. Real 0, 1, 2, 3, 10: radii 1, 1, 1, 1, 7. Generated 0.5, 5, 20: radii 4.5,
    4.5, 15. 0.5 is in the balls of 0 and 1, 5 in the ball of 10, 20 in none: precision 2/3,
    density 3 / (1 x 3) = 1. Real 0, 1 and 10 hold a generated sound in their balls: coverage
    3/5. Every real sound is in a generated ball (10 in 20's, radius 15): recall 1."""
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = np.array([[0.5], [5.0], [20.0]])
    assert manifold.radii(real, 1).tolist() == [1.0, 1.0, 1.0, 1.0, 7.0]
    assert manifold.radii(fake, 1).tolist() == [4.5, 4.5, 15.0]
    m = manifold.measures(real, fake, k=1)
    assert m == pytest.approx({"precision": 2 / 3, "recall": 1.0, "density": 1.0,
                               "coverage": 0.6})
    assert manifold.nearest(fake, real).tolist() == pytest.approx([0.5, 2.0, 10.0])


def test_identical_sets_score_one_and_disjoint_sets_zero():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 6))
    m = manifold.measures(real, real.copy())
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert manifold.nearest(real, real).max() == pytest.approx(0.0, abs=1e-6)
    far = manifold.measures(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_a_crowded_generator_is_precise_and_dense_but_covers_little():
    """Generated sounds all near one real sound: precision 1, density above 1 at its crowd,
    coverage and recall far below 1."""
    rng = np.random.default_rng(1)
    real = rng.standard_normal((200, 4))
    fake = real[0] + 0.01 * rng.standard_normal((200, 4))
    m = manifold.measures(real, fake)
    assert m["precision"] == 1.0
    assert m["coverage"] < 0.1 and m["recall"] < 0.1


def test_standardise_puts_every_axis_on_the_real_sets_scale():
    real = np.array([[0.0, 100.0, 5.0], [2.0, 300.0, 5.0]])
    z_real, z_other = manifold.standardise(real, np.array([[1.0, 200.0, 6.0]]))
    assert z_real.std(axis=0).tolist() == [1.0, 1.0, 0.0]
    assert z_other.tolist() == [[0.0, 0.0, 1.0]]  # an axis that does not vary: unscaled


def test_too_few_sounds_for_k_is_a_clear_error():
    with pytest.raises(ValueError, match="more than 5"):
        manifold.radii(np.zeros((5, 2)))


def test_a_second_case_by_hand_recall_below_one_and_a_ball_closed_at_its_radius():
    """k = 1. Real 0, 1, 2, 50 (radii 1, 1, 1, 48); generated 0.5, 1.5, 2.5 (radii 1, 1, 1):
    50 is in no generated ball (recall 3/4); 2.5 lies in the balls of 2 and 50 (47.5 <= 48);
    balls held: 1 + 2 + 2 + 1 = 6 (density 6 / 3 = 2). Real 0, 2, 4 (radii 2): generated 6 lies
    on the ball of 4 (distance 2 = radius): inside."""
    real = np.array([[0.0], [1.0], [2.0], [50.0]])
    fake = np.array([[0.5], [1.5], [2.5]])
    assert manifold.measures(real, fake, k=1) == pytest.approx(
        {"precision": 1.0, "recall": 0.75, "density": 2.0, "coverage": 1.0})
    edge = manifold.measures(np.array([[0.0], [2.0], [4.0]]), np.array([[1.0], [3.0], [6.0]]),
                             k=1)
    assert edge["precision"] == 1.0
