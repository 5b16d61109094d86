"""Shaping by gradient (recipes.tune): its renderer against scipy's recursion, and its steps
against a target whose shaping is known."""

from __future__ import annotations

import copy

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from drumlayer.recipes import refine, tune

RATE = 22050
N = RATE


def burst(seed: int, tau: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(N) / RATE
    return (rng.standard_normal(N) * np.exp(-t / tau)).astype(np.float32)


def reference(x, kind, cutoff, decay, delay):
    """The layer as a sampler plays it: RBJ's biquad by scipy's recursion (float64), the decay
    from the layer's start, then the start delayed by whole samples."""
    y = np.asarray(x, np.float64)
    if kind:
        w0 = 2 * np.pi * cutoff / RATE
        alpha, c = np.sin(w0) / 2, np.cos(w0)  # Q = 1
        b = [(1 - c) / 2, 1 - c, (1 - c) / 2] if kind == 1 else [(1 + c) / 2, -(1 + c),
                                                                  (1 + c) / 2]
        y = signal.lfilter(b, [1 + alpha, -2 * c, 1 - alpha], y)
    if decay:
        y = y * 10.0 ** (-3.0 * np.arange(N) / (RATE * decay))
    return np.concatenate([np.zeros(delay), y[: N - delay]])


@pytest.mark.parametrize("kind,cutoff,decay,delay", [
    (1, 800.0, 0.2, 0), (2, 3000.0, 0.0, 37), (0, 1000.0, 0.05, 5), (1, 20.0, 0.0, 0),
    (2, 20.0, 1.0, 3), (1, 11000.0, 0.3, 441), (2, 9000.0, 0.0, 0), (1, 20.0, 0.0, 1102)])
def test_render_is_the_samplers_layer(kind, cutoff, decay, delay):
    x = burst(0)
    y = np.asarray(tune.render(jnp.fft.rfft(jnp.asarray(x), tune.fft_length(N)), jnp.asarray(kind),
                               jnp.asarray(cutoff), jnp.asarray(decay),
                               jnp.asarray(float(delay)), RATE, N))
    ref = reference(x, kind, cutoff, decay, delay)
    # float32 FFTs: rounding near -80 dB of the input at worst (a 20 Hz low-pass)
    assert np.max(np.abs(y - ref)) < 1e-4 * np.max(np.abs(x))


def test_a_fractional_delay_lands_between_the_whole_ones():
    x = burst(1)
    spectra = jnp.fft.rfft(jnp.asarray(x), tune.fft_length(N))
    y = [np.asarray(tune.render(spectra, jnp.asarray(0), jnp.asarray(1000.0),
                                jnp.asarray(0.0), jnp.asarray(d), RATE, N)) for d in (4.0, 4.5)]
    lag = np.argmax(signal.correlate(y[1], y[0], "full", "fft")[N - 10:N + 10]) - 9  # N - 1: 0
    assert lag in (0, 1)
    assert np.max(np.abs(y[1] - y[0])) > 1e-3 * np.max(np.abs(x))


@pytest.fixture(scope="module")
def analyzer():
    sources = np.stack([burst(2), burst(3, 0.3), burst(4, 0.05)])
    config = refine.AnalyzeConfig(mode="shape", shape_pitches=(), shape_tones=(("lpf", 3000.0),),
                                  shape_decays=(0.25,), tune_steps=24, tune_learning_rate=0.05,
                                  tune_slots=1)
    an = refine.Analyzer(sources, {"n_fft": 4096, "hop": 512, "compression": "linear"},
                         lambda args, f: jnp.zeros((len(f), 1)),
                         lambda args, z: jnp.full((len(z), 3), 1 / 3), config)
    return an, sources


def test_steps_move_cutoff_decay_and_delay_to_the_targets_and_lower_j(analyzer):
    """The target is source 0 low-passed at 1.5 kHz and decaying in 0.12 s, 8 ms late, under
    source 1; the grid holds a 3 kHz low-pass and a 0.25 s decay: the steps move the cutoff
    and the decay at least half way (in log) to the target's, and J falls by a fifth. The
    delay is a whole number of samples within its range (J is not smooth in it: a layer
    coherent with the target matches only at the exact lag)."""
    an, sources = analyzer
    lp_decay = next(j for j, v in enumerate(an.variants) if v.filter and v.decay)
    target = (0.8 * reference(sources[0], 1, 1500.0, 0.12, int(0.008 * RATE))
              + 0.5 * sources[1]).astype(np.float32)
    sh = copy.copy(an)
    sh.constants = an.bank
    idx, pick = jnp.asarray([[0, 1]]), jnp.asarray([[lp_decay, 0]])
    vs = jnp.asarray([[0.8, 0.5]])
    table = tune.grid_table(an.variants)
    feats = an.target(jnp.asarray(target[None]))
    tuned, j = tune.tune(sh, feats, idx, pick, vs, table)
    grid = sh.objective(sh.target(jnp.einsum("bj,bjs->bs", vs, an.bank.sources[idx * len(
        an.variants) + pick])), feats) + an.config.shape_cost
    assert float(j[0]) < 0.8 * float(grid[0])
    assert abs(np.log(float(tuned.cutoff[0, 0]) / 1500.0)) < abs(np.log(3000.0 / 1500.0)) / 2
    assert abs(np.log(float(tuned.decay[0, 0]) / 0.12)) < abs(np.log(0.25 / 0.12)) / 2
    delay = float(tuned.delay[0, 0])
    assert 0 <= delay <= tune.MAX_DELAY_S * RATE and delay == round(delay)
    assert float(tuned.delay[0, 1]) == 0.0  # an unshaped layer outside the slots: never moved
    assert float(tuned.cutoff[0, 1]) == table.cutoff[0]


def other_recordings() -> np.ndarray:
    """Targets made of other recordings of the sources' kind (other noise, the same envelopes),
    shaped and delayed, as a target from another library is: J is then smooth in a delay (the
    layers are not coherent with the target)."""
    return np.stack([
        0.8 * reference(burst(12), 1, 1500.0, 0.12, 30) + 0.5 * burst(13, 0.3),
        0.6 * reference(burst(13, 0.3), 1, 5000.0, 0.4, 0) + 0.4 * reference(burst(14, 0.05),
                                                                         0, 0, 0, 60),
        0.9 * reference(burst(14, 0.05), 1, 2200.0, 0.2, 11)]).astype(np.float32)


def test_no_steps_keep_the_grid(analyzer):
    """tune_steps = 0: the shaping refinement's recipes carry the grid's cutoffs and decays,
    and no delays."""
    one, sources = analyzer
    an = refine.Analyzer(sources, {"n_fft": 4096, "hop": 512, "compression": "linear"},
                         one._encode, one._decode,
                         refine.AnalyzeConfig(**{**one.config.__dict__, "tune_steps": 0}))
    r = an(jnp.asarray(other_recordings()))
    assert np.all(np.asarray(r.delay) == 0)
    seen = set()
    for i in range(len(r.gain)):
        fields = refine.recipe_fields(r, i, an.variants)
        assert fields["offsets_ms"] == {}
        for s in fields["shaping"].values():
            assert s.cutoff_hz == (3000.0 if s.filter else 1000.0) and s.decay in (0.25, None)
            seen |= {"filter"} if s.filter else set()
            seen |= {"decay"} if s.decay else set()
    assert seen == {"filter", "decay"}


def test_refined_recipes_render_to_their_reported_j_with_tuned_shaping(analyzer):
    """The whole shaping refinement on other recordings, shaped and delayed: each recipe, as
    the numpy renderer plays it (tuned cutoffs and decays, start delays), has the J the
    refinement reports, less the shaping cost; the steps did move cutoffs, decays and delays."""
    from drumlayer.recipes import render

    one, sources = analyzer
    an = refine.Analyzer(sources, {"n_fft": 4096, "hop": 512, "compression": "linear"},
                         one._encode, one._decode,
                         refine.AnalyzeConfig(**{**one.config.__dict__, "tune_slots": 4}))
    targets = other_recordings()
    r = an(jnp.asarray(targets))
    moved = set()
    for i, x in enumerate(targets):
        fields = refine.recipe_fields(r, i, an.variants)
        w = np.asarray(r.weights[i]) * float(r.gain[i])
        mix = render.render(w, sources, render.offsets(fields["offsets_ms"], RATE),
                            np.ones(N, np.float32), 0.0, fields["shaping"], RATE)
        j = float(an.objective(an.target(jnp.asarray(mix[None])),
                               an.target(jnp.asarray(x[None])))[0])
        cost = an.config.shape_cost * len(fields["shaping"])
        assert float(r.objective[i]) == pytest.approx(j + cost, rel=2e-3, abs=1e-5)
        for s in fields["shaping"].values():
            moved |= {"cutoff"} if s.filter and s.cutoff_hz != 3000.0 else set()
            moved |= {"decay"} if s.decay and s.decay != 0.25 else set()
        moved |= {"delay"} if fields["offsets_ms"] else set()
    assert moved == {"cutoff", "decay", "delay"}


def test_steps_that_make_it_worse_are_thrown_away(analyzer):
    """With steps far too long J rises; the grid's recipe (weights, cutoff, decay, no delay) is
    what comes back, with the grid's J: the refinement never increases its objective."""
    an, sources = analyzer
    wild = copy.copy(an)
    wild.config = refine.AnalyzeConfig(**{**an.config.__dict__, "tune_learning_rate": 3.0,
                                          "tune_slots": 2})
    wild.constants = an.bank
    lp_decay = next(j for j, v in enumerate(an.variants) if v.filter and v.decay)
    targets = jnp.asarray(np.stack([0.8 * reference(burst(20), 1, 2500.0, 0.3, 0)
                                    + 0.5 * burst(21, 0.3)] * 2).astype(np.float32))
    idx, pick = jnp.asarray([[0, 1]] * 2), jnp.asarray([[lp_decay, 0]] * 2)
    vs = jnp.asarray([[0.8, 0.5]] * 2)
    feats = an.target(targets)
    tuned, j = tune.tune(wild, feats, idx, pick, vs, tune.grid_table(an.variants))
    grid = wild.objective(wild.target(jnp.einsum("bj,bjs->bs", vs, an.bank.sources[
        idx * len(an.variants) + pick])), feats) + an.config.shape_cost
    np.testing.assert_allclose(j, grid, rtol=1e-5)
    np.testing.assert_array_equal(tuned.vs, vs)
    np.testing.assert_array_equal(tuned.cutoff[:, 0], 3000.0)
    np.testing.assert_array_equal(tuned.delay, 0.0)
