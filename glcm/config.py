"""Typed configuration for GLCM pretraining.

A run is described by one `GLCMConfig` (model, loss, data, train): the model, the losses,
the shards and how they are read, and the run itself (output folder, steps, epoch length),
so `config.json` in a run folder is enough to resume it. A config is built from a preset
(a function in PRESETS, or the defaults), then a JSON file, then `section.field=value`
overrides (the CLI's `--set`), in that order. Unknown keys, badly typed values and values
that cannot work (a width of 0, a NaN learning rate) raise `ConfigError` with the key.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


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
    shards: str = ""                # folder, glob or brace pattern of local shards, or a typed pipe:CMD / URL (runs CMD)
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
    skip_limit: int = 1000          # a worker ends with "no batch" after this many unusable samples in a row (0: never)
    batch_timeout: float = 600.0    # seconds to wait for one batch from the DataLoader workers (0: no limit)


@dataclass
class TrainConfig:
    out: str = ""                   # run folder: config.json, checkpoint.pt, log.jsonl, tb/, curves.png
    steps: int = 100000
    epoch_batches: int = 1000       # batches per rank per loader epoch (resampled shards: the epoch length)
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

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the config as JSON, atomically (temp file, fsync, rename)."""
        from avprep.fsio import atomic_write
        atomic_write(path, self.to_json())


@dataclass(frozen=True)
class Task:
    """A downstream task: its class count, the stream its head reads, how its samples are
    split (UCF101/HMDB51 splits 1-3, ESC-50 folds 1-5, LRW the samples' own split, DFDC
    train/test list files or separate test shards), its metric, test clips per video and
    the paper's number."""
    classes: int
    modality: str           # video or audio
    protocol: str           # split, fold, given (meta.split) or lists
    metric: str             # top1 (video-level: softmax averaged over clips) or auc (video ROC AUC)
    paper: float | None     # the paper's number (percent); None: the paper gives none
    clips: int = 10         # default test clips per video
    temporal: bool = False  # a temporal-conv backend over per-frame features (LRW)
    sequence: bool = False  # CTC over characters per frame, scored by WER (LRS2; glcm/sentence.py)
    crop: str = ""          # the crops its samples hold with --input crops (lrw lips, dfdc face); "": whole frames


TASKS = {
    "ucf101": Task(101, "video", "split", "top1", 91.2),
    "hmdb51": Task(51, "video", "split", "top1", 61.9),
    "esc50": Task(50, "audio", "fold", "top1", 80.1),
    "lrw": Task(500, "video", "given", "top1", None, clips=1, temporal=True, crop="lips"),
    "dfdc": Task(2, "video", "lists", "auc", 96.7, crop="face"),
    "lrs2": Task(39, "video", "given", "wer", None, clips=1, sequence=True),    # 39 CTC symbols (glcm/ctc.py)
}
PAPER_NUMBERS = {name: t.paper for name, t in TASKS.items() if t.paper is not None}
# Task defaults, applied after the preset and before --config / --set: LRW clips are 29
# frames (28 = the longest multiple of model.global_stride 4) of grey lip crops.
TASK_DEFAULTS = {"lrw": ["data.frames=28", "data.grey_prob=0"], "lrs2": ["data.grey_prob=0"]}


