"""The built-in main job: a small synthetic corpus in the Kinetics and AVSpeech layouts ->
K-AV shards -> verify -> preview -> a short GLCM training run on CPU -> a downstream task:
a generated ESC-50-layout corpus -> `avprep build esc50` -> `glcm finetune` (linear probe of
the pretrained encoders and of random ones) -> `glcm report` -> "pretrained X% vs scratch Y%".

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
from pathlib import Path

import numpy as np

from avprep import fsio
from avprep.config import BuildConfig, ClipConfig, ConfigError, VideoConfig
from avprep.pipeline import build_dataset, format_summary
from avprep.preview import preview
from avprep.recipes import RECIPES, build_recipe, prepare_kav
from avprep.testing import avcorr
from avprep.testing.corpus import make_avspeech_corpus, make_kinetics_corpus
from avprep.testing.downstream import make_colour_esc50_corpus
from avprep.tools import verify_shards


def avcorr_clip(rng: np.random.Generator, seconds: float, fps: float, sample_rate: int,
                width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """corpus.ClipFn adapter: a square audio-visual correspondence clip."""
    clip = avcorr.make_clip(rng, seconds=seconds, size=min(width, height), fps=fps, sample_rate=sample_rate)
    return clip.frames, clip.audio


# A generated corpus records what it was made with in <corpus>/demo.json; a rerun into the
# same --out reuses it only when that matches (its shards and runs were made from it).
MADE_WITH = "demo.json"
OPTIONS = {"videos": "--videos"}      # recorded settings a user sets, as the option spells them


def demo_corpus_settings(videos: int) -> dict:
    return {"videos": videos, "kinetics_seed": 0, "avspeech_seed": 1, "clip_seconds": 5, "size": 64}


def downstream_corpus_settings(clips: int) -> dict:
    return {"clips": clips, "seed": 7}


def check_made_with(folder: str, settings: dict, made: str) -> None:
    """ConfigError (one line) when `folder` holds a corpus made with other `settings`, or an
    older demo's corpus (its `made` file but no record); nothing there is fine."""
    record = os.path.join(folder, MADE_WITH)
    if not os.path.exists(record):
        if os.path.exists(made):
            raise ConfigError(f"{folder} holds a corpus of an older demo (no {MADE_WITH} says what it was made "
                              "with); remove that --out folder or choose another --out")
        return
    old = fsio.read_json(record)
    if old != settings:
        was = _settings_text(old, settings) if isinstance(old, dict) else f"an unreadable {MADE_WITH}"
        raise ConfigError(f"{folder} was generated with {was}, not {_settings_text(settings, old)}: rerun "
                          "with the same values, or choose another --out")


def _settings_text(settings: dict, other) -> str:
    """The settings of `settings` that differ from `other`, as the user types them."""
    other = other if isinstance(other, dict) else {}
    keys = [k for k in settings if settings[k] != other.get(k)] or list(settings)
    return ", ".join(f"{OPTIONS[k]} {settings[k]}" if k in OPTIONS else f"{k}={settings[k]}" for k in keys)


def make_once(folder: str, settings: dict, made: str, make) -> None:
    """Run `make()` unless `folder` already holds its corpus (the `made` file) made with
    `settings`; the record is written first, so an interrupted generation is redone."""
    check_made_with(folder, settings, made)
    if not os.path.exists(made):
        fsio.make_output_dir(folder)
        fsio.atomic_write_json(os.path.join(folder, MADE_WITH), settings)
        make()


def make_demo_corpus(root: str, videos: int) -> tuple[str, str]:
    kin, avs = os.path.join(root, "kinetics"), os.path.join(root, "avspeech")
    s = demo_corpus_settings(videos)
    common = dict(clip_fn=avcorr_clip, width=s["size"], height=s["size"], clip_seconds=s["clip_seconds"],
                  missing_every=0)
    make_once(root, s, os.path.join(kin, "train.csv"), lambda: make_kinetics_corpus(
        kin, videos, seed=s["kinetics_seed"], layout="per_label", csv_name="train.csv", **common))
    make_once(root, s, os.path.join(avs, "avspeech_train.csv"), lambda: make_avspeech_corpus(
        avs, videos, seed=s["avspeech_seed"], whole_downloads=True, **common))
    return kin, avs


