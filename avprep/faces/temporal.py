"""Filling landmark gaps and smoothing landmark tracks over time."""
from __future__ import annotations

import functools

import numpy as np


def gap_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where `valid` is False."""
    runs, start = [], None
    for i, v in enumerate(valid):
        if not v and start is None:
            start = i
        elif v and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(valid)))
    return runs


def fill_gaps(points: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate missing frames (NaN) of a (T, ...) track.

    Inner gaps are interpolated between their neighbours, gaps at either end copy the
    nearest frame. Returns the filled track and the mask of filled frames. Raises
    ValueError when no frame is valid or a gap is longer than `max_gap` frames.
    """
    t_len = points.shape[0]
    flat = points.reshape(t_len, -1)
    valid = ~np.isnan(flat).any(axis=1)
    if valid.all():         # the usual case: nothing to fill
        return flat.reshape(points.shape).copy(), ~valid
    if not valid.any():
        raise ValueError("no frame has landmarks")
    longest = max((e - s for s, e in gap_runs(valid)), default=0)
    if longest > max_gap:
        raise ValueError(f"landmarks missing for {longest} consecutive frames (limit {max_gap})")
    idx = np.flatnonzero(valid)
    filled = np.empty_like(flat)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(np.arange(t_len), idx, flat[idx, j])
    return filled.reshape(points.shape), ~valid


def smooth_poly(track: np.ndarray, half_window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing along axis 0: a degree-`order` least-squares fit over
    +-half_window frames, evaluated at each frame (windows shrink at the ends).

    Unlike a moving average it follows smooth motion (up to the polynomial degree within a
    window) without lag or amplitude loss, while averaging out frame-to-frame noise.
    """
    t_len = track.shape[0]
    if half_window < 1 or t_len <= order + 1:
        return track.copy()
    flat = track.reshape(t_len, -1).astype(np.float64)
    return (_poly_weights(t_len, half_window, order) @ flat).reshape(track.shape)


@functools.lru_cache(maxsize=16)
def _poly_weights(t_len: int, half_window: int, order: int) -> np.ndarray:
    """(T, T) matrix whose row t holds the fitted value's weights at frame t (a clip length
    repeats across a corpus, so it is computed once per length)."""
    weights = np.zeros((t_len, t_len))
    for t in range(t_len):
        lo, hi = max(0, t - half_window), min(t_len, t + half_window + 1)
        x = np.arange(lo, hi) - t
        deg = min(order, len(x) - 1)
        basis = np.vander(x, deg + 1, increasing=True).astype(np.float64)
        weights[t, lo:hi] = np.linalg.pinv(basis)[0]     # the fitted value at x = 0
    weights.flags.writeable = False
    return weights
