"""Downstream heads on the GLCM encoders (the paper's): visual tasks concatenate the
global and the local visual features (`features` global, local or both; paper Table 5),
ESC-50 reads the audio encoder. Features are the backbones' outputs averaged over time
and space; then dropout and one linear layer. The pretraining projection heads are not
used. Weights come from a training checkpoint (`encoders.<name>.backbone.*`) or an
export-encoder file (`backbone.*`); anything that does not fit is one CheckpointError line
naming the fields and keys that differ.

Attention pooling (`--pool attention`, paper Table 7): instead of the mean over space, the
visual features of whole frames are pooled with the pretrained model's audio-visual
attention map (`AttentionMap`: a frozen copy of the pretraining checkpoint's audio and
global encoders with their projection heads, `GLCM.attention_map` of the clip's frames and
mel). The audio only makes the map; the head never sees it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from glcm import checkpoint as ckpt
from glcm.config import ConfigError, ModelConfig, from_dict, model_differences
from glcm.model import GLCM, prepare_frames
from glcm.resnet import ResNet1d, ResNet3d


def encoder_names(modality: str, features: str) -> list[str]:
    if modality == "audio":
        return ["audio"]
    return {"global": ["global"], "local": ["local"], "both": ["global", "local"]}[features]


def build_backbone(name: str, cfg: ModelConfig) -> nn.Module:
    if name == "audio":
        return ResNet1d(cfg.n_mels, cfg.audio_width, cfg.blocks, cfg.audio_layer_strides)
    width = cfg.width if name == "global" else cfg.local_width
    return ResNet3d(width, cfg.blocks, cfg.stem_kt, cfg.output_stride)


def pool_space(feats: Tensor, attn: Tensor | None = None) -> Tensor:
    """(B, C, T, H, W) -> (B, C, T): the mean over space, or the sum weighted by the map
    `attn` (B, h, w), which sums to 1 per clip (resampled bilinearly and renormalised when
    its grid is not the features' grid)."""
    if attn is None:
        return feats.mean(dim=(3, 4))
    attn = attn.float()
    if attn.shape[1:] != feats.shape[3:]:
        attn = torch.nn.functional.interpolate(attn[:, None], size=feats.shape[3:], mode="bilinear",
                                               align_corners=False)[:, 0]
        attn = attn / attn.sum(dim=(1, 2), keepdim=True)
    return torch.einsum("bcthw,bhw->bct", feats, attn.to(feats.dtype))


class AttentionMap(nn.Module):
    """The pretrained attention map of a clip, frozen: the audio and global encoders (with
    their projection heads) of a GLCM training checkpoint. (frames, mel) -> (B, H, W), a
    softmax over the global grid of (audio . cell) / temperature (glcm.model)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        model = GLCM(cfg)
        del model.encoders["local"]
        self.model = model
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "AttentionMap":
        return super().train(False)               # always the pretrained statistics

    @torch.no_grad()
    def forward(self, frames: Tensor, mel: Tensor) -> Tensor:
        if mel is None:
            raise ValueError("the attention pool needs each clip's mel")
        return self.model.attention_map(frames, mel).float()


def load_attention(module: AttentionMap, path: str | Path) -> None:
    """The map's encoders from a training checkpoint; an export-encoder file holds one
    backbone without its head, which cannot make the map (CheckpointError)."""
    data = ckpt.load(path)
    if data["format"] == ckpt.ENCODER_FORMAT:
        raise ckpt.CheckpointError(f"--pool attention needs the pretraining checkpoint.pt (its audio and global "
                                   f"encoders with their heads make the map); {path} holds only the "
                                   f"{data['name']} encoder")
    state = {k[len("encoders."):]: v for k, v in data["model"].items()
             if k.startswith(("encoders.audio.", "encoders.global."))}
    keys = key_differences(module.model.encoders, state)
    if keys:
        raise ckpt.CheckpointError(f"--init {path}: its audio/global encoders do not fit the attention map "
                                   f"({'; '.join(keys[:3])})")
    module.model.encoders.load_state_dict(state)


class TemporalBlock(nn.Module):
    """Multi-scale temporal convolution (MS-TCN style, mpc001): parallel branches of kernel
    3, 5 and 7 at one dilation, concatenated, a 1x1 mix, BatchNorm, residual, ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int, kernels: tuple[int, ...] = (3, 5, 7)):
        super().__init__()
        branch = max(1, cout // len(kernels))
        self.branches = nn.ModuleList(nn.Sequential(
            nn.Conv1d(cin, branch, k, padding=dilation * (k - 1) // 2, dilation=dilation, bias=False),
            nn.BatchNorm1d(branch), nn.ReLU(inplace=True)) for k in kernels)
        self.mix = nn.Sequential(nn.Conv1d(branch * len(kernels), cout, 1, bias=False), nn.BatchNorm1d(cout))
        self.skip = nn.Conv1d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.mix(torch.cat([b(x) for b in self.branches], dim=1)) + self.skip(x))


class TemporalBackend(nn.Module):
    """(B, C, T) per-frame features -> (B, width) : three temporal blocks (dilation 1, 2, 4),
    then the mean over time."""

    def __init__(self, cin: int, width: int):
        super().__init__()
        self.blocks = nn.Sequential(*(TemporalBlock(cin if i == 0 else width, width, d) for i, d in enumerate((1, 2, 4))))
        self.out_channels = width

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x).mean(dim=2)


