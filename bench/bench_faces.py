"""Face stage speed and agreement vs the naive per-frame dlib loop, on real videos.

    .venv/bin/python bench/bench_faces.py [--media ../shared/media] [--repeat 1] [--case videos|lrw|all]

Naive: ffmpeg decodes grey frames at native rate; HOG detector with one upsample + 68-point
predictor on every frame (largest face). Ours: ffmpeg decodes RGB frames; avprep's lip
crop stage (tracking, smoothing, alignment, 112x112 crops). Everything runs on one core
(ffmpeg -threads 1, OpenCV single-threaded; dlib is single-threaded). Agreement: median
distance between our lip centre and the naive one, as a fraction of the crop width, over
frames where both found the face by themselves (not interpolated).
"""
from __future__ import annotations

import argparse
import os

USER_ENV = dict(os.environ)     # what `avprep` gets in the LRW case's whole CLI runs
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no BLAS threads either
os.environ.setdefault("OMP_NUM_THREADS", "1")
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avprep.config import CropConfig  # noqa: E402
from avprep.faces import quality  # noqa: E402
from avprep.faces.naive import naive_track  # noqa: E402
from avprep.faces.stage import FaceOptions, crop_frames  # noqa: E402
from avprep.faces.track import MISSING  # noqa: E402
from avprep.faces.video import read_frames  # noqa: E402

import bench_lrw as lrw  # noqa: E402

VIDEOS = ["grid/bbaf2n.mpg", "grid/brbk7n.mpg", "grid/lbax4n.mpg", "grid/lbbc2a.mpg", "grid/swwp2s.mpg",
          "misc/short_hamilton_clip.mp4"]
CFG = CropConfig(kind="lips", size=112)
# the hamilton clip has shot changes and long faceless stretches: time it anyway
LENIENT = FaceOptions(max_gap_s=1e9, min_face_fraction=0.0)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def bench_video(path: str, repeat: int) -> dict:
    """CPU seconds (decode + stage) of both methods, and their lip-centre agreement."""
    naive_cpu = ours_cpu = naive_wall = ours_wall = 0.0
    for _ in range(repeat):
        (grey, _), w1, c1 = timed(read_frames, path, grey=True)
        naive, w2, c2 = timed(naive_track, grey)
        (rgb, fps), w3, c3 = timed(read_frames, path)
        out, w4, c4 = timed(crop_frames, rgb, fps, CFG, opts=LENIENT)
        naive_cpu, naive_wall = naive_cpu + c1 + c2, naive_wall + w1 + w2
        ours_cpu, ours_wall = ours_cpu + c3 + c4, ours_wall + w3 + w4
    n = len(rgb) * repeat
    lm = out.arrays["landmarks.npy"]
    tf = out.arrays["transform.npy"]
    own = out.arrays["face_status.npy"] != MISSING
    both = (naive.status != MISSING) & own
    dev = np.linalg.norm(quality.lip_centres(lm) - quality.lip_centres(naive.points), axis=1)
    dev = dev / quality.crop_width_px(tf, CFG.size)
    return {"video": "/".join(Path(path).parts[-2:]), "frames": len(rgb),
            "size": f"{rgb.shape[2]}x{rgb.shape[1]}", "naive_fps": n / naive_cpu, "ours_fps": n / ours_cpu,
            "naive_wall_fps": n / naive_wall, "ours_wall_fps": n / ours_wall, "speedup": naive_cpu / ours_cpu,
            "naive_found": int((naive.status != MISSING).sum()),
            "ours": f"{out.meta['detected']}/{out.meta['tracked']}/{out.meta['interpolated']}",
            "predicted": out.meta["predicted"],
            "compared": int(both.sum()),
            "median_dev": float(np.median(dev[both])) if both.any() else float("nan"),
            "p90_dev": float(np.percentile(dev[both], 90)) if both.any() else float("nan")}


def run_videos(args) -> None:
    warm = read_frames(os.path.join(args.media, VIDEOS[0]), max_frames=3)[0]
    naive_track(warm)                                   # load the models before timing
    crop_frames(warm, 25.0, CFG, opts=LENIENT)
    rows = [bench_video(os.path.join(args.media, v), args.repeat) for v in VIDEOS]
    print(f"{'video':34s} {'frames':>6s} {'size':>8s} {'naive f/s':>9s} {'ours f/s':>9s} {'x':>6s} {'wall n/o':>11s} "
          f"{'naive found':>11s} {'ours det/trk/int':>16s} {'model runs':>10s} {'median dev':>10s} {'p90 dev':>8s}")
    for r in rows:
        print(f"{r['video']:34s} {r['frames']:6d} {r['size']:>8s} {r['naive_fps']:9.1f} {r['ours_fps']:9.1f} "
              f"{r['speedup']:6.1f} {r['naive_wall_fps']:5.0f}/{r['ours_wall_fps']:<5.0f} {r['naive_found']:11d} "
              f"{r['ours']:>16s} {r['predicted']:10d} {r['median_dev']:10.4f} {r['p90_dev']:8.4f}")
    grid = [r for r in rows if r["video"].startswith("grid")]
    frames = sum(r["frames"] for r in grid)
    naive = frames / sum(r["frames"] / r["naive_fps"] for r in grid)
    ours = frames / sum(r["frames"] / r["ours_fps"] for r in grid)
    print(f"GRID total: naive {naive:.1f} f/s, ours {ours:.1f} f/s, {ours / naive:.1f}x")
    print("(f/s = frames per CPU-second incl. ffmpeg decoding, ffmpeg -threads 1, OpenCV single-threaded; "
          "wall n/o = wall-clock f/s naive/ours; "
          "dev = lip-centre distance / crop width)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", default=str(Path(__file__).resolve().parents[2] / "shared" / "media"))
    ap.add_argument("--repeat", type=int, default=1, help="passes over the inputs (interleaved)")
    ap.add_argument("--case", choices=("videos", "lrw", "all"), default="all",
                    help="videos: whole GRID/hamilton files; lrw: LRW-shaped 29-frame clips, per clip")
    ap.add_argument("--clips", type=int, default=2, help="lrw: 29-frame clips cut from each GRID video, per size")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.case in ("videos", "all"):
        run_videos(args)
    if args.case in ("lrw", "all"):
        lrw.run(args.media, args.clips, args.repeat, USER_ENV)


if __name__ == "__main__":
    main()
