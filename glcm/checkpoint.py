"""Checkpoints: tensors and plain data only, written atomically, read with weights_only.

A training checkpoint holds the whole model, the optimiser, the step, the config and
the RNG states. An encoder file (`save_encoder`) holds one encoder and the model config.
`load_encoder` accepts either and returns the encoder module ("audio", "global", "local").
"""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from glcm.config import GLCMConfig, ModelConfig, from_dict, set_value
from glcm.model import ENCODERS, AudioEncoder, VisualEncoder

CHECKPOINT_FORMAT = "glcm-checkpoint-1"
ENCODER_FORMAT = "glcm-encoder-1"


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from exc


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
    cfg = GLCMConfig()
    for name, value in data.items():
        set_value(cfg, f"model.{name}", value)
    return cfg.model


def save_encoder(model_state: dict, cfg: ModelConfig, name: str, path: str | Path) -> None:
    """Write one encoder's weights (from a full model state dict) to its own file."""
    if name not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {name!r}")
    prefix = f"encoders.{name}."
    state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    atomic_save({"format": ENCODER_FORMAT, "name": name, "model_config": GLCMConfig(model=cfg).to_dict()["model"],
                 "state": state}, path)


def build_encoder(name: str, cfg: ModelConfig) -> nn.Module:
    if name == "audio":
        return AudioEncoder(cfg)
    if name == "global":
        return VisualEncoder(cfg.width, cfg, cfg.global_dim)
    if name == "local":
        return VisualEncoder(cfg.local_width, cfg, cfg.local_dim)
    raise ValueError(f"encoder must be one of {ENCODERS}, got {name!r}")


def load_encoder(path: str | Path, name: str) -> nn.Module:
    """One encoder ("audio", "global" or "local") from a training checkpoint or an encoder file."""
    data = load(path)
    if data.get("format") == ENCODER_FORMAT:
        if data["name"] != name:
            raise ValueError(f"{path} holds the {data['name']} encoder, not {name}")
        cfg, state = model_config(data["model_config"]), data["state"]
    elif data.get("format") == CHECKPOINT_FORMAT:
        cfg = from_dict(data["config"]).model
        prefix = f"encoders.{name}."
        state = {k[len(prefix):]: v for k, v in data["model"].items() if k.startswith(prefix)}
    else:
        raise ValueError(f"{path}: unknown checkpoint format {data.get('format')!r}")
    encoder = build_encoder(name, cfg)
    encoder.load_state_dict(state)
    return encoder
