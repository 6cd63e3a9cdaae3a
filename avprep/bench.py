"""`avprep bench`: avprep's per-core cost against a bare ffmpeg decode of the same files.

Measured side by side in one run (interleaved passes) because shared machines are noisy:
- CPU seconds (user+sys, this process and its ffmpeg children) per video second for
  (a) `ffmpeg -i X -vf fps=10,scale=W:H -f rawvideo pipe:` and (b) avprep's whole
  per-input work (video + audio decode, mel, JPEG encoding, sample encoding);
- build throughput with 1..N workers (scaling);
- peak memory of one worker on a 10-minute input;
- decode speed and size of frame encodings (why shards hold JPEG frames).
"""
from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from avprep.config import BuildConfig, ClipConfig
from avprep.decode import frame_geometry
from avprep.items import SourceItem
from avprep.probe import ffmpeg_exe, local_path, probe

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def shared_files() -> list[str]:
    """Short real videos with audio from ../shared/media (empty when absent)."""
    if not SHARED_MEDIA.exists():
        return []
    files = sorted(str(p) for p in (SHARED_MEDIA / "grid").glob("*.mpg"))
    files += [str(SHARED_MEDIA / "misc" / n) for n in ("big_buck_bunny_small.mp4", "short_hamilton_clip.mp4")]
    return [f for f in files if os.path.exists(f)]


def lavfi_video(path: str, size: str, rate: int, seconds: float, tone_hz: int, sample_rate: int,
               channels: int, preset: str) -> str:
    """An h264/aac file of ffmpeg's testsrc2 pattern with a sine tone."""
    dur = f"{seconds:g}"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={dur}",
                    "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate={sample_rate}:duration={dur}",
                    "-ac", str(channels), "-c:v", "libx264", "-preset", preset, "-crf", "23", "-c:a", "aac",
                    "-shortest", path], check=True)
    return path


def kinetics_like_files(tmp: str) -> list[str]:
    """10 s h264/aac clips at 360p and 720p, like typical Kinetics/AVSpeech inputs."""
    out = []
    for i, (size, rate, sr) in enumerate((("640x360", 30, 44100), ("1280x720", 25, 48000),
                                          ("640x360", 30, 44100), ("1280x720", 25, 48000))):
        path = os.path.join(tmp, f"clip{i}_{size}.mp4")
        out.append(lavfi_video(path, size, rate, 10, 300 + 100 * i, sr, channels=2, preset="fast"))
    return out


def bare_decode(path: str, cfg: BuildConfig) -> None:
    geo = frame_geometry(probe(path), cfg.video.short_side, cfg.video.square)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", "-i", local_path(path),
            "-vf", f"fps={cfg.video.fps:g},scale={geo.width}:{geo.height}", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-"]
    subprocess.run(args, stdout=subprocess.DEVNULL, check=True)


def avprep_one(path: str, cfg: BuildConfig) -> None:
    from avprep.pipeline import process_item
    outcome, _ = process_item(SourceItem(path, "bench", os.path.basename(path)), cfg)
    if outcome["status"] != "ok":
        raise RuntimeError(f"{path}: {outcome['reason']}: {outcome['message']}")


def _measure(fn: Callable[[str, BuildConfig], None], files: list[str], cfg: BuildConfig) -> float:
    c0 = _cpu()
    for f in files:
        fn(f, cfg)
    return _cpu() - c0


def cost_ratio(files: list[str], repeat: int, cfg: BuildConfig, echo) -> dict:
    seconds = sum((probe(f).duration or 0) for f in files)
    bare, ours = [], []
    avprep_one(files[0], cfg)   # warm imports and caches
    for _ in range(repeat):
        bare.append(_measure(bare_decode, files, cfg))
        ours.append(_measure(avprep_one, files, cfg))
    b, o = float(np.median(bare)), float(np.median(ours))
    echo(f"per-core cost on {len(files)} files ({seconds:.1f} s of video), median of {repeat} interleaved passes:")
    echo(f"  bare ffmpeg fps+scale decode : {b:.3f} CPU-s  ({seconds / b:.1f} video-s per CPU-s)")
    echo(f"  avprep (decode+mel+jpeg)     : {o:.3f} CPU-s  ({seconds / o:.1f} video-s per CPU-s)")
    echo(f"  ratio avprep / bare          : {o / b:.2f}x")
    return {"bare_cpu_s": b, "avprep_cpu_s": o, "ratio": o / b, "video_s": seconds}


