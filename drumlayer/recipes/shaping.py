"""Per-layer shaping, as a sampler shapes each region: pitch, tone and decay (numpy).

A shaped layer is its source played back faster or slower, filtered, then faded:

    r       = 2 ** (pitch_cents / 1200)                 (playback rate; +1200 cents: an octave up)
    p[t]    = x(t * r), band-limited interpolation       (0 past the sample's end; `pitch`)
    f       = biquad(p)                                  (RBJ's 2-pole low- or high-pass, Q = 1)
    y[t]    = f[t] * 10 ** (-3 t / (rate * decay))       (-60 dB after `decay` seconds)

Each step is what SFZ holds per region with the same meaning, and what sfizz plays:
`transpose`/`tune`, `fil_type=lpf_2p|hpf_2p` with `cutoff` (sfizz's 2-pole filters are RBJ's
biquads with Q = 1, a 0 dB peak at the cutoff: measured in tests/test_shaping.py), and
`ampeg_decay` with `ampeg_sustain=0` (the region's envelope starts with the region, after its
`delay`). The start delay is the recipe's `offsets_ms`, applied after the shaping; the weight
scales the result. A layer with no shaping is its source, unchanged.

The filter runs in float64 in direct form I (scipy's lfilter), as the page's JavaScript does, so
the two agree to float rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

FILTERS = {"lpf": "lpf_2p", "hpf": "hpf_2p"}  # shaping's filter -> SFZ's fil_type
Q = 1.0  # sfizz's resonance=0 dB


def rate_ratio(pitch_cents: float) -> float:
    return float(2.0 ** (pitch_cents / 1200.0))


def pitch(x: np.ndarray, cents: float) -> np.ndarray:
    """x [..., n] played back at r = 2^(cents/1200) times its speed: [..., n] (cut at n
    samples; zeros where the sample has ended). Band-limited: each output sample is a windowed
    sinc (Blackman, 2 * HALF_TAPS taps) of x around position t * r, its cutoff min(1, 1 / r) of
    Nyquist, so that a pitch down leaves no images above the new band and a pitch up no
    aliases. The taps' weights are computed once for all rows of x."""
    x = np.asarray(x, np.float32)
    if cents == 0:
        return x
    n, r = x.shape[-1], rate_ratio(cents)
    pos = np.arange(n, dtype=np.float64) * r
    base = np.floor(pos).astype(np.int64)
    taps = np.arange(-HALF_TAPS + 1, HALF_TAPS + 1)
    idx = base[:, None] + taps  # [n, taps]
    weights = np.where((idx >= 0) & (idx < n), kernel((pos - base)[:, None] - taps), 0.0)
    idx = np.clip(idx, 0, n - 1)
    rows = x.reshape(-1, n)
    y = np.stack([np.sum(row[idx] * weights, axis=1) for row in rows])
    return y.reshape(x.shape).astype(np.float32)


HALF_TAPS = 16


def kernel(d: np.ndarray) -> np.ndarray:
    """The interpolation kernel at distances d (samples) for a cutoff (a fraction of Nyquist):
    cutoff * sinc(cutoff * d) times a Blackman window over |d| < HALF_TAPS (0 outside)."""
    u = np.clip(d / HALF_TAPS, -1.0, 1.0)
    window = 0.42 + 0.5 * np.cos(np.pi * u) + 0.08 * np.cos(2 * np.pi * u)
    return np.where(np.abs(d) < HALF_TAPS, np.sinc(d) * window, 0.0)