def run_demo(out: str, videos: int = 12, train_steps: int = 300, workers: int = 2, echo=print,
             probe_steps: int = 60, probe_clips: int = 60) -> dict:
    t0 = time.time()
    fsio.make_output_dir(out)        # a file or an unwritable place: one line, before any work
    corpus = os.path.join(out, "corpus")
    check_made_with(corpus, demo_corpus_settings(videos), os.path.join(corpus, "kinetics", "train.csv"))
    if train_steps > 0 and probe_steps > 0:
        check_made_with(*_esc50_corpus(os.path.join(out, "downstream"), probe_clips))
    kin, avs = make_demo_corpus(corpus, videos)
    echo(f"[1/5] corpus: {videos} Kinetics-layout clips + {videos} AVSpeech-layout downloads in {corpus}")
    items = prepare_kav(kin, avs, per_source=videos, seed=0)
    shards_dir = os.path.join(out, "shards")
    cfg = BuildConfig(video=VideoConfig(short_side=64), clip=ClipConfig(min_frames=32),
                      videos_per_shard=4, shard_prefix="k-av")
    result = build_dataset(items, shards_dir, cfg, workers=workers, root=corpus, recipe="k-av")
    echo("[2/5] build: " + format_summary(result.summary).replace("\n", "\n      "))
    check = verify_shards(shards_dir)
    echo(f"[3/5] verify: {check.checked} samples decoded, {len(check.bad)} bad")
    if not check.ok:
        raise RuntimeError(f"demo shards failed verification: {check.bad[:3]}")
    png = os.path.join(out, "preview.png")
    preview(shards_dir, png)
    echo(f"      preview: {png}")
    report = {"summary": result.summary, "preview": png}
    if train_steps > 0:
        report["train"] = train_demo(shards_dir, os.path.join(out, "run"), train_steps, echo)
        if probe_steps > 0:
            report["downstream"] = downstream_demo(os.path.join(out, "downstream"),
                                                   os.path.join(out, "run", "checkpoint.pt"),
                                                   probe_clips, probe_steps, workers, echo)
    echo(f"done in {time.time() - t0:.0f} s")
    return report


def train_demo(shards_dir: str, run_dir: str, steps: int, echo) -> dict:
    """Train with the `avcorr` preset (the learning test's settings) on the demo's shards. A
    rerun into the same folder resumes the run there (and stops at once if it is done)."""
    from glcm.config import avcorr
    from glcm.train import train
    cfg = avcorr()
    cfg.data.shards, cfg.train.out, cfg.train.steps = shards_dir, run_dir, steps
    cfg.train.threads = min(2, _cores())     # the loader worker is light here: a second core goes to the model
    resume = os.path.exists(os.path.join(run_dir, "checkpoint.pt"))
    echo(f"[4/5] glcm train --preset avcorr --shards {shards_dir} --out {run_dir} --steps {steps} "
         f"--set train.threads={cfg.train.threads} (CPU)"
         + (" --resume" if resume else ""))
    last = train(cfg, resume=resume)
    first, final = _loss_records(os.path.join(run_dir, "log.jsonl"))
    echo(f"      loss_global {first.get('loss_global', float('nan')):.3f} at step {first.get('step')} -> "
         f"{final.get('loss_global', float('nan')):.3f} at step {final.get('step')}; loss_local "
         f"{first.get('loss_local', float('nan')):.3f} -> {final.get('loss_local', float('nan')):.3f}")
    echo(f"      run folder {run_dir}: {', '.join(sorted(n for n in os.listdir(run_dir) if not n.startswith('.')))}")
    return last


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# The linear probe of the demo, tests/test_glcm_pretraining_helps.py and
# bench/finetune_pretraining.py ("which colour sounds", 8 classes): frozen encoders, a linear
# head without dropout, lr 1e-2 after 5 warm-up steps, 3 test clips per video.
PROBE_SETS = ("task.mode=linear", "task.classes=8", "task.clips=3", "task.dropout=0.0", "train.lr=1e-2",
              "train.warmup_steps=5", "train.checkpoint_every=100000")


