"""What `--predict-every` (the 68-point model on every Nth frame of a steady track, the
frames between interpolated) costs and saves on LRW-shaped clips: CPU per clip and the
lip-centre deviation from the naive per-frame loop, per value, passes interleaved.

    .venv/bin/python bench/lrw_predict_every.py [--values 3,4,5] [--clips 2] [--repeat 3]

Uses bench_lrw's corpus (29-frame clips cut from the GRID videos, 360x288 and 512x512) and
its per-clip measures; the deviation counts every frame with a face of the tracker's own,
interpolated frames included.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_lrw as lrw  # noqa: E402
from avprep.recipes import RECIPES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", default=str(Path(__file__).resolve().parents[2] / "shared" / "media"))
    ap.add_argument("--values", default="3,4,5", help="predict_every values, comma-separated")
    ap.add_argument("--clips", type=int, default=2, help="clips cut from each GRID video, per size")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        values = [int(v) for v in args.values.split(",")]
    except ValueError:
        values = [0]
    if min(values) < 1:
        raise SystemExit(f"error: --values must be comma-separated whole numbers >= 1, got {args.values!r}")
    cv2.setNumThreads(1)
    base = RECIPES["lrw"].config({})
    cfgs = {n: dataclasses.replace(base, crop=dataclasses.replace(base.crop, predict_every=n)) for n in values}
    cost = {n: {} for n in values}
    dev = {n: {} for n in values}
    runs = {n: [] for n in values}
    with tempfile.TemporaryDirectory(prefix="bench_pe_") as tmp:
        clips = lrw.make_corpus(Path(args.media), Path(tmp), args.clips)
        lrw.avprep_clip(clips[0], base, Path(tmp))            # load models, warm caches
        for i, path in enumerate(clips):
            word = path.parent.parent.name
            _, naive = lrw.naive_clip(path)
            for r in range(args.repeat):
                for n in values if (i + r) % 2 == 0 else values[::-1]:
                    spent, sample = lrw.avprep_clip(path, cfgs[n], Path(tmp))
                    cost[n].setdefault(word, []).append(spent)
                    if r == 0:
                        dev[n].setdefault(word, []).append(lrw.deviations(sample, naive))
                        runs[n].append(json.loads(sample["json"])["crop"]["predicted"])
    first = values[0]
    for n in values:
        print(f"predict_every {n}: {np.mean(runs[n]):.1f} model runs a clip")
        for word in sorted(cost[n]):
            d = np.concatenate(dev[n][word]) * 100
            ratio = np.median(np.array(cost[first][word]) / np.array(cost[n][word]))
            print(f"  {lrw.SIZES[word][0]:>14s}: {np.median(cost[n][word]) * 1e3:4.0f} ms a clip (mean {np.mean(cost[n][word]) * 1e3:.0f}) "
                  f"({ratio:.3f}x as fast as {first}), lip-centre deviation median {np.median(d):.3f} %, "
                  f"p90 {np.percentile(d, 90):.3f} %, max {d.max():.2f} % of the crop width")


if __name__ == "__main__":
    main()
