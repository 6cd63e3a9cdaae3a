"""GLCM trainer: single process or DDP under torchrun (initialised from env vars).

`train(cfg)` runs what the config describes: `data.shards` into the run folder
`train.out` for `train.steps` steps of `train.epoch_batches`-batch epochs. Run folder:
config.json (the whole run config, so `--resume` needs nothing retyped), checkpoint.pt
(atomic; every N steps, at the end and on SIGINT/SIGTERM), log.jsonl (one record per log
interval), tb/ (TensorBoard scalars), curves.png, .lock (held by rank 0 while it runs).
Nothing waits forever: no batch -> NoBatchError; a signal -> stop (see StopFlag).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from avprep.format import expand_shards
from avprep.fsio import OutputError, OutputLock, describe_os_error
from glcm import checkpoint as ckpt
from glcm.config import ConfigError, GLCMConfig, TrainConfig, from_dict, model_differences, validate
from glcm.data import ClipSpec, batches, make_loader, shutdown_loader, total_skipped
from glcm.losses import distributed, glcm_loss
from glcm.model import GLCM, prepare_frames
from glcm.plot import CURVES, plot_curves


def device_kind(name: str) -> str:
    """"cuda" or "cpu" for train.device auto|cpu|cuda: the one place a device is chosen."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but CUDA is not available here; use --device cpu or auto")
    return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if device_kind(name) == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(kind: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the torchrun group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


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


class LoopTrainer:
    """What every training run shares: the model on its device (channels_last_3d for the
    video modules on CUDA, SyncBatchNorm, DDP, torch.compile), Adam over the trainable
    parameters, the LR schedule, bf16 autocast, the step counter and weights-only
    checkpoints. A subclass says what the model is (`build_model`), which of its modules
    see video (`video_modules`) and what one batch costs (`batch_step`)."""

    def __init__(self, cfg: GLCMConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.model = self.build_model().to(device)
        self.channels_last = cfg.train.channels_last and device.type == "cuda"
        if self.channels_last:
            for module in self.video_modules():
                module.to(memory_format=torch.channels_last_3d)
        if distributed() and cfg.train.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.net: nn.Module = self.model
        if distributed():
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.amp = amp_dtype(cfg.train, device)
        self.step = 0

    curves: tuple = (CURVES, "MIL-NCE loss", "GLCM training")     # what curves.png shows

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def video_modules(self) -> list[nn.Module]:
        return []

    def batch_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step on a loader batch; returns detached values to log ("loss" first)."""
        raise NotImplementedError

    def start_step(self) -> None:
        """Training mode and this step's learning rate."""
        self.net.train()
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.train.lr * lr_factor(self.step, self.cfg.train)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()

    def optimise(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Backward, gradient clipping (train.grad_clip), the optimiser step; the step counter."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.requires_grad]
            parts["grad_norm"] = nn.utils.clip_grad_norm_(params, self.cfg.train.grad_clip).detach()
        self.opt.step()
        self.step += 1
        return parts

    def state(self) -> dict:
        return {"format": ckpt.CHECKPOINT_FORMAT, "step": self.step, "config": self.cfg.to_dict(),
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "rng": ckpt.rng_state()}

    def save(self, path: str | Path) -> None:
        ckpt.atomic_save(self.state(), path)

    def load(self, path: str | Path) -> None:
        self.restore(ckpt.load(path), path)

    def restore(self, data: dict, path: str | Path) -> None:
        """Model, optimiser, step and RNG from a training checkpoint's data. A checkpoint of
        another model architecture is refused with one CheckpointError line."""
        if data.get("format") != ckpt.CHECKPOINT_FORMAT:
            raise ckpt.CheckpointError(f"{path} holds one encoder, not a training checkpoint; give a run's checkpoint.pt")
        try:
            theirs = from_dict(data["config"], type(self.cfg)())
        except (KeyError, ConfigError) as exc:
            raise ckpt.CheckpointError(f"{path}: its config cannot be read ({exc})") from None
        diff = model_differences(self.cfg.model, theirs.model)
        if diff:
            raise ckpt.CheckpointError(
                f"{path} was trained with another model ({'; '.join(diff[:3])}); resume with the run's own "
                "model settings (drop the --set/--config that change model.*) or start a new --out")
        ckpt.load_weights(self.model, data["model"], path)
        try:
            self.opt.load_state_dict(data["optimizer"])
        except (ValueError, KeyError) as exc:
            raise ckpt.CheckpointError(f"{path}: its optimiser state does not fit this model ({exc})") from None
        self.step = int(data["step"])
        rng = data["rng"]
        rng["torch"] = rng["torch"].cpu()
        rng["cuda"] = [s.cpu() for s in rng["cuda"]]
        ckpt.set_rng_state(rng)


class Trainer(LoopTrainer):
    """GLCM pretraining: the two MIL-NCE losses on (frames, mel) batches."""

    def build_model(self) -> nn.Module:
        return GLCM(self.cfg.model)

    def video_modules(self) -> list[nn.Module]:
        return [self.model.encoders["global"], self.model.encoders["local"]]

    def batch_step(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.train_step(batch["frames"], batch["mel"])

    def train_step(self, frames: torch.Tensor, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch; returns detached loss parts."""
        self.start_step()
        x = prepare_frames(frames.to(self.device, non_blocking=True), self.channels_last)
        mel = mel.to(self.device, non_blocking=True)
        with self.autocast():
            out = self.net(x, mel)
        loss, parts = glcm_loss(out, self.cfg.loss, self.cfg.model.temperature)
        return self.optimise(loss, parts)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run. `clean`: it came between steps, so the model and the
    optimiser are whole and may be saved; `signum`: the signal (exit status 128 + signum)."""

    def __init__(self, signum: int, clean: bool):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.clean = signum, clean


class StopFlag:
    """SIGINT/SIGTERM for a run, honoured at any point.

    Inside `busy()` (a training step and its checkpoint) the first signal only asks the loop
    to stop after it; a second signal, or the work still running `grace` s + twice the
    longest step so far after the first, raises Interrupted(clean=False) there. Anywhere
    else (starting up, building the model, waiting for a batch) the first signal raises
    Interrupted(clean=True) at once. Handlers are installed only in the main thread."""

    def __init__(self, grace: float = 10.0):
        self.grace, self.longest = grace, 0.0
        self.requested, self.signum, self._busy = False, None, False
        self._old: dict = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._old:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGALRM:                       # the grace period ran out
            raise Interrupted(self.signum, clean=False)
        again = self.requested
        self.requested, self.signum = True, self.signum or signum
        if not self._busy:
            raise Interrupted(signum, clean=True)
        if again:
            raise Interrupted(signum, clean=False)
        signal.setitimer(signal.ITIMER_REAL, self.grace + 2 * self.longest)

    @contextlib.contextmanager
    def busy(self):
        """Work that a signal lets finish (within the grace period)."""
        self._busy, t0 = True, time.perf_counter()
        try:
            yield
        finally:
            if self._old:
                signal.setitimer(signal.ITIMER_REAL, 0)
            self._busy = False
            self.longest = max(self.longest, time.perf_counter() - t0)

    def agreed(self, device: torch.device) -> bool:
        """True on every rank as soon as any rank got a signal (keeps DDP in step)."""
        if not distributed():
            return self.requested
        flag = torch.tensor([int(self.requested)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class RunLog:
    """JSONL + TensorBoard + PNG curves, written by rank 0 only."""

    def __init__(self, out: Path, enabled: bool, curves: tuple[str, ...] = CURVES, ylabel: str = "MIL-NCE loss",
                 title: str = "GLCM training"):
        self.out, self.enabled, self.tb = out, enabled, None
        self.curves, self.ylabel, self.title = curves, ylabel, title
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        path = self.out / "log.jsonl"
        try:
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise OutputError(describe_os_error(exc, path)) from None
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                self.tb.add_scalar(f"train/{key}", value, record["step"])

    def plot(self) -> None:
        if self.enabled and (self.out / "log.jsonl").exists():
            plot_curves(self.out / "log.jsonl", self.out / "curves.png", self.title, self.curves, self.ylabel)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def resolve_shards(spec: str) -> list[str]:
    """data.shards -> shard URLs, before anything is built. Names from globs, folders and
    brace patterns are local files; a typed pipe:CMD or URL is kept (it runs CMD)."""
    if not spec:
        raise ConfigError("no shards: give --shards (or data.shards in the config)")
    try:
        return expand_shards(spec, allow_commands=True)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).strip("'\"")) from None


def check_start(path: Path, resume: bool) -> None:
    """--resume needs a checkpoint; a new run must not overwrite one."""
    if resume and not path.exists():
        raise ConfigError(f"--resume: no checkpoint at {path}; drop --resume to start a new run there")
    if not resume and path.exists():
        raise ConfigError(f"{path.parent} already holds a checkpoint; add --resume to continue that run "
                          "or choose another --out")


@dataclass
class Job:
    """What differs between kinds of run (pretraining, finetuning); `run_job` does the rest.
    `prepare` checks everything it can before a lock or a model exists (raising ConfigError);
    `trainer` builds the trainer on a device; `loader` the training batches for it; `finish`
    (on every rank, only when all train.steps are done) evaluates and returns the record to give back."""
    command: str
    prepare: Callable[[], None]
    trainer: Callable[[torch.device], LoopTrainer]
    loader: Callable[[LoopTrainer], Any]
    finish: Callable[[LoopTrainer, dict], dict] | None = None


def train(cfg: GLCMConfig, resume: bool = False) -> dict:
    """Train the run `cfg` describes until train.steps or a signal; return the last logged
    record. ConfigError / CheckpointError / fsio.OutputError: the user's to fix (one line);
    NoBatchError: no batch can be made from the shards; Interrupted: stopped by a signal."""
    urls: list[str] = []

    def prepare() -> None:
        validate(cfg)
        urls.extend(resolve_shards(cfg.data.shards))

    def loader(trainer: LoopTrainer):
        spec = ClipSpec.from_config(cfg.data, cfg.model.mel_per_frame, cfg.model.n_mels)
        return make_loader(urls, cfg.data, cfg.train.batch_size, spec, cfg.train.epoch_batches,
                           seed_offset=trainer.step, pin_memory=trainer.device.type == "cuda")

    return run_job(cfg, resume, Job("glcm train", prepare, lambda device: Trainer(cfg, device), loader))


def run_job(cfg: GLCMConfig, resume: bool, job: Job) -> dict:
    """The one way a run goes: checks, the output lock (rank 0), the checkpoint rule
    (--resume needs one, a new run must not overwrite one), the trainer (restored on
    --resume), config.json, the logs, the loop, and the job's `finish` (every rank)."""
    with StopFlag() as stop:
        job.prepare()
        if not cfg.train.out:
            raise ConfigError("no run folder: give --out (or train.out in the config)")
        out = Path(cfg.train.out)
        rank, world, local_rank = setup_distributed(device_kind(cfg.train.device))
        lock = OutputLock(out, job.command).acquire() if rank == 0 else None      # creates OUT
        loader = log = None
        try:
            path = out / "checkpoint.pt"
            check_start(path, resume)
            trainer = job.trainer(pick_device(cfg.train.device, local_rank))
            if resume:
                trainer.load(path)
            if rank == 0:
                cfg.save(out / "config.json")
            log = RunLog(out, rank == 0, *trainer.curves)
            loader = job.loader(trainer)
            last = run_loop(trainer, loader, log, stop, path, rank, world)
            shutdown_loader(loader)
            loader = None
            if job.finish is not None and not last.get("interrupted"):
                last = job.finish(trainer, last)      # a signal now stops it at once (the checkpoint is saved)
            return last
        finally:
            if loader is not None:
                shutdown_loader(loader)
            if log is not None:
                log.close()
            if lock is not None:
                lock.release()
            if dist.is_initialized():
                dist.destroy_process_group()


def run_loop(trainer: LoopTrainer, loader, log: RunLog, stop: StopFlag, path: Path, rank: int, world: int) -> dict:
    """Steps until train.steps or a signal; a checkpoint every checkpoint_every steps and
    at the end (also when stopped between steps)."""
    tc = trainer.cfg.train
    bar = tqdm(total=tc.steps, initial=trainer.step, disable=rank != 0, dynamic_ncols=True)
    skipped: dict[int, dict[str, int]] = {}
    last: dict = {"step": trainer.step}
    saved, stopping = trainer.step, False
    t0, n0 = time.perf_counter(), trainer.step
    try:
        while trainer.step < tc.steps and not stopping:
            for batch in batches(loader):
                skipped[batch["worker"]] = batch["skipped"]
                with stop.busy():
                    parts = trainer.batch_step(batch)
                    bar.update(1)
                done, stopping = trainer.step >= tc.steps, stop.agreed(trainer.device)
                with stop.busy():
                    if trainer.step % tc.log_every == 0 or done or stopping:
                        rate = (trainer.step - n0) * tc.batch_size * world / (time.perf_counter() - t0)
                        last = {"step": trainer.step, **{k: float(v) for k, v in parts.items()},
                                "lr": trainer.opt.param_groups[0]["lr"], "clips_per_s": rate,
                                "skipped": sum(total_skipped(skipped).values()), "time": time.time()}
                        bar.set_postfix(loss=f"{last['loss']:.3f}", clips_s=f"{rate:.1f}")
                        log.write(last)
                        t0, n0 = time.perf_counter(), trainer.step
                    if trainer.step % tc.plot_every == 0:
                        log.plot()
                    if rank == 0 and trainer.step % tc.checkpoint_every == 0:
                        trainer.save(path)
                        saved = trainer.step
                if done or stopping:
                    break
    except Interrupted as exc:
        if not exc.clean:
            raise
    finally:
        bar.close()
    with stop.busy():
        if rank == 0 and trainer.step > saved:
            trainer.save(path)
        log.plot()
    last["skipped_by_reason"] = total_skipped(skipped)
    last["interrupted"] = stop.requested or stopping
    if stop.signum:
        last["signal"] = signal.Signals(stop.signum).name
    return last
