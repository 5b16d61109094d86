"""Feature extraction (JAX) against librosa and against the FFT bound of scipy.fft."""

from __future__ import annotations

import numpy as np

from benchmarks import harness


@harness.benchmark
def bench_features(args) -> dict:
    """features (JAX) vs librosa computing the same RMS-weighted spectrum, and vs scipy.fft's
    rfft over the same windowed frames with all cores (the FFT bound), batches of 2,048 clips."""
    import jax
    import librosa
    import scipy.fft

    from drumlayer.features import extractor, spectral

    n = args.batch
    clips = harness.snares(n)
    x = jax.device_put(clips)

    def ours():
        extractor.features(x).block_until_ready()

    # Both references run in chunks of 16 clips: their fastest (whole-batch frames are 1.5 GB).
    def lib():
        out = []
        for i in range(0, n, 16):
            y = clips[i : i + 16]
            mag = np.abs(librosa.stft(y, n_fft=4096, hop_length=512, center=True,
                                      pad_mode="constant"))[:, :-1]
            rms = librosa.feature.rms(y=y, frame_length=4096, hop_length=512, center=True,
                                      pad_mode="constant")
            out.append((mag * rms).sum(-1) / rms.sum(-1))
        return np.concatenate(out)

    idx = np.arange(44)[:, None] * 512 + np.arange(4096)[None]
    window = spectral.hann(4096)

    def fft_bound():
        for i in range(0, n, 16):
            xp = np.pad(clips[i : i + 16], ((0, 0), (2048, 2048)))
            scipy.fft.rfft(xp[:, idx] * window, axis=-1, workers=-1)

    t_ours = harness.median_time(ours, repeats=5)
    t_lib = harness.median_time(lib, repeats=3)
    t_fft = harness.median_time(fft_bound, repeats=3)
    got, ref = np.asarray(spectral.weighted_spectrum(x)), lib()
    err = float(np.max(np.abs(got - ref) / np.abs(ref).max(axis=1, keepdims=True)))
    rows = [{"what": "drumlayer spectral.features (spectrum + log-attack)", "clips_per_s":
             round(n / t_ours)},
            {"what": "librosa stft + rms, same weighted spectrum", "clips_per_s": round(n / t_lib)},
            {"what": "scipy.fft rfft of the same frames, all cores", "clips_per_s":
             round(n / t_fft)}]
    for r in rows:
        r["vs_librosa"] = round(r["clips_per_s"] / rows[1]["clips_per_s"], 2)
    harness.print_table(("what", "clips_per_s", "vs_librosa"), rows)
    print(f"max relative difference to librosa: {err:.1e}; backend {jax.default_backend()}")
    return {"rows": rows, "batch": n, "backend": jax.default_backend(),
            "max_rel_diff_vs_librosa": err}

