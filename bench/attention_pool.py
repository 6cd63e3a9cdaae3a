"""Attention instead of crops, measured on the correspondence corpus (paper Table 7's
question at toy scale): which colour sounds in an avcorr clip (8 classes, chance 1/8), from
whole frames that also hold two distractor squares. The same GLCM-pretrained encoders
(`avcorr` preset) are probed (frozen encoders, `--mode linear`; the LRW head: per-frame
features, temporal-conv backend) with `--input full-frames --pool mean` (every square
averaged in), with `--pool attention` (the pretrained audio-visual map picks the sounding
square) and with `--input crops` on oracle crops around the sounding square (its box from
the generator: the stand-in for a perfect lip / face detector), at equal steps and seeds.
Figures go to docs/benchmarks.md.

    .venv/bin/python bench/attention_pool.py --checkpoint runs/avcorr/checkpoint.pt
    .venv/bin/python bench/attention_pool.py                  # pretrains first (~3-5 min)
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import cv2
import numpy as np

from avprep.format import FACE_STATUS, LANDMARKS, TRANSFORM, encode_sample, open_sample
from avprep.testing import avcorr
from avprep.testing.downstream import colour_label
from finetune_pretraining import probe_folder, probe_parser   # bench/: the learning test's pretraining run

ARMS = {"full-frames/mean": ["task.input=full-frames", "task.pool=mean"],
        "full-frames/attention": ["task.input=full-frames", "task.pool=attention"],
        "oracle-crops/mean": ["task.input=crops", "task.pool=mean"]}
SETS = ["task.name=lrw", "task.mode=linear", "task.classes=8", "task.dropout=0",
        "task.temporal_width=32", "train.lr=1e-2", "train.warmup_steps=5", "train.batch_size=16", "data.crop=64",
        "data.frames=28", "data.flip_prob=0", "train.log_every=10", "train.checkpoint_every=1000"]


def oracle_crop(clip, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2*side, 2*side, 3) crops centred on the sounding square's box in every frame (edges
    padded with the background level), scaled x2, and their (T, 2, 3) frame->crop transforms."""
    pad = np.pad(clip.frames, ((0, 0), (side, side), (side, side), (0, 0)), constant_values=35)
    crops, transforms = [], []
    for frame, (x0, y0, x1, y1) in zip(pad, clip.boxes):
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        window = frame[cy + side // 2:cy + side // 2 + side, cx + side // 2:cx + side // 2 + side]
        crops.append(cv2.resize(window, (2 * side, 2 * side), interpolation=cv2.INTER_LINEAR))
        transforms.append([[2, 0, -2 * (cx - side // 2)], [0, 2, -2 * (cy - side // 2)]])
    return np.stack(crops), np.asarray(transforms, np.float32)


def labelled(clip, i: int, test_every: int, crop: bool) -> dict:
    """One LRW-shaped sample: label = the sounding colour, split test for every
    `test_every`-th clip; `crop`: the oracle crops (json crop + the crop arrays)."""
    sample = avcorr.clip_sample(clip, f"colour_{i:04d}", f"clip_{i:04d}.mkv")
    opened = open_sample(sample)
    meta = dataclasses.replace(opened.meta, labels=colour_label(clip.colour),
                               split="test" if i % test_every == 0 else "train")
    mel = opened.mel().astype(np.float32)
    if not crop:
        return encode_sample(meta, clip.frames, mel, 90)
    frames, transforms = oracle_crop(clip)
    t, size = len(frames), frames.shape[1]
    meta = dataclasses.replace(meta, crop={"kind": "oracle", "size": size, "num_frames": t})
    arrays = {LANDMARKS: np.zeros((t, 68, 2), np.float32), TRANSFORM: transforms, FACE_STATUS: np.zeros(t, np.uint8)}
    return encode_sample(meta, frames, mel, 90, arrays)


def write_lrw_shaped(out_dir: str, count: int, seed: int, crop: bool, test_every: int = 4, **clip_kw) -> str:
    """avcorr clips as LRW-shaped samples (whole frames, or oracle crops)."""
    import webdataset as wds
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "colours-000000.tar")
    with wds.TarWriter(path) as sink:
        for i, clip in enumerate(avcorr.make_clips(count, seed=seed, obj=22, **clip_kw)):
            sink.write(labelled(clip, i, test_every, crop))
    return path


def probe(shards: str, checkpoint: str, arm: str, steps: int, out: str, seed: int) -> dict:
    """`glcm finetune --preset avcorr --task lrw --mode linear` with the arm's --input / --pool."""
    from glcm.config import load_finetune_config
    from glcm.finetune import finetune
    cfg = load_finetune_config(preset="avcorr", overrides=[
        *SETS, *ARMS[arm], f"task.init={checkpoint}", f"data.shards={shards}", f"train.out={out}",
        f"train.steps={steps}", f"train.seed={seed}", f"data.seed={seed}"])
    return finetune(cfg)["metrics"]


def main() -> None:
    ap = probe_parser(__doc__, "--steps", 60, "0")
    ap.add_argument("--distractors-flash", action="store_true",
                    help="the distractors flash on their own envelopes (only the sound tells which square sounds)")
    args = ap.parse_args()
    t0 = time.time()
    with probe_folder(args) as (root, checkpoint):
        shards = {crop: write_lrw_shaped(str(root / f"probe-{crop}"), args.clips, 5, crop,
                                         distractors_flash=args.distractors_flash) for crop in (False, True)}
        for seed in args.seeds:
            found = {}
            for arm in ARMS:
                t1 = time.time()
                shard = shards[arm.startswith("oracle")]
                m = probe(shard, checkpoint, arm, args.steps, str(root / f"{seed}-{arm.replace('/', '-')}"), seed)
                found[arm], found[f"{arm}/s"] = round(m["top1"], 3), round(time.time() - t1, 1)
            print(json.dumps({"seed": seed, "distractors_flash": args.distractors_flash, **found}), flush=True)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