class Classifier(nn.Module):
    """Encoders' backbones -> pooled features (concatenated) -> dropout -> linear. With a
    temporal backend (LRW) the features stay per frame (the global path's every s-th frame
    repeated s times), optionally with the word-boundary vector as one more channel."""

    def __init__(self, cfg: ModelConfig, names: list[str], classes: int, dropout: float = 0.5,
                 temporal_width: int = 0, boundary: bool = False, attention: bool = False):
        super().__init__()
        self.cfg, self.names, self.boundary = cfg, names, boundary
        self.backbones = nn.ModuleDict({n: build_backbone(n, cfg) for n in names})
        self.attention = AttentionMap(cfg) if attention else None
        dim = sum(b.out_channels for b in self.backbones.values())
        self.backend = TemporalBackend(dim + int(boundary), temporal_width) if temporal_width else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(temporal_width or dim, classes)

    def per_frame(self, frames: Tensor, attn: Tensor | None = None) -> Tensor:
        """(B, C, T) features of the visual backbones, pooled over space only (mean, or
        weighted by the attention map `attn`)."""
        x = prepare_frames(frames)
        t, parts = x.shape[2], []
        if "global" in self.backbones:
            s = self.cfg.global_stride
            g = pool_space(self.backbones["global"](x[:, :, ::s]), attn)
            parts.append(g.repeat_interleave(s, dim=2)[:, :, :t])
        if "local" in self.backbones:
            parts.append(pool_space(self.backbones["local"](x), attn))
        return torch.cat(parts, dim=1)

    def features(self, frames: Tensor | None = None, mel: Tensor | None = None,
                 boundary: Tensor | None = None) -> Tensor:
        attn = self.attention(frames, mel) if self.attention is not None else None
        if self.backend is not None:
            x = self.per_frame(frames, attn)
            if self.boundary:
                x = torch.cat([x, boundary.to(x.dtype)[:, None, :]], dim=1)
            return self.backend(x)
        parts = []
        if "audio" in self.backbones:
            parts.append(self.backbones["audio"](mel.float()).mean(dim=2))
        if frames is not None:
            x = prepare_frames(frames)
            if "global" in self.backbones:
                parts.append(pool_space(self.backbones["global"](x[:, :, ::self.cfg.global_stride]), attn).mean(dim=2))
            if "local" in self.backbones:
                parts.append(pool_space(self.backbones["local"](x), attn).mean(dim=2))
        return torch.cat(parts, dim=1)

    def forward(self, frames: Tensor | None = None, mel: Tensor | None = None,
                boundary: Tensor | None = None) -> Tensor:
        return self.fc(self.dropout(self.features(frames, mel, boundary)))


def init_states(path: str | Path, names: list[str]) -> tuple[dict[str, dict], ModelConfig]:
    """The backbone weights of each encoder in `names` from a checkpoint, and its model config."""
    data = ckpt.load(path)
    if data["format"] == ckpt.ENCODER_FORMAT:
        if names != [data["name"]]:
            raise ckpt.CheckpointError(
                f"{path} holds only the {data['name']} encoder; this task needs {' and '.join(names)}: "
                "give the run's checkpoint.pt (or --features to match)")
        state = {k[len("backbone."):]: v for k, v in data["state"].items() if k.startswith("backbone.")}
        return {data["name"]: state}, ckpt.model_config(data["model_config"])
    try:
        cfg = from_dict({"model": data["config"]["model"]}).model
    except (KeyError, ConfigError) as exc:
        raise ckpt.CheckpointError(f"{path}: its config cannot be read ({exc})") from None
    states = {}
    for name in names:
        prefix = f"encoders.{name}.backbone."
        states[name] = {k[len(prefix):]: v for k, v in data["model"].items() if k.startswith(prefix)}
    return states, cfg


def key_differences(module: nn.Module, state: dict) -> list[str]:
    """What keeps `state` from loading into `module`: missing, unexpected and reshaped keys."""
    ours = module.state_dict()
    out = [f"{k} missing" for k in ours if k not in state]
    out += [f"{k} unexpected" for k in state if k not in ours]
    out += [f"{k} {tuple(state[k].shape)} there, {tuple(v.shape)} here" for k, v in ours.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return out


def load_init(model: Classifier, path: str | Path) -> None:
    """Copy the encoders' pretrained backbones into `model`; CheckpointError (one line,
    naming the model fields and keys that differ) for another architecture."""
    states, theirs = init_states(path, model.names)
    fields = model_differences(model.cfg, theirs)
    keys = [f"backbones.{n}.{d}" for n in model.names for d in key_differences(model.backbones[n], states[n])]
    if fields or keys:
        said = "; ".join(fields[:3] + keys[:3])
        more = len(fields) + len(keys) - min(len(fields), 3) - min(len(keys), 3)
        raise ckpt.CheckpointError(f"--init {path} is another architecture ({said}{f'; {more} more' if more else ''}); "
                                   "finetune with its own model settings (drop --preset/--set model.*) "
                                   "or give a matching checkpoint")
    for name in model.names:
        model.backbones[name].load_state_dict(states[name])


def load_pretrained(model: Classifier, path: str | Path) -> None:
    """The encoders' backbones from `path` and, with the attention pool, the map's encoders."""
    load_init(model, path)
    if model.attention is not None:
        load_attention(model.attention, path)


def freeze_backbones(model: Classifier) -> None:
    """Linear probe: the encoders neither learn nor update their BatchNorm statistics."""
    for p in model.backbones.parameters():
        p.requires_grad_(False)
    model.backbones.eval()
