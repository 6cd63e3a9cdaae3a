"""Typed configuration for the avprep pipeline.

Every stage takes one of these frozen dataclasses; the CLI only builds them. `validate`
holds every rule a value must meet, so a bad value is refused (ConfigError, one line)
before any work, whether it came from the command line or from a library caller.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping


class ConfigError(ValueError):
    """A configuration that cannot produce aligned samples."""


@dataclass(frozen=True)
class VideoConfig:
    fps: float = 10.0            # target frame rate (ffmpeg fps filter)
    short_side: int = 128        # resize so the shorter side has this many pixels (0: keep)
    square: bool = False         # centre-crop to short_side x short_side after resizing
    jpeg_quality: int = 90       # quality of the stored JPEG frames (1..100)
    require_video: bool = True   # an input without video fails with reason no_video (off: audio-only samples)


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16000
    n_mels: int = 80
    hop_length: int = 160        # mel columns are hop_length samples apart
    n_fft: int = 400             # 25 ms window at 16 kHz
    require_audio: bool = True   # a video without audio fails with reason no_audio (off: visual-only samples)


@dataclass(frozen=True)
class ClipConfig:
    max_seconds: float = 10.0    # longer inputs are split into segments of this length
    min_frames: int = 32         # shorter segments are dropped (too_short)


@dataclass(frozen=True)
class CropConfig:
    """Optional face/lip crop stage (avprep.faces); every field reaches the stage."""
    kind: str = "none"           # "none", "lips" or "face"
    size: int = 112              # output crop side in pixels
    grey: bool = False
    detect_every: int = 10       # run the face detector every N frames (or when tracking fails)
    predict_every: int = 3       # on a steady track, run the 68-point model every N frames (1: every frame)
    face_margin: float = 0.3     # face crops: margin around the tracked face box
    align: str = "similarity"    # lips: "similarity" (least squares) or "affine" (paper, 3 points)
    lip_fraction: float = 1 / 3  # lips: lip width / crop width (paper)
    max_gap_s: float = 1.0       # longest stretch without landmarks that is interpolated
    min_face_fraction: float = 0.5   # frames with detected/tracked landmarks, at least
    landmark_window_s: float = 0.2   # smoothing window of the stored landmarks
    transform_window_s: float = 0.4  # smoothing window of the points the crop is aligned on


CROP_KINDS = ("none", "lips", "face")
ALIGNMENTS = ("similarity", "affine")
CROP_SIZES = {"lips": 112, "face": 128}     # default crop side per kind
MAX_SIDE = 4096          # largest stored frame or crop side (a 4K video's short side is 2160)


@dataclass(frozen=True)
class BuildConfig:
    video: VideoConfig = field(default_factory=VideoConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    videos_per_shard: int = 64
    shard_prefix: str = "shard"  # shard names are <prefix>-<6 digits>.tar inside the output folder
    decode_threads: int = 1      # ffmpeg threads per decode (0: ffmpeg decides; workers give the parallelism)
    timeout_base_s: float = 120.0    # an input's decode is stopped (reason `timeout`) after
    timeout_per_s: float = 3.0       # base + per_s x its duration seconds of wall time

    def mel_per_frame(self) -> int:
        return mel_per_frame(self.video.fps, self.audio)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def mel_per_frame(fps: float, audio: AudioConfig) -> int:
    """k = mel columns per video frame; must be a whole number for exact alignment."""
    k = Fraction(audio.sample_rate) / (Fraction(audio.hop_length) * Fraction(fps).limit_denominator(1001))
    if k.denominator != 1:
        raise ConfigError(
            f"sample_rate {audio.sample_rate} / (hop {audio.hop_length} x fps {fps}) = {float(k):.4f} "
            "mel columns per frame; choose fps and hop so that this is a whole number "
            "(e.g. 10 fps -> k=10, 25 fps -> k=4 at hop 160, 16 kHz)")
    return int(k)


# ---------------------------------------------------------------- building a config

def override(cfg, values: Mapping[str, object]):
    """`cfg` with dotted fields replaced, e.g. {"video.fps": 25.0, "crop.kind": "lips"}.

    An unknown field name is a ConfigError; every given value wins over the default."""
    by_part: dict[str, dict] = {}
    flat = {}
    for name, value in values.items():
        head, _, rest = name.partition(".")
        if not any(f.name == head for f in dataclasses.fields(cfg)):
            raise ConfigError(f"{type(cfg).__name__} has no field {head!r}")
        if rest:
            by_part.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    flat.update({head: override(getattr(cfg, head), sub) for head, sub in by_part.items()})
    return dataclasses.replace(cfg, **flat)


def with_crop(cfg: BuildConfig, kind: str) -> BuildConfig:
    """`cfg` storing `kind` crops, with that kind's defaults: crops are cut from
    full-resolution frames (short side 0) at CROP_SIZES[kind]; "none" stores whole frames
    at VideoConfig's default short side."""
    if kind not in CROP_KINDS:
        raise ConfigError(f"crop kind must be one of {', '.join(CROP_KINDS)}, got {kind!r}")
    if kind == "none":
        return override(cfg, {"crop.kind": kind, "video.short_side": VideoConfig.short_side})
    return override(cfg, {"crop.kind": kind, "crop.size": CROP_SIZES[kind], "video.short_side": 0})