@dataclass
class TaskConfig:
    name: str = "ucf101"            # ucf101, hmdb51, esc50, lrw, lrs2 or dfdc (TASKS)
    init: str = "scratch"           # a glcm checkpoint.pt or export-encoder file, or scratch (random init)
    mode: str = "full"              # full: finetune encoders and head; linear: frozen encoders (linear probe)
    features: str = "both"          # visual tasks: global, local or both encoders' features (concatenated)
    split: int = 1                  # UCF101/HMDB51: split 1-3 (extra.splits of the samples)
    fold: int = 1                   # ESC-50: test fold 1-5 (extra.fold); the other folds train
    all_parts: bool = False         # every split (--split all) or fold (--folds all): OUT/split-N or OUT/fold-N + the mean
    classes: int = 0                # head size; 0: the task's own class count
    clips: int = 0                  # test clips per video, uniformly spaced, centre crop; 0: the task's (10; LRW 1)
    dropout: float = 0.5            # before the linear head
    val_shards: str = ""            # optional held-out shards, scored like the test set at the end
    test_shards: str = ""           # test shards; empty: the test split/fold of data.shards
    boundary: bool = False          # LRW: feed the word-boundary vector (extra.word_duration) to the backend
    temporal_width: int = 256       # LRW, LRS2: channels of the temporal-conv backend
    train_list: str = ""            # DFDC: Chugh et al. train list (lines <id>.dfdc_train_part_NN)
    test_list: str = ""             # DFDC: Chugh et al. test list
    max_frames: int = 250           # LRS2: longer utterances are skipped (too_long); 250 = 10 s at 25 fps
    beam: int = 8                   # LRS2: beam width of the CTC prefix beam search
    train_splits: str = "train"     # LRS2: comma-separated sample splits that train, e.g. pretrain,train
    input: str = ""                 # lrw/dfdc: crops (their lip/face crops; the default) or full-frames
    pool: str = "mean"              # spatial pooling of the visual features: mean, or attention (the pretrained
                                    # model's audio-visual attention map; needs full frames with audio, paper Table 7)


@dataclass
class FinetuneConfig(GLCMConfig):
    """A finetuning run: the pretraining sections (model = the encoders' architecture; loss
    is not used) and the task."""
    task: TaskConfig = field(default_factory=TaskConfig)


# Presets: functions that return a whole config (build on one, then override fields).

def paper() -> GLCMConfig:
    """The paper's text: two R3D-18s, a 16x16 grid from a 128 crop at output stride 8, a
    window of 3. The text does not say whether embeddings are normalised, so the common
    L2 + temperature 0.07 is used."""
    cfg = GLCMConfig()
    cfg.model.output_stride = 8
    cfg.data.crop = 128
    return cfg


def authors() -> GLCMConfig:
    """The authors' released code: no L2, tau = 1, 512-d / 64-d heads, a 7x7 grid, the
    local path at 1/8 width, no augmentation or temporal jitter."""
    cfg = GLCMConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.output_stride, m.local_width, m.stem_kt, m.global_stride = 16, 8, 1, 8
    m.global_dim, m.local_dim, m.l2_norm, m.temperature = 512, 64, False, 1.0
    d.crop, d.jitter, d.flip_prob, d.grey_prob = 112, False, 0.0, 0.0
    t.lr, t.warmup_steps = 1e-4, 0
    return cfg


def tiny() -> GLCMConfig:
    """A small model for CPU runs: widths 8/8/16, one block per stage, 32-d heads, crop 48."""
    cfg = GLCMConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.width, m.local_width, m.audio_width, m.blocks = 8, 8, 16, (1, 1, 1, 1)
    m.global_dim, m.local_dim, m.output_stride = 32, 32, 8
    d.crop, d.shuffle_buffer, d.initial_buffer, d.workers = 48, 200, 50, 1
    t.batch_size, t.warmup_steps, t.grad_clip = 16, 20, 5.0
    return cfg


def avcorr() -> GLCMConfig:
    """The synthetic correspondence corpus (avprep.testing.avcorr, 64 px frames) on the CPU:
    `tiny` with stages 3-4 left out (receptive field ~51 px, so grid cells can tell where
    things are) at output stride 4 (the paper's 16x16 grid on 64 px frames), lr 2e-3, 300
    steps of 50-batch epochs, one thread. The learning test, the demo and
    bench/learn_localisation.py all train with it."""
    cfg = tiny()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.blocks, m.output_stride = (1, 1, 0, 0), 4
    d.workers = 1
    t.lr, t.steps, t.epoch_batches, t.log_every, t.checkpoint_every = 2e-3, 300, 50, 10, 100
    t.threads, t.device = 1, "cpu"
    return cfg


