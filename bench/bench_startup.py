"""Start-up cost of the CLI: `avprep build` of one 10 s clip against its bare decode, and
`avprep --help`, in CPU seconds (user+sys of the command and all its children, from
resource.getrusage(RUSAGE_CHILDREN)), measured side by side: passes are interleaved and
medians taken, because the machine is shared.

    .venv/bin/python bench/bench_startup.py [--repeat 5] [--media ../shared/media]

Inputs: ../shared/media/misc/short_hamilton_clip.mp4 (10 s, 640x360, h264/aac) and a
generated 10 s 640x360 h264/aac clip. Bare decode = `ffmpeg -threads 1 -i X -vf
fps=10,scale=W:H -f rawvideo -pix_fmt rgb24 -` at the build's output size (what
`avprep bench` calls the bare decode). The build runs as a new user runs it (default
workers) and with --workers 1.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avprep.bench import lavfi_video  # noqa: E402
from avprep.config import BuildConfig  # noqa: E402
from avprep.decode import frame_geometry  # noqa: E402
from avprep.probe import ffmpeg_exe, probe  # noqa: E402

AVPREP = str(Path(sys.executable).with_name("avprep"))


def measure(args: list[str]) -> tuple[float, float]:
    """(CPU seconds of the command and its children, wall seconds)."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - t
    d = resource.getrusage(resource.RUSAGE_CHILDREN)
    return d.ru_utime + d.ru_stime - c.ru_utime - c.ru_stime, wall


def bare_args(path: str) -> list[str]:
    cfg = BuildConfig()
    geo = frame_geometry(probe(path), cfg.video.short_side, cfg.video.square)
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", "-i", path,
            "-vf", f"fps={cfg.video.fps:g},scale={geo.width}:{geo.height}", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-"]


def build_args(folder: Path, out: Path, workers: int | None) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    args = [AVPREP, "build", "videos", str(folder), "--out", str(out)]
    return args + (["--workers", str(workers)] if workers else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--media", default=str(ROOT.parent / "shared" / "media"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        tmp = Path(tmp)
        (tmp / "gen").mkdir()
        inputs = {"generated 640x360": lavfi_video(str(tmp / "gen" / "clip.mp4"), "640x360", 30, 10, 440, 44100,
                                                   2, "fast")}
        real = Path(args.media) / "misc" / "short_hamilton_clip.mp4"
        if real.exists():
            (tmp / "real").mkdir()
            shutil.copyfile(real, tmp / "real" / real.name)
            inputs["hamilton 640x360 (real)"] = str(tmp / "real" / real.name)
        runs = {"help": []}
        for name in inputs:
            runs.update({(name, k): [] for k in ("bare", "build", "build1")})
        measure([AVPREP, "--help"])                                # warm the file cache
        for _ in range(args.repeat):
            runs["help"].append(measure([AVPREP, "--help"]))
            for name, path in inputs.items():
                folder = Path(path).parent
                runs[(name, "bare")].append(measure(bare_args(path)))
                runs[(name, "build")].append(measure(build_args(folder, tmp / "out", None)))
                runs[(name, "build1")].append(measure(build_args(folder, tmp / "out", 1)))
        report(runs, inputs, args.repeat)


def median(rows: list[tuple[float, float]], i: int) -> float:
    return statistics.median(r[i] for r in rows)


def report(runs: dict, inputs: dict, repeat: int) -> None:
    print(f"CPU seconds (user+sys, command and children), median of {repeat} interleaved passes "
          f"({os.cpu_count()} cores here):")
    print(f"{'input':26s} {'bare decode':>12s} {'avprep build':>13s} {'--workers 1':>12s} "
          f"{'build - bare':>13s} {'(--workers 1)':>13s}")
    for name in inputs:
        bare, build, one = (median(runs[(name, k)], 0) for k in ("bare", "build", "build1"))
        print(f"{name:26s} {bare:12.2f} {build:13.2f} {one:12.2f} {build - bare:13.2f} {one - bare:13.2f}")
    print(f"avprep --help: {median(runs['help'], 0):.2f} CPU-s, {median(runs['help'], 1):.2f} s wall")


if __name__ == "__main__":
    main()
