"""A drum loop's hits: when, which drums, how hard, and its tempo and bar grid.

Pure numpy and scipy on mono audio at 22.05 kHz (`RATE`); `drumlayer.loops.analyze` reads the
files and runs it.

- **Onsets** (`onsets`): a spectral flux (log-compressed magnitudes, 1024-point frames every
  128 samples), peaks above a moving median; each peak then moved to the sample where the
  energy of the next 2 ms most exceeds that of the 5 ms before it (full band or above 4 kHz,
  whichever jumps more: a hat on a ringing kick), so an onset lands on its hit's first
  samples, not on a frame.
- **Which drums**: the kit's categoriser (`drumlayer.loops.categorise`: a network over the
  onset's log-mel patch, trained on mixtures of the kit corpus's one-shots) says which sound;
  without one, the decomposition (`decompose`) does. It mixes the energy each onset adds (its
  spectrum in mel bands over three spans after it, less the spectrum ringing on from before
  it) from the templates' (the kit's sources, every category's) by NNLS in a band-whitened
  space; a category sounds at the onset when its share of the mix is at least `SHARE`. A kick
  and a hat at one instant are two hits; an onset the templates do not explain is no drum.
- **How hard** (`velocities`): a hit's level is its category's part of the mix; its velocity
  is 127 at the loop's loudest hits of that category, 24 dB below it 1 (the kit's velocity
  curve, `drumlayer.kit.velocity.level_db`, inverted).
- **Tempo and grid** (`tempo`): the sixteenth-note period that puts the onsets nearest a
  grid, searched over 60-200 BPM and refined by least squares; when the loop's length is a
  whole number of bars at a tempo within 2% of it, that tempo (loops are cut on bars). The
  onsets are kept where they were played; the grid only names their step and the swing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from drumlayer.features import descriptors
from drumlayer.kit import velocity as velocity_lib

RATE = 22050
N_FFT, HOP = 1024, 128
BANDS = 40
SPANS_S = ((0.0, 0.03), (0.03, 0.08), (0.08, 0.2))  # after an onset: attack, body, tail
# a category sounds at an onset when it holds PART of the onset's mix, or when the mix loses
# LOSS of the onset's energy without it
PART, LOSS = 0.3, 0.03
SHARE = 1.0  # the score (`decompose`) at which a category sounds
FIT = 0.2  # an onset whose energy the templates explain less of is no drum of theirs
WHITEN = 1.0
MIN_GAP_S = 0.03  # onsets closer than this are one
EARLIEST = 0.7  # an onset is the earliest rise within this fraction of the strongest's (log)
TEMPO_RANGE = (60.0, 200.0)


@dataclasses.dataclass(frozen=True)
class Hit:
    onset_s: float
    category: str
    velocity: int
    share: float  # its score at the onset (>= 1 sounds): `decompose`'s, or the categoriser's


@dataclasses.dataclass(frozen=True)
class Grid:
    tempo_bpm: float
    downbeat_s: float  # the first bar's start (may be before the loop's, by less than a bar)
    bars: int
    swing: float  # the median delay of off-beat eighths, in sixteenths (0: straight)


def _frames(x: np.ndarray) -> np.ndarray:
    """Magnitude spectrogram [T, N_FFT/2 + 1] of x, frame t centred on sample t * HOP."""
    pad = np.pad(np.asarray(x, np.float64), (N_FFT // 2, N_FFT // 2))
    n = 1 + (len(pad) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None] + HOP * np.arange(max(n, 0))[:, None]
    return np.abs(np.fft.rfft(pad[idx] * np.hanning(N_FFT), axis=-1))


def flux(x: np.ndarray) -> np.ndarray:
    """The onset strength [T]: the sum of each bin's rise in log(1 + 100 |X|) from the frame
    before, frame t at sample t * HOP."""
    mag = np.log1p(100.0 * _frames(x))
    rise = np.maximum(np.diff(mag, axis=0, prepend=mag[:1]), 0.0)
    return rise.sum(axis=1)


def _energy(x: np.ndarray) -> np.ndarray:
    """[S + 1] cumulative energy of x: the energy of x[a:b] is c[b] - c[a]."""
    return np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])


def refine(x: np.ndarray, hi: np.ndarray, guess: int, before: int = 55 * RATE // 10000,
           after: int = 2 * RATE // 1000, search: tuple[int, int] = (-400, 800)) -> int:
    """The sample near guess where a hit starts: where the energy of the next `after` samples
    most exceeds that of the `before` samples before it, in x or in its high band hi."""
    lo_n, hi_n = max(guess + search[0], before), min(guess + search[1], len(x) - after)
    if hi_n <= lo_n:
        return int(min(max(guess, 0), len(x) - 1))
    n = np.arange(lo_n, hi_n)
    best, at = -np.inf, guess
    for sig in (x, hi):
        c = _energy(sig)
        post = (c[n + after] - c[n]) / after
        pre = (c[n] - c[n - before]) / before
        floor = 1e-10 + 1e-4 * float(np.max(post))
        ratio = np.log((post + floor) / (pre + floor))
        top = float(np.max(ratio))
        # the earliest strong rise: a soft first touch (a pedal hat's chick) starts the hit
        j = int(np.argmax((ratio >= EARLIEST * top) & (post >= 1e-3 * float(np.max(post)))))
        if top > best:
            best, at = top, int(n[j])
    # to the sample: the first of the next `after` whose level clears both a tenth of their
    # peak and three times what rang before
    seg = np.abs(x[at:at + after + 1])
    ring = 3.0 * np.sqrt(np.mean(np.square(x[max(at - before, 0):at]))) if at > 0 else 0.0
    first = np.flatnonzero(seg >= max(0.1 * float(seg.max(initial=0.0)), ring))
    return at + int(first[0]) if len(first) else at


def onsets(x: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """The samples [N] where hits start in x [S] at RATE, in order."""
    # imported here: scipy.signal pulls in scipy.sparse.csgraph, which the studio otherwise
    # never loads (its start stays quick)
    import scipy.signal
    from scipy.ndimage import median_filter

    x = np.asarray(x, np.float64)
    if not np.any(x):
        return np.zeros(0, int)
    f = flux(x)
    local = median_filter(f, size=9, mode="nearest")
    height = threshold * float(np.max(f))
    peaks, _ = scipy.signal.find_peaks(f - local, height=height,
                                       distance=max(1, int(MIN_GAP_S * RATE / HOP)))
    sos = scipy.signal.butter(4, 4000, "highpass", fs=RATE, output="sos")
    lead = N_FFT  # silence before the start: a hit on the first sample has a "before" too
    xp = np.concatenate([np.zeros(lead), x])
    hi = scipy.signal.sosfilt(sos, xp)
    out = sorted({max(refine(xp, hi, int(p) * HOP + lead) - lead, 0) for p in peaks})
    keep = []
    for n in out:  # the refinement can bring two peaks onto one hit
        if not keep or n - keep[-1] >= MIN_GAP_S * RATE:
            keep.append(n)
    return np.asarray(keep, int)


def _band_power(x: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Mel band power [M] of a span of audio (Hann-windowed, zero-padded to N_FFT or more)."""
    n = max(N_FFT, 1 << int(np.ceil(np.log2(max(len(x), 2)))))
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64) * np.hanning(len(x)), n)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / RATE)
    ref = np.fft.rfftfreq(N_FFT, 1.0 / RATE)
    return fb @ np.interp(ref, freqs, spec) * (N_FFT / n) / max(len(x), 1)


