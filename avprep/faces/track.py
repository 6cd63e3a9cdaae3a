"""Landmark tracking: detect when needed, predict 68 points on every frame (on a steady
track every `predict_every`-th frame, the others interpolated; see `track_landmarks`).

The detector runs on a downscaled grey frame at the start, when the track is lost, and
re-checks the face every `detect_every` frames inside a small region around it (or at
once when a frame fails the quality check). On all other frames the shape predictor runs
inside a box derived from the previous frame's landmarks, using the box/landmark
relation measured when the face was acquired, so the predictor sees boxes like the detector's.
One identity is kept: the chosen face is followed, re-detections must overlap it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import cv2
import numpy as np

from avprep.faces.detect import HOG_WINDOW, Detection, detect, face_patch, patch_similarity, predict

MISSING, DETECTED, TRACKED = 0, 1, 2
COARSE_FRACTION = 0.25      # first full-frame pass: faces of a quarter of the short side and up
MARGIN = 1.2                # the coarse pass must be this much coarser, and its best face this much larger
                            # (one 6/5 step of the detector's pyramid: the box size's own uncertainty)


@dataclass(frozen=True)
class TrackOptions:
    detect_every: int = 10          # re-check the face with the detector every N frames
    retry_every: int = 10           # while no face is tracked, search the frame every N frames
                                    # (a face found is then tracked back over the skipped frames)
    min_face_px: float = 64.0       # smallest face searched for, in pixels (a 64 px face has a
                                    # ~20 px mouth; smaller ones make useless lip crops) ...
    min_face_frac: float = 0.08     # ... or this fraction of the short side, whichever is larger
    min_similarity: float = 0.6     # patch correlation with the previous frame (catches cuts)
    max_scale_change: float = 1.25  # landmark spread change between frames
    max_shift: float = 0.5          # centroid move between frames, in landmark spreads
    min_overlap: float = 0.3        # IoU a re-detection needs with the tracked box
    predict_every: int = 3          # on a steady track, run the 68-point model on every Nth frame
                                    # only and interpolate between (1: every frame; see `_between`)
    steady_shift: float = 0.04      # steady: centroid moves at most this many spreads per frame ...
    steady_scale: float = 1.03      # ... and the spread changes at most this factor per frame


@dataclass
class Track:
    points: np.ndarray       # (T, 68, 2) float64, NaN where no landmarks
    status: np.ndarray       # (T,) int8: MISSING, DETECTED or TRACKED
    detector_runs: int
    predicted: np.ndarray | None = None   # (T,) bool: the 68-point model ran on the frame (None: all
                                          # DETECTED/TRACKED frames); the other TRACKED frames lie
                                          # between two predictions on a steady track (interpolated)

    def count(self, status: int) -> int:
        return int((self.status == status).sum())


def spread(pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid and RMS radius of a landmark set."""
    c = pts.sum(axis=0) / len(pts)
    d = pts - c
    return c, float(np.sqrt(np.einsum("ij,ij->", d, d) / len(pts)))     # ~2x faster than mean()s


# Box relation: box centre = c + r * (dx, dy), side = r * k; measured on GRID with dlib's
# HOG boxes; replaced by the relation measured whenever a face is (re)acquired.
DEFAULT_RELATION = np.array([0.03, -0.04, 2.9])


def relation_of(box: np.ndarray, pts: np.ndarray) -> np.ndarray:
    c, r = spread(pts)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    side = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    return np.array([*(centre - c) / r, side / r])


def box_from(pts: np.ndarray, relation: np.ndarray) -> np.ndarray:
    c, r = spread(pts)
    centre = c + r * relation[:2]
    half = r * relation[2] / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def choose(dets: list[Detection], shape: tuple[int, int], ref: np.ndarray | None) -> Detection | None:
    """The face to follow: nearest `ref` (x, y pixels) if given, else large and central."""
    if not dets:
        return None
    if ref is not None:
        return min(dets, key=lambda d: float(np.hypot(*(d.centre - ref))) / d.side)
    return max(dets, key=lambda d: rank(d, shape))


def rank(det: Detection, shape: tuple[int, int]) -> float:
    """Side discounted by the distance from the frame centre (never more than the side)."""
    h, w = shape
    diag = float(np.hypot(w, h))
    return det.side / (1 + 2 * float(np.hypot(det.centre[0] - w / 2, det.centre[1] - h / 2)) / diag)


def plausible(prev: np.ndarray, prev_patch: np.ndarray, pts: np.ndarray, patch: np.ndarray,
              o: TrackOptions) -> bool:
    """Quality check of landmarks against the previous frame's: size, position, appearance."""
    c0, r0 = spread(prev)
    c1, r1 = spread(pts)
    return (1 / o.max_scale_change <= r1 / r0 <= o.max_scale_change
            and float(np.hypot(*(c1 - c0))) <= o.max_shift * r0
            and patch_similarity(patch, prev_patch) >= o.min_similarity)


