"""GLCM trainer: single process or DDP under torchrun (initialised from env vars).

Run folder: config.json, checkpoint.pt (atomic; every N steps and on SIGINT/SIGTERM),
log.jsonl (one record per log interval), tb/ (TensorBoard scalars), curves.png.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from glcm import checkpoint as ckpt
from glcm.config import GLCMConfig, TrainConfig
from glcm.data import ClipSpec, make_loader, total_skipped
from glcm.losses import distributed, glcm_loss
from glcm.model import GLCM, prepare_frames
from glcm.plot import plot_curves


def setup_distributed(device_kind: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the torchrun group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but CUDA is not available")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to min_lr_ratio (or constant)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


class Trainer:
    """Model, optimiser and step counter, with one-step training and checkpointing."""

    def __init__(self, cfg: GLCMConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.model = GLCM(cfg.model).to(device)
        self.channels_last = cfg.train.channels_last and device.type == "cuda"
        if self.channels_last:
            for name in ("global", "local"):
                self.model.encoders[name].to(memory_format=torch.channels_last_3d)
        if distributed() and cfg.train.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.net: nn.Module = self.model
        if distributed():
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.amp = amp_dtype(cfg.train, device)
        self.step = 0

    def train_step(self, frames: torch.Tensor, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch; returns detached loss parts."""
        self.net.train()
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.train.lr * lr_factor(self.step, self.cfg.train)
        x = prepare_frames(frames.to(self.device, non_blocking=True), self.channels_last)
        mel = mel.to(self.device, non_blocking=True)
        autocast = torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()
        with autocast:
            out = self.net(x, mel)
        loss, parts = glcm_loss(out, self.cfg.loss, self.cfg.model.temperature)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip > 0:
            parts["grad_norm"] = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip).detach()
        self.opt.step()
        self.step += 1
        return parts

    def state(self) -> dict:
        return {"format": ckpt.CHECKPOINT_FORMAT, "step": self.step, "config": self.cfg.to_dict(),
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "rng": ckpt.rng_state()}

    def save(self, path: str | Path) -> None:
        ckpt.atomic_save(self.state(), path)

    def load(self, path: str | Path) -> None:
        data = ckpt.load(path, map_location=self.device)
        if data.get("format") != ckpt.CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a GLCM training checkpoint")
        self.model.load_state_dict(data["model"])
        self.opt.load_state_dict(data["optimizer"])
        self.step = int(data["step"])
        rng = data["rng"]
        rng["torch"] = rng["torch"].cpu()
        rng["cuda"] = [s.cpu() for s in rng["cuda"]]
        ckpt.set_rng_state(rng)


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop saves a checkpoint and leaves at the next step."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def agreed(self, device: torch.device) -> bool:
        """True on every rank as soon as any rank got a signal (keeps DDP in step)."""
        if not distributed():
            return self.requested
        flag = torch.tensor([int(self.requested)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class RunLog:
    """JSONL + TensorBoard + PNG curves, written by rank 0 only."""

    def __init__(self, out: Path, enabled: bool):
        self.out, self.enabled, self.tb = out, enabled, None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                self.tb.add_scalar(f"train/{key}", value, record["step"])

    def plot(self) -> None:
        if self.enabled and (self.out / "log.jsonl").exists():
            plot_curves(self.out / "log.jsonl", self.out / "curves.png")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def train(cfg: GLCMConfig, shards: str, out_dir: str | Path, resume: bool = False,
          epoch_batches: int = 1000) -> dict:
    """Train until cfg.train.steps (or a signal); return the last logged record."""
    out = Path(out_dir)
    device_kind = cfg.train.device if cfg.train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world, local_rank = setup_distributed(device_kind)
    device = pick_device(cfg.train.device, local_rank)
    trainer = Trainer(cfg, device)
    path = out / "checkpoint.pt"
    if resume:
        if not path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        trainer.load(path)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
    log = RunLog(out, rank == 0)
    spec = ClipSpec.from_config(cfg.data, cfg.model.mel_per_frame, cfg.model.n_mels)
    loader = make_loader(shards, cfg.data, cfg.train.batch_size, spec, epoch_batches,
                         seed_offset=trainer.step, pin_memory=device.type == "cuda")
    try:
        with StopFlag() as stop:
            last = run_loop(trainer, loader, log, stop, path, rank, world)
    finally:
        log.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    return last


def run_loop(trainer: Trainer, loader, log: RunLog, stop: StopFlag, path: Path, rank: int, world: int) -> dict:
    tc = trainer.cfg.train
    bar = tqdm(total=tc.steps, initial=trainer.step, disable=rank != 0, dynamic_ncols=True)
    skipped: dict[int, dict[str, int]] = {}
    last: dict = {"step": trainer.step}
    t0, n0 = time.perf_counter(), trainer.step
    interrupted = False
    while trainer.step < tc.steps and not interrupted:
        for batch in loader:
            skipped[batch["worker"]] = batch["skipped"]
            parts = trainer.train_step(batch["frames"], batch["mel"])
            bar.update(1)
            done = trainer.step >= tc.steps
            interrupted = stop.agreed(trainer.device)
            if trainer.step % tc.log_every == 0 or done or interrupted:
                rate = (trainer.step - n0) * tc.batch_size * world / (time.perf_counter() - t0)
                last = {"step": trainer.step, **{k: float(v) for k, v in parts.items()},
                        "lr": trainer.opt.param_groups[0]["lr"], "clips_per_s": rate,
                        "skipped": sum(total_skipped(skipped).values()), "time": time.time()}
                bar.set_postfix(loss=f"{last['loss']:.3f}", clips_s=f"{rate:.1f}")
                log.write(last)
                t0, n0 = time.perf_counter(), trainer.step
            if trainer.step % tc.plot_every == 0:
                log.plot()
            if rank == 0 and (trainer.step % tc.checkpoint_every == 0 or done or interrupted):
                trainer.save(path)
            if done or interrupted:
                break
    bar.close()
    log.plot()
    last["skipped_by_reason"] = total_skipped(skipped)
    last["interrupted"] = stop.requested
    return last