# ---------------------------------------------------------------- validation

def validate(cfg: BuildConfig) -> None:
    """Refuse any value that cannot give a correct build (ConfigError, one line)."""
    _check_video(cfg.video)
    _check_audio(cfg.audio)
    mel_per_frame(cfg.video.fps, cfg.audio)
    _check_clip(cfg.clip, cfg.video.fps)
    validate_crop(cfg.crop)
    if cfg.crop.kind != "none" and not cfg.video.require_video:
        raise ConfigError(f"{cfg.crop.kind} crops need video: require_video must stay on")
    if cfg.videos_per_shard < 1:
        raise ConfigError(f"videos_per_shard must be >= 1, got {cfg.videos_per_shard}")
    check_name("shard_prefix", cfg.shard_prefix)
    if cfg.decode_threads < 0:
        raise ConfigError(f"decode_threads must be >= 0 (0: ffmpeg decides), got {cfg.decode_threads}")
    check_number("timeout_base_s", cfg.timeout_base_s, low=0, low_open=True)
    check_number("timeout_per_s", cfg.timeout_per_s, low=0)


def _check_video(video: VideoConfig) -> None:
    check_number("fps", video.fps, low=0, low_open=True)
    if video.short_side != 0 and (video.short_side < 16 or video.short_side % 2 or video.short_side > MAX_SIDE):
        raise ConfigError(f"short_side must be 0 (keep the size) or an even number from 16 to {MAX_SIDE}, "
                          f"got {video.short_side}")
    if not 1 <= video.jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality must be between 1 and 100, got {video.jpeg_quality}")


def _check_audio(audio: AudioConfig) -> None:
    for name in ("sample_rate", "n_mels", "hop_length"):
        if getattr(audio, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(audio, name)}")
    if audio.n_fft < audio.hop_length:
        raise ConfigError(f"n_fft must be >= hop_length ({audio.hop_length}), got {audio.n_fft}")


def _check_clip(clip: ClipConfig, fps: float) -> None:
    check_number("max_seconds", clip.max_seconds, low=0, low_open=True)
    if clip.min_frames < 1:
        raise ConfigError(f"min_frames must be >= 1, got {clip.min_frames}")
    if clip.max_seconds * fps < clip.min_frames:
        raise ConfigError(f"max_seconds x fps ({clip.max_seconds} x {fps}) is shorter than min_frames "
                          f"({clip.min_frames}): every clip would be too short")


def validate_crop(crop: CropConfig) -> None:
    """The rules of the crop stage's options (also checked by avprep.faces.stage)."""
    if crop.kind not in CROP_KINDS:
        raise ConfigError(f"crop kind must be one of {', '.join(CROP_KINDS)}, got {crop.kind!r}")
    if crop.align not in ALIGNMENTS:
        raise ConfigError(f"align must be one of {', '.join(ALIGNMENTS)}, got {crop.align!r}")
    if not 16 <= crop.size <= MAX_SIDE:
        raise ConfigError(f"crop size must be from 16 to {MAX_SIDE}, got {crop.size}")
    if crop.detect_every < 1:
        raise ConfigError(f"detect_every must be >= 1, got {crop.detect_every}")
    if crop.predict_every < 1:
        raise ConfigError(f"predict_every must be >= 1, got {crop.predict_every}")
    check_number("face_margin", crop.face_margin, low=0)
    check_number("lip_fraction", crop.lip_fraction, low=0, high=1, low_open=True)
    check_number("max_gap_s", crop.max_gap_s, low=0)
    check_number("min_face_fraction", crop.min_face_fraction, low=0, high=1)
    check_number("landmark_window_s", crop.landmark_window_s, low=0)
    check_number("transform_window_s", crop.transform_window_s, low=0)


def check_number(name: str, value: float, low: float, high: float | None = None, low_open: bool = False) -> None:
    """A finite number in [low, high] (or (low, high] with low_open)."""
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value}")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_name(what: str, name: str) -> None:
    """A plain file-name part (letters, digits, '_', '-', '.'; no leading '.', no '..'),
    so that names made from it stay inside the output folder."""
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{what} must be a plain name (letters, digits, '_', '-', '.'; not starting with "
                          f"'.', no '..', at most 100 characters), got {name!r}")


_RAY_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.-]+:\d{1,5}")


def check_ray_address(address: str | None) -> None:
    """None (no Ray), 'local', 'auto', or [ray://]HOST:PORT."""
    if address is not None and address not in ("local", "auto") and not _RAY_ADDRESS.fullmatch(address):
        raise ConfigError(f"--ray {address!r}: give 'local' (Ray on this machine), 'auto' (the cluster this "
                          "node is in) or ray://HOST:PORT of the head node")


def check_workers(workers: int | None) -> None:
    """None = one worker per core; otherwise at least 1."""
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