def scaling(files: list[str], worker_counts: list[int], cfg: BuildConfig, echo, copies: int = 4) -> dict:
    from avprep.pipeline import build_dataset
    items = [SourceItem(f, "bench", f"{n}_{i}") for n in range(copies) for i, f in enumerate(files)]
    rates = {}
    for w in worker_counts:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            build_dataset(items, out, BuildConfig(video=cfg.video, clip=cfg.clip, videos_per_shard=2), workers=w, progress=False)
            rates[w] = len(items) / (time.perf_counter() - t0)
    base = rates[worker_counts[0]]
    echo(f"scaling over {len(items)} inputs (cores here: {os.cpu_count()}):")
    for w, r in rates.items():
        echo(f"  {w} worker(s): {r:.2f} videos/s  ({r / base:.2f}x of {worker_counts[0]} worker)")
    return rates


def peak_memory_long_input(minutes: float, echo) -> float:
    """Max RSS of one avprep worker process building a `minutes`-long video."""
    import sys
    with tempfile.TemporaryDirectory() as tmp:
        path = lavfi_video(os.path.join(tmp, "long.mp4"), "320x240", 25, minutes * 60, 440, 44100,
                          channels=1, preset="ultrafast")
        code = ("import resource,sys; from avprep.bench import avprep_one; from avprep.config import BuildConfig;"
                "avprep_one(sys.argv[1], BuildConfig());"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True)
        mib = int(out.stdout.strip().splitlines()[-1]) / 1024
    echo(f"peak RSS of one worker on a {minutes:g}-minute 320x240 input: {mib:.0f} MiB "
         "(the python process; ffmpeg children are separate and stream)")
    return mib


def frame_encodings(echo, frames: int = 32, h: int = 128, w: int = 170) -> None:
    """Decode cost and size of one 32-frame window for candidate frame encodings."""
    import cv2
    from avprep.testing.synthetic import pattern_frames
    src = SHARED_MEDIA / "misc" / "big_buck_bunny_small.mp4"
    if src.exists():
        from avprep.decode import iter_frames
        info = probe(str(src))
        geo = frame_geometry(info, 128, False)
        imgs = np.stack([f for _, (_, f) in zip(range(frames), iter_frames(str(src), info, 10, geo))])
    else:
        imgs = pattern_frames(frames, h, w)
    echo(f"frame encodings, one {len(imgs)}-frame window of {imgs.shape[2]}x{imgs.shape[1]} frames:")
    for name, ext, params in (("jpeg q75", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 75]),
                              ("jpeg q90", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]),
                              ("jpeg q95", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]),
                              ("png", ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]),
                              ("webp q90", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 90])):
        bufs = [cv2.imencode(ext, im, params)[1] for im in imgs]
        t0 = time.perf_counter()
        reps = 20
        for _ in range(reps):
            for b in bufs:
                cv2.imdecode(b, cv2.IMREAD_COLOR)
        dt = (time.perf_counter() - t0) / reps
        size = sum(len(b) for b in bufs) / len(bufs)
        err = np.mean([np.abs(cv2.imdecode(b, cv2.IMREAD_COLOR).astype(int) - im).mean() for b, im in zip(bufs, imgs)])
        echo(f"  {name:9s}: {size / 1024:6.1f} KiB/frame, {1 / dt:7.0f} windows/s/core decode, "
             f"mean abs error {err:.2f}")
    raw = imgs.nbytes / len(imgs)
    echo(f"  raw uint8: {raw / 1024:6.1f} KiB/frame (no decode)")


def run_bench(files: list[str] | None, repeat: int, worker_counts: list[int], echo=print,
              long_minutes: float = 10.0) -> None:
    cfg = BuildConfig(clip=ClipConfig(min_frames=16))   # GRID clips are 3 s = 30 frames
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"given files": files} if files else {
            "generated 10 s clips (360p/720p h264+aac)": kinetics_like_files(tmp),
            "../shared/media (3-10 s, 240p-360p)": shared_files()}
        for name, group in sets.items():
            if group:
                echo(f"== {name}")
                cost_ratio(group, repeat, cfg, echo)
        first = next(g for g in sets.values() if g)
        echo("== scaling")
        scaling(first, worker_counts, cfg, echo)
        echo("== frame encodings")
        frame_encodings(echo)
        if long_minutes > 0:
            echo("== memory (flat in input length = bounded)")
            for minutes in (1.0, long_minutes):
                peak_memory_long_input(minutes, echo)
