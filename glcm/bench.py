"""Throughput figures: loader clips/s per worker, model training clips/s per device
(pretraining, or a finetuning task's head and encoders).

Both return numbers; nothing here asserts a speed. `glcm bench` (cli/glcm_cli.py) makes
synthetic shards when none are given (glcm itself imports no avprep test helpers).
"""
from __future__ import annotations

import copy
import time

import torch

from glcm.config import TASK_DEFAULTS, TASKS, GLCMConfig, apply_overrides, load_finetune_config
from glcm.data import ClipSpec, make_dataset
from glcm.train import Trainer


def loader_rate(shards: str | list[str], cfg: GLCMConfig, batches: int = 20, warmup: int = 2) -> float:
    """Decoded + augmented clips/s of ONE loader process (what each DataLoader worker gives)."""
    spec = ClipSpec.from_config(cfg.data, cfg.model.mel_per_frame, cfg.model.n_mels)
    ds = make_dataset(shards, cfg.data, cfg.train.batch_size, spec, epoch_batches=batches + warmup)
    n, t0 = 0, 0.0
    for i, batch in enumerate(ds):
        if i == warmup:
            t0 = time.perf_counter()
        elif i > warmup:
            n += batch["frames"].shape[0]
    return n / (time.perf_counter() - t0)


def model_rate(cfg: GLCMConfig, device: torch.device, steps: int = 10, warmup: int = 3) -> float:
    """Training clips/s (forward, both losses, backward, Adam) on random clips of the right shape."""
    trainer = Trainer(cfg, device)
    b, t, c = cfg.train.batch_size, cfg.data.frames, cfg.data.crop
    frames = torch.randint(0, 256, (b, t, c, c, 3), dtype=torch.uint8, device=device)
    mel = torch.randn(b, cfg.model.n_mels, t * cfg.model.mel_per_frame, device=device) * 20 - 40
    for _ in range(warmup):
        trainer.train_step(frames, mel)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(frames, mel)
    sync()
    return steps * b / (time.perf_counter() - t0)


def finetune_rate(cfg: GLCMConfig, task: str, device: torch.device, steps: int = 10, warmup: int = 3) -> tuple[float, int]:
    """Finetuning clips/s (full mode: encoders + head, cross-entropy, backward, Adam) of `task`
    on random clips of the right shape, with the architecture and settings of `cfg` and the
    task's defaults; returns (clips/s, frames per clip)."""
    from glcm.finetune import FinetuneTrainer
    ft = load_finetune_config(overrides=[f"task.name={task}"])
    ft.model, ft.data, ft.train = copy.deepcopy(cfg.model), copy.deepcopy(cfg.data), copy.deepcopy(cfg.train)
    apply_overrides(ft, TASK_DEFAULTS.get(task, []))          # e.g. LRW's 28 frames
    trainer = FinetuneTrainer(ft, device)
    b, t, c = ft.train.batch_size, ft.data.frames, ft.data.crop
    batch = {"label": torch.randint(0, TASKS[task].classes, (b,), device=device)}
    if TASKS[task].modality == "audio":
        batch["mel"] = torch.randn(b, ft.model.n_mels, t * ft.model.mel_per_frame, device=device) * 20 - 40
    else:
        batch["frames"] = torch.randint(0, 256, (b, t, c, c, 3), dtype=torch.uint8, device=device)
    if ft.task.boundary:
        batch["boundary"] = torch.ones(b, t, device=device)
    return steps_rate(trainer, batch, b, device, steps, warmup), t


def steps_rate(trainer, batch: dict, clips: int, device: torch.device, steps: int, warmup: int) -> float:
    """Clips/s of `trainer.batch_step(batch)` (a whole training step on `clips` clips) after
    `warmup` steps."""
    for _ in range(warmup):
        trainer.batch_step(batch)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.batch_step(batch)
    sync()
    return steps * clips / (time.perf_counter() - t0)
