"""Does GLCM pretraining help downstream? A synthetic task from the correspondence corpus
(avprep.testing.avcorr): classify which colour sounds (8 classes). The audio task reads the
tone (the pitch names the colour); the visual task must find the object that flashes with
the sound. The same `avcorr`-preset architecture is linear-probed on (a) the encoders of a
GLCM run pretrained on other avcorr clips and (b) random encoders ("scratch"), at equal
steps, with `glcm.finetune` (the CLI's code path). Figures go to docs/glcm.md.

    .venv/bin/python bench/finetune_pretraining.py --pretrain-steps 300 --probe-steps 60
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import webdataset as wds

from avprep.testing import avcorr
from glcm.config import load_config, load_finetune_config
from glcm.finetune import finetune
from glcm.train import train

COLOURS = list(avcorr.PALETTE)


def labelled_shards(out: Path, count: int, seed: int) -> str:
    """avcorr clips as labelled samples: label = the sounding colour; the first quarter is
    the test part (split 1 test, fold 1), the rest trains (split 1 train, fold 2)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "probe-000000.tar"
    with wds.TarWriter(str(path)) as sink:
        for i, clip in enumerate(avcorr.make_clips(count, seed=seed)):
            sample = avcorr.clip_sample(clip, f"probe_{i:04d}", f"clip_{i:04d}.mkv")
            meta = json.loads(sample["json"])
            test = i < count // 4
            meta["labels"] = {"label": clip.colour, "label_index": COLOURS.index(clip.colour)}
            meta["extra"] = {"splits": {"1": "test" if test else "train"}, "fold": 1 if test else 2}
            sink.write({**sample, "json": json.dumps(meta, sort_keys=True).encode()})
    return str(path)


def probe(root: Path, shards: str, init: str, task: str, steps: int, name: str) -> float:
    cfg = load_finetune_config(preset="avcorr", overrides=[
        f"task.name={task}", f"task.init={init}", "task.mode=linear", "task.classes=8", "task.clips=3",
        f"data.shards={shards}", f"train.out={root / name}", f"train.steps={steps}", "train.warmup_steps=5",
        "train.checkpoint_every=100000", "train.lr=1e-2", "task.dropout=0.0"])
    return finetune(cfg)["metrics"]["top1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--probe-steps", type=int, default=60)
    ap.add_argument("--clips", type=int, default=96, help="labelled clips (a quarter test)")
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        avcorr.write_shards(avcorr.make_clips(96, seed=1), str(root / "pre"), per_shard=16, annotations=False)
        train(load_config(preset="avcorr", overrides=[f"data.shards={root / 'pre'}", f"train.out={root / 'pre-run'}",
                                                      f"train.steps={args.pretrain_steps}"]))
        shards = labelled_shards(root / "probe", args.clips, seed=5)
        results = {}
        for task in ("esc50", "ucf101"):
            for init in ("pretrained", "scratch"):
                path = str(root / "pre-run" / "checkpoint.pt") if init == "pretrained" else "scratch"
                results[f"{task}/{init}"] = probe(root, shards, path, task, args.probe_steps, f"{task}-{init}")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
