"""Checkpoints: tensors and plain data only, written atomically, read with weights_only.

A training checkpoint holds the whole model, the optimiser, the step, the config and
the RNG states. An encoder file (`save_encoder`) holds one encoder and the model config.
`load_encoder` accepts either and returns the encoder module ("audio", "global", "local").
Every problem a user can cause (no such file, not a checkpoint, another architecture, a
saved config edited to a value `--set` would refuse) is a `CheckpointError` whose message
is one line saying what to do.
"""
from __future__ import annotations

import errno
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avprep import fsio
from glcm.config import (ConfigError, FinetuneConfig, GLCMConfig, ModelConfig, from_dict, set_value, validate,
                         validate_finetune, validate_model)
from glcm.model import ENCODERS, GLCM, AudioEncoder, VisualEncoder

CHECKPOINT_FORMAT = "glcm-checkpoint-1"
ENCODER_FORMAT = "glcm-encoder-1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model; one line."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through avprep.fsio's atomic writer (temp name beside `path`, fsync,
    rename); a full disk or read-only folder is an fsio.OutputError and leaves no temp."""
    path = Path(path)
    fsio.make_output_dir(path.parent)
    with fsio.atomic_writer(path, "wb") as f:
        torch.save(obj, f)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint or encoder file as plain data (torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; give the checkpoint.pt of a glcm run")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, LookupError, pickle.UnpicklingError) as exc:
        # LookupError: the weights-only unpickler meets a text or garbled file as KeyError / IndexError
        raise CheckpointError(f"{path} is not a readable GLCM checkpoint ({_load_problem(exc)}); give the "
                              "checkpoint.pt of a glcm run") from None
    if not isinstance(data, dict) or data.get("format") not in (CHECKPOINT_FORMAT, ENCODER_FORMAT):
        raise CheckpointError(f"{path} is not a GLCM checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")
    check_saved_config(data, path)
    return data


def check_saved_config(data: dict, path: str | Path) -> None:
    """A checkpoint's saved config passes the checks `--set` values get (known keys, types,
    ranges, relations), or one CheckpointError line names the checkpoint and the value: an
    edited file, or one from a glcm that had other fields, fails here and not as a
    traceback (or a huge allocation) later."""
    try:
        if data["format"] == ENCODER_FORMAT:
            model_config(data["model_config"])
        else:
            saved_config(data["config"])
    except (KeyError, ConfigError) as exc:
        why = f"no {exc.args[0]!r} entry" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"{path}: its saved config cannot be used ({why}); give a checkpoint that glcm "
                              "wrote, unedited, with this version") from None


def saved_config(config: Any) -> GLCMConfig:
    """A checkpoint's `config` entry as a validated config: a FinetuneConfig when it has a
    task section (glcm finetune; its list files need not be on this machine), else a
    GLCMConfig. ConfigError for a value that `--set` would refuse."""
    if not isinstance(config, dict):
        raise ConfigError("the config is not an object of sections")
    if isinstance(config.get("task"), dict):
        return validate_finetune(from_dict(config, FinetuneConfig()), check_files=False)
    return validate(from_dict(config))


def _load_problem(exc: BaseException) -> str:
    """A short cause for torch.load's error: its first sentence (torch's own text goes on to
    advise weights_only=False, which a checkpoint of ours never needs)."""
    text = re.sub(r"^\[enforce fail at [^]]*\][ .]*", "", " ".join(str(exc).split()))
    if text.startswith("Weights only load failed"):
        return "not a file of tensors and plain data"
    if isinstance(exc, LookupError) or not text:
        return "not a PyTorch file"
    if text.startswith("PytorchStreamReader failed") or getattr(exc, "errno", None) == errno.EINVAL:
        return "truncated or damaged"
    return text.split(". ")[0][:160]


def kind_of(data: dict) -> str:
    """What a loaded checkpoint file is: "encoder" (glcm export-encoder), "finetuned" (glcm
    finetune: its config has a task section) or "pretraining" (glcm train)."""
    if data.get("format") == ENCODER_FORMAT:
        return "encoder"
    config = data.get("config")
    return "finetuned" if isinstance(config, dict) and isinstance(config.get("task"), dict) else "pretraining"


def require_pretraining(data: dict, path: str | Path, encoder_ok: bool = False, option: str = "") -> str:
    """The one check of "is this a pretraining checkpoint": a finetuned model, or an encoder
    file unless `encoder_ok`, is one CheckpointError line saying what the file is and what
    to give instead (`option` names the flag, e.g. "--init"). Returns kind_of(data)."""
    kind = kind_of(data)
    wanted = "a pretraining run's checkpoint.pt (glcm train)" + (" or an export-encoder file" if encoder_ok else "")
    where = f"{option} {path}" if option else str(path)
    if kind == "finetuned":
        name = data["config"]["task"].get("name")
        model = f"a finetuned {name} model" if isinstance(name, str) and name else "a finetuned model"
        raise CheckpointError(f"{where} is {model} (glcm finetune); give {wanted}")
    if kind == "encoder" and not encoder_ok:
        name = data.get("name")
        encoder = f"the {name} encoder" if isinstance(name, str) and name else "one encoder"
        raise CheckpointError(f"{where} holds only {encoder} (glcm export-encoder), not a whole model; give {wanted}")
    return kind


def load_training(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, GLCMConfig]:
    """A pretraining checkpoint and the config it was trained with."""
    data = load(path, map_location)       # its config is checked there
    require_pretraining(data, path)
    return data, saved_config(data["config"])


def load_weights(module: nn.Module, state: dict, path: str | Path) -> None:
    """load_state_dict, with a mismatch (another architecture) as one CheckpointError line."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        reasons = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise CheckpointError(f"{path} does not fit this model (another architecture?): "
                              f"{reasons[0][:200] if reasons else exc}") from None


