"""Spectral features of clips: pure, jit-compiled JAX, batched over any leading axes.

Conventions (matching librosa with `center=True, pad_mode='constant'`):
frames are centred (the signal is zero-padded by n_fft // 2 on both sides), the window is a
periodic Hann, and a 1 s clip at 22,050 Hz with hop 512 gives 44 frames.

- `stft`, `frame_rms`, `weighted_spectrum` (the paper's RMS-weighted mean magnitude),
- `log_attack_time` (Peeters' 20%-90% definition on a fine energy envelope) and its smooth twin
  `soft_log_attack_time` for the loss,
- `mfcc` and `spectral_centroid` (librosa's defaults) with their RMS-weighted means,
- `features`: the one place that defines what the model sees and what its loss compares,
- `spectrum_loss`: a loss of the spectrum with its gradient for the price of one STFT and one
  inverse (what training uses),
- `source_spectra`, `mix_spectrum`: the spectrum of a mix of fixed sources, by the STFT's
  linearity (what training uses on a CPU when the sources are few).

Everything here takes arrays and plain parameters: no config, no I/O, nothing about models.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from drumlayer.features.batching import default_chunk, default_loss_chunks, flattened, map_chunks

SAMPLE_RATE = 22050
N_FFT = 4096
HOP = 512


def safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt whose gradient stays finite at 0: clips are zero-padded to 1 s, so silent frames are
    common, and d sqrt(x)/dx = inf there would turn the loss's gradient into NaN."""
    return jnp.sqrt(x + 1e-14)


