"""Synthetic media with known ground truth, for tests and the demo.

`write_video` encodes exact RGB frames (losslessly with the default FFV1 codec) and an
optional soundtrack; `flash_clip` makes a clip whose flash frames coincide exactly with a
tone burst, so tests can check frame content and audio/video alignment to the frame.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

import ffmpeg
import numpy as np
import soundfile as sf

from avprep.probe import ffmpeg_exe

VIDEO_CODECS = {
    "ffv1": {"vcodec": "ffv1", "pix_fmt": "bgr0"},                   # lossless RGB
    "h264": {"vcodec": "libx264", "pix_fmt": "yuv420p", "preset": "veryfast", "crf": 18},
    "mpeg4": {"vcodec": "mpeg4", "q:v": 3, "pix_fmt": "yuv420p"},
    "vp9": {"vcodec": "libvpx-vp9", "b:v": "300k", "pix_fmt": "yuv420p", "deadline": "realtime"},
    "mjpeg": {"vcodec": "mjpeg", "q:v": 3, "pix_fmt": "yuvj420p"},
}
AUDIO_CODECS = {"pcm": {"acodec": "pcm_s16le"}, "aac": {"acodec": "aac", "b:a": "96k"},
                "flac": {"acodec": "flac"}, "mp3": {"acodec": "libmp3lame"}, "opus": {"acodec": "libopus"}}


def write_video(path: str, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
                sample_rate: int = 16000, codec: str = "ffv1", audio_codec: str = "pcm",
                audio_delay: float = 0.0, video_delay: float = 0.0, extra_args: list[str] | None = None) -> str:
    """Encode RGB `frames` (T,H,W,3 uint8) and `audio` ((N,) or (N,C) float in [-1,1]).

    `audio_delay`/`video_delay` start that stream later in the container (seconds), which
    gives files whose streams start at different times, like real downloads.
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory() as tmp:
        vin = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=str(fps))["v"]
        if video_delay:
            vin = vin.filter("setpts", f"PTS+round({video_delay}/TB)")
        inputs = [vin]
        if audio is not None:
            wav = os.path.join(tmp, "a.wav")
            sf.write(wav, np.asarray(audio, dtype=np.float32), sample_rate, subtype="FLOAT")
            ain = ffmpeg.input(wav, itsoffset=audio_delay) if audio_delay else ffmpeg.input(wav)
            inputs.append(ain["a"])
        opts = dict(VIDEO_CODECS[codec], **(AUDIO_CODECS[audio_codec] if audio is not None else {}))
        out = ffmpeg.output(*inputs, path, **opts).global_args("-hide_banner", "-loglevel", "error", "-y")
        args = out.compile(cmd=ffmpeg_exe())
        args = args[:-1] + (extra_args or []) + [args[-1]]
        proc = subprocess.run(args, input=frames.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {proc.stderr.decode()[-500:]}")
    return path


def pattern_frames(n: int, height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """Distinct, smooth-ish frames: frame i has a unique colour and a bar at a unique place."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 200, size=(n, 1, 1, 3), dtype=np.int32)
    frames = np.broadcast_to(base, (n, height, width, 3)).copy()
    for i in range(n):
        x = (i * 7) % (width - 8)
        frames[i, :, x:x + 8] = 255 - frames[i, :, x:x + 8]
    return frames.astype(np.uint8)


@dataclass
class FlashClip:
    frames: np.ndarray          # (T,H,W,3) ground-truth frames
    audio: np.ndarray           # (N,) soundtrack
    fps: float
    sample_rate: int
    flash_frames: list[int]     # frame indices that are white and carry the tone burst


def flash_clip(seconds: float = 4.0, fps: float = 10.0, sample_rate: int = 16000,
               flash_frames: tuple[int, ...] = (12, 13, 30), height: int = 96, width: int = 128,
               tone_hz: float = 1000.0, seed: int = 0) -> FlashClip:
    """Pattern frames with white flash frames; a tone burst sounds exactly while they show."""
    n = int(round(seconds * fps))
    frames = pattern_frames(n, height, width, seed)
    audio = np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)
    t = np.arange(audio.size) / sample_rate
    for f in flash_frames:
        frames[f] = 255
        a, b = int(round(f / fps * sample_rate)), int(round((f + 1) / fps * sample_rate))
        audio[a:b] = 0.5 * np.sin(2 * np.pi * tone_hz * t[a:b])
    return FlashClip(frames, audio, fps, sample_rate, list(flash_frames))
