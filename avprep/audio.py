"""Log-mel spectrograms whose columns tile time exactly.

Column j covers samples [j*hop, (j+1)*hop); its n_fft-sample Hann window is centred on
the middle of that span. Columns depend only on their own window, so a segment's mel,
computed from the samples around it, equals the same columns of the whole file's mel.
"""
from __future__ import annotations

import functools

import librosa
import numpy as np

from avprep.config import AudioConfig


def context(cfg: AudioConfig) -> tuple[int, int]:
    """Samples needed before column 0's span start and after the last column's span end."""
    left = (cfg.n_fft - cfg.hop_length) // 2
    right = cfg.n_fft - cfg.hop_length - left
    return left, right


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


def log_mel(samples: np.ndarray, num_columns: int, cfg: AudioConfig) -> np.ndarray:
    """`num_columns` log-mel columns (dB) from samples that start `context()[0]` before column 0."""
    left, right = context(cfg)
    need = num_columns * cfg.hop_length + left + right
    if samples.size < need:
        samples = np.pad(samples, (0, need - samples.size))
    spec = librosa.stft(samples[:need], n_fft=cfg.n_fft, hop_length=cfg.hop_length, center=False,
                        window="hann")[:, :num_columns]
    power = np.abs(spec) ** 2
    mel = _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels) @ power
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).astype(np.float32)


def mel_of_signal(signal: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Whole-signal mel with the same column convention (floor(len/hop) columns)."""
    left, _ = context(cfg)
    cols = signal.size // cfg.hop_length
    return log_mel(np.pad(signal.astype(np.float32), (left, 0)), cols, cfg)
