"""Drawing landmarks for previews."""
from __future__ import annotations

import cv2
import numpy as np

# iBUG 68 contours: jaw, brows, nose bridge, nose base, eyes (closed), lips (closed)
_CONTOURS = [(0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False),
             (36, 42, True), (42, 48, True), (48, 60, True), (60, 68, True)]


def draw_landmarks(frame: np.ndarray, landmarks: np.ndarray, colour=(0, 255, 0),
                   radius: int | None = None) -> np.ndarray:
    """A copy of `frame` (H,W,3 or H,W uint8) with 68 landmarks (68,2, pixels) drawn.

    NaN landmarks (frames without a face) draw nothing.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {pts.shape}")
    out = np.ascontiguousarray(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)).copy()
    if np.isnan(pts).any():
        return out
    span = float(np.ptp(pts, axis=0).max())
    r = radius if radius is not None else max(1, int(round(span / 80)))
    ipts = np.round(pts).astype(np.int32)
    for start, end, closed in _CONTOURS:
        cv2.polylines(out, [ipts[start:end].reshape(-1, 1, 2)], closed, colour, max(1, r // 2), cv2.LINE_AA)
    for x, y in ipts:
        cv2.circle(out, (int(x), int(y)), r, colour, -1, cv2.LINE_AA)
    return out
