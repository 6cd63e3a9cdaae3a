"""Typed configuration for GLCM pretraining.

A run is described by one `GLCMConfig` (model, loss, data, train). It is built from the
defaults, optionally a preset, then a JSON file, then `section.field=value` overrides
(the CLI's `--set`), in that order. Unknown keys and badly typed values raise
`ConfigError` with the offending key.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


@dataclass
class ModelConfig:
    width: int = 64                 # base channels of the global visual ResNet (64 = R3D-18)
    local_width: int = 64           # base channels of the local visual ResNet (authors: 8)
    audio_width: int = 64           # base channels of the 1-D audio ResNet
    blocks: tuple[int, ...] = (2, 2, 2, 2)   # BasicBlocks per stage (ResNet-18)
    n_mels: int = 80
    mel_per_frame: int = 10         # mel columns per video frame (k in docs/format.md)
    stem_kt: int = 3                # temporal kernel of the visual stems (never strided in time)
    output_stride: int = 8          # spatial stride of the visual grids: 4, 8, 16 or 32
    global_stride: int = 4          # the global path takes every n-th frame (32 -> 8)
    audio_steps_per_frame: int = 3  # M: audio steps per visual step (paper: window of 3)
    audio_layer_strides: tuple[int, ...] = (1, 2, 1, 1)  # temporal strides of the audio stages
    global_dim: int = 128           # global projection size (authors: 512)
    local_dim: int = 128            # local projection size (authors: 64)
    l2_norm: bool = True            # L2-normalise projections (authors: False)
    temperature: float = 0.07       # scores are dot / temperature (authors: 1.0)
    attention_pool: bool = True     # False: plain spatial average pooling of the local path
    detach_attention: bool = False  # stop gradients from the local loss into the attention map


@dataclass
class LossConfig:
    direction: str = "joint"        # joint (HowTo100M reference), symmetric, or anchor
    gather: bool = True             # gather negatives across DDP ranks (with gradients)
    global_weight: float = 1.0
    local_weight: float = 1.0


@dataclass
class DataConfig:
    frames: int = 32                # clip length in frames (local path)
    crop: int = 112                 # random square crop side (128 with output_stride 8 -> 16x16)
    resize_short: int = 0           # resize frames so the short side is this (0: as stored)
    flip_prob: float = 0.5
    grey_prob: float = 0.2
    jitter: bool = True             # random window start (False: always the first frames)
    shuffle_buffer: int = 1000      # samples, mixed across shards
    initial_buffer: int = 100
    workers: int = 4                # DataLoader worker processes per rank
    resample: bool = True           # ResampledShards (training); False: each shard once, split by node/worker
    seed: int = 0


@dataclass
class TrainConfig:
    steps: int = 100000
    batch_size: int = 32            # per rank
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 500
    schedule: str = "cosine"        # cosine or constant (after warm-up)
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0          # max gradient norm (0: off)
    precision: str = "auto"         # auto (bf16 on CUDA, fp32 on CPU), bf16, fp32
    channels_last: bool = True      # channels_last_3d on CUDA
    compile: bool = False           # torch.compile the model
    sync_bn: bool = False           # SyncBatchNorm under DDP
    checkpoint_every: int = 1000
    log_every: int = 10
    plot_every: int = 200
    seed: int = 0
    device: str = "auto"            # auto, cpu, cuda
    threads: int = 0                # torch CPU threads in the training process (0: torch default)


@dataclass
class GLCMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# Presets: "paper" follows the text (two R3D-18s, 16x16 grid from a 128 crop at output
# stride 8, window of 3; the text does not say whether embeddings are normalised, so the
# common L2 + temperature 0.07 is used). "authors" follows their released code (no L2,
# tau = 1, 512-d / 64-d heads, 7x7 grid, local path at 1/8 width, no augmentation or jitter).
# "tiny" is for CPU tests and the synthetic corpus.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"model.output_stride": 8, "data.crop": 128},
    "authors": {"model.output_stride": 16, "model.local_width": 8, "model.stem_kt": 1,
                "model.global_dim": 512, "model.local_dim": 64, "model.l2_norm": False,
                "model.temperature": 1.0, "model.global_stride": 8, "data.crop": 112,
                "data.jitter": False, "data.flip_prob": 0.0, "data.grey_prob": 0.0,
                "train.lr": 1e-4, "train.warmup_steps": 0},
    "tiny": {"model.width": 8, "model.local_width": 8, "model.audio_width": 16,
             "model.blocks": [1, 1, 1, 1], "model.global_dim": 32, "model.local_dim": 32,
             "model.output_stride": 8, "data.crop": 48, "data.shuffle_buffer": 200,
             "data.initial_buffer": 50, "data.workers": 1, "train.batch_size": 16,
             "train.warmup_steps": 20, "train.grad_clip": 5.0},
}

CHOICES = {
    "model.output_stride": (4, 8, 16, 32),
    "loss.direction": ("joint", "symmetric", "anchor"),
    "train.schedule": ("cosine", "constant"),
    "train.precision": ("auto", "bf16", "fp32"),
    "train.device": ("auto", "cpu", "cuda"),
}


def _convert(key: str, value: Any, tp: Any) -> Any:
    """Coerce a JSON value or CLI string to the field's declared type."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(key, v, typing.get_args(tp)[0]) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    try:
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported type {tp}")


