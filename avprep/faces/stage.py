"""The pipeline hook: lip or face crops of one clip, with landmarks and transforms."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from avprep.clips import Clip
from avprep.config import ConfigError, CropConfig, validate_crop
from avprep.faces import align
from avprep.faces.temporal import fill_gaps, smooth_poly
from avprep.faces.track import DETECTED, TRACKED, Track, TrackOptions, track_landmarks
from avprep.probe import MediaError
from avprep.format import FACE_STATUS, LANDMARKS, TRANSFORM


@dataclass
class CropOutput:
    frames: np.ndarray       # (T, S, S, 3) uint8 RGB (grey crops replicated to 3 channels)
    arrays: dict[str, np.ndarray]  # extra shard members by name (avprep.format.CROP_ARRAYS); the encoder serialises them
    meta: dict               # JSON-able, stored under json["crop"]


@dataclass(frozen=True)
class FaceOptions:
    """The stage's settings. A build takes every one from its CropConfig (`options_for`);
    tests and benchmarks may pass their own FaceOptions, which is then used as given."""
    track: TrackOptions = field(default_factory=lambda: TrackOptions(detect_every=CropConfig.detect_every))
    max_gap_s: float = CropConfig.max_gap_s                      # longest interpolated stretch without landmarks
    min_face_fraction: float = CropConfig.min_face_fraction      # frames with detected/tracked landmarks, at least
    landmark_window_s: float = CropConfig.landmark_window_s      # Savitzky-Golay window of the stored landmarks
    transform_window_s: float = CropConfig.transform_window_s    # ... of the points the crop is aligned on
    lip_fraction: float = CropConfig.lip_fraction                # lip width / crop width (paper: 1/3)
    align: str = CropConfig.align                                # "similarity" or "affine" (paper: affine, 3 points)


# FaceOptions fields set from the CropConfig field of the same name (all but `track`).
_FROM_CONFIG = tuple(f.name for f in fields(FaceOptions) if f.name in {c.name for c in fields(CropConfig)})


def options_for(cfg: CropConfig, base: FaceOptions | None = None) -> FaceOptions:
    """The stage's options: `base` when given (used as is), else every face field of `cfg`
    (`detect_every` and `predict_every` go to the tracker's options)."""
    if base is not None:
        return base
    return FaceOptions(track=TrackOptions(detect_every=cfg.detect_every, predict_every=cfg.predict_every),
                       **{name: getattr(cfg, name) for name in _FROM_CONFIG})


def check_config(cfg: CropConfig) -> None:
    if cfg.kind not in ("lips", "face"):
        raise ConfigError(f"crop kind must be 'lips' or 'face' for the crop stage, got {cfg.kind!r}")
    validate_crop(cfg)


def crop_clip(clip: Clip, cfg: CropConfig, hint: tuple[float, float] | None = None) -> CropOutput:
    """Crops of `clip.frames`; raises MediaError('no_face') when no usable face is found.

    `hint` is the speaker's face centre as fractions of width and height (AVSpeech x, y).
    """
    return crop_frames(clip.frames, clip.fps, cfg, hint)


def crop_frames(frames: np.ndarray, fps: float, cfg: CropConfig,
                hint: tuple[float, float] | None = None, opts: FaceOptions | None = None) -> CropOutput:
    check_config(cfg)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[3] != 3:
        raise ValueError(f"frames must be (T,H,W,3) with T >= 1, got {frames.shape}")
    opts = options_for(cfg, opts)
    return crops_from_track(frames, track_landmarks(frames, opts.track, hint), fps, cfg, opts, hint)


def crops_from_track(frames: np.ndarray, track: Track, fps: float, cfg: CropConfig, opts: FaceOptions,
                     hint: tuple[float, float] | None = None) -> CropOutput:
    """Gap filling, smoothing, transforms and warping for landmarks already tracked."""
    t_len = len(frames)
    found = track.count(DETECTED) + track.count(TRACKED)
    if found == 0 or found < opts.min_face_fraction * t_len:
        raise MediaError("no_face", f"face landmarks on {found} of {t_len} frames "
                         f"(need {opts.min_face_fraction:.0%})")
    try:
        filled, was_filled = fill_gaps(track.points, max_gap=int(round(opts.max_gap_s * fps)))
    except ValueError as e:
        raise MediaError("no_face", str(e)) from e
    landmarks = smooth_poly(filled, _half(opts.landmark_window_s, fps))
    transforms, geo = _transforms(cfg, opts, filled, landmarks, fps)
    crops = _warp_all(frames, transforms, cfg.size, cfg.grey)
    meta = {"kind": cfg.kind, "size": cfg.size, "grey": cfg.grey, "num_frames": t_len,
            "detected": track.count(DETECTED), "tracked": track.count(TRACKED),
            "interpolated": int(was_filled.sum()), "detector_runs": track.detector_runs,
            "predicted": found if track.predicted is None else int(track.predicted.sum()),
            "scale": round(float(np.median([align.scale_of(m) for m in transforms])), 5),
            "hint": list(hint) if hint is not None else None, **geo}
    arrays = {LANDMARKS: landmarks.astype(np.float32), TRANSFORM: transforms.astype(np.float32),
              FACE_STATUS: np.where(was_filled, 0, track.status).astype(np.uint8)}
    return CropOutput(crops, arrays, meta)


def _transforms(cfg: CropConfig, opts: FaceOptions, filled: np.ndarray, landmarks: np.ndarray,
                fps: float) -> tuple[np.ndarray, dict]:
    try:
        if cfg.kind == "face":
            return align.face_transforms(smooth_poly(filled, _half(opts.transform_window_s, fps)), cfg.size, cfg.face_margin)
        stable = smooth_poly(filled, _half(opts.transform_window_s, fps))
        m, geo = align.lip_transforms(stable, landmarks, cfg.size, opts.lip_fraction, opts.align)
        return m, {"align": opts.align, "lip_fraction": round(opts.lip_fraction, 5), **geo}
    except (ValueError, np.linalg.LinAlgError) as e:
        raise MediaError("no_face", f"landmarks unusable for a crop: {e}") from e


def _half(window_s: float, fps: float) -> int:
    """Half window in frames for a window of `window_s` seconds."""
    return int(round(window_s * fps / 2))


def _warp_all(frames: np.ndarray, transforms: np.ndarray, size: int, grey: bool) -> np.ndarray:
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (frame, m) in enumerate(zip(frames, transforms)):
        crop = align.warp(frame, m, size)
        if grey:
            crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        out[i] = crop
    return out