def load_model(path: str | Path) -> tuple[GLCM, GLCMConfig]:
    """The whole model of a training checkpoint, on the CPU, with its config."""
    data, cfg = load_training(path)
    model = GLCM(cfg.model)
    load_weights(model, data["model"], path)
    return model, cfg


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def model_config(data: dict) -> ModelConfig:
    """An encoder file's model section as a validated ModelConfig (ConfigError if not)."""
    if not isinstance(data, dict):
        raise ConfigError("model_config is not an object of fields")
    cfg = GLCMConfig()
    for name, value in data.items():
        set_value(cfg, f"model.{name}", value)
    return validate_model(cfg.model)


def check_encoder_name(name: str) -> None:
    if name not in ENCODERS:
        raise ConfigError(f"encoder must be one of {', '.join(ENCODERS)}, got {name!r}")


def save_encoder(model_state: dict, cfg: ModelConfig, name: str, path: str | Path) -> None:
    """Write one encoder's weights (from a full model state dict) to its own file."""
    check_encoder_name(name)
    prefix = f"encoders.{name}."
    state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    atomic_save({"format": ENCODER_FORMAT, "name": name, "model_config": GLCMConfig(model=cfg).to_dict()["model"],
                 "state": state}, path)


def build_encoder(name: str, cfg: ModelConfig) -> nn.Module:
    check_encoder_name(name)
    if name == "audio":
        return AudioEncoder(cfg)
    return VisualEncoder(cfg.width if name == "global" else cfg.local_width, cfg,
                         cfg.global_dim if name == "global" else cfg.local_dim)


def load_encoder(path: str | Path, name: str) -> nn.Module:
    """One encoder ("audio", "global" or "local") from a training checkpoint or an encoder file."""
    check_encoder_name(name)
    data = load(path)
    if data["format"] == ENCODER_FORMAT:
        if data["name"] != name:
            raise CheckpointError(f"{path} holds the {data['name']} encoder, not {name}")
        cfg, state = model_config(data["model_config"]), data["state"]
    else:
        data, full = load_training(path)
        cfg, prefix = full.model, f"encoders.{name}."
        state = {k[len(prefix):]: v for k, v in data["model"].items() if k.startswith(prefix)}
    encoder = build_encoder(name, cfg)
    load_weights(encoder, state, path)
    return encoder