def set_value(cfg: GLCMConfig, key: str, value: Any) -> None:
    """Set `section.field` on `cfg`, converting `value` to the field's type."""
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"{key!r}: expected section.field, e.g. model.width")
    section_name, name = parts
    section = getattr(cfg, section_name, None)
    if section is None or not dataclasses.is_dataclass(section):
        raise ConfigError(f"{key!r}: unknown section (model, loss, data, train)")
    hints = typing.get_type_hints(type(section))
    if name not in hints:
        raise ConfigError(f"{key!r}: unknown field; known: {', '.join(hints)}")
    setattr(section, name, _convert(key, value, hints[name]))


def apply_overrides(cfg: GLCMConfig, pairs: list[str]) -> None:
    """Apply CLI overrides of the form `section.field=value`."""
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected section.field=value")
        key, value = pair.split("=", 1)
        set_value(cfg, key.strip(), value.strip())


def from_dict(data: dict[str, Any], cfg: GLCMConfig | None = None) -> GLCMConfig:
    """Overlay a nested dict (as saved by `GLCMConfig.save`) on `cfg` or the defaults."""
    cfg = cfg or GLCMConfig()
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{section!r}: expected an object of fields")
        for name, value in values.items():
            set_value(cfg, f"{section}.{name}", value)
    return cfg


def validate(cfg: GLCMConfig) -> GLCMConfig:
    """Check choices and relations between fields; return `cfg`."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) not in allowed:
            raise ConfigError(f"{key} must be one of {allowed}")
    m, d = cfg.model, cfg.data
    if len(m.blocks) != 4 or len(m.audio_layer_strides) != 4:
        raise ConfigError("model.blocks and model.audio_layer_strides need 4 entries")
    if m.blocks[0] < 1 or min(m.blocks) < 0:
        raise ConfigError("model.blocks: stage 1 needs a block; counts cannot be negative")
    if m.output_stride > 8 and 0 in m.blocks[2:]:
        raise ConfigError("model.blocks: stages 3-4 may be left out (0) only with output_stride 4 or 8")
    if d.frames % m.global_stride:
        raise ConfigError("data.frames must be a multiple of model.global_stride")
    if d.crop % m.output_stride:
        raise ConfigError("data.crop must be a multiple of model.output_stride")
    if m.temperature <= 0 or cfg.train.batch_size < 1 or cfg.train.steps < 1:
        raise ConfigError("model.temperature, train.batch_size and train.steps must be positive")
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                preset: str | None = None) -> GLCMConfig:
    """Defaults, then `preset`, then the JSON file at `path`, then `overrides`."""
    cfg = GLCMConfig()
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        for key, value in PRESETS[preset].items():
            set_value(cfg, key, value)
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        from_dict(data, cfg)
    apply_overrides(cfg, overrides or [])
    return validate(cfg)
