"""Train the learning-test model (the `avcorr` preset, as tests/test_glcm_learning.py and the
demo do) on the synthetic correspondence corpus and report localisation (cIoU, pointing)
and synchrony on held-out clips.

    .venv/bin/python bench/learn_localisation.py --size 64 --obj 22 --crop 48 --steps 300   # the test's setting
    .venv/bin/python bench/learn_localisation.py ... --set model.output_stride=8           # the coarser 8x8 grid
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from avprep.testing import avcorr
from glcm.config import load_config
from glcm.evaluate import evaluate, load_eval_clips
from glcm.model import GLCM
from glcm.train import Trainer, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64, help="frame side in pixels")
    ap.add_argument("--obj", type=int, default=22, help="object side in pixels")
    ap.add_argument("--crop", type=int, default=48, help="training crop (a multiple of model.output_stride)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--set", action="append", default=[], help="extra config override, e.g. model.output_stride=8")
    ap.add_argument("--curves", help="copy the run's curves.png here")
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        avcorr.write_shards(avcorr.make_clips(96, seed=1, obj=args.obj, size=args.size), str(root), per_shard=16,
                            prefix="train", annotations=False)
        avcorr.write_shards(avcorr.make_clips(32, seed=2, obj=args.obj, size=args.size), str(root), per_shard=32,
                            prefix="test")
        overrides = [f"train.steps={args.steps}", f"data.crop={args.crop}", f"data.shards={root}/train-*.tar",
                     f"train.out={root / 'run'}"] + args.set
        cfg = load_config(preset="avcorr", overrides=overrides)
        clips = load_eval_clips(str(root / "test-000000.tar"), avcorr.load_annotations(str(root)),
                                crop=args.size, shift=8)
        torch.manual_seed(cfg.train.seed)
        before = evaluate(GLCM(cfg.model), clips)
        train(cfg)
        trainer = Trainer(cfg, torch.device("cpu"))
        trainer.load(root / "run" / "checkpoint.pt")
        after = evaluate(trainer.model, clips)
        if args.curves:
            shutil.copy(root / "run" / "curves.png", args.curves)
    for name, r in (("untrained", before), ("trained", after)):
        # the scores; evaluate() also returns per-clip lists and maps, and the benchmark's own dict
        scores = {k: round(v, 3) for k, v in r.items() if isinstance(v, (int, float))}
        scores["benchmark"] = {k: round(v, 3) for k, v in r["benchmark"].items()}
        print(name, json.dumps(scores))
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
