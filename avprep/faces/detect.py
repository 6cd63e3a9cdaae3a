"""Face detection and landmark prediction on grey frames, at chosen working scales.

Boxes are float arrays [x0, y0, x1, y1] in original-frame pixels (pixel centres at
integer coordinates). Images are resized before dlib sees them, so the detector runs on
a downscaled frame (or ROI) and the predictor always sees a face of about PRED_SIDE px,
which makes its cost independent of resolution and its output sub-pixel in the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import dlib
import numpy as np

from avprep.faces.models import face_detector, shape_predictor

HOG_WINDOW = 80      # dlib's HOG detector finds faces of about 80 px and larger
PRED_SIDE = 300.0


@dataclass(frozen=True)
class Detection:
    box: np.ndarray      # [x0, y0, x1, y1] original pixels
    score: float

    @property
    def side(self) -> float:
        return float(np.sqrt((self.box[2] - self.box[0]) * (self.box[3] - self.box[1])))

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


def _resize(img: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """img resized by about `scale`; returns the image and the exact x, y scales."""
    h, w = img.shape[:2]
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    if (nw, nh) == (w, h):
        return img, 1.0, 1.0
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (nw, nh), interpolation=interp), nw / w, nh / h


def _to_src(xy: np.ndarray, sx: float, sy: float, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    """Map resized-image coordinates back (OpenCV's pixel-centre convention)."""
    out = np.empty_like(xy, dtype=np.float64)
    out[..., 0] = (xy[..., 0] + 0.5) / sx - 0.5 + x0
    out[..., 1] = (xy[..., 1] + 0.5) / sy - 0.5 + y0
    return out


def detect(grey: np.ndarray, min_face: float, roi: np.ndarray | None = None,
           threshold: float = 0.0) -> list[Detection]:
    """Faces of at least `min_face` px in `grey` (or inside `roi` [x0,y0,x1,y1])."""
    x0 = y0 = 0
    img = grey
    if roi is not None:
        h, w = grey.shape
        x0, y0 = max(0, int(roi[0])), max(0, int(roi[1]))
        x1, y1 = min(w, int(np.ceil(roi[2])) + 1), min(h, int(np.ceil(roi[3])) + 1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        img = grey[y0:y1, x0:x1]
    small, sx, sy = _resize(img, HOG_WINDOW / min_face)
    rects, scores, _ = face_detector().run(np.ascontiguousarray(small), 0, threshold)
    out = []
    for r, s in zip(rects, scores):
        corners = np.array([[r.left(), r.top()], [r.right(), r.bottom()]], dtype=np.float64)
        out.append(Detection(_to_src(corners, sx, sy, x0, y0).reshape(4), float(s)))
    return out


def predict(grey: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """68 landmarks (68,2 float, original pixels) for the face in `box`, and a small patch.

    The patch (24x24 grey of the box) lets the tracker compare appearance between frames.
    """
    h, w = grey.shape
    side = max(box[2] - box[0], box[3] - box[1], 4.0)
    pad = 0.25 * side
    x0, y0 = max(0, int(box[0] - pad)), max(0, int(box[1] - pad))
    x1, y1 = min(w, int(np.ceil(box[2] + pad)) + 1), min(h, int(np.ceil(box[3] + pad)) + 1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise ValueError("box is outside the frame")
    roi, sx, sy = _resize(grey[y0:y1, x0:x1], PRED_SIDE / side)
    roi = np.ascontiguousarray(roi)
    # the box in ROI coordinates (inverse of _to_src)
    bx = (np.array([box[0], box[2]]) - x0 + 0.5) * sx - 0.5
    by = (np.array([box[1], box[3]]) - y0 + 0.5) * sy - 0.5
    rect = dlib.rectangle(int(round(bx[0])), int(round(by[0])), int(round(bx[1])), int(round(by[1])))
    shape = shape_predictor()(roi, rect)
    return _to_src(_points(shape), sx, sy, x0, y0), face_patch(grey, box)


_NUMBER_CHARS = str.maketrans("", "", "0123456789-, ")


def _points(shape) -> np.ndarray:
    """A dlib shape's points as (n, 2) float64, parsed from dlib's text form of them,
    "points[(x, y), ...]" (0.08 ms, against 0.25 ms for reading 2 x 68 attributes); read
    point by point if the text has another form."""
    text = str(shape.parts())
    numbers = text[7:-1].replace("(", "").replace(")", "")
    if (text.startswith("points[") and text.endswith("]") and not numbers.translate(_NUMBER_CHARS)
            and numbers.count(",") == 2 * shape.num_parts - 1):
        try:
            return np.fromstring(numbers, sep=",").reshape(-1, 2)
        except ValueError:      # not numbers after all
            pass
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def face_patch(grey: np.ndarray, box: np.ndarray) -> np.ndarray:
    """24x24 area-average of the box in the original frame (cheaper than from the resized ROI),
    zero-mean and of unit norm (all zeros when flat), so that comparing two is one dot product."""
    h, w = grey.shape
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[2])) + 1), min(h, int(round(box[3])) + 1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return np.zeros(24 * 24)
    patch = cv2.resize(grey[y0:y1, x0:x1], (24, 24), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    patch -= patch.mean()
    norm = float(np.sqrt(patch @ patch))
    return patch / norm if norm > 1e-6 else np.zeros_like(patch)


def patch_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two face patches (1 = same appearance, 0 if one is flat)."""
    return float(a @ b)