def biquad(kind: str, cutoff_hz: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ's 2-pole filter (kind 'lpf' or 'hpf', Q = 1): (b [3], a [3]), a[0] = 1. A cutoff at
    or above Nyquist leaves a low-pass out (b = a = [1, 0, 0])."""
    if kind not in FILTERS:
        raise ValueError(f"filter must be one of {sorted(FILTERS)}, got {kind!r}")
    w0 = 2 * np.pi * cutoff_hz / rate
    if w0 >= np.pi * 0.999:
        if kind == "lpf":
            return np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])
        w0 = np.pi * 0.999
    alpha, c = np.sin(w0) / (2 * Q), np.cos(w0)
    if kind == "lpf":
        b = np.array([(1 - c) / 2, 1 - c, (1 - c) / 2])
    else:
        b = np.array([(1 + c) / 2, -(1 + c), (1 + c) / 2])
    a = np.array([1 + alpha, -2 * c, 1 - alpha])
    return b / a[0], a / a[0]


def tone(x: np.ndarray, kind: str, cutoff_hz: float, rate: int) -> np.ndarray:
    """x [..., n] through the biquad (float64 inside): [..., n] float32."""
    # imported here: scipy.signal pulls in scipy.sparse.csgraph, which the studio and the
    # evaluation otherwise never load
    from scipy import signal

    b, a = biquad(kind, cutoff_hz, rate)
    return signal.lfilter(b, a, np.asarray(x, np.float64), axis=-1).astype(np.float32)


def fade(n: int, rate: int, decay: float) -> np.ndarray:
    """The decay envelope [n]: 10^(-3 t / decay), -60 dB at t = decay seconds."""
    t = np.arange(n, dtype=np.float64) / rate
    return (10.0 ** (-3.0 * t / decay)).astype(np.float32)


def shape(x: np.ndarray, rate: int, pitch_cents: float = 0.0, filter: str | None = None,
          cutoff_hz: float | None = None, decay: float | None = None) -> np.ndarray:
    """One layer's source x [..., n] at `rate`, shaped (module docstring): [..., n] float32."""
    y = pitch(x, pitch_cents)
    if filter is not None:
        y = tone(y, filter, float(cutoff_hz), rate)
    if decay is not None:
        y = y * fade(x.shape[-1], rate, decay)
    return np.asarray(y, np.float32)


def shape_layer(x: np.ndarray, rate: int, s) -> np.ndarray:
    """x [..., n] shaped by a LayerShape s (`shape` with its fields)."""
    return shape(x, rate, s.pitch_cents, s.filter, s.cutoff_hz, s.decay)


def is_plain(s) -> bool:
    """Whether a LayerShape (or None) leaves its source as it is."""
    return s is None or (s.pitch_cents == 0 and s.filter is None and s.decay is None)


def sfz_opcodes(s, decay_scale: float) -> dict:
    """A LayerShape as SFZ region opcodes: transpose/tune (semitones and the rest in cents),
    fil_type/cutoff, ampeg_decay (seconds times decay_scale: SFZ's decay is not 60 dB's) with
    the rest of the envelope at 0 (a region's own envelope replaces the global one)."""
    out: dict = {}
    if s is None:
        return out
    if s.pitch_cents:
        semis = int(np.round(s.pitch_cents / 100.0))
        out["transpose"] = semis
        cents = s.pitch_cents - 100 * semis
        if abs(cents) > 1e-9:
            out["tune"] = f"{cents:.2f}"
    if s.filter is not None:
        out.update(fil_type=FILTERS[s.filter], cutoff=f"{s.cutoff_hz:.2f}")
    if s.decay is not None:
        out.update(ampeg_attack=0, ampeg_hold=0, ampeg_decay=f"{s.decay * decay_scale:.4f}",
                   ampeg_sustain=0)
    return out


class Variant(NamedTuple):
    """One shaping of the refinement's grid (None: that part is left out)."""

    pitch_cents: float = 0.0
    filter: str | None = None
    cutoff_hz: float | None = None
    decay: float | None = None

    @property
    def plain(self) -> bool:
        return self.pitch_cents == 0 and self.filter is None and self.decay is None


def grid(pitches, tones, decays) -> list[Variant]:
    """Every combination of a pitch (cents), a tone ((filter, cutoff) pairs) and a decay (s),
    each also left out; the plain variant first: [V]."""
    out = [Variant(p, *(t or (None, None)), d) for p in (0.0, *pitches)
           for t in (None, *tones) for d in (None, *decays)]
    return sorted(out, key=lambda v: not v.plain)


def bank(sources: np.ndarray, rate: int, variants: list[Variant]) -> np.ndarray:
    """Every source in every variant: sources [k, S] -> [k * V, S], row i * V + j source i
    shaped by variants[j] (the pitch of each source computed once per pitch)."""
    k, n = sources.shape
    out = np.empty((k, len(variants), n), np.float32)
    pitched = {}
    for j, v in enumerate(variants):
        if v.pitch_cents not in pitched:
            pitched[v.pitch_cents] = pitch(sources, v.pitch_cents)
        y = pitched[v.pitch_cents]
        if v.filter is not None:
            y = tone(y, v.filter, v.cutoff_hz, rate)
        if v.decay is not None:
            y = y * fade(n, rate, v.decay)
        out[:, j] = y
    return out.reshape(k * len(variants), n)
