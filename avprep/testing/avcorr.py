"""Synthetic audio-visual correspondence corpus with ground-truth sound-source boxes.

Each clip shows `n_objects` coloured squares on a dark noisy background. Exactly one of
them sounds: its colour selects the pitch of a tone (8 colours, 250 Hz to 3.2 kHz, see
PITCH_HZ), and it lights up exactly while the tone plays (random on/off bursts of
2-6 frames). The distractors have other colours and make no sound; by default they
glow steadily, with `distractors_flash=True` they flash on their own independent
envelopes (then only the pitch -> colour association tells where the sound is). All
objects drift slowly. The local path must find *when*: the sounding object's flashes.
`write_corpus` writes a plain folder of videos (for `avprep build videos DIR`) and
`avcorr.json` with, per video, the sounding object's box in every frame (pixels of the
written video, [x0, y0, x1, y1], x1/y1 exclusive) and its per-frame on/off envelope.
`write_shards` writes the same clips straight to docs/format.md shards, for tests that
must not depend on ffmpeg or on the build pipeline.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

PALETTE = {"red": (220, 40, 40), "orange": (240, 140, 20), "yellow": (230, 220, 40), "green": (40, 200, 60),
           "cyan": (40, 210, 220), "blue": (50, 80, 240), "purple": (150, 50, 220), "white": (235, 235, 235)}
# One pitch per colour, about half an octave apart (250 Hz to 3.2 kHz).
PITCH_HZ = {name: round(250.0 * 2 ** (i * 3.67 / 7), 1) for i, name in enumerate(PALETTE)}
ANNOTATIONS = "avcorr.json"


@dataclass
class AVClip:
    frames: np.ndarray      # (T, H, W, 3) uint8 RGB
    audio: np.ndarray       # (N,) float32 in [-1, 1]
    fps: float
    sample_rate: int
    colour: str             # colour (and so pitch) of the sounding object
    boxes: np.ndarray       # (T, 4) int sounding object's [x0, y0, x1, y1] per frame
    envelope: np.ndarray    # (T,) bool: the tone plays / the object is lit
    distractor_boxes: np.ndarray  # (D, T, 4)


def bursts(n: int, rng: np.random.Generator, shortest: int = 2, longest: int = 6) -> np.ndarray:
    """Random on/off envelope over n frames with runs of `shortest`..`longest` frames."""
    env, on = np.zeros(n, dtype=bool), bool(rng.integers(2))
    i = 0
    while i < n:
        run = int(rng.integers(shortest, longest + 1))
        env[i:i + run] = on
        i, on = i + run, not on
    return env


def place(rng: np.random.Generator, count: int, size: int, obj: int) -> np.ndarray:
    """Top-left corners of `count` non-overlapping obj x obj squares in a size x size frame."""
    for _ in range(1000):
        pts = rng.integers(0, size - obj + 1, size=(count, 2))
        far = [max(abs(pts[i] - pts[j])) >= obj + 2 for i in range(count) for j in range(i)]
        if all(far):
            return pts.astype(np.float64)
    raise ValueError(f"cannot place {count} objects of {obj} px in {size} px")


def tracks(rng: np.random.Generator, start: np.ndarray, n: int, size: int, obj: int) -> np.ndarray:
    """(count, n, 2) slowly drifting top-left corners, kept inside the frame."""
    vel = rng.uniform(-0.25, 0.25, size=start.shape)
    pos = start[:, None, :] + vel[:, None, :] * np.arange(n)[None, :, None]
    return np.clip(np.round(pos), 0, size - obj).astype(int)


def tone(envelope: np.ndarray, pitch: float, fps: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The tone gated frame-exactly by `envelope` (5 ms ramps), plus faint noise."""
    per = int(round(sr / fps))
    gate = np.repeat(envelope.astype(np.float32), per)
    ramp = np.hanning(2 * int(0.005 * sr) + 1).astype(np.float32)
    gate = np.convolve(gate, ramp / ramp.sum(), mode="same")
    t = np.arange(gate.size) / sr
    audio = 0.5 * gate * np.sin(2 * np.pi * pitch * t + rng.uniform(0, 2 * np.pi))
    return (audio + 0.005 * rng.standard_normal(gate.size)).astype(np.float32)


def make_clip(rng: np.random.Generator, seconds: float = 4.0, size: int = 64, fps: float = 10.0,
              sample_rate: int = 16000, n_objects: int = 3, obj: int = 18, dim: float = 0.3,
              distractors_flash: bool = False, steady: float = 0.65) -> AVClip:
    """One clip; the sounding object is at full brightness when lit and `dim` of it otherwise.
    Distractors flash the same way on their own envelopes (`distractors_flash`), or stay
    at `steady` brightness."""
    n = int(round(seconds * fps))
    names = list(PALETTE)
    colours = [names[i] for i in rng.choice(len(names), n_objects, replace=False)]
    corners = tracks(rng, place(rng, n_objects, size, obj), n, size, obj)
    envs = np.stack([bursts(n, rng) for _ in colours])
    levels = np.where(envs, 1.0, dim)
    if not distractors_flash:
        levels[1:] = steady
    frames = np.clip(rng.normal(35, 8, size=(n, size, size, 3)), 0, 255)
    for c, colour in enumerate(colours):
        rgb = np.array(PALETTE[colour], dtype=np.float64)
        for i in range(n):
            x, y = corners[c, i]
            frames[i, y:y + obj, x:x + obj] = rgb * levels[c, i]
    boxes = np.concatenate([corners, corners + obj], axis=2)          # (count, n, 4)
    audio = tone(envs[0], PITCH_HZ[colours[0]], fps, sample_rate, rng)
    return AVClip(frames.astype(np.uint8), audio, fps, sample_rate, colours[0], boxes[0], envs[0], boxes[1:])


