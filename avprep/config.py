"""Typed configuration for the avprep pipeline.

Every stage takes one of these frozen dataclasses; the CLI only builds them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction


class ConfigError(ValueError):
    """A configuration that cannot produce aligned samples."""


@dataclass(frozen=True)
class VideoConfig:
    fps: float = 10.0            # target frame rate (ffmpeg fps filter)
    short_side: int = 128        # resize so the shorter side has this many pixels
    square: bool = False         # centre-crop to short_side x short_side after resizing
    jpeg_quality: int = 90       # quality of the stored JPEG frames


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16000
    n_mels: int = 80
    hop_length: int = 160        # mel columns are hop_length samples apart
    n_fft: int = 400             # 25 ms window at 16 kHz
    require_audio: bool = True   # a video without audio fails with reason no_audio


@dataclass(frozen=True)
class ClipConfig:
    max_seconds: float = 10.0    # longer inputs are split into segments of this length
    min_frames: int = 32         # shorter segments are dropped (too_short)


@dataclass(frozen=True)
class CropConfig:
    """Optional face/lip crop stage (avprep.faces)."""
    kind: str = "none"           # "none", "lips" or "face"
    size: int = 112              # output crop side in pixels
    grey: bool = False
    detect_every: int = 10       # run the face detector every N frames (or when tracking fails)
    face_margin: float = 0.3     # face crops: margin around the tracked face box


@dataclass(frozen=True)
class BuildConfig:
    video: VideoConfig = field(default_factory=VideoConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    videos_per_shard: int = 64
    shard_prefix: str = "shard"
    decode_threads: int = 1      # ffmpeg threads per decode (workers give the parallelism)
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


def validate(cfg: BuildConfig) -> None:
    mel_per_frame(cfg.video.fps, cfg.audio)
    if cfg.video.short_side != 0 and (cfg.video.short_side < 16 or cfg.video.short_side % 2):
        raise ConfigError("short_side must be 0 (keep the size) or an even number >= 16")
    if cfg.clip.min_frames < 1:
        raise ConfigError("min_frames must be >= 1")
    if cfg.clip.max_seconds * cfg.video.fps < cfg.clip.min_frames:
        raise ConfigError("max_seconds x fps is shorter than min_frames: every clip would be too short")
    if cfg.audio.n_fft < cfg.audio.hop_length:
        raise ConfigError("n_fft must be >= hop_length")
    if cfg.crop.kind not in ("none", "lips", "face"):
        raise ConfigError(f"unknown crop kind {cfg.crop.kind!r}")
    if cfg.videos_per_shard < 1:
        raise ConfigError("videos_per_shard must be >= 1")