def to_grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class _Tracker:
    def __init__(self, shape: tuple[int, int], opts: TrackOptions, hint_px: np.ndarray | None):
        self.shape, self.opts, self.ref = shape, opts, hint_px
        self.min_face = max(opts.min_face_px, opts.min_face_frac * min(shape))
        self.prev = self.patch = self.box = None
        self.relation = DEFAULT_RELATION.copy()
        self.last_check = self.next_try = 0
        self.detector_runs = 0
        self.followed = False

    def step(self, t: int, grey: np.ndarray) -> tuple[np.ndarray | None, int]:
        """Landmarks and status of frame t. `followed` says whether they passed the quality
        check against the previous step's (and any re-check): the face was followed."""
        self.followed = False
        if self.prev is None:
            return self._acquire(t, grey)
        box = box_from(self.prev, self.relation)
        if self.box is not None:  # damp feedback of landmark noise into the next box
            box = 0.5 * box + 0.5 * self.box
        self.box = box
        pts, patch = self._predict(grey, box)
        good = pts is not None and self._plausible(pts, patch)
        if good and t - self.last_check < self.opts.detect_every:
            self.followed = True
            return self._keep(pts, patch, TRACKED)
        det = self._verify(grey, box)
        if det is None:
            return self._lose(t)
        self.last_check = t
        if good:  # confirmed: keep the tracked points (no jump to the detector's box)
            self.followed = True
            return self._keep(pts, patch, DETECTED)
        return self._from_detection(grey, det)

    def _acquire(self, t: int, grey: np.ndarray):
        if t < self.next_try:
            return None, MISSING
        self.detector_runs += 1
        det = choose(self._search(grey), self.shape, self.ref)
        if det is None:
            self.next_try = t + self.opts.retry_every
            return None, MISSING
        self.last_check = t
        return self._from_detection(grey, det)

    def _search(self, grey: np.ndarray) -> list[Detection]:
        """Faces in the whole frame, large ones first. The detector's cost grows with the
        square of its scale, so the frame is first searched for faces of COARSE_FRACTION of
        its short side and up (at least HOG_WINDOW: never upsampled). `choose` ranks a face
        at most by its side, so when the best of those ranks above MARGIN x that size, no
        smaller face could be chosen instead and the fine search (down to `min_face`) is
        skipped. With a reference position (hint, last face) a small face near it could
        win: then the fine search always runs."""
        coarse = max(COARSE_FRACTION * min(self.shape), HOG_WINDOW)     # never upsampled
        if self.ref is None and coarse >= MARGIN * self.min_face:
            dets = detect(grey, coarse)
            best = choose(dets, self.shape, None)
            if best is not None and rank(best, self.shape) >= MARGIN * coarse:
                return dets
        return detect(grey, self.min_face)

    def _verify(self, grey: np.ndarray, box: np.ndarray) -> Detection | None:
        """Re-detect in a region a little larger than the tracked box; it must overlap the box."""
        side = box[2] - box[0]
        roi = box + np.array([-side, -side, side, side]) * 0.3
        self.detector_runs += 1
        dets = [d for d in detect(grey, 0.8 * side, roi=roi) if iou(d.box, box) >= self.opts.min_overlap]
        return max(dets, key=lambda d: iou(d.box, box)) if dets else None

    def _from_detection(self, grey: np.ndarray, det: Detection):
        pts, patch = self._predict(grey, det.box)
        if pts is None:
            return None, MISSING
        if self.patch is None:  # the relation is measured when a face is (re)acquired
            self.relation = relation_of(det.box, pts)
        return self._keep(pts, patch, DETECTED)

    def _predict(self, grey: np.ndarray, box: np.ndarray):
        h, w = grey.shape
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not (0 <= cx < w and 0 <= cy < h):
            return None, None
        return predict(grey, box)

    def _plausible(self, pts: np.ndarray, patch: np.ndarray) -> bool:
        return plausible(self.prev, self.patch, pts, patch, self.opts)

    def _keep(self, pts: np.ndarray, patch: np.ndarray, status: int):
        self.prev, self.patch = pts, patch
        self.ref = spread(pts)[0]
        return pts, status

    def _lose(self, t: int):
        self.prev = self.patch = self.box = None
        self.next_try = t + 1
        return None, MISSING


def steady(a: np.ndarray, b: np.ndarray, frames_apart: int, o: TrackOptions) -> bool:
    """Landmark sets `frames_apart` frames apart moved and scaled little enough per frame
    (TrackOptions.steady_shift, steady_scale) for linear interpolation between them."""
    c0, r0 = spread(a)
    c1, r1 = spread(b)
    return (float(np.hypot(*(c1 - c0))) <= o.steady_shift * r0 * frames_apart
            and max(r1 / r0, r0 / r1) <= o.steady_scale ** frames_apart)


