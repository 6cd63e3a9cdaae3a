"""Decoding glue for localisation (`glcm localize`, `glcm eval-localization --benchmark`):
avprep decodes, glcm scores (glcm may import only avprep.format and avprep.fsio).

* Videos go through avprep's own clip path (`avprep.clips.iter_clips`): frames at the
  model's fps (16000 / (160 x mel_per_frame)), short side `short_side`, and the mel columns
  aligned frame by frame, exactly as a build stores them.
* A still image (Flickr, VGG-SS) becomes a static clip: the frame squashed to size x size
  (as LVS / EZ-VSL resize to 224x224) and repeated `data.frames` times; its audio is the
  clip's duration (frames / fps seconds) of the wav centred on the wav's middle, tiled
  when the wav is shorter (as LVS / EZ-VSL do), and turned into exactly frames x k mel
  columns with the build's log-mel.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avprep.audio import context, log_mel
from avprep.config import AudioConfig, BuildConfig, override
from avprep.decode import AudioReader
from avprep.probe import MediaError

AUDIO = AudioConfig()
AUDIO_TIMEOUT_S = 300.0     # a wav's decode is stopped (reason `timeout`) after this long


def model_fps(mel_per_frame: int, audio: AudioConfig = AUDIO) -> float:
    return audio.sample_rate / (audio.hop_length * mel_per_frame)


def audio_config(n_mels: int) -> AudioConfig:
    return override(AUDIO, {"n_mels": n_mels})


# ------------------------------------------------------------------ still images

def read_image(path: str, size: int) -> np.ndarray:
    """RGB uint8 (size, size, 3); MediaError `bad_frame` when it does not decode."""
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise MediaError("bad_frame", f"{path}: not a decodable image")
    return np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)[..., ::-1])


def read_samples(path: str, sample_rate: int) -> np.ndarray:
    """The whole file's audio, mono float32 at `sample_rate` (ffmpeg via avprep)."""
    reader = AudioReader(path, sample_rate, deadline=time.monotonic() + AUDIO_TIMEOUT_S)
    step = sample_rate * 60
    try:
        end = step
        while reader.available_until(end) == end:   # grow a minute at a time until the end
            end += step
        return reader.read(0, reader.available_until(end))
    finally:
        reader.close()


