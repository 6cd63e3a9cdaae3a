"""Clips: aligned frames + mel for one segment of one input."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from avprep.audio import context, log_mel
from avprep.config import BuildConfig
from avprep.decode import AudioReader, DecodeSpec, open_source
from avprep.items import SourceItem
from avprep.probe import MediaError, MediaInfo


@dataclass
class Clip:
    item: SourceItem
    segment: int            # segment number within the input
    first_frame: int        # global frame number n0 on the fps grid (frame i sits at (n0+i)/fps)
    fps: float
    frames: np.ndarray | None   # (T, H, W, 3) uint8 RGB; None: audio-only (input without video)
    mel: np.ndarray | None      # (n_mels, T*k) float32 log-mel dB; mel[:, k*i:k*(i+1)] spans frame i;
                                # None: visual-only (input without audio, require_audio off)
    info: MediaInfo
    slots: int = 0              # audio-only: T, the fps-grid frames the mel spans

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0]) if self.frames is not None else self.slots


def iter_clips(item: SourceItem, cfg: BuildConfig, info: MediaInfo | None = None) -> Iterator[Clip]:
    """Decode `item` and yield its aligned clips, one per segment (streaming).

    Raises MediaError with a reason code when the input cannot give any clip.
    """
    source = open_source(item.path, decode_spec(item, cfg), info)    # its input dump is the probe
    info = source.info
    if info.video is None and info.audio is not None and not cfg.video.require_video:
        yield from _audio_clips(item, info, cfg)
        return
    if info.video is None:
        raise MediaError("no_video", "the file has no video stream")
    if info.audio is None and cfg.audio.require_audio:
        raise MediaError("no_audio", "the file has no audio stream")
    fps = cfg.video.fps
    seg_len = max(cfg.clip.min_frames, int(round(cfg.clip.max_seconds * fps)))
    audio = source.audio
    made = decoded = usable = 0
    try:
        for first, segment in _segments(source.frames(), seg_len):
            decoded += len(segment)
            clip, count = _make_clip(item, made, first, segment, audio, info, cfg)
            usable += count
            if clip is None:    # too short: the audio ended (or the input did)
                break
            made += 1
            yield clip
    finally:
        source.close()
    if made == 0:
        if decoded == 0:
            raise MediaError("no_frames", "ffmpeg decoded no video frames")
        covered = f" ({decoded} decoded, the audio covers {usable})" if usable < decoded else ""
        raise MediaError("too_short", f"{usable} frames at {fps:g} fps{covered} < min_frames "
                                      f"{cfg.clip.min_frames}")


def decode_spec(item: SourceItem, cfg: BuildConfig) -> DecodeSpec:
    """What the decoder needs from the item (its cut) and the build config."""
    return DecodeSpec(cfg.video.fps, cfg.video.short_side, cfg.video.square, cfg.audio.sample_rate,
                      cfg.audio.require_audio, item.start, item.end, cfg.decode_threads,
                      cfg.timeout_base_s, cfg.timeout_per_s)


def _segments(frames: Iterator[tuple[int, np.ndarray]], seg_len: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Group (frame number, frame) into runs of `seg_len` consecutive frames (the last may be
    shorter): yields (first frame number, frames)."""
    run: list[np.ndarray] = []
    first = 0
    for n, frame in frames:
        if run and n != first + len(run):
            raise MediaError("decode_error", f"frame numbers jump from {first + len(run) - 1} to {n}")
        if not run:
            first = n
        run.append(frame)
        if len(run) == seg_len:
            yield first, run
            run = []
    if run:
        yield first, run


def _make_clip(item: SourceItem, segment: int, first: int, frames: list[np.ndarray],
               audio: AudioReader | None, info: MediaInfo, cfg: BuildConfig) -> tuple[Clip | None, int]:
    """Attach the mel span of `frames`; cut frames the audio does not cover.

    Returns (clip, usable frame count); the clip is None when too short."""
    k, hop = cfg.mel_per_frame(), cfg.audio.hop_length
    per_frame = k * hop
    count = len(frames)
    if audio is not None:
        end = audio.available_until((first + count) * per_frame)
        count = min(count, max(0, end // per_frame - first))
    if count < cfg.clip.min_frames:
        return None, count
    mel = _mel(audio, first, count, cfg) if audio is not None else None
    return Clip(item, segment, first, cfg.video.fps, np.stack(frames[:count]), mel, info), count


def _mel(audio: AudioReader, first: int, count: int, cfg: BuildConfig) -> np.ndarray:
    """The mel columns of frames [first, first+count); samples before them are dropped."""
    k, hop = cfg.mel_per_frame(), cfg.audio.hop_length
    left, right = context(cfg.audio)
    a = first * k * hop - left
    b = (first + count) * k * hop + right
    mel = log_mel(audio.read(a, b), count * k, cfg.audio)
    audio.discard_before(b - left - right)
    return mel


def _audio_clips(item: SourceItem, info: MediaInfo, cfg: BuildConfig) -> Iterator[Clip]:
    """Audio-only clips of an input without a video stream (require_video off): the mel on
    the same fps grid, cut into segments of whole grid frames the audio covers."""
    fps, per_frame = cfg.video.fps, cfg.mel_per_frame() * cfg.audio.hop_length
    seg_len = max(cfg.clip.min_frames, int(round(cfg.clip.max_seconds * fps)))
    duration = (item.end - item.start) if item.start is not None and item.end is not None else info.duration
    deadline = time.monotonic() + cfg.timeout_base_s + cfg.timeout_per_s * (duration or 0.0)
    audio = AudioReader(item.path, cfg.audio.sample_rate, item.start, item.end, cfg.decode_threads, deadline)
    first = made = 0
    try:
        while True:
            count = max(0, audio.available_until((first + seg_len) * per_frame) // per_frame - first)
            if count < cfg.clip.min_frames:
                break
            yield Clip(item, made, first, fps, None, _mel(audio, first, count, cfg), info, slots=count)
            made, first = made + 1, first + count
    finally:
        audio.close()
    if made == 0:
        raise MediaError("too_short", f"the audio covers {first + count} frames of 1/{fps:g} s < min_frames "
                                      f"{cfg.clip.min_frames}")
