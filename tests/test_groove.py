"""The built-in grooves (drumlayer/kit/groove.py): every hit on its sample, its layer and level
by velocity, the round robins in turn, the hi-hat choke and a seamless loop."""

import numpy as np
import pytest

from drumlayer.kit import groove, velocity

RATE = 48000


def clicks(n_layers=4, rr=2, n=2000):
    """Voices whose every sample is a click at its first sample, of amplitude 1 + layer / 10 +
    round robin / 100 (so a hit's layer and round robin can be read off its peak)."""
    a = np.zeros((n_layers, rr, n), np.float32)
    for v in range(n_layers):
        for j in range(rr):
            a[v, j, 0] = 1 + v / 10 + j / 100
    return velocity.ranges(n_layers), a


@pytest.mark.parametrize("name", list(groove.PATTERNS))
@pytest.mark.parametrize("tempo", [87.0, 100.0, 174.0])
def test_every_hit_lands_on_its_sixteenth_with_its_layer_and_level(name, tempo):
    pads = ["kick", "snare"]
    x = groove.render(name, tempo, {p: clicks() for p in pads}, RATE)
    bar = 4 * 60.0 / tempo  # seconds of a bar of 4/4, by hand
    assert len(x) == round(bar * RATE)
    expected = {}
    turns = dict.fromkeys(pads, 0)
    for p in pads:
        for step, vel in sorted(groove.PATTERNS[name].get(p, [])):
            layer = next(i for i, (lo, hi) in enumerate(velocity.ranges(4)) if lo <= vel <= hi)
            at = step * bar / 16 * RATE  # the grid, by hand
            amp = (1 + layer / 10 + (turns[p] % 2) / 100) * velocity.velocity_gain(
                vel, *velocity.ranges(4)[layer])
            expected[int(round(at))] = expected.get(int(round(at)), 0) + amp
            turns[p] += 1
    onsets = np.flatnonzero(np.abs(x) > 1e-6)
    assert sorted(expected) == onsets.tolist()  # nothing else sounds
    for at, amp in expected.items():
        # within 1 ms of the pattern (here exact to the rounding of the sample)
        assert abs(at - (at / RATE) * RATE) < 0.001 * RATE
        assert x[at] == pytest.approx(amp, rel=1e-5)


def test_the_closed_hat_chokes_a_ringing_open_hat_and_tails_wrap_around():
    n = RATE * 2  # longer than the bar: its tail wraps onto the start
    ring = np.ones((1, 1, n), np.float32)
    tick = np.zeros((1, 1, 10), np.float32)
    tick[0, 0, 0] = 1.0
    voices = {"open-hat": ([(1, 127)], ring), "closed-hat": ([(1, 127)], tick)}
    tempo = 120.0
    x = groove.render("four-on-the-floor", tempo, voices, RATE)
    step = RATE * 60 // 120 // 4  # 6000 samples a sixteenth at 120 BPM
    # open hat on 2, 6, 10, 14; closed hat on the odd steps: each open hat rings one step, then
    # fades over 5 ms from the closed hat's onset
    g_open = velocity.velocity_gain(96, 1, 127)
    g_closed = velocity.velocity_gain(64, 1, 127)
    assert x[2 * step + 100] == pytest.approx(g_open, rel=1e-5)
    fade = int(groove.CHOKE_S * RATE)
    assert x[3 * step] == pytest.approx(g_closed + g_open, rel=1e-5)  # the fade starts at 1
    assert x[3 * step + fade // 2] == pytest.approx(g_open / 2, rel=0.01)
    assert np.all(x[3 * step + fade + 1:5 * step] == 0)  # silent until the next closed hat
    # without the choke, the same open hats sum and wrap around the bar: energy is kept
    y = groove.render("four-on-the-floor", tempo, {"open-hat": ([(1, 127)], ring)}, RATE)
    assert y.sum() == pytest.approx(4 * n * g_open, rel=1e-5)


def test_bad_grooves_and_tempi_say_what_there_is():
    with pytest.raises(ValueError, match="no groove 'polka': the grooves are rock"):
        groove.render("polka", 100, {"kick": clicks()}, RATE)
    with pytest.raises(ValueError, match="tempo 20.0 BPM is outside 40-300"):
        groove.check("rock", 20.0)
