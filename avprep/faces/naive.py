"""The reference protocol: HOG detection with one upsample + 68 points on every frame.

Used as the baseline by the benchmark and the quality tests; the largest face is kept.
"""
from __future__ import annotations

import numpy as np

from avprep.faces.models import face_detector, shape_predictor
from avprep.faces.track import DETECTED, MISSING, Track, to_grey


def naive_landmarks(grey: np.ndarray) -> np.ndarray | None:
    """68 landmarks of the largest face in a grey frame at native resolution, or None."""
    rects = face_detector()(grey, 1)
    if len(rects) == 0:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = shape_predictor()(grey, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def naive_track(frames: np.ndarray) -> Track:
    """Per-frame detection on every frame of (T,H,W,3) RGB or (T,H,W) grey frames."""
    points = np.full((len(frames), 68, 2), np.nan)
    status = np.full(len(frames), MISSING, np.int8)
    for t, frame in enumerate(frames):
        pts = naive_landmarks(np.ascontiguousarray(to_grey(frame)))
        if pts is not None:
            points[t], status[t] = pts, DETECTED
    return Track(points, status, len(frames))