def smoke() -> GLCMConfig:
    """The smallest model that trains (widths 4/4/8, 8-d heads, 32 px crop, batch 4): for
    quick checks that every code path runs, not for learning anything."""
    cfg = GLCMConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.width, m.local_width, m.audio_width, m.blocks = 4, 4, 8, (1, 1, 1, 1)
    m.global_dim, m.local_dim = 8, 8
    d.crop, d.shuffle_buffer, d.initial_buffer, d.workers = 32, 20, 4, 0
    t.batch_size, t.warmup_steps, t.steps, t.threads = 4, 2, 6, 1
    return cfg


PRESETS: dict[str, Callable[[], GLCMConfig]] = {
    "paper": paper, "authors": authors, "tiny": tiny, "avcorr": avcorr, "smoke": smoke}

CHOICES = {
    "model.output_stride": (4, 8, 16, 32),
    "loss.direction": ("joint", "symmetric", "anchor"),
    "train.schedule": ("cosine", "constant"),
    "train.precision": ("auto", "bf16", "fp32"),
    "train.device": ("auto", "cpu", "cuda"),
}


TYPE_NAMES = {int: "a whole number", float: "a number", str: "text"}


def _convert(key: str, value: Any, tp: Any) -> Any:
    """Coerce a JSON value or CLI string to the field's declared type."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a comma-separated list, got {value!r}")
        return tuple(_convert(key, v, typing.get_args(tp)[0]) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    try:
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key}: expected {TYPE_NAMES.get(tp, tp.__name__)}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported type {tp}")


def set_value(cfg: GLCMConfig, key: str, value: Any) -> None:
    """Set `section.field` on `cfg`, converting `value` to the field's type."""
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"{key!r}: expected section.field, e.g. model.width")
    section_name, name = parts
    section = getattr(cfg, section_name, None)
    if section is None or not dataclasses.is_dataclass(section):
        known = ", ".join(f.name for f in dataclasses.fields(cfg))
        raise ConfigError(f"{key!r}: unknown section ({known})")
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


# Fields that must be positive (> 0) or at least zero; floats must also be finite.
POSITIVE = ("model.width", "model.local_width", "model.audio_width", "model.n_mels", "model.mel_per_frame",
            "model.stem_kt", "model.global_stride", "model.audio_steps_per_frame", "model.global_dim",
            "model.local_dim", "model.temperature", "data.frames", "data.crop", "data.shuffle_buffer",
            "train.steps", "train.epoch_batches", "train.batch_size", "train.lr", "train.checkpoint_every",
            "train.log_every", "train.plot_every")
NON_NEGATIVE = ("loss.global_weight", "loss.local_weight", "data.resize_short", "data.initial_buffer",
                "data.workers", "data.skip_limit", "data.batch_timeout", "train.warmup_steps",
                "train.weight_decay", "train.grad_clip", "train.threads")
FRACTIONS = ("data.flip_prob", "data.grey_prob", "train.min_lr_ratio")
SEEDS = ("data.seed", "train.seed")         # numpy refuses negative seeds, torch those from 2**64
MAX_SEED = 2**63 - 1

