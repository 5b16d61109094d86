"""Built-in grooves to hear a kit in: one bar of sixteenth notes per pattern, with velocities.

`PATTERNS` is the one table (the studio's page plays the same ones, from /api/kit/grooves);
`render` mixes a bar from a kit's velocity layers and round robins, every hit on its sample
(`onset`), the bar's tails wrapped around to its start so that the WAV loops seamlessly. A hit
of the closed hat chokes a ringing open hat (a 5 ms fade), as a hi-hat does.
"""

from __future__ import annotations

import numpy as np

from drumlayer.kit import velocity

STEPS = 16  # sixteenth notes in a bar of 4/4
CHOKE_S = 0.005
# name -> {pad category: [(step, velocity)]}
PATTERNS: dict[str, dict[str, list[tuple[int, int]]]] = {
    "rock": {
        "kick": [(0, 120), (8, 112), (10, 90)],
        "snare": [(4, 118), (12, 122)],
        "closed-hat": [(s, 100 if s % 4 == 0 else 72) for s in range(0, 16, 2)],
        "cymbal": [(0, 100)],
    },
    "four-on-the-floor": {
        "kick": [(s, 124) for s in (0, 4, 8, 12)],
        "clap": [(4, 110), (12, 114)],
        "snare": [(4, 84), (12, 88)],
        "closed-hat": [(s, 64) for s in (1, 3, 5, 7, 9, 11, 13, 15)],
        "open-hat": [(s, 96) for s in (2, 6, 10, 14)],
    },
    "breakbeat": {
        "kick": [(0, 124), (2, 100), (10, 118), (11, 88)],
        "snare": [(4, 120), (7, 46), (9, 52), (12, 122), (15, 44)],
        "closed-hat": [(s, 96 if s % 4 == 0 else 66) for s in range(0, 16, 2)],
        "rim": [(14, 70)],
        "tom": [(13, 80)],
    },
}
TEMPO = (40.0, 300.0)


def check(name: str, tempo: float) -> None:
    if name not in PATTERNS:
        raise ValueError(f"no groove {name!r}: the grooves are {', '.join(PATTERNS)}")
    if not TEMPO[0] <= tempo <= TEMPO[1]:
        raise ValueError(f"tempo {tempo} BPM is outside {TEMPO[0]:.0f}-{TEMPO[1]:.0f}")


def file_name(name: str, tempo: float, ext: str) -> str:
    """The file a groove is exported to: groove_<name>_<tempo>bpm.<ext> (wav, mid)."""
    return f"groove_{name}_{tempo:g}bpm.{ext}"


def onset(step: int, tempo: float, rate: int) -> int:
    """The sample a hit on step (a sixteenth note) of the bar starts on, at tempo (BPM)."""
    return int(round(step * 60.0 / tempo / 4.0 * rate))


def hits(name: str, pads: list[str]) -> list[tuple[int, str, int]]:
    """The pattern's hits on the kit's pads, in time order: [(step, category, velocity)]."""
    return sorted((s, c, v) for c, notes in PATTERNS[name].items() if c in pads
                  for s, v in notes)


def render(name: str, tempo: float, voices: dict, rate: int, bars: int = 1) -> np.ndarray:
    """The groove as audio [bars * bar samples] at rate (`play`, the tails wrapped)."""
    check(name, tempo)
    bar = onset(STEPS, tempo, rate)
    return play([(b * bar + onset(step, tempo, rate), cat, vel) for b in range(bars)
                 for step, cat, vel in hits(name, list(voices))], voices, bars * bar, rate)


def play(hits_: list[tuple[int, str, int]], voices: dict, length: int, rate: int,
         wrap: bool = True) -> np.ndarray:
    """Audio [length] at rate of hits [(sample, category, velocity 1-127)], each at its own
    sample (never snapped to a grid). voices: {category: (ranges [(lovel, hivel)] softest
    first, audio [layers, round robins, n] at rate)}; each hit plays its velocity's layer (the
    category's round robins in turn) at `velocity.velocity_gain`; a hit on a category without
    voices, or outside the length, is silent. With wrap, the tails past the end wrap onto the
    start, so the audio loops seamlessly."""
    longest = max((a.shape[-1] for _, a in voices.values()), default=0)
    out = np.zeros(length + longest, np.float64)
    turn = dict.fromkeys(voices, 0)
    ringing: list[tuple[int, np.ndarray]] = []  # (start, audio) of open-hat hits
    for t, cat, vel in sorted(hits_, key=lambda h: h[0]):
        if cat not in voices or not 0 <= t < length:
            continue
        ranges, audio = voices[cat]
        layer = next(i for i, (lo, hi) in enumerate(ranges) if lo <= vel <= hi)
        x = audio[layer, turn[cat] % audio.shape[1]] * velocity.velocity_gain(
            vel, *ranges[layer])
        turn[cat] += 1
        if cat == "closed-hat":
            for start, hat in ringing:
                choke(out, start, hat, t, int(CHOKE_S * rate))
            ringing = []
        out[t:t + len(x)] += x
        if cat == "open-hat":
            ringing.append((t, x))
    looped = out[:length].copy()
    if wrap:
        tail = out[length:]
        for i in range(0, len(tail), length):
            part = tail[i:i + length]
            looped[: len(part)] += part
    return looped.astype(np.float32)


def choke(out: np.ndarray, start: int, hat: np.ndarray, t: int, fade: int) -> None:
    """A hat that was added to out at start, faded out over `fade` samples from t and silent
    after: out less the part of it that a choke removes."""
    rest = hat[max(t - start, 0):]
    if not len(rest):
        return
    keep = np.zeros(len(rest))
    keep[:fade] = np.linspace(1.0, 0.0, fade, endpoint=False)[:len(rest)]
    out[t:t + len(rest)] -= rest * (1.0 - keep)