def filterbank() -> np.ndarray:
    return np.asarray(descriptors.mel_filterbank(RATE, N_FFT, BANDS), np.float64)


def span_features(x: np.ndarray, start: int, stop: int, fb: np.ndarray) -> np.ndarray:
    """What an onset at `start` adds, [len(SPANS_S) * BANDS]: for each span after it (cut at
    `stop`, the next onset; a span past it is 0), its band power less the band power of the
    5-20 ms before the onset (what rings on), at least 0."""
    pre = x[max(start - int(0.02 * RATE), 0):max(start - int(0.005 * RATE), 0)]
    ring = _band_power(pre, fb) if len(pre) > 32 else np.zeros(BANDS)
    out = []
    for a, b in SPANS_S:
        s, e = start + int(a * RATE), min(start + int(b * RATE), stop, len(x))
        out.append(np.maximum(_band_power(x[s:e], fb) - ring, 0.0) if e - s >= 64
                   else np.zeros(BANDS))
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class Templates:
    """The sounds an onset is decomposed over: audio [N, S] at RATE (one-shots starting at
    their first sample) and their categories [N]."""

    audio: np.ndarray
    categories: tuple[str, ...]

    def features(self, stop_s: float | None, fb: np.ndarray) -> np.ndarray:
        """[N, len(SPANS_S) * BANDS]: each template's span features, cut at stop_s."""
        stop = None if stop_s is None else int(stop_s * RATE)
        return np.stack([span_features(a, 0, len(a) if stop is None else stop, fb)
                         for a in self.audio])