def centred_mel(samples: np.ndarray, columns: int, audio: AudioConfig) -> np.ndarray:
    """`columns` mel columns of the span centred on the middle of `samples` (tiled if short)."""
    if samples.size == 0:
        raise MediaError("no_audio", "the audio is empty")
    span = columns * audio.hop_length
    if samples.size < span:
        samples = np.tile(samples, span // samples.size + 1)
    left, right = context(audio)
    start = (samples.size - span) // 2
    padded = np.pad(samples, (left, right))          # silence beyond the file's ends
    return log_mel(padded[start:start + span + left + right], columns, audio).astype(np.float32)


def still_input(frame_path: str, audio_path: str, size: int, frames: int, k: int, n_mels: int):
    """(frames (T, size, size, 3) uint8, mel (n_mels, T*k) float32) of one benchmark sample."""
    from glcm.locbench import still_clip
    audio = audio_config(n_mels)
    image = read_image(frame_path, size)
    mel = centred_mel(read_samples(audio_path, audio.sample_rate), frames * k, audio)
    return still_clip(image, frames), mel


@dataclass
class BenchResult:
    summary: dict
    per_sample: dict[str, float]
    maps: dict[str, np.ndarray]                     # id -> raw (H, W) map over the model's grid
    failed: dict[str, list[str]] = field(default_factory=dict)   # reason -> ids (decoding)


def decode_samples(samples, cfg, size: int) -> tuple[dict[str, tuple], dict[str, list[str]]]:
    """id -> (frames, mel) of each sample as a still clip; failures as reason -> ids."""
    inputs, failed = {}, {}
    for s in samples:
        try:
            inputs[s.id] = still_input(s.frame, s.audio, size, cfg.data.frames, cfg.model.mel_per_frame,
                                       cfg.model.n_mels)
        except (MediaError, OSError) as exc:
            failed.setdefault(getattr(exc, "reason", "unreadable"), []).append(s.id)
    return inputs, failed


def evaluate_benchmark(models: list, cfg, bench, size: int, kind: str = "similarity", rule: str = "ezvsl",
                       batch: int = 16) -> list[BenchResult]:
    """Decode the samples of `bench` as still clips, a batch at a time (memory stays bounded),
    compute each model's raw maps and score them; one result per model (same decoded inputs)."""
    from glcm.locbench import raw_maps, score
    raws: list[dict] = [{} for _ in models]
    failed: dict[str, list[str]] = {}
    for i in range(0, len(bench.samples), batch):
        inputs, bad = decode_samples(bench.samples[i:i + batch], cfg, size)
        for reason, ids in bad.items():
            failed.setdefault(reason, []).extend(ids)
        if inputs:
            frames = np.stack([f for f, _ in inputs.values()])
            mels = np.stack([m for _, m in inputs.values()])
            for raw, model in zip(raws, models):
                raw.update(zip(inputs, raw_maps(model, frames, mels, kind)))
    results = []
    for raw in raws:
        summary, per = score(raw, [s for s in bench.samples if s.id in raw], rule)
        results.append(BenchResult(summary, per, raw, failed))
    return results


# ------------------------------------------------------------------ videos

def decode_video(path: str, fps: float, short_side: int, window: int, max_seconds: float, n_mels: int):
    """The first clip of a video, decoded as a build would: at most `max_seconds`, but at
    least one model window (`window` frames) when the video is that long; any shorter clip
    with audio is kept (glcm.localize loops it to one window). MediaError `too_short` only
    when the audio covers no frame."""
    from avprep.clips import iter_clips
    from avprep.items import SourceItem
    bcfg = override(BuildConfig(), {"video.fps": fps, "video.short_side": short_side, "audio.n_mels": n_mels,
                                    "clip.min_frames": 1, "clip.max_seconds": max(max_seconds, window / fps)})
    clips = iter_clips(SourceItem(path, "localize", os.path.basename(path)), bcfg)
    try:
        return next(clips)
    finally:
        clips.close()


def write_overlay_video(frames: np.ndarray, fps: float, source: str, start_s: float, out: Path) -> None:
    """H.264 mp4 of the RGB frames with the source's audio from `start_s` for the same
    duration muxed back (AAC); written to a temporary name, then renamed."""
    import subprocess

    import ffmpeg

    from avprep.fsio import atomic_writer
    from avprep.probe import ffmpeg_exe, local_path
    n, h, w = frames.shape[:3]
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps) \
        .filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")          # yuv420p needs even sides (--short-side 129)
    audio = ffmpeg.input(local_path(source), ss=f"{start_s:.6f}", t=f"{n / fps:.6f}").audio
    with atomic_writer(out) as f:      # absolute names: never read by ffmpeg as a protocol (pipe:...)
        args = ffmpeg.output(video, audio, os.path.abspath(f.name), format="mp4", vcodec="libx264", pix_fmt="yuv420p",
                             preset="veryfast", crf=20, acodec="aac", movflags="+faststart") \
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-y").compile(cmd=ffmpeg_exe())
        proc = subprocess.run(args, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            raise MediaError("encode_error", lines[-1] if lines else f"ffmpeg exited with {proc.returncode}")


OUTPUTS = (".mp4", ".png", ".maps.npz")     # written per video as <name><ext>


def output_names(videos: list[Path], out: Path) -> list[str]:
    """A distinct output stem per input (the file stem, then _2, _3 for repeats), never one
    whose outputs in `out` would overwrite an input (talk.mp4 localised into its own folder)."""
    inputs = {os.path.realpath(v) for v in videos}
    taken: set[str] = set()
    names = []
    for v in videos:
        stem = v.stem or "video"
        name, n = stem, 1
        while name in taken or any(os.path.realpath(out / f"{name}{ext}") in inputs for ext in OUTPUTS):
            n += 1
            name = f"{stem}_{n}"
        taken.add(name)
        names.append(name)
    return names


def localize_one(model, cfg, video: Path, name: str, out: Path, opts: dict) -> dict:
    """Maps, overlay video, contact sheet and maps.npz of one video; its record."""
    from avprep.fsio import atomic_write
    from glcm.localize import contact_sheet, overlay_frames, png_bytes, video_maps
    fps = model_fps(cfg.model.mel_per_frame)
    clip = decode_video(str(video), fps, opts["short_side"], cfg.data.frames, opts["max_seconds"], cfg.model.n_mels)
    maps = video_maps(model, clip.frames, clip.mel, cfg.data.frames, opts["hop"], opts["batch"])
    overlays = overlay_frames(clip.frames, maps.per_frame(opts["map"]), opts["alpha"])
    start = clip.first_frame / fps
    write_overlay_video(overlays, fps, str(video), start, out / f"{name}.mp4")
    atomic_write(out / f"{name}.png", png_bytes(contact_sheet(clip.frames, overlays, fps, clip.first_frame)))
    _save_npz(out / f"{name}.maps.npz", similarity=maps.similarity, softmax=maps.softmax,
              window_starts=maps.starts, frame_window=maps.frame_window)
    return {"video": str(video), "ok": True, "overlay": f"{name}.mp4", "sheet": f"{name}.png",
            "maps": f"{name}.maps.npz", "frames": int(clip.frames.shape[0]), "fps": fps,
            "start_s": round(start, 6), "windows": int(len(maps.starts)), "grid": list(maps.similarity.shape[1:]),
            "padded_frames": maps.padded}


def _save_npz(path: Path, **arrays) -> None:
    from avprep.fsio import atomic_writer
    with atomic_writer(path) as f:
        np.savez(f, **arrays)


def save_maps(path: Path, maps: dict[str, np.ndarray], rule: str = "ezvsl") -> None:
    """An .npz of id -> the 224x224 float32 map that was binarised (`glcm.locbench.saved_map`
    of each raw map), written one map at a time (np.savez's layout; np.load(allow_pickle=False)
    reads it)."""
    import zipfile

    from avprep.fsio import atomic_writer
    from glcm.locbench import saved_map
    with atomic_writer(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for sid, raw in maps.items():
            with z.open(f"{sid}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, saved_map(raw, rule), allow_pickle=False)


def run_localize(model, cfg, videos: list[Path], out: Path, opts: dict) -> list[dict]:
    from avprep.fsio import atomic_write_json
    records = []
    for video, name in zip(videos, output_names(videos, out)):
        try:       # an absolute path: a file named `pipe:x` stays a file for ffmpeg
            records.append({**localize_one(model, cfg, Path(os.path.abspath(video)), name, out, opts),
                            "video": str(video)})
        except MediaError as exc:
            records.append({"video": str(video), "ok": False, "reason": exc.reason, "message": exc.message})
    atomic_write_json(out / "localize.json", {"videos": records, "options": opts})
    return records


def bench_report(bench, result: BenchResult, opts: dict) -> dict:
    problems: dict[str, list[str]] = {}
    for table in (bench.problems, result.failed):
        for reason, ids in table.items():
            problems[reason] = sorted(problems.get(reason, []) + list(ids))
    return {"benchmark": bench.name, **result.summary, "options": opts,
            "listed": len(bench.samples) + sum(len(v) for v in bench.problems.values()),
            "problems": {r: len(v) for r, v in sorted(problems.items())}, "problem_ids": problems,
            "clipped_boxes": bench.clipped_boxes, "per_sample": result.per_sample}


def write_json(path: Path, obj: dict) -> None:
    from avprep.fsio import atomic_write
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")
