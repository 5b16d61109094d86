"""The kit of a loop, from a person's own samples: one pad per category the loop uses, its
recipe chosen against all of that category's hits, and the loop played again on it.

- **Templates** (`templates`): what the transcription decomposes an onset over: every trained
  category's sources (the one-shots the model layers), and up to `EXTRA` corpus clips of each
  category the kit has no model for, so that such a hit is found and listed as unassigned
  rather than taken for another drum.
- **A pad's recipe** (`pad_recipe`): each of the category's loudest hits (at most
  `MAX_TARGETS`), cut at the next onset of any drum, is refined into a recipe (the weights
  refinement: the shaped default took minutes a loop); the pad's centre (the mean of its
  corpus's latents) is a candidate too.
  The pad takes the candidate whose sound is nearest every hit of the category at once: the
  least mean log-mel distance over each hit's own window (the frames before the next onset),
  so a kick whose tail a hat covers is judged on the part that is its own.
- **The rebuilt loop** (`rebuild`): the hits played at their own samples (never snapped) on the
  pads' velocity layers and round robins (`kit.groove.play`, tails wrapped so it loops), each
  pad at the level of the category's loudest hit in the original (the RMS of its first 50 ms).
- **Distances** (`distances`): the rebuilt loop against the original, both at 22.05 kHz: the
  log-spectral distance over the whole loop (1-s chunks, the evaluation's LSD), and per hit the
  MFCC distance of its window.
"""

from __future__ import annotations

import numpy as np

from drumlayer.data import audio
from drumlayer.features import measures
from drumlayer.kit import export as export_lib
from drumlayer.kit import groove
from drumlayer.loops import transcribe as tr
from drumlayer.recipes import refine as refine_lib
from drumlayer.recipes.recipe import Recipe

MAX_TARGETS = 4
EXTRA = 12
MIN_WINDOW_S = 0.03
LEVEL_S = 0.05


def templates(studios: dict, corpus: dict[str, np.ndarray] | None = None) -> tr.Templates:
    """Templates from the studios {category: Studio} (their sources at 22.05 kHz) and corpus
    clips {category: [N, S]} of categories without a model (at most EXTRA of each)."""
    audio_, cats = [], []
    for c, st in studios.items():
        audio_.append(np.asarray(st.bundle.sources, np.float32))
        cats += [c] * len(st.bundle.sources)
    for c, clips in (corpus or {}).items():
        if c not in studios and len(clips):
            audio_.append(np.asarray(clips[:EXTRA], np.float32))
            cats += [c] * min(len(clips), EXTRA)
    return tr.Templates(np.concatenate(audio_), tuple(cats))


def windows(onsets_s: list[float], length_s: float) -> list[tuple[int, int]]:
    """Each onset's window (start, stop) in samples at 22.05 kHz: up to the next later onset
    (at least MIN_WINDOW_S) or the loop's end, at most 1 s."""
    times = sorted(set(onsets_s))
    out = []
    for t in onsets_s:
        later = [u for u in times if u > t + 1e-6]
        stop = min(later[0] if later else length_s, t + 1.0)
        stop = max(stop, t + MIN_WINDOW_S)
        out.append((int(round(t * tr.RATE)), int(round(stop * tr.RATE))))
    return out


def peak_one(x: np.ndarray) -> np.ndarray:
    """x at a peak of 1 (silence as it is)."""
    return x / max(float(np.max(np.abs(x))), 1e-9)


def full_scale(x: np.ndarray) -> np.ndarray:
    """x as a WAV can hold it: scaled down to a peak of 0.999 where it reaches past."""
    peak = float(np.max(np.abs(x)))
    return x / peak * 0.999 if peak > 0.999 else x


def cut(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """x[start:stop] as a 1-s clip at 22.05 kHz: faded out over 5 ms at stop, zero after,
    its peak 1 (as the corpus's clips)."""
    n = audio.SAMPLE_RATE
    y = np.zeros(n, np.float32)
    part = np.asarray(x[start:min(stop, start + n, len(x))], np.float32).copy()
    fade = min(len(part), int(0.005 * audio.SAMPLE_RATE))
    if fade:
        part[len(part) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    y[:len(part)] = part
    peak = float(np.max(np.abs(y)))
    return y / peak if peak > 0 else y


def _mel_db(x: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """[T, M] log-mel power (dB) of x [S] at 22.05 kHz, 1024-point frames every 256 samples."""
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, 1024)), 1024)[::256]
    p = np.abs(np.fft.rfft(frames * np.hanning(1024), axis=-1)) ** 2
    return 10.0 * np.log10(np.maximum(p @ fb.T, 1e-10))