def clip_record(clip: AVClip) -> dict:
    return {"colour": clip.colour, "pitch_hz": PITCH_HZ[clip.colour], "fps": clip.fps,
            "width": int(clip.frames.shape[2]), "height": int(clip.frames.shape[1]),
            "boxes": clip.boxes.tolist(), "envelope": clip.envelope.astype(int).tolist(),
            "distractor_boxes": clip.distractor_boxes.tolist()}


def make_clips(count: int, seed: int = 0, min_seconds: float = 4.0, max_seconds: float = 6.0,
               **kw) -> list[AVClip]:
    rng = np.random.default_rng(seed)
    return [make_clip(rng, seconds=round(float(rng.uniform(min_seconds, max_seconds)), 1), **kw)
            for _ in range(count)]


def write_corpus(out_dir: str, count: int, seed: int = 0, codec: str = "ffv1", **kw) -> list[str]:
    """Write `count` videos (`clip_NNNN.mkv`, or .mp4 for h264) and avcorr.json; return the paths."""
    from avprep.testing.synthetic import write_video
    os.makedirs(out_dir, exist_ok=True)
    ext = "mp4" if codec == "h264" else "mkv"
    records, paths = {}, []
    for i, clip in enumerate(make_clips(count, seed, **kw)):
        name = f"clip_{i:04d}.{ext}"
        paths.append(write_video(os.path.join(out_dir, name), clip.frames, clip.fps, clip.audio,
                                 clip.sample_rate, codec=codec))
        records[name] = clip_record(clip)
    with open(os.path.join(out_dir, ANNOTATIONS), "w") as f:
        json.dump({"videos": records}, f)
    return paths


def load_annotations(corpus_dir: str) -> dict[str, dict]:
    """Per-video records of a corpus, keyed by file name (the sample json's source_path)."""
    with open(os.path.join(corpus_dir, ANNOTATIONS)) as f:
        return json.load(f)["videos"]


# ---- direct shard writing (tests; through avprep.format's encoder) ----------------------

def clip_sample(clip: AVClip, key: str, source_path: str, quality: int = 90) -> dict:
    """A format sample for `clip` (whole clip, one segment, frames as generated), made by
    the format's encoder, so it carries every metadata field a build writes."""
    from avprep.audio import mel_of_signal
    from avprep.config import AudioConfig, mel_per_frame
    from avprep.format import SampleMeta, SourceVideo, encode_sample

    cfg = AudioConfig(sample_rate=clip.sample_rate)
    k = mel_per_frame(clip.fps, cfg)
    n, h, w = clip.frames.shape[:3]
    mel = mel_of_signal(clip.audio, cfg)[:, :n * k]
    source = SourceVideo(width=int(w), height=int(h), sar="1", rotation=0, fps=clip.fps, codec="rawvideo",
                         audio_codec="pcm_f32le", audio_channels="mono", audio_sample_rate=clip.sample_rate)
    meta = SampleMeta(key=key, source="avcorr", item_id=key, split="train", source_path=source_path, segment=0,
                      first_frame=0, fps=clip.fps, start_time=0.0, end_time=round(n / clip.fps, 6),
                      cut_start=None, cut_end=None, has_audio=True, sample_rate=clip.sample_rate,
                      hop_length=cfg.hop_length, n_fft=cfg.n_fft, n_mels=cfg.n_mels, mel_per_frame=k,
                      labels={}, extra={}, source_video=source)
    return encode_sample(meta, clip.frames, mel, quality)


def write_shards(clips: list[AVClip], out_dir: str, per_shard: int = 16, prefix: str = "avcorr",
                 annotations: bool = True) -> list[str]:
    """Write clips as shards `{prefix}-NNNNNN.tar` (+ avcorr.json keyed by source_path)."""
    import webdataset as wds
    os.makedirs(out_dir, exist_ok=True)
    paths, records = [], {}
    for s in range(0, len(clips), per_shard):
        path = os.path.join(out_dir, f"{prefix}-{s // per_shard:06d}.tar")
        with wds.TarWriter(path) as sink:
            for i in range(s, min(s + per_shard, len(clips))):
                name = f"clip_{i:04d}.mkv"
                sink.write(clip_sample(clips[i], f"avcorr_{i:04d}", name))
                records[name] = clip_record(clips[i])
        paths.append(path)
    if annotations:
        with open(os.path.join(out_dir, ANNOTATIONS), "w") as f:
            json.dump({"videos": records}, f)
    return paths
