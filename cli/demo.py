"""The built-in main job: a small synthetic corpus in the Kinetics and AVSpeech layouts ->
K-AV shards -> verify -> preview -> a short GLCM training run on CPU.

It lives in cli/, above both packages: it drives avprep and glcm, and avprep never imports
glcm (glcm imports only avprep.format and avprep.fsio).

The videos come from avprep.testing.avcorr: one coloured object per clip sounds (its colour
sets the pitch, it lights up while the tone plays) among silent distractors, so the trained
model has something real to learn.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from avprep.config import BuildConfig, ClipConfig, VideoConfig
from avprep.pipeline import build_dataset, format_summary
from avprep.preview import preview
from avprep.recipes import prepare_kav
from avprep.testing import avcorr
from avprep.testing.corpus import make_avspeech_corpus, make_kinetics_corpus
from avprep.tools import verify_shards


def avcorr_clip(rng: np.random.Generator, seconds: float, fps: float, sample_rate: int,
                width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """corpus.ClipFn adapter: a square audio-visual correspondence clip."""
    clip = avcorr.make_clip(rng, seconds=seconds, size=min(width, height), fps=fps, sample_rate=sample_rate)
    return clip.frames, clip.audio


def make_demo_corpus(root: str, videos: int) -> tuple[str, str]:
    kin, avs = os.path.join(root, "kinetics"), os.path.join(root, "avspeech")
    common = dict(clip_fn=avcorr_clip, width=64, height=64)
    if not os.path.exists(os.path.join(kin, "train.csv")):
        make_kinetics_corpus(kin, videos, seed=0, layout="per_label", clip_seconds=5, missing_every=0,
                             csv_name="train.csv", **common)
    if not os.path.exists(os.path.join(avs, "avspeech_train.csv")):
        make_avspeech_corpus(avs, videos, seed=1, whole_downloads=True, clip_seconds=5, missing_every=0, **common)
    return kin, avs


def run_demo(out: str, videos: int = 12, train_steps: int = 300, workers: int = 2, echo=print) -> dict:
    t0 = time.time()
    corpus = os.path.join(out, "corpus")
    kin, avs = make_demo_corpus(corpus, videos)
    echo(f"[1/4] corpus: {videos} Kinetics-layout clips + {videos} AVSpeech-layout downloads in {corpus}")
    items = prepare_kav(kin, avs, per_source=videos, seed=0)
    shards_dir = os.path.join(out, "shards")
    cfg = BuildConfig(video=VideoConfig(short_side=64), clip=ClipConfig(min_frames=32),
                      videos_per_shard=4, shard_prefix="k-av")
    result = build_dataset(items, shards_dir, cfg, workers=workers, root=corpus, recipe="k-av")
    echo("[2/4] build: " + format_summary(result.summary))
    check = verify_shards(shards_dir)
    echo(f"[3/4] verify: {check.checked} samples decoded, {len(check.bad)} bad")
    if not check.ok:
        raise RuntimeError(f"demo shards failed verification: {check.bad[:3]}")
    png = os.path.join(out, "preview.png")
    preview(shards_dir, png)
    echo(f"      preview: {png}")
    report = {"summary": result.summary, "preview": png}
    if train_steps > 0:
        report["train"] = train_demo(shards_dir, os.path.join(out, "run"), train_steps, echo)
    echo(f"done in {time.time() - t0:.0f} s")
    return report


def train_demo(shards_dir: str, run_dir: str, steps: int, echo) -> dict:
    """Train with the `avcorr` preset (the learning test's settings) on the demo's shards. A
    rerun into the same folder resumes the run there (and stops at once if it is done)."""
    from glcm.config import avcorr
    from glcm.train import train
    cfg = avcorr()
    cfg.data.shards, cfg.train.out, cfg.train.steps = shards_dir, run_dir, steps
    resume = os.path.exists(os.path.join(run_dir, "checkpoint.pt"))
    echo(f"[4/4] glcm train --preset avcorr --shards {shards_dir} --out {run_dir} --steps {steps} (CPU)"
         + (" --resume" if resume else ""))
    last = train(cfg, resume=resume)
    first, final = _loss_records(os.path.join(run_dir, "log.jsonl"))
    echo(f"      loss_global {first.get('loss_global', float('nan')):.3f} at step {first.get('step')} -> "
         f"{final.get('loss_global', float('nan')):.3f} at step {final.get('step')}; loss_local "
         f"{first.get('loss_local', float('nan')):.3f} -> {final.get('loss_local', float('nan')):.3f}")
    echo(f"      run folder {run_dir}: {', '.join(sorted(n for n in os.listdir(run_dir) if not n.startswith('.')))}")
    return last


def _loss_records(log_path: str) -> tuple[dict, dict]:
    """The first and the last record of a run's log that carry losses."""
    with open(log_path) as f:
        records = [r for r in map(json.loads, filter(str.strip, f)) if "loss_global" in r]
    return (records[0], records[-1]) if records else ({}, {})