# Upper bounds: far above what the paper, the authors' code or any preset uses (10-100x,
# the value in brackets), so a typo (`model.width=100000`) is one line, not a terabyte
# allocation traceback or an OOM kill minutes later. data.crop and data.resize_short: MAX_SIDE.
MAXIMA = {
    "model.width": 1024,                # [64] conv weights grow as width**2: 1024 is ~8e9 parameters
    "model.local_width": 1024,          # [64; authors 8] as width
    "model.audio_width": 1024,          # [64] as width
    "model.n_mels": 1024,               # [80] mel bands (n_fft 400 has 201 frequency bins)
    "model.mel_per_frame": 1000,        # [10] k = 16000 / (hop * fps): 1000 is hop 16 at 1 fps
    "model.stem_kt": 31,                # [3; authors 1] temporal kernel, frames
    "model.global_stride": 64,          # [4; authors 8] frames between global-path frames
    "model.audio_steps_per_frame": 64,  # [3] audio window per visual step
    "model.global_dim": 8192,           # [128; authors 512] projection size
    "model.local_dim": 8192,            # [128; authors 64] projection size
    "model.temperature": 100.0,         # [0.07; authors 1.0]
    "loss.global_weight": 1000.0,       # [1.0]
    "loss.local_weight": 1000.0,        # [1.0]
    "data.frames": 1024,                # [32] a clip of 41 s at 25 fps; memory grows with it
    "data.shuffle_buffer": 100000,      # [1000] samples held in memory per worker
    "data.initial_buffer": 100000,      # [100] as shuffle_buffer
    "data.workers": 256,                # [4] processes per rank
    "data.skip_limit": 10**9,           # [1000] a count, no memory: any sane number
    "data.batch_timeout": 86400.0,      # [600] seconds: a day
    "train.steps": 10**9,               # [100000]
    "train.epoch_batches": 10**9,       # [1000]
    "train.batch_size": 4096,           # [32] per rank: the batch is allocated up front
    "train.lr": 10.0,                   # [1e-3]
    "train.weight_decay": 10.0,         # [0; usual 0.05]
    "train.warmup_steps": 10**9,        # [500] as steps
    "train.grad_clip": 1e6,             # [1.0] (0 turns it off)
    "train.checkpoint_every": 10**9,    # [1000] steps
    "train.log_every": 10**9,           # [10] steps
    "train.plot_every": 10**9,          # [200] steps
    "train.threads": 1024,              # [0: torch's default] CPU threads
}
MAX_BLOCKS = 64                         # [2] blocks per stage (ResNet-152 has 36)
MAX_AUDIO_STRIDE = 16                   # [1, 2] temporal stride of one audio stage
TASK_MAXIMA = {
    "task.classes": 100000,             # [500 LRW; Kinetics 700]
    "task.clips": 100,                  # [10] test clips of one video are stacked in one batch
    "task.temporal_width": 4096,        # [256] channels of the temporal backend
    "task.max_frames": 10000,           # [250] 400 s at 25 fps
    "task.beam": 1024,                  # [8] CTC beam width
}


