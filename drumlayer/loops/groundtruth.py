"""Loops with known hits: patterns played on one-shots, with swing and human timing, for the
benchmark (`python -m benchmarks loops`) and the tests. Each hit's onset, category and velocity
is known, so every stage of the analysis can be scored against it (`score`).
"""

from __future__ import annotations

import numpy as np

from drumlayer.kit import groove, velocity

# more one-bar patterns of sixteenths {category: [(step, velocity)]}, beside groove.PATTERNS
PATTERNS = {
    **groove.PATTERNS,
    "half-time": {
        "kick": [(0, 122), (3, 84), (10, 110)],
        "snare": [(8, 124)],
        "closed-hat": [(s, 104 if s % 4 == 0 else 60) for s in range(16)],
        "open-hat": [(14, 90)],
    },
    "funk": {
        "kick": [(0, 124), (6, 96), (10, 116)],
        "snare": [(4, 120), (7, 40), (12, 118), (14, 44)],
        "closed-hat": [(s, 110 if s % 2 == 0 else 58) for s in range(16) if s != 11],
        "open-hat": [(11, 92)],
        "cymbal": [(0, 96)],
    },
    "toms": {
        "kick": [(0, 120), (8, 118)],
        "snare": [(4, 116), (12, 120)],
        "tom": [(13, 100), (14, 92), (15, 104)],
        "rim": [(6, 80)],
        "closed-hat": [(s, 90) for s in range(0, 12, 2)],
    },
}


def hits(pattern: dict, tempo: float, bars: int, swing: float = 0.0, jitter_s: float = 0.0,
         seed: int = 0) -> list[tuple[float, str, int]]:
    """[(onset s, category, velocity)] of `bars` bars of a pattern at tempo: odd sixteenths late
    by `swing` sixteenths, every sixteenth moved by a Gaussian of `jitter_s` s (human timing:
    the hits on one sixteenth move together), kept inside the loop."""
    rng = np.random.default_rng(seed)
    step_s = 60.0 / tempo / 4
    length = bars * groove.STEPS * step_s
    late = rng.normal(0.0, jitter_s, bars * groove.STEPS) if jitter_s else np.zeros(
        bars * groove.STEPS)
    out = []
    for b in range(bars):
        for c, notes in pattern.items():
            for s, v in notes:
                n = b * groove.STEPS + s
                t = (n + (swing if s % 2 else 0.0)) * step_s + float(late[n])
                out.append((min(max(t, 0.0), length - 1e-3), c, int(v)))
    return sorted(out)


def voices(one_shots: dict[str, list[np.ndarray]], layers: int = velocity.LAYERS) -> dict:
    """`groove.play` voices from one-shots {category: [audio]}, played as a kit plays a velocity:
    `layers` layers of the same one-shots, each at the level of its top velocity
    (`velocity.level_db`), the one-shots its round robins (zero-padded to one length)."""
    out = {}
    ranges = velocity.ranges(layers)
    for c, shots in one_shots.items():
        n = max(len(s) for s in shots)
        a = np.zeros((layers, len(shots), n), np.float32)
        for j, s in enumerate(shots):
            for v, (_, hi) in enumerate(ranges):
                a[v, j, :len(s)] = s * np.float32(10.0 ** (velocity.level_db(hi) / 20.0))
        out[c] = (ranges, a)
    return out


def render(hits_: list[tuple[float, str, int]], voices_: dict, length_s: float, rate: int
           ) -> np.ndarray:
    """The loop [length_s x rate] of hits on voices (each onset rounded to its sample)."""
    return groove.play([(int(round(t * rate)), c, v) for t, c, v in hits_], voices_,
                       int(round(length_s * rate)), rate)


def onsets(hits_: list[tuple[float, str, int]], gap: float = 0.03) -> list[float]:
    """The distinct onsets (s) of hits: hits closer than gap are one onset (the earliest)."""
    out: list[float] = []
    for t in sorted(h[0] for h in hits_):
        if not out or t - out[-1] >= gap:
            out.append(t)
    return out


def match(found: list[float], truth: list[float], tol: float) -> int:
    """How many onsets (s) of found pair with one of truth within tol, each used once (greedy
    by distance: the optimal pairing for onsets this far apart)."""
    pairs = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)
                   if abs(f - t) <= tol)
    used_f, used_t, n = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            n += 1
    return n


def f1(found: list[float], truth: list[float], tol: float) -> float:
    """The F1 of found onsets against true ones within tol (1.0 when both are empty)."""
    if not found and not truth:
        return 1.0
    n = match(found, truth, tol)
    return 2.0 * n / (len(found) + len(truth))