def probe(shards: str, init: str, task: str, steps: int, out: str, seed: int = 0, features: str = "both") -> dict:
    """`glcm finetune --preset avcorr --task TASK --init INIT --mode linear ...` (the CLI's
    config and code path) on the test split 1 / fold 1; returns its metrics.json.
    `features`: the visual encoders a video task reads (global, local, both)."""
    from glcm.config import load_finetune_config
    from glcm.finetune import finetune
    cfg = load_finetune_config(preset="avcorr", overrides=[
        *PROBE_SETS, f"task.name={task}", f"task.init={init}", f"data.shards={shards}", f"train.out={out}",
        f"train.steps={steps}", f"train.seed={seed}", f"data.seed={seed}", f"task.features={features}"])
    resume = os.path.exists(os.path.join(out, "checkpoint.pt"))     # a rerun of the demo re-scores it
    return finetune(cfg, resume)["metrics"]


def downstream_demo(out: str, checkpoint: str, clips: int, steps: int, workers: int, echo) -> dict:
    """Which colour sounds, from the sound alone: `clips` avcorr sound tracks as an ESC-50
    corpus -> `avprep build esc50` -> a linear probe (`glcm finetune --task esc50 --fold 1
    --mode linear`) of the pretrained audio encoder and of a random one at equal steps ->
    `glcm report`. A rerun into the same folder reuses the corpus and shards and re-scores."""
    from glcm.report import write_report
    corpus_dir, settings, made = _esc50_corpus(out, clips)
    make_once(corpus_dir, settings, made, lambda: make_colour_esc50_corpus(corpus_dir, clips, seed=settings["seed"]))
    root, shards = os.path.join(corpus_dir, "ESC-50"), os.path.join(out, "shards")
    echo(f"[5/5] downstream: avcorr sounds in the ESC-50 layout in {root} (label: the sounding colour, 8 classes)")
    done = build_recipe(RECIPES["esc50"], {"root": root}, shards, workers=workers, progress=False)
    echo("      avprep build esc50: " + format_summary(done[0].result.summary).replace("\n", "\n      "))
    found = {}
    for init in ("pretrained", "scratch"):
        run = os.path.join(out, f"esc50-{init}")
        echo(f"      glcm finetune --task esc50 --fold 1 --mode linear --init {init} --steps {steps} --out {run}")
        found[init] = probe(shards, checkpoint if init == "pretrained" else "scratch", "esc50", steps, run)
    report = os.path.join(out, "report.md")
    write_report([os.path.join(out, f"esc50-{init}") for init in found], Path(report))
    pre, scratch = (100 * found[k]["top1"] for k in ("pretrained", "scratch"))
    echo(f"      pretrained {pre:.1f}% vs scratch {scratch:.1f}% (linear probe, {found['pretrained']['videos']} "
         f"held-out sounds, chance {100 / 8:.1f}%); report {report}")
    return {"pretrained": found["pretrained"]["top1"], "scratch": found["scratch"]["top1"], "report": report}


def _esc50_corpus(out: str, clips: int) -> tuple[str, dict, str]:
    """The downstream corpus folder, its settings and the file that says it is complete."""
    corpus_dir = os.path.join(out, "corpus")
    return corpus_dir, downstream_corpus_settings(clips), os.path.join(corpus_dir, "ESC-50", "meta", "esc50.csv")


def _loss_records(log_path: str) -> tuple[dict, dict]:
    """The first and the last record of a run's log that carry losses."""
    with open(log_path) as f:
        records = [r for r in map(json.loads, filter(str.strip, f)) if "loss_global" in r]
    return (records[0], records[-1]) if records else ({}, {})