def _get(cfg: GLCMConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _check_ranges(cfg: GLCMConfig) -> None:
    for key in POSITIVE + NON_NEGATIVE + FRACTIONS:
        value = _get(cfg, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        if key in POSITIVE and value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
        if key in NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key} cannot be negative, got {value}")
        if key in FRACTIONS and not 0 <= value <= 1:
            raise ConfigError(f"{key} must be between 0 and 1, got {value}")
    for key in SEEDS:
        if not 0 <= _get(cfg, key) <= MAX_SEED:
            raise ConfigError(f"{key} must be a whole number from 0 to 2**63 - 1, got {_get(cfg, key)}")
    _check_maxima(cfg, MAXIMA)


def _check_maxima(cfg: GLCMConfig, maxima: dict[str, float]) -> None:
    for key, bound in maxima.items():
        if _get(cfg, key) > bound:
            raise ConfigError(f"{key} must be at most {bound:g} (far above any real run's value), "
                              f"got {_get(cfg, key)}")


MAX_SIDE = 1024       # largest crop / resize side (a 32-frame batch of 8 at 1024 px is 800 MB)


def validate(cfg: GLCMConfig) -> GLCMConfig:
    """Check choices, ranges and relations between fields; return `cfg`."""
    _check_choices(cfg, CHOICES)
    _check_ranges(cfg)
    _check_model(cfg.model)
    m, d, loss = cfg.model, cfg.data, cfg.loss
    if d.frames % m.global_stride:
        raise ConfigError(f"data.frames must be a multiple of model.global_stride ({m.global_stride}), got {d.frames}")
    if d.crop % m.output_stride:
        raise ConfigError(f"data.crop must be a multiple of model.output_stride ({m.output_stride}), got {d.crop}")
    for key in ("data.crop", "data.resize_short"):      # frames are resized up to the crop: bound the memory
        if _get(cfg, key) > MAX_SIDE:
            raise ConfigError(f"{key} must be at most {MAX_SIDE} pixels, got {_get(cfg, key)}")
    if 0 < d.resize_short < d.crop:
        raise ConfigError(f"data.crop {d.crop} is larger than the frames (data.resize_short {d.resize_short}); "
                          "make resize_short at least the crop, or 0 (as stored)")
    if loss.global_weight == 0 and loss.local_weight == 0:
        raise ConfigError("loss.global_weight and loss.local_weight are both 0: nothing would be learnt; "
                          "give one a positive weight")
    return cfg


def validate_model(model: ModelConfig) -> ModelConfig:
    """The checks of `validate` that concern the model section alone (an encoder file's
    config: no data section to relate it to); return `model`."""
    cfg = GLCMConfig(model=model)
    _check_choices(cfg, CHOICES)
    _check_ranges(cfg)          # the other sections are the defaults, which pass
    _check_model(model)
    return model


def _check_choices(cfg: GLCMConfig, choices: dict[str, tuple]) -> None:
    for key, allowed in choices.items():
        if _get(cfg, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {_get(cfg, key)!r}")


def _check_model(m: ModelConfig) -> None:
    """The model's list fields and the relations between its fields."""
    for key, values, what in (("model.blocks", m.blocks, "blocks per stage"),
                              ("model.audio_layer_strides", m.audio_layer_strides, "one per audio stage")):
        if len(values) != 4:
            raise ConfigError(f"{key} needs 4 comma-separated entries ({what}), got {_listed(values)}")
    if m.blocks[0] < 1 or min(m.blocks) < 0:
        raise ConfigError(f"model.blocks: stage 1 needs a block and counts cannot be negative, got {_listed(m.blocks)}")
    if min(m.audio_layer_strides) < 1:
        raise ConfigError(f"model.audio_layer_strides must be positive, got {_listed(m.audio_layer_strides)}")
    for key, values, bound in (("model.blocks", m.blocks, MAX_BLOCKS),
                               ("model.audio_layer_strides", m.audio_layer_strides, MAX_AUDIO_STRIDE)):
        if max(values) > bound:
            raise ConfigError(f"{key} entries must be at most {bound}, got {_listed(values)}")
    if m.output_stride > 8 and 0 in m.blocks[2:]:
        raise ConfigError(f"model.blocks {_listed(m.blocks)}: stages 3-4 may be left out (0) only with "
                          f"model.output_stride 4 or 8, not {m.output_stride}")
    if m.stem_kt % 2 == 0:
        raise ConfigError(f"model.stem_kt must be odd (an even kernel would add a time step), got {m.stem_kt}")


def _listed(values: tuple) -> str:
    return ",".join(map(str, values)) or "none"


def preset_config(name: str | None) -> GLCMConfig:
    """The config a preset function returns (the defaults for None)."""
    if not name:
        return GLCMConfig()
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]()


def read_json(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read config {path}: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected an object with sections model, loss, data, train")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                preset: str | None = None) -> GLCMConfig:
    """`preset` (or the defaults), then the JSON file at `path`, then `overrides`."""
    cfg = preset_config(preset)
    if path:
        from_dict(read_json(path), cfg)
    apply_overrides(cfg, overrides or [])
    return validate(cfg)


def model_differences(here: ModelConfig, there: ModelConfig) -> list[str]:
    """`model.field: A here, B there` for each field where two model configs differ."""
    a, b = dataclasses.asdict(here), dataclasses.asdict(there)
    return [f"model.{k}: {a[k]!r} here, {b[k]!r} there" for k in a if a[k] != b[k]]


# ---- finetuning ---------------------------------------------------------------------------

TASK_CHOICES = {"task.name": tuple(TASKS), "task.mode": ("full", "linear"),
                "task.features": ("global", "local", "both"), "task.split": (1, 2, 3), "task.fold": (1, 2, 3, 4, 5)}


def finetune_preset(name: str | None) -> FinetuneConfig:
    """A preset's sections (architecture and training settings) in a FinetuneConfig."""
    base = preset_config(name)
    return FinetuneConfig(model=base.model, loss=base.loss, data=base.data, train=base.train)


def validate_finetune(cfg: FinetuneConfig, check_files: bool = True) -> FinetuneConfig:
    """`validate`, then the task's fields; `check_files` False leaves out whether the DFDC
    list files are there (a saved config read on another machine)."""
    validate(cfg)
    t = cfg.task
    _check_choices(cfg, TASK_CHOICES)
    if t.classes < 0 or t.classes == 1:
        raise ConfigError(f"task.classes must be 0 (the task's own count) or at least 2, got {t.classes}")
    if t.clips < 0:
        raise ConfigError(f"task.clips cannot be negative (0: the task's default), got {t.clips}")
    for key in ("task.temporal_width", "task.max_frames", "task.beam"):
        if _get(cfg, key) < 1:
            raise ConfigError(f"{key} must be positive, got {_get(cfg, key)}")
    _check_maxima(cfg, TASK_MAXIMA)
    if not (math.isfinite(t.dropout) and 0 <= t.dropout < 1):
        raise ConfigError(f"task.dropout must be in [0, 1), got {t.dropout}")
    if not t.init:
        raise ConfigError("--init: give a glcm checkpoint.pt (or an export-encoder file), or scratch")
    validate_lists(t, check_files)
    validate_input(t)
    return cfg


def validate_lists(t: TaskConfig, check_files: bool = True) -> None:
    """DFDC's Chugh et al. list files: only for dfdc, and they must be files (checked before
    the shards are scanned; not when `check_files` is False)."""
    for key in ("task.train_list", "task.test_list"):
        path = getattr(t, key.split(".")[1])
        if not path:
            continue
        if TASKS[t.name].protocol != "lists":
            raise ConfigError(f"{key} is for dfdc (Chugh et al. lists); task {t.name} splits its samples otherwise")
        if check_files and not Path(path).is_file():
            why = "a folder" if Path(path).is_dir() else "no such file"
            raise ConfigError(f"{key}: cannot read list {path} ({why}); give a Chugh et al. list file "
                              "(one <id>.dfdc_train_part_NN a line)")


def input_of(t: TaskConfig) -> str:
    """What the head of a crop task (lrw, dfdc) sees: crops (default) or full-frames; ""
    for the other tasks."""
    return (t.input or "crops") if TASKS[t.name].crop else ""


def validate_input(t: TaskConfig) -> None:
    """--input / --pool (lrw and dfdc only) and the combinations that cannot work (one line each)."""
    if t.input not in ("", "crops", "full-frames"):
        raise ConfigError(f"task.input must be crops or full-frames, got {t.input!r}")
    if t.pool not in ("mean", "attention"):
        raise ConfigError(f"task.pool must be mean or attention, got {t.pool!r}")
    task = TASKS[t.name]
    if (t.input or t.pool != "mean") and not task.crop:
        what = "has no video" if task.modality != "video" else "reads whole frames and has no crops to replace"
        raise ConfigError(f"--input / --pool attention are for lrw and dfdc (the map instead of their lip/face "
                          f"crops, paper Table 7); task {t.name} {what}")
    if t.pool != "attention":
        return
    if input_of(t) != "full-frames":
        raise ConfigError(f"--pool attention replaces the {task.crop} crops: add --input full-frames "
                          f"(shards from `avprep build {t.name} --crop none`)")
    if t.init == "scratch":
        raise ConfigError("--pool attention with --init scratch: a random model's attention map means nothing; "
                          "give the pretraining checkpoint.pt (its audio and global encoders make the map)")


def load_finetune_config(path: str | Path | None = None, overrides: list[str] | None = None,
                         preset: str | None = None, model: dict | None = None) -> FinetuneConfig:
    """`preset` (or the defaults), then `model` (the --init checkpoint's architecture, when
    no preset or config says otherwise), then the JSON file, then `overrides`."""
    cfg = finetune_preset(preset)
    if model:
        from_dict({"model": model}, cfg)
    apply_overrides(cfg, TASK_DEFAULTS.get(task_name(path, overrides or []), []))
    if path:
        from_dict(read_json(path), cfg)
    apply_overrides(cfg, overrides or [])
    return validate_finetune(cfg)


def task_name(path: str | Path | None, overrides: list[str]) -> str:
    """The task a finetuning config will have: the last --set task.name, else the file's."""
    for pair in reversed(overrides):
        key, _, value = pair.partition("=")
        if key.strip() == "task.name":
            return value.strip()
    task = read_json(path).get("task") if path else None
    return str(task.get("name", "")) if isinstance(task, dict) else TaskConfig.name