def window_distance(sound: np.ndarray, target: np.ndarray, length: int) -> float:
    """The log-mel distance (dB, RMS over bands, mean over frames) between sound and target
    [S] over the target's first `length` samples, each at its own peak level."""
    fb = tr.filterbank()
    frames = max(1, length // 256)
    a = _mel_db(peak_one(sound), fb)[:frames]
    b = _mel_db(target, fb)[:frames]
    floor = float(b.max()) - 80.0
    return float(np.mean(np.sqrt(np.mean((np.maximum(a, floor) - np.maximum(b, floor)) ** 2,
                                         axis=-1))))


def pad_recipe(st, x22: np.ndarray, hits: list[tr.Hit], all_onsets: list[float],
               refine: bool = True) -> tuple[Recipe, dict]:
    """The recipe of a pad for hits (one category's) of the loop x22 [S] at 22.05 kHz (see the
    module's doc), and how it was chosen {'candidates', 'chosen', 'distance_db'}."""
    length_s = len(x22) / tr.RATE
    win = dict(zip(all_onsets, windows(all_onsets, length_s), strict=True))
    own = [win[h.onset_s] for h in hits]
    targets = np.stack([cut(x22, a, b) for a, b in own])
    lengths = [b - a for a, b in own]
    center = {"latent": np.asarray(st.bundle.pca["center"], np.float32).tolist()}
    candidates = [st.filled(Recipe(**center, name="the pad's centre"))]
    if refine:
        loudest = np.argsort([-h.velocity for h in hits], kind="stable")[:MAX_TARGETS]
        an = st.quick  # the weights refinement: compiled in a second, a candidate in ~10 ms
        r = an(targets[loudest])
        candidates += [st.filled(Recipe(**refine_lib.recipe_fields(r, i, an.variants),
                                        name=f"hit at {hits[j].onset_s:.3f} s"))
                       for i, j in enumerate(loudest)]
    scores = []
    for cand in candidates:
        y = st.render(cand, full=False)
        scores.append(float(np.mean([window_distance(y, t, n)
                                     for t, n in zip(targets, lengths, strict=True)])))
    best = int(np.argmin(scores))
    return candidates[best], {"candidates": [c.name for c in candidates],
                              "distance_db": [round(s, 3) for s in scores], "chosen": best}


def levels(x: np.ndarray, rate: int, hits: list[tr.Hit]) -> dict[str, float]:
    """{category: RMS of the first LEVEL_S after its loudest hit} in x [S] at rate."""
    out = {}
    for c in {h.category for h in hits}:
        top = max((h for h in hits if h.category == c), key=lambda h: h.velocity)
        a = int(round(top.onset_s * rate))
        seg = np.asarray(x[a:a + int(LEVEL_S * rate)], np.float64)
        out[c] = float(np.sqrt(np.mean(seg ** 2))) if len(seg) else 0.0
    return out


def rebuild(hits: list[tr.Hit], pads: dict, target_levels: dict[str, float], length: int,
            rate: int) -> np.ndarray:
    """The loop [length] at rate: hits on the pads ({category: `kit.export.pad`}), each pad
    scaled so its loudest layer's first LEVEL_S has the RMS of target_levels[category]."""
    voices = export_lib.voices_at(pads, rate)
    scaled = {}
    for c, (ranges, a) in voices.items():
        head = a[-1, 0, :int(LEVEL_S * rate)].astype(np.float64)
        rms = float(np.sqrt(np.mean(head ** 2))) if head.size else 0.0
        g = target_levels.get(c, 0.0) / rms if rms > 0 else 0.0
        scaled[c] = (ranges, a * np.float32(g))
    return groove.play([(int(round(h.onset_s * rate)), h.category, h.velocity) for h in hits],
                       scaled, length, rate, wrap=True)


def distances(rebuilt: np.ndarray, original: np.ndarray, onsets_s: list[float]) -> dict:
    """{'lsd_db': the whole loop's log-spectral distance, 'mfcc': the mean per-hit MFCC
    distance} of the rebuilt loop against the original, both [S] at 22.05 kHz."""
    n = audio.SAMPLE_RATE
    chunks = max(1, int(np.ceil(len(original) / n)))
    pad = chunks * n

    def blocks(x):
        return np.pad(np.asarray(x, np.float32), (0, pad - len(x))).reshape(chunks, n)

    live = np.max(np.abs(blocks(original)), axis=1) > 0
    lsd = measures.batch_distances(blocks(rebuilt)[live], blocks(original)[live])
    wins = windows(sorted(set(onsets_s)), len(original) / n)
    if wins:
        est = np.stack([cut(rebuilt, a, b) for a, b in wins])
        ref = np.stack([cut(original, a, b) for a, b in wins])
        mfcc = float(np.mean(measures.batch_distances(est, ref)["mfcc_distance"]))
    else:
        mfcc = float("nan")
    return {"lsd_db": float(np.mean(lsd["log_spectral_distance_db"])), "mfcc": mfcc}