def _whitening(a: np.ndarray) -> np.ndarray:
    """[F] the scale of each band of templates' features a [N, F]: every band counts."""
    return np.mean(a, axis=0) ** WHITEN + 1e-20


def _unmix(a: np.ndarray, b: np.ndarray, scale: np.ndarray):
    """NNLS of an onset's span features b [F] over templates' a [N, F], each band divided by
    scale [F] (`_whitening`): (unit columns [F, N], target [F], coefficients [N], residual,
    column norms [N], the target's energy)."""
    import scipy.optimize  # here: as scipy.signal in `onsets`

    cols = a / scale
    norms = np.linalg.norm(cols, axis=1) + 1e-20
    unit, target = (cols / norms[:, None]).T, b / scale
    coef, resid = scipy.optimize.nnls(unit, target, maxiter=2000)
    return unit, target, coef, resid, norms, float(np.dot(target, target)) + 1e-30


def decompose(x: np.ndarray, at: np.ndarray, templates: Templates,
              only: list[set[str]] | None = None
              ) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Per onset (samples `at` [N] of x), ({category: its score: the larger of its share of the
    mix / PART and what the mix loses without it / LOSS; all 0 where the mix of every template
    explains less than FIT of the onset's energy}, {category: its part of the mix, in the
    templates' power units}). With `only` [N] (the categories a categoriser heard at each
    onset), the levels are of a mix of those categories' templates alone, and a score is
    1 / PART where the category has a part of that mix (0 where nothing explains the onset)."""
    import scipy.optimize

    fb = filterbank()
    cats = sorted(set(templates.categories))
    which = np.array([cats.index(c) for c in templates.categories])
    # templates' features and their whitening (one unit for every onset's levels), per how far
    # the next onset lets an onset's spans reach
    cuts = {}
    shares, levels = [], []
    stops = list(at[1:]) + [len(x)]
    for i_onset, (n, stop) in enumerate(zip(at, stops, strict=True)):
        reach = min((stop - n) / RATE, SPANS_S[-1][1])
        key = next(b for _, b in SPANS_S if b >= reach - 1e-9) if reach < SPANS_S[-1][1] \
            else SPANS_S[-1][1]
        if key not in cuts:
            a = templates.features(reach if reach < SPANS_S[-1][1] else None, fb)
            cuts[key] = a, _whitening(a)
        a, scale = cuts[key]
        b = span_features(x, int(n), int(stop), fb)
        unit, target, coef, resid, norms, energy = _unmix(a, b, scale)
        explained = 1.0 - resid ** 2 / energy
        use = np.ones(len(a), bool)
        if only is not None:
            use = np.isin(np.array(templates.categories), sorted(only[i_onset]))
            if not use.any():
                shares.append({})
                levels.append({})
                continue
            unit, target, coef, resid, norms, energy = _unmix(a[use], b, scale)
        part = coef / norms  # each template's gain (power)
        total = float(coef.sum()) + 1e-30
        share = {}
        here = which[use]
        for i, c in enumerate(cats):
            mine = coef[here == i]
            if not np.any(mine > 0):
                share[c] = 0.0
            elif only is not None or np.all(here == i):
                share[c] = 1.0 / PART
            else:
                # its share of the mix, or (a quiet drum under a loud one: a hat on a kick)
                # what the mix loses without it, each against its own threshold
                _, without = scipy.optimize.nnls(unit[:, here != i], target, maxiter=2000)
                loses = float((without ** 2 - resid ** 2) / energy)
                share[c] = max(float(mine.sum()) / total / PART, loses / LOSS)
        level = {c: float(part[here == i].sum()) for i, c in enumerate(cats)}
        if explained < FIT:  # the templates do not explain it: no drum here
            share = {c: 0.0 for c in share}
        shares.append(share)
        levels.append(level)
    return shares, levels


def _onset_power(x: np.ndarray, n: int) -> float:
    """The mean power of the 30 ms after sample n (the level of a drum that no template
    explains)."""
    seg = x[n:n + int(0.03 * RATE)]
    return float(np.mean(np.square(seg))) if len(seg) else 0.0


def velocities(levels: list[float]) -> list[int]:
    """Velocities (1-127) of a category's hits from their power levels: 127 at the loudest, the
    kit's curve (-24 dB at 1) below it."""
    db = 10.0 * np.log10(np.maximum(np.asarray(levels, np.float64), 1e-30))
    top = float(np.max(db)) if len(db) else 0.0
    v = 127.0 + (db - top) * 126.0 / velocity_lib.RANGE_DB
    return [int(min(max(round(x), 1), 127)) for x in v]


def _fit(t: np.ndarray, period: float) -> tuple[float, float]:
    """(cost, phase) of a grid of `period` s to onsets t: the mean squared distance of each
    onset to its nearest grid line (capped at a quarter period), in periods squared, at the
    phase that puts the onsets nearest (their circular mean)."""
    phase = float(np.angle(np.mean(np.exp(2j * np.pi * t / period))) / (2 * np.pi) * period)
    err = (t - phase) / period
    err = err - np.round(err)
    return float(np.mean(np.minimum(np.abs(err), 0.25) ** 2)), phase % period


def _refit(t: np.ndarray, period: float) -> float:
    """The period fitted by least squares to the onsets within a quarter period of the grid."""
    for _ in range(3):
        _, phase = _fit(t, period)
        k = np.round((t - phase) / period)
        near = np.abs(t - phase - k * period) < period / 4
        if near.sum() < 2 or np.ptp(k[near]) == 0:
            break
        period = float(np.polyfit(k[near], t[near], 1)[0])
    return period


def _on(x: np.ndarray, start: float, beat: float, steps: tuple,
        w: np.ndarray | None = None) -> float:
    """The share (weighted by w, e.g. velocities) of onsets x on those sixteenths of a bar
    starting at `start`."""
    if not len(x):
        return 0.0
    pos = np.round(np.mod(x - start, 4 * beat) / beat * 4) % 16
    w = np.ones(len(x)) if w is None else np.asarray(w, np.float64)
    return float(np.sum(w * np.isin(pos, steps)) / max(float(np.sum(w)), 1e-12))


def _downbeat(t: np.ndarray, step: float, phase: float, kicks: np.ndarray,
              snares: np.ndarray) -> tuple[float, float]:
    """(the bar's start in [0, bar), how well the backbeat fits) over the 16 sixteenths of a
    grid at phase a bar can start on: the share of snares on beats 2 and 4, plus half the share
    of kicks on beat 1, plus a third of the share of all onsets on beats."""
    best = (-1.0, phase)
    for k in range(16):
        start = phase + k * step
        fit = (_on(snares[:, 0], start, 4 * step, (4, 12), snares[:, 1])
               + 0.5 * _on(kicks[:, 0], start, 4 * step, (0,), kicks[:, 1])
               + 0.3 * _on(t, start, 4 * step, (0, 4, 8, 12)))
        if fit > best[0] + 1e-9:
            best = (fit, start)
    return best[1] % (16 * step), best[0]


def tempo(onset_s: np.ndarray, length_s: float, kicks=(), snares=()) -> Grid:
    """The tempo and bar grid that best fit the onsets (s) of a loop length_s long; kicks and
    snares ([(onset s, velocity)]) choose between tempi a factor of 2 apart (the snare on beats
    2 and 4, the kick on 1, the louder counting more: not a ghost note) and place the bar."""
    t = np.asarray(onset_s, np.float64)
    kicks = np.asarray(kicks, np.float64).reshape(-1, 2)
    snares = np.asarray(snares, np.float64).reshape(-1, 2)
    if len(t) < 2:
        return Grid(120.0, float(t[0]) if len(t) else 0.0, max(1, round(length_s / 2.0)), 0.0)
    periods = np.geomspace(60.0 / TEMPO_RANGE[1] / 4, 60.0 / TEMPO_RANGE[0] / 4, 1500)
    costs = np.array([_fit(t, p)[0] for p in periods])
    minima = [i for i in range(len(costs)) if costs[i] <= costs[max(i - 1, 0)]
              and costs[i] <= costs[min(i + 1, len(costs) - 1)]]
    good = [i for i in minima if costs[i] <= 2.0 * costs.min() + 1e-4]
    best = None
    for i in good:
        p = _refit(t, float(periods[i]))
        bpm = 60.0 / (4 * p)
        bars = length_s * bpm / 240.0
        whole = max(1, int(round(bars)))
        if abs(240.0 * whole / length_s / bpm - 1.0) < 0.02:  # cut on bars: that tempo
            bpm, p = 240.0 * whole / length_s, length_s / whole / 16
        _, phase = _fit(t, p)
        start, back = _downbeat(t, p, phase, kicks, snares)
        score = back - 0.5 * np.log2(bpm / 110.0) ** 2 - 0.5 * (abs(bars - round(bars)) > 0.05)
        if best is None or score > best[0]:
            best = (score, bpm, start, whole, p)
    _, bpm, start, whole, p = best
    steps = (t - start) / p
    odd = np.mod(np.round(steps), 2) == 1  # off-beat sixteenths
    swing = float(np.median(steps[odd] - np.round(steps[odd]))) if odd.any() else 0.0
    start = start - 16 * p if start > t.min() + p / 2 else start
    return Grid(float(bpm), float(start), whole, round(swing, 3))


def transcribe(x: np.ndarray, templates: Templates, share: float = SHARE, categoriser=None
               ) -> tuple[list[Hit], Grid, list[tuple[float, dict]]]:
    """The hits of a loop x [S] at RATE, its grid, and the onsets no category took [(onset s,
    {category: score})]. With a categoriser (`drumlayer.loops.categorise.Categoriser`), it
    says which drums sound at each onset (probability >= its THRESHOLD) and the decomposition
    over those drums' templates their levels; without one, the decomposition says both."""
    x = np.asarray(x, np.float64)
    at = onsets(x)
    if categoriser is None:
        shares, levels = decompose(x, at, templates)
    else:
        shares = [{c: v * share for c, v in sc.items()} for sc in categoriser.scores(x, at)]
        heard = [{c for c, s in sh.items() if s >= share} for sh in shares]
        fits, levels = decompose(x, at, templates, heard)
        # what the heard drums' templates do not explain at all is no drum (a tone's end)
        shares = [sh if any(f.values()) or not (h & set(templates.categories)) else
                  {c: 0.0 for c in sh} for sh, f, h in zip(shares, fits, heard, strict=True)]
        levels = [{c: lv.get(c, 0.0) or _onset_power(x, int(n)) for c in h}
                  for n, lv, h in zip(at, levels, heard, strict=True)]
    raw = []
    unassigned = []
    for n, sh, lv in zip(at, shares, levels, strict=True):
        took = [c for c, s in sh.items() if s >= share]
        if not took:
            unassigned.append((n / RATE, sh))
        raw += [(n / RATE, c, lv[c], sh[c]) for c in took]
    hits = []
    for c in sorted({r[1] for r in raw}):
        mine = [r for r in raw if r[1] == c]
        for r, v in zip(mine, velocities([r[2] for r in mine]), strict=True):
            hits.append(Hit(round(r[0], 6), c, v, round(r[3], 4)))
    hits.sort(key=lambda h: (h.onset_s, h.category))
    grid = tempo(np.array([n / RATE for n in at]), len(x) / RATE,
                 [(h.onset_s, h.velocity) for h in hits if h.category == "kick"],
                 [(h.onset_s, h.velocity) for h in hits if h.category in ("snare", "clap")])
    return hits, grid, unassigned
