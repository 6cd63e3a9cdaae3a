"""Crop geometry: alignment to a mean-face template, lip and face crop transforms, warping.

Transforms are 2x3 affine matrices mapping original-frame pixels to crop pixels
(pixel centres at integer coordinates, OpenCV's convention).
"""
from __future__ import annotations

import cv2
import numpy as np

# Stable points: outer eye corners and nose tip (iBUG 68 indices), and where they sit in
# a 256x256 mean-face frame (eye span 128 px; nose tip 0.45 eye spans below the eye line,
# the mean of the two human-annotated 300-W faces).
STABLE = [36, 45, 30]
TEMPLATE = np.array([[64.0, 100.0], [192.0, 100.0], [128.0, 158.0]])
MOUTH = list(range(48, 68))
LIP_CORNERS = (48, 54)


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 transform to (..., 2) points."""
    return pts @ m[:, :2].T + m[:, 2]


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The transform `a` after `b`."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def compose_all(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`compose(a, m)` for every m of a (T, 2, 3) stack."""
    rot = np.einsum("ij,tjk->tik", a[:, :2], b[:, :, :2])
    shift = np.einsum("ij,tj->ti", a[:, :2], b[:, :, 2]) + a[:, 2]
    return np.concatenate([rot, shift[..., None]], axis=2)


def invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking src onto dst (Umeyama)."""
    return similarities(src[None], dst)[0]


def similarities(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """`similarity` for a batch: src (T, N, 2) onto dst (N, 2) -> (T, 2, 3).

    In the plane the least-squares similarity has a closed form (Umeyama's SVD solution
    without the SVD): with centred points, scale*cos = sum(s.d) / sum|s|^2 and
    scale*sin = sum(s x d) / sum|s|^2; like Umeyama's it never reflects."""
    ms, md = src.mean(axis=1), dst.mean(axis=0)
    s, d = src - ms[:, None], dst - md
    norm = (s ** 2).sum(axis=(1, 2))
    a = (s * d).sum(axis=(1, 2)) / norm
    b = (s[..., 0] * d[:, 1] - s[..., 1] * d[:, 0]).sum(axis=1) / norm
    rot = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], 1)      # (T, 2, 2)
    shift = md - np.einsum("tij,tj->ti", rot, ms)
    return np.concatenate([rot, shift[..., None]], axis=2)


def align_to_template(pts: np.ndarray, method: str = "similarity") -> np.ndarray:
    """Transform from original pixels to the mean-face frame, from the stable points."""
    return align_all(pts[None], method)[0]


def align_all(pts: np.ndarray, method: str = "similarity") -> np.ndarray:
    """`align_to_template` for every frame of (T, 68, 2) landmarks -> (T, 2, 3)."""
    src = pts[:, STABLE]
    if method == "similarity":
        return similarities(src, TEMPLATE)
    if method == "affine":
        return np.stack([cv2.getAffineTransform(p.astype(np.float32), TEMPLATE.astype(np.float32)) for p in src])
    raise ValueError(f"unknown alignment {method!r} (similarity or affine)")


def scale_of(m: np.ndarray) -> float:
    """Mean linear scale of a 2x3 transform."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def _place(scale: float, centre: np.ndarray, size: int) -> np.ndarray:
    """Scale about `centre` and put it at the middle of a size x size crop."""
    mid = (size - 1) / 2
    return np.array([[scale, 0.0, mid - scale * centre[0]], [0.0, scale, mid - scale * centre[1]]])


def lip_transforms(stable_pts: np.ndarray, mouth_pts: np.ndarray, size: int,
                   lip_fraction: float, method: str = "similarity") -> tuple[np.ndarray, dict]:
    """Per-frame original->crop transforms for a mouth-centred crop.

    Each frame is aligned to the template with its stable points (`stable_pts`, (T,68,2),
    usually smoothed more strongly); one crop window per clip is placed in the template
    frame: centred on the median lip centre, scaled so the median lip width (outer
    corners, from `mouth_pts`) is `lip_fraction` of the crop. The crop therefore follows
    the head but does not breathe with the mouth.
    """
    aligned = align_all(stable_pts, method)
    mouth = np.einsum("tij,tnj->tni", aligned[:, :, :2], mouth_pts) + aligned[:, None, :, 2]
    lip_width = float(np.median(np.linalg.norm(mouth[:, LIP_CORNERS[1]] - mouth[:, LIP_CORNERS[0]], axis=1)))
    if not lip_width > 1e-3:
        raise ValueError("degenerate lip width")
    centre = np.median(mouth[:, MOUTH].mean(axis=1), axis=0)
    crop = _place(size * lip_fraction / lip_width, centre, size)
    transforms = compose_all(crop, aligned)
    return transforms, {"lip_width_template": round(lip_width, 3),
                        "lip_centre_template": [round(float(v), 3) for v in centre]}


def face_transforms(pts: np.ndarray, size: int, margin: float) -> tuple[np.ndarray, dict]:
    """Per-frame transforms for a square face crop of fixed size per clip.

    The face box is the landmarks' bounding box raised by 20 % of its height (forehead),
    made square with the clip's median side, and grown by `margin` on every side; its
    centre follows the (already smoothed) landmarks.
    """
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    lo[:, 1] -= 0.2 * (hi[:, 1] - lo[:, 1])
    side = float(np.median((hi - lo).max(axis=1))) * (1 + 2 * margin)
    if not side > 1e-3:
        raise ValueError("degenerate face box")
    centres = (lo + hi) / 2
    transforms = np.stack([_place(size / side, c, size) for c in centres])
    return transforms, {"face_side_px": round(side, 2)}


def warp(frame: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The size x size crop of `frame` under `m`; area-averaged first when shrinking."""
    s = scale_of(m)
    if s >= 0.7:
        return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # shrink only the region the crop covers, by averaging whole k x k blocks, k a power of 2
    # (OpenCV's fast area path; a fractional area resize cost 2-3x more per crop), so the warp
    # runs at k*s in [0.7, 1.4); an even k averages out the finest (2-pixel) patterns
    k = 2 ** int(np.ceil(np.log2(0.7 / s)))
    corners = apply(invert(m), np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
    h, w = frame.shape[:2]
    pad = k + 1             # the crop's edge pixels are sampled between two block centres
    x0, y0 = (max(0, int(np.floor(v)) - pad) for v in corners.min(axis=0))
    x1, y1 = (min(n, int(np.ceil(v)) + pad) for n, v in zip((w, h), corners.max(axis=0)))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size) + frame.shape[2:], frame.dtype)
    nw, nh = -(-(x1 - x0) // k), -(-(y1 - y0) // k)
    region = frame[y0:y0 + nh * k, x0:x0 + nw * k]
    if region.shape[:2] != (nh * k, nw * k):    # blocks past the frame's edge: black, like the warp's border
        region = cv2.copyMakeBorder(region, 0, nh * k - region.shape[0], 0, nw * k - region.shape[1],
                                    cv2.BORDER_CONSTANT, value=0)
    small = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
    back = np.array([[k, 0, (k - 1) / 2 + x0], [0, k, (k - 1) / 2 + y0]], np.float64)
    return cv2.warpAffine(small, compose(m, back), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
