"""Does GLCM pretraining help downstream? A synthetic task from the correspondence corpus
(avprep.testing.avcorr): classify which colour sounds (8 classes). The audio task reads the
tone (the pitch names the colour); the visual task must find the object that flashes with
the sound. The same `avcorr`-preset architecture is linear-probed on (a) the encoders of a
GLCM run pretrained on other avcorr clips and (b) random encoders ("scratch"), at equal
steps, with `cli.demo.probe` (`glcm finetune`'s config and code path; the demo and
tests/test_glcm_pretraining_helps.py use the same probe; the test runs these defaults with
probe seed 0); figures go to docs/glcm.md.

    .venv/bin/python bench/finetune_pretraining.py                # pretrains first (~3-5 min), seeds 0,1,2
    .venv/bin/python bench/finetune_pretraining.py --checkpoint runs/x/checkpoint.pt
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from avprep.testing import avcorr
from avprep.testing.downstream import write_colour_shards
from cli.demo import probe

TASKS = {"audio": "esc50", "visual": "ucf101"}     # fold 1 / split 1: every 4th clip held out


def pretrain(root: Path, steps: int) -> str:
    """The learning test's run (conftest.avcorr_run): 96 clips, 22 px objects, the avcorr preset."""
    from glcm.config import avcorr as avcorr_preset
    from glcm.train import train
    avcorr.write_shards(avcorr.make_clips(96, seed=1, obj=22), str(root / "pre"), per_shard=16, annotations=False)
    cfg = avcorr_preset()
    cfg.data.shards, cfg.train.out, cfg.train.steps = str(root / "pre"), str(root / "pre-run"), steps
    train(cfg)
    return str(root / "pre-run" / "checkpoint.pt")


def probe_parser(doc: str, steps_option: str, steps: int, seeds: str) -> argparse.ArgumentParser:
    """The options this bench and bench/attention_pool.py share: the pretrained encoders
    (--checkpoint, or --pretrain-steps of `pretrain`), the probe's steps, --clips and
    --seeds; a bad number is one argparse line and exit 2."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--checkpoint", type=checkpoint_file,
                    help="a pretrained avcorr-preset checkpoint (default: pretrain one here)")
    ap.add_argument("--pretrain-steps", type=positive, default=300)
    ap.add_argument(steps_option, type=positive, default=steps, help="probe training steps")
    ap.add_argument("--clips", type=positive, default=64, help="labelled clips (every 4th held out)")
    ap.add_argument("--seeds", type=seed_list, default=seeds, help="probe seeds (head init, data order), "
                                                                     "comma-separated")
    return ap


@contextmanager
def probe_folder(args: argparse.Namespace) -> Iterator[tuple[Path, str]]:
    """A temporary working folder and the checkpoint to probe: --checkpoint, or a run
    pretrained there for --pretrain-steps."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        yield root, args.checkpoint or pretrain(root, args.pretrain_steps)


def checkpoint_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a file; give a checkpoint.pt, or leave --checkpoint "
                                         "out to pretrain one")
    return os.path.abspath(text)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive whole number")
    return int(text)


def seed_list(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers separated by commas, e.g. 0,1,2")
    return [int(p) for p in parts]


def main() -> None:
    ap = probe_parser(__doc__, "--probe-steps", 40, "0,1,2")
    ap.add_argument("--features", default="global", choices=("global", "local", "both"),
                    help="visual encoders the visual probe reads")
    args = ap.parse_args()
    t0 = time.time()
    with probe_folder(args) as (root, ckpt):
        shards = write_colour_shards(str(root / "probe"), args.clips, seed=5, obj=22)
        for seed in args.seeds:
            results = {}
            for kind, task in TASKS.items():
                for init in ("pretrained", "scratch"):
                    t1 = time.time()
                    found = probe(shards, ckpt if init == "pretrained" else "scratch", task, args.probe_steps,
                                  str(root / f"{seed}-{kind}-{init}"), seed, args.features)
                    results[f"{kind}/{init}"] = round(found["top1"], 3)
                    results[f"{kind}/{init}/s"] = round(time.time() - t1, 1)
            print(json.dumps({"seed": seed, **results}), flush=True)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