def region_patch(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """face_patch(to_grey(frame), box), converting only the box's pixels to grey."""
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(w, int(round(box[2])) + 1), min(h, int(round(box[3])) + 1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return face_patch(to_grey(frame), box)
    region = np.ascontiguousarray(frame[y0:y1, x0:x1])
    return face_patch(to_grey(region), box - np.array([x0, y0, x0, y0]))


def track_landmarks(frames: np.ndarray, opts: TrackOptions = TrackOptions(),
                    hint: tuple[float, float] | None = None) -> Track:
    """Landmarks of one face through `frames` ((T,H,W,3) RGB or (T,H,W) grey).

    `hint` is the face centre as fractions of width and height (AVSpeech's x, y). While the
    track is steady (the last two predictions moved little) the tracker steps `predict_every`
    frames at a time; the frames it passed over are filled by `_between`.
    """
    if opts.detect_every < 1 or opts.retry_every < 1 or opts.predict_every < 1:
        raise ValueError("detect_every, retry_every and predict_every must be >= 1")
    t_len, h, w = frames.shape[:3]
    hint_px = None if hint is None else np.array([hint[0] * w, hint[1] * h])
    tracker = _Tracker((h, w), opts, hint_px)
    points = np.full((t_len, 68, 2), np.nan)
    status = np.zeros(t_len, np.int8)
    predicted = np.zeros(t_len, bool)
    t, key, key_patch = 0, None, None      # key: the last stepped frame with landmarks
    careful_until = -1                     # no jumps up to this frame (a jump failed there)
    while t < t_len:
        before = copy.copy(tracker) if key is not None and t - key > 1 else None
        pts, status[t] = tracker.step(t, to_grey(frames[t]))
        if before is not None and not tracker.followed:
            # the jump lost the face or needed a new detection: step each frame from key + 1
            # instead, from the state before the jump (detector runs done still count)
            before.detector_runs, tracker = tracker.detector_runs, before
            status[t], careful_until, t = MISSING, t, key + 1
            continue
        if pts is not None:
            points[t], predicted[t] = pts, True
        if key is not None and t - key > 1:
            _between(frames, key, t, key_patch, points, status, predicted, tracker)
        if pts is not None and status[t] == DETECTED and t > 0 and status[t - 1] == MISSING:
            _track_back(frames, t, points, status, predicted, tracker)
        # jump on a steady track: landmarks that passed the quality check and moved little
        # since the last prediction, or a face found in the first frame (`_between` checks
        # the motion after the fact); never after a re-acquisition or a failed jump
        jump = (pts is not None and opts.predict_every > 1 and t >= careful_until
                and (tracker.followed and key is not None and steady(points[key], pts, t - key, opts)
                     or t == 0))
        key, key_patch = (t, tracker.patch) if pts is not None else (None, None)
        t = min(t + opts.predict_every, t_len - 1) if jump and t < t_len - 1 else t + 1
    return Track(points, status, tracker.detector_runs, predicted)


def _between(frames: np.ndarray, a: int, b: int, patch_a: np.ndarray, points: np.ndarray,
             status: np.ndarray, predicted: np.ndarray, tracker: _Tracker) -> None:
    """Frames a+1 .. b-1, passed over on a steady track. When the face has landmarks at b,
    the track stayed steady from a to b and each frame's face patch (at the interpolated
    box) still looks like those at a and b, their landmarks are interpolated linearly
    (status TRACKED, not predicted). Otherwise the model runs on each, tracked forward from
    a while the quality check passes (the rest stays MISSING, for gap filling)."""
    o = tracker.opts
    if status[b] != MISSING and steady(points[a], points[b], b - a, o):
        w = ((np.arange(a + 1, b) - a) / (b - a))[:, None, None]
        between = points[a] + w * (points[b] - points[a])
        patch_b = tracker.patch                    # b is the frame the tracker just stepped on
        patches = [region_patch(frames[u], box_from(p, tracker.relation)) for u, p in zip(range(a + 1, b), between)]
        if all(min(patch_similarity(p, patch_a), patch_similarity(p, patch_b)) >= o.min_similarity for p in patches):
            points[a + 1:b], status[a + 1:b] = between, TRACKED
            return
    prev, prev_patch = points[a], patch_a
    for u in range(a + 1, b):
        pts, patch = tracker._predict(to_grey(frames[u]), box_from(prev, tracker.relation))
        if pts is None or not plausible(prev, prev_patch, pts, patch, o):
            return
        points[u], status[u], predicted[u] = pts, TRACKED, True
        prev, prev_patch = pts, patch


def _track_back(frames: np.ndarray, t: int, points: np.ndarray, status: np.ndarray, predicted: np.ndarray,
                tracker: _Tracker) -> None:
    """After (re)acquiring a face at frame t, track it backwards over the frames that were
    skipped between detector retries, while the quality check passes."""
    prev, prev_patch = points[t], tracker.patch
    for u in range(t - 1, max(-1, t - 1 - tracker.opts.retry_every), -1):
        if status[u] != MISSING:
            break
        grey = to_grey(frames[u])
        pts, patch = tracker._predict(grey, box_from(prev, tracker.relation))
        if pts is None or not plausible(prev, prev_patch, pts, patch, tracker.opts):
            break
        points[u], status[u], predicted[u] = pts, TRACKED, True
        prev, prev_patch = pts, patch
