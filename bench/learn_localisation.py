"""Train the learning-test model on the synthetic correspondence corpus and report
localisation (cIoU, pointing) and synchrony on held-out clips.

    .venv/bin/python bench/learn_localisation.py --size 64 --obj 22 --crop 48 --steps 300   # the test's setting
    .venv/bin/python bench/learn_localisation.py ... --set model.output_stride=8           # the coarser 8x8 grid
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_glcm_learning import OVERRIDES  # noqa: E402  (one source for the learning settings)

from avprep.testing import avcorr  # noqa: E402
from glcm.config import load_config  # noqa: E402
from glcm.evaluate import evaluate, load_eval_clips  # noqa: E402
from glcm.train import Trainer, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64, help="frame side in pixels")
    ap.add_argument("--obj", type=int, default=22, help="object side in pixels")
    ap.add_argument("--crop", type=int, default=48, help="training crop (multiple of 8)")
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
        overrides = [o.replace("STEPS", str(args.steps)) for o in OVERRIDES] + [f"data.crop={args.crop}"] + args.set
        cfg = load_config(preset="tiny", overrides=overrides)
        clips = load_eval_clips(str(root / "test-000000.tar"), avcorr.load_annotations(str(root)),
                                crop=args.size, shift=8)
        torch.manual_seed(cfg.train.seed)
        from glcm.model import GLCM
        before = evaluate(GLCM(cfg.model), clips)
        train(cfg, str(root / "train-{000000..000005}.tar"), root / "run", epoch_batches=50)
        trainer = Trainer(cfg, torch.device("cpu"))
        trainer.load(root / "run" / "checkpoint.pt")
        after = evaluate(trainer.model, clips)
        if args.curves:
            shutil.copy(root / "run" / "curves.png", args.curves)
    for name, r in (("untrained", before), ("trained", after)):
        r.pop("ious")
        print(name, json.dumps({k: round(v, 3) for k, v in r.items()}))
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
