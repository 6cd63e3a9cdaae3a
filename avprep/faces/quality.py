"""Measures of landmark and crop quality, shared by the tests and the benchmark."""
from __future__ import annotations

import numpy as np

from avprep.faces import align


def nme(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error normalised by the outer-eye-corner distance of the truth."""
    iod = float(np.linalg.norm(truth[45] - truth[36]))
    return float(np.linalg.norm(pred - truth, axis=1).mean() / iod)


def lip_centres(points: np.ndarray) -> np.ndarray:
    """(T, 2) mean of the 20 mouth points per frame."""
    return points[:, align.MOUTH].mean(axis=1)


def crop_width_px(transforms: np.ndarray, size: int) -> np.ndarray:
    """(T,) the crop's width measured in original-frame pixels."""
    return np.array([size / align.scale_of(m) for m in transforms])


def centre_of_crops(transforms: np.ndarray, size: int) -> np.ndarray:
    """(T, 2) where the centre pixel of each crop comes from, in original pixels."""
    mid = np.array([(size - 1) / 2, (size - 1) / 2])
    return np.stack([align.apply(align.invert(m.astype(np.float64)), mid) for m in transforms])


def jitter(track: np.ndarray) -> float:
    """Mean frame-to-frame displacement of a (T, 2) track, in its units."""
    return float(np.linalg.norm(np.diff(track, axis=0), axis=1).mean())


def roughness(track: np.ndarray) -> float:
    """Mean second difference of a (T, 2) track: shake that is not smooth motion."""
    return float(np.linalg.norm(np.diff(track, n=2, axis=0), axis=1).mean())


def motion_error(transforms: np.ndarray, motions: np.ndarray, size: int) -> np.ndarray:
    """Per-frame mean pixel error of crops of a still warped by known `motions`.

    Frame t shows the still warped by motions[t] (2x3). A crop that follows the motion
    has transforms[t] o motions[t] equal for all t; the error is how far the crop's
    pixels land from where the clip's median composite puts them, in crop pixels.
    """
    composite = np.stack([align.compose(m, w) for m, w in zip(transforms.astype(np.float64), motions)])
    ref = np.median(composite, axis=0)
    grid = np.stack(np.meshgrid(np.linspace(0, size - 1, 8), np.linspace(0, size - 1, 8)), -1).reshape(-1, 2)
    still = align.apply(align.invert(ref), grid)
    return np.array([np.linalg.norm(align.apply(c, still) - grid, axis=1).mean() for c in composite])
