"""Log-mel spectrograms whose columns tile time exactly.

Column j covers samples [j*hop, (j+1)*hop); its n_fft-sample Hann window is centred on
the middle of that span. Columns depend only on their own window, so a segment's mel,
computed from the samples around it, equals the same columns of the whole file's mel.

The arithmetic is librosa's (`stft(center=False, window="hann")`, `filters.mel` with Slaney
scale and norm, `power_to_db(ref=1, amin=1e-10, top_db=None)`), written out in numpy so
that a build does not import librosa, scipy and numba (seconds of start-up, most of it
numba compiling on the first STFT). The results are bit-identical to librosa's
(tests/test_alignment.py compares them).
"""
from __future__ import annotations

import functools

import numpy as np

from avprep.config import AudioConfig


def context(cfg: AudioConfig) -> tuple[int, int]:
    """Samples needed before column 0's span start and after the last column's span end."""
    left = (cfg.n_fft - cfg.hop_length) // 2
    right = cfg.n_fft - cfg.hop_length - left
    return left, right


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window of n samples, float64, as scipy.signal.get_window('hann', n)."""
    fac = np.linspace(-np.pi, np.pi, n + 1)
    w = np.zeros(n + 1)
    for k, a in enumerate((0.5, 0.5)):
        w += a * np.cos(k * fac)
    w = w[:-1]
    w.flags.writeable = False
    return w


def _hz_to_mel(hz: float) -> float:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    mel = hz / (200.0 / 3)
    if hz >= 1000.0:
        mel = 1000.0 / (200.0 / 3) + np.log(hz / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    freqs = (200.0 / 3) * mels
    min_log_mel = 1000.0 / (200.0 / 3)
    log_t = mels >= min_log_mel
    freqs[log_t] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_t] - min_log_mel))
    return freqs


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 Slaney-normalised triangular filters, 0 Hz to sr/2."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(float(sr) / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    weights.flags.writeable = False
    return weights


def log_mel(samples: np.ndarray, num_columns: int, cfg: AudioConfig) -> np.ndarray:
    """`num_columns` log-mel columns (dB) from float32 samples that start `context()[0]`
    before column 0."""
    left, right = context(cfg)
    need = num_columns * cfg.hop_length + left + right
    y = np.asarray(samples, dtype=np.float32)
    if y.size < need:
        y = np.pad(y, (0, need - y.size))
    # frames as columns, (n_fft, num_columns), transformed along axis 0 like librosa.stft
    frames = np.lib.stride_tricks.sliding_window_view(y[:need], cfg.n_fft)[::cfg.hop_length].T
    spec = np.empty((cfg.n_fft // 2 + 1, num_columns), np.complex64, order="F")
    spec[:] = np.fft.rfft(_hann(cfg.n_fft)[:, None] * frames[:, :num_columns], axis=0)
    power = np.abs(spec) ** 2
    mel = _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels) @ power
    return 10.0 * np.log10(np.maximum(1e-10, mel))


def mel_of_signal(signal: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Whole-signal mel with the same column convention (floor(len/hop) columns)."""
    left, _ = context(cfg)
    cols = signal.size // cfg.hop_length
    return log_mel(np.pad(signal.astype(np.float32), (left, 0)), cols, cfg)