def hann(n: int) -> np.ndarray:
    """Periodic Hann window [n] (scipy.signal.get_window('hann', n, fftbins=True))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def num_frames(samples: int, hop: int = HOP) -> int:
    return 1 + samples // hop


def _blocks(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """For n_fft a multiple of hop: the centred, zero-padded signal in hop-sized blocks, frame t
    being blocks t .. t + n_fft / hop - 1. x [B, S] -> [B, 1 + S // hop + n_fft / hop - 1, hop]."""
    b, s = x.shape
    t, k, pad = num_frames(s, hop), n_fft // hop, n_fft // 2
    total = (t + k - 1) * hop
    return jnp.pad(x, ((0, 0), (pad, max(0, total - s - pad))))[:, :total].reshape(b, -1, hop)


def frames(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """Centred, zero-padded frames: x [B, S] -> [B, 1 + S // hop, n_fft]."""
    b, s = x.shape
    t = num_frames(s, hop)
    if n_fft % hop == 0:  # slices of the blocks, no gather
        blocks = _blocks(x, n_fft, hop)
        return jnp.concatenate([blocks[:, j : j + t] for j in range(n_fft // hop)], axis=-1)
    pad = n_fft // 2
    xp = jnp.pad(x, ((0, 0), (pad, pad)))
    idx = np.arange(t)[:, None] * hop + np.arange(n_fft)[None, :]
    return xp[:, idx]


def windowed_frames(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """Hann-windowed centred frames, what the STFT transforms: x [B, S] -> [B, T, n_fft]."""
    if n_fft % hop:
        return frames(x, n_fft, hop) * hann(n_fft).astype(x.dtype)
    # Each block times its part of the window, stacked: one pass on a CPU, where slicing,
    # concatenating and windowing took three.
    b, s = x.shape
    t, k = num_frames(s, hop), n_fft // hop
    blocks = _blocks(x, n_fft, hop)
    w = hann(n_fft).reshape(k, hop).astype(x.dtype)
    return jnp.stack([blocks[:, j : j + t] * w[j] for j in range(k)], axis=2).reshape(b, t, n_fft)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop"))
@flattened
def stft(clips: jax.Array, n_fft: int = N_FFT, hop: int = HOP) -> jax.Array:
    """clips [..., S] -> complex64 [..., 1 + S // hop, n_fft // 2 + 1]."""
    return jnp.fft.rfft(windowed_frames(clips, n_fft, hop), axis=-1)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop"))
@flattened
def frame_rms(clips: jax.Array, n_fft: int = N_FFT, hop: int = HOP) -> jax.Array:
    """RMS of the same centred, unwindowed frames: clips [..., S] -> [..., 1 + S // hop]."""
    sq = clips * clips
    if n_fft % hop == 0:
        # Sum squares per hop-sized block once, then add n_fft / hop neighbouring blocks.
        t, k = num_frames(sq.shape[1], hop), n_fft // hop
        blocks = _blocks(sq, n_fft, hop).sum(-1)
        energy = sum(blocks[:, j : j + t] for j in range(k))
    else:
        energy = frames(sq, n_fft, hop).sum(-1)
    return safe_sqrt(energy / n_fft)


def rms_weighted_mean(values: jax.Array, rms: jax.Array) -> jax.Array:
    """values [..., frames, d], rms [..., frames] -> [..., d]: sum_t rms_t v_t / sum_t rms_t."""
    w = rms / jnp.maximum(rms.sum(-1, keepdims=True), 1e-12)
    return jnp.einsum("...t,...td->...d", w, values)


def _spectrum(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """The RMS-weighted mean magnitude of x [B, S] -> [B, n_fft // 2], by plain autodiff-able
    JAX: the definition, and the reference that the hand-written gradient is tested against."""
    mag = jnp.abs(stft(x, n_fft, hop))[..., :-1]
    return rms_weighted_mean(mag, frame_rms(x, n_fft, hop))


def _add_blocks(g: jax.Array) -> jax.Array:
    """Frames split in blocks, g [B, T, k, h, ...], added where they came from: block j of
    frame t is block t + j of the padded signal. -> [B, T + k - 1, h, ...]."""
    b, t, k = g.shape[:3]
    # XLA's transpose of `frames` is the same sum, but fused with what follows into one slow
    # loop on a CPU.
    out = jnp.zeros((b, t + k - 1, *g.shape[3:]), g.dtype)
    for j in range(k):
        out = out.at[:, j : j + t].add(g[:, :, j])
    return out


def _unpad(padded: jax.Array, n_fft: int, samples: int) -> jax.Array:
    """The signal's samples [B, samples] from the centred, padded signal's [B, P] (those past
    the padded signal's end are 0)."""
    pad = n_fft // 2
    padded = jnp.pad(padded, ((0, 0), (0, max(0, pad + samples - padded.shape[1]))))
    return padded[:, pad : pad + samples]


def overlap_add(blocks: jax.Array, hop: int, samples: int) -> jax.Array:
    """The transpose of `frames`: every frame added back where it came from.
    blocks [B, T, n_fft] -> [B, samples]."""
    b, t, n_fft = blocks.shape
    if n_fft % hop:
        zeros = jnp.zeros((b, samples), blocks.dtype)
        return jax.linear_transpose(lambda x: frames(x, n_fft, hop), zeros)(blocks)[0]
    out = _add_blocks(blocks.reshape(b, t, n_fft // hop, hop)).reshape(b, -1)
    return _unpad(out, n_fft, samples)


def overlap_add_constant(values: jax.Array, n_fft: int, hop: int, samples: int) -> jax.Array:
    """overlap_add of frames that are constant: frame t all values[t]. values [B, T] ->
    [B, samples]: each sample gets the sum of the values of the frames that hold it. With
    n_fft a multiple of hop, that sum is the same for a whole hop-sized block, and is
    computed once per block."""
    b, t = values.shape
    if n_fft % hop:
        return overlap_add(jnp.broadcast_to(values[:, :, None], (b, t, n_fft)), hop, samples)
    k = n_fft // hop
    v = jnp.pad(values, ((0, 0), (k - 1, k - 1)))
    # Block m of the padded signal is in frames m - k + 1 .. m.
    blocks = sum(v[:, k - 1 - j : k - 1 - j + t + k - 1] for j in range(k))  # [B, t + k - 1]
    out = jnp.broadcast_to(blocks[:, :, None], (b, t + k - 1, hop)).reshape(b, -1)
    return _unpad(out, n_fft, samples)


def _irfft_pairs(re: jax.Array, im: jax.Array, n: int) -> jax.Array:
    """jnp.fft.irfft(re + i im, n) for even n, its samples in pairs: re, im [..., n // 2 + 1]
    -> complex [..., n // 2], the even samples the real parts and the odd ones the imaginary
    parts. One complex FFT of n / 2 points, which XLA's CPU runs ~1.7x faster than its own
    irfft of n points. As irfft does, it ignores the imaginary parts of the first and last
    bins."""
    m = n // 2
    im = im * np.r_[0.0, np.ones(m - 1), 0.0].astype(im.dtype)
    # With X_k = re + i im and R_k = conj(X_{m-k}), k < m: the even samples' DFT is
    # E_k = (X_k + R_k) / 2, the odd samples' O_k = (X_k - R_k) e^{2 pi i k / n} / 2.
    xr, xi, rr, ri = re[..., :m], im[..., :m], re[..., m:0:-1], -im[..., m:0:-1]
    k = np.arange(m) * (2 * np.pi / n)
    c, s = np.cos(k).astype(re.dtype), np.sin(k).astype(re.dtype)
    dr, di = (xr - rr) / 2, (xi - ri) / 2
    o_r, o_i = dr * c - di * s, dr * s + di * c
    return jnp.fft.ifft(jax.lax.complex((xr + rr) / 2 - o_i, (xi + ri) / 2 + o_r), axis=-1)


def _interleave(pairs: jax.Array) -> jax.Array:
    """complex [..., m] -> [..., 2 m]: real, imaginary, real, ..."""
    return jnp.stack([jnp.real(pairs), jnp.imag(pairs)], axis=-1).reshape(*pairs.shape[:-1], -1)


def irfft(re: jax.Array, im: jax.Array, n: int) -> jax.Array:
    """jnp.fft.irfft(re + i im, n) for even n: re, im [..., n // 2 + 1] -> [..., n]
    (`_irfft_pairs`)."""
    if n % 2:
        raise ValueError(f"irfft: n must be even, got {n}")
    return _interleave(_irfft_pairs(re, im, n))


def windowed_overlap_add(re: jax.Array, im: jax.Array, n_fft: int, hop: int,
                         samples: int) -> jax.Array:
    """overlap_add(irfft(re + i im, n_fft) * hann(n_fft), hop, samples): the transpose of the
    STFT's framing and windowing, of frames given by their spectra re, im [B, T, n_fft // 2 + 1]
    -> [B, samples]. With n_fft a multiple of an even hop, the frames stay in pairs of samples
    (`_irfft_pairs`) through the window and the overlap-add; only the added signal, 1 / 8 of
    the frames' size at hop = n_fft / 8, is interleaved (on a CPU, interleaving the frames took
    ~9 ms of the paper-scale training step's thread time)."""
    b, t = re.shape[:2]
    if n_fft % hop or hop % 2:
        return overlap_add(irfft(re, im, n_fft) * hann(n_fft).astype(re.dtype), hop, samples)
    z, w = _irfft_pairs(re, im, n_fft), hann(n_fft).astype(re.dtype)
    z = jax.lax.complex(jnp.real(z) * w[0::2], jnp.imag(z) * w[1::2])
    out = _add_blocks(z.reshape(b, t, n_fft // hop, hop // 2))  # [B, T + k - 1, hop / 2]
    return _unpad(_interleave(out.reshape(b, -1)), n_fft, samples)


def _spectrum_parts(x: jax.Array, n_fft: int, hop: int) -> dict[str, jax.Array]:
    """What the spectrum of x [B, S] and its gradient share: the STFT's real and imaginary
    parts and magnitudes y_re, y_im, mag [B, T, F + 1], the frames' rms [B, T] and their sum
    total [B, 1], the weights a = rms / total [B, T], and the spectrum [B, F] itself."""
    y = jnp.fft.rfft(windowed_frames(x, n_fft, hop), axis=-1)
    rms = frame_rms(x, n_fft, hop)
    total = jnp.maximum(rms.sum(-1, keepdims=True), 1e-12)
    a = rms / total
    yr, yi = jnp.real(y), jnp.imag(y)
    mag = jnp.sqrt(yr * yr + yi * yi)
    # over every bin, then the Nyquist dropped: a slice of mag would be copied for the product
    spectrum = jnp.einsum("bt,btf->bf", a, mag)[:, :-1]
    return dict(y_re=yr, y_im=yi, mag=mag, rms=rms, total=total, a=a, spectrum=spectrum)


def _spectrum_backward(x: jax.Array, parts: dict, g: jax.Array, n_fft: int,
                       hop: int) -> jax.Array:
    """The gradient of sum(g * _spectrum(x)) with respect to x [B, S] (g [B, n_fft // 2]),
    given x's `_spectrum_parts`.

    With Y = rfft(windowed frames), rms_t = sqrt(e_t / n_fft) (e_t: frame t's energy),
    a_t = rms_t / sum(rms) and out_f = sum_t a_t |Y_tf|: d out / d |Y_tf| = a_t,
    d |Y| / d Y = Y / |Y| (0 where Y = 0), the rfft's transpose is n_fft * irfft of the
    cotangent with the bins shared by the negative frequencies halved, the frames' transpose
    adds them back overlapping, the weights a_t get the quotient rule and d rms_t / d x_n =
    x_n / (n_fft rms_t) in frame t."""
    samples = x.shape[-1]
    yr, yi, mag, rms, total, a = (parts[n] for n in ("y_re", "y_im", "mag", "rms", "total", "a"))
    g = jnp.pad(g, ((0, 0), (0, 1)))  # the Nyquist bin's is 0 (not copying mag without it)
    g_a = jnp.einsum("btf,bf->bt", mag, g)
    g_rms = (g_a - jnp.sum(a * g_a, -1, keepdims=True)) / total
    half = jnp.full(n_fft // 2 + 1, 0.5, x.dtype).at[0].set(1.0).at[-1].set(0.0)
    scale = a[:, :, None] * (g * half)[:, None, :] * n_fft
    scale = scale / jnp.where(mag > 0, mag, jnp.inf)
    per_frame = g_rms / (n_fft * rms)  # [B, T]: d rms_t / d x_n = x_n / (n_fft rms_t)
    return (windowed_overlap_add(scale * yr, scale * yi, n_fft, hop, samples)
            + x * overlap_add_constant(per_frame, n_fft, hop, samples))


def _spectrum_vjp(x: jax.Array, g: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """`_spectrum_backward` with the spectrum recomputed here, not kept from the forward pass."""
    return _spectrum_backward(x, _spectrum_parts(x, n_fft, hop), g, n_fft, hop)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _chunked_spectrum(x: jax.Array, n_fft: int, hop: int, chunk: int | None) -> jax.Array:
    """_spectrum over x [B, S] in chunks, forward and backward. Autodiff through the chunks
    would keep every chunk's frames and spectra (tens of MB) for the backward pass; this
    recomputes them one chunk at a time in the backward pass, where they stay in cache: the
    training step (whose cost is this gradient) runs ~1.5x faster on a CPU."""
    return map_chunks(lambda c: _spectrum(c, n_fft, hop), x, chunk)


def _chunked_spectrum_fwd(x, n_fft, hop, chunk):
    return _chunked_spectrum(x, n_fft, hop, chunk), x


def _chunked_spectrum_bwd(n_fft, hop, chunk, x, g):
    return (map_chunks(lambda xg: _spectrum_vjp(*xg, n_fft, hop), (x, g), chunk),)


_chunked_spectrum.defvjp(_chunked_spectrum_fwd, _chunked_spectrum_bwd)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop", "chunk"))
@flattened
def weighted_spectrum(clips: jax.Array, n_fft: int = N_FFT, hop: int = HOP,
                      chunk: int | None = -1) -> jax.Array:
    """The paper's feature: RMS-weighted mean magnitude, Nyquist dropped.
    clips [..., S] -> [..., n_fft // 2]. chunk: clips per step (-1: `default_chunk()`), in the
    forward and the backward pass."""
    return _chunked_spectrum(clips, n_fft, hop, default_chunk() if chunk == -1 else chunk)


def spectrum_loss(clips: jax.Array, target: jax.Array, loss_fn, n_fft: int = N_FFT,
                  hop: int = HOP, chunk: int | None = -1) -> tuple[jax.Array, jax.Array]:
    """A row-wise loss of the clips' `weighted_spectrum`, differentiable in the clips at the
    cost of one STFT and one inverse STFT (differentiating `loss_fn(weighted_spectrum(x), t)`
    costs two STFTs and an inverse).

    loss_fn(spectrum [c, n_fft // 2], target [c, ...]) -> [c]: row i may depend on row i
    only. clips [B, S], target [B, ...] -> (loss [B], spectrum [B, n_fft // 2]); the spectrum
    is returned for metrics and is not differentiable (stop_gradient). chunk: clips per step
    (-1: `default_loss_chunks()`, else as many parts as `default_streams()`).

    Under differentiation, each chunk's loss is differentiated with respect to its clips in
    the forward pass, while the chunk's STFT is still in cache (the loss of a row needs only
    that row's spectrum), and the backward pass only scales that gradient by the loss's
    cotangent. Without differentiation it computes the loss alone: no inverse STFT."""
    chunks = default_loss_chunks() if chunk == -1 else (chunk, None)
    loss, spectrum = _spectrum_loss(loss_fn, n_fft, hop, chunks, clips, target)
    return loss, jax.lax.stop_gradient(spectrum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _spectrum_loss(loss_fn, n_fft, hop, chunks, x, target):
    """chunks: (chunk, streams) for `map_chunks`."""

    def one(xt):
        spectrum = _spectrum(xt[0], n_fft, hop)
        return loss_fn(spectrum, xt[1]), spectrum

    return map_chunks(one, (x, target), *chunks)


def _spectrum_loss_fwd(loss_fn, n_fft, hop, chunks, x, target):
    def one(xt):
        parts = _spectrum_parts(xt[0], n_fft, hop)
        loss, pull = jax.vjp(lambda s: loss_fn(s, xt[1]), parts["spectrum"])
        g = pull(jnp.ones_like(loss))[0]  # rows are independent: each row's own gradient
        return loss, parts["spectrum"], _spectrum_backward(xt[0], parts, g, n_fft, hop)

    loss, spectrum, g_x = map_chunks(one, (x, target), *chunks)
    return (loss, spectrum), g_x


def _spectrum_loss_bwd(loss_fn, n_fft, hop, chunks, g_x, ct):
    # The spectrum leaves `spectrum_loss` under stop_gradient: its cotangent is zero.
    return ct[0][:, None] * g_x, None


_spectrum_loss.defvjp(_spectrum_loss_fwd, _spectrum_loss_bwd)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop"))
def source_spectra(sources: jax.Array, n_fft: int = N_FFT, hop: int = HOP) -> jax.Array:
    """What `mix_spectrum` mixes: the STFT of each source, Nyquist dropped, frame-major, the
    real parts then the imaginary parts: sources [k, S] -> [1 + S // hop, k, n_fft]."""
    y = jnp.moveaxis(stft(sources, n_fft, hop)[..., :-1], -2, 0)  # [T, k, n_fft // 2]
    return jnp.concatenate([jnp.real(y), jnp.imag(y)], axis=-1)


def _mix_frame(w: jax.Array, spectra_t: jax.Array):
    """Frame t of the mix's STFT: w [B, k] @ spectra_t [k, 2F] -> (real, imag, |.|) [B, F]."""
    y = w @ spectra_t
    f = spectra_t.shape[-1] // 2
    yr, yi = y[:, :f], y[:, f:]
    return yr, yi, jnp.sqrt(yr * yr + yi * yi)


@jax.custom_vjp
def _mix_weighted_magnitude(w: jax.Array, a: jax.Array, spectra: jax.Array) -> jax.Array:
    """sum_t a_t |w @ spectra_t|: w [B, k], a [B, T], spectra [T, k, 2F] -> [B, F]. One frame
    at a time, forward and backward (which recomputes the frame), so no [B, T, F] array is
    ever kept. Differentiable in w and a; spectra are constants (their cotangent would need
    a psum over the devices that share them, under shard_map)."""

    def frame(acc, xs):
        spectra_t, a_t = xs
        return acc + a_t[:, None] * _mix_frame(w, spectra_t)[2], None

    return jax.lax.scan(frame, _zeros(w, a, spectra), (spectra, a.T))[0]


def _zeros(w: jax.Array, a: jax.Array, spectra: jax.Array) -> jax.Array:
    """Zeros [B, F] for a scan's carry that varies, under shard_map, wherever w, a or spectra
    vary (zeros_like keeps that; the values are never read)."""
    like = jnp.zeros_like(w[:, :1] * a[:, :1] * spectra[0, 0, 0])
    return like + jnp.zeros(spectra.shape[-1] // 2, w.dtype)


def _mix_weighted_magnitude_fwd(w, a, spectra):
    return _mix_weighted_magnitude(w, a, spectra), (w, a, spectra)


def _mix_weighted_magnitude_bwd(res, g):
    """d |Y| / d Y = Y / |Y| (0 where Y = 0), Y = w @ spectra_t is linear in w, and
    d out / d a_t = sum_f g_f |Y_tf|. The spectra are constants: no gradient."""
    w, a, spectra = res

    def frame(g_w, xs):
        spectra_t, a_t = xs
        yr, yi, mag = _mix_frame(w, spectra_t)
        c = a_t[:, None] * g / jnp.where(mag > 0, mag, jnp.inf)
        g_y = jnp.concatenate([c * yr, c * yi], axis=-1)  # [B, 2F]
        g_w = g_w + jax.lax.dot_general(g_y, spectra_t, (((1,), (1,)), ((), ())))
        return g_w, jnp.sum(mag * g, axis=-1)

    g_w0 = jnp.zeros_like(w * a[:, :1] * spectra[0, 0, 0] * g[:, :1])
    g_w, g_a = jax.lax.scan(frame, g_w0, (spectra, a.T))
    return g_w, g_a.T, None


_mix_weighted_magnitude.defvjp(_mix_weighted_magnitude_fwd, _mix_weighted_magnitude_bwd)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop"))
def mix_spectrum(weights: jax.Array, mix: jax.Array, spectra: jax.Array, n_fft: int = N_FFT,
                 hop: int = HOP) -> jax.Array:
    """`weighted_spectrum(mix)` for mix = weights @ sources, from the sources' STFTs
    (`source_spectra`): the STFT is linear, so the mix's frame t is weights @ spectra[t], and
    only the frames' RMS needs the mix itself. Equal to `weighted_spectrum` up to float
    rounding, forward and backward in weights; cheaper on a CPU when k is small (B k T F
    multiply-adds against B T FFTs of n_fft points: `python -m benchmarks train`). No gradient
    reaches the sources through `spectra` (only through `mix`): for that, differentiate
    `weighted_spectrum(weights @ sources)`.
    weights [B, k], mix [B, S], spectra [T, k, n_fft] -> [B, n_fft // 2]."""
    rms = frame_rms(mix, n_fft, hop)
    a = rms / jnp.maximum(rms.sum(-1, keepdims=True), 1e-12)
    return _mix_weighted_magnitude(weights, a, spectra)

