"""The GLCM model: audio, global visual and local visual encoders, attention pooling.

Shapes (B clips, T frames, M = audio_steps_per_frame, grids H x W):
  frames: uint8 (B,T,H,W,3) as the loader gives them, or float (B,3,T,H,W) already normalised
  mel:    float (B, n_mels, T*k) log-mel dB, k = mel_per_frame columns per frame
The audio backbone output is average-pooled (adaptively) to T*M steps, so each visual
step owns M consecutive audio steps: the local "window of three, no overlap" for M = 3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glcm.config import ModelConfig
from glcm.resnet import ResNet1d, ResNet3d

MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)
ENCODERS = ("audio", "global", "local")


def prepare_frames(frames: Tensor, channels_last: bool = False) -> Tensor:
    """uint8 (B,T,H,W,3) -> normalised float (B,3,T,H,W); float input passes through."""
    if frames.dtype != torch.uint8:
        return frames
    x = frames.permute(0, 4, 1, 2, 3).float().div_(255.0)
    mean = x.new_tensor(MEAN).view(1, 3, 1, 1, 1)
    std = x.new_tensor(STD).view(1, 3, 1, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x.contiguous()


def _project(x: Tensor, l2: bool) -> Tensor:
    return F.normalize(x, dim=-1) if l2 else x


class AudioEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.backbone = ResNet1d(cfg.n_mels, cfg.audio_width, cfg.blocks, cfg.audio_layer_strides)
        c = self.backbone.out_channels
        self.global_head = nn.Conv1d(c, cfg.global_dim, 1)
        self.local_head = nn.Conv1d(c, cfg.local_dim, 1)


class VisualEncoder(nn.Module):
    def __init__(self, width: int, cfg: ModelConfig, dim: int):
        super().__init__()
        self.backbone = ResNet3d(width, cfg.blocks, cfg.stem_kt, cfg.output_stride)
        self.head = nn.Conv3d(self.backbone.out_channels, dim, 1)


@dataclass
class AudioOut:
    features: Tensor    # (B, C, T*M) backbone features at M steps per frame
    global_emb: Tensor  # (B, Dg)
    local_emb: Tensor   # (B, T, M, Dl)


@dataclass
class GLCMOut:
    audio_global: Tensor   # (B, Dg)
    visual_grid: Tensor    # (B, H*W, Dg) global path, pooled over time only
    audio_local: Tensor    # (B, T, M, Dl)
    visual_local: Tensor   # (B, T, Dl) local path, attention-pooled over space
    attention: Tensor      # (B, H, W) softmax over the global grid


class GLCM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleDict({
            "audio": AudioEncoder(cfg),
            "global": VisualEncoder(cfg.width, cfg, cfg.global_dim),
            "local": VisualEncoder(cfg.local_width, cfg, cfg.local_dim),
        })

    # ---- feature API -------------------------------------------------------------
    def audio_features(self, mel: Tensor, num_frames: int | None = None) -> AudioOut:
        """Audio embeddings; `num_frames` defaults to mel length / mel_per_frame."""
        enc, m = self.encoders["audio"], self.cfg.audio_steps_per_frame
        t = num_frames or mel.shape[-1] // self.cfg.mel_per_frame
        feats = F.adaptive_avg_pool1d(enc.backbone(mel.float()), t * m)
        glob = enc.global_head(feats.mean(dim=2, keepdim=True))[..., 0]
        loc = enc.local_head(feats).transpose(1, 2).reshape(mel.shape[0], t, m, -1)
        return AudioOut(feats, _project(glob, self.cfg.l2_norm), _project(loc, self.cfg.l2_norm))

    def global_features(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(backbone features (B,C,T/s,H,W), projected grid (B,H,W,Dg)) of every s-th frame."""
        enc = self.encoders["global"]
        x = prepare_frames(frames)[:, :, ::self.cfg.global_stride]
        feats = enc.backbone(x)
        grid = enc.head(feats.mean(dim=2, keepdim=True))[:, :, 0]       # (B, Dg, H, W)
        return feats, _project(grid.permute(0, 2, 3, 1), self.cfg.l2_norm)

    def local_features(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(backbone features (B,C,T,H,W), average-pooled projections (B,T,Dl))."""
        feats = self.encoders["local"].backbone(prepare_frames(frames))
        return feats, self._local_project(feats.mean(dim=(3, 4)))

    def attention_map(self, frames: Tensor, mel: Tensor) -> Tensor:
        """Softmax over the global grid of (audio . cell) / temperature: (B, H, W)."""
        return self.softmax_map(self.similarity_map(frames, mel))

    def similarity_map(self, frames: Tensor, mel: Tensor) -> Tensor:
        """(audio . cell) / temperature over the global grid, before the softmax: (B, H, W)."""
        _, grid = self.global_features(frames)
        audio = self.audio_features(mel, frames_len(frames))
        return self._scores(audio.global_emb, grid)

    # ---- training forward ----------------------------------------------------------
    def forward(self, frames: Tensor, mel: Tensor) -> GLCMOut:
        x = prepare_frames(frames)
        audio = self.audio_features(mel, x.shape[2])
        _, grid = self.global_features(x)
        attn = self._attention(audio.global_emb, grid)
        feats = self.encoders["local"].backbone(x)                      # (B, C, T, H, W)
        pooled = self._pool(feats, attn)
        return GLCMOut(audio.global_emb, grid.flatten(1, 2), audio.local_emb,
                       self._local_project(pooled), attn)

    # ---- helpers -------------------------------------------------------------------
    def _scores(self, audio_global: Tensor, grid: Tensor) -> Tensor:
        return torch.einsum("bd,bhwd->bhw", audio_global, grid) / self.cfg.temperature

    @staticmethod
    def softmax_map(scores: Tensor) -> Tensor:
        return scores.flatten(1).float().softmax(dim=1).view(scores.shape)

    def _attention(self, audio_global: Tensor, grid: Tensor) -> Tensor:
        return self.softmax_map(self._scores(audio_global, grid))

    def _pool(self, feats: Tensor, attn: Tensor) -> Tensor:
        """Spatial pooling of (B,C,T,H,W) at each step: attention-weighted or plain mean."""
        if not self.cfg.attention_pool:
            return feats.mean(dim=(3, 4))
        if self.cfg.detach_attention:
            attn = attn.detach()
        if attn.shape[1:] != feats.shape[3:]:
            attn = F.interpolate(attn[:, None], size=feats.shape[3:], mode="bilinear", align_corners=False)[:, 0]
            attn = attn / attn.sum(dim=(1, 2), keepdim=True)
        return torch.einsum("bcthw,bhw->bct", feats, attn.to(feats.dtype))

    def _local_project(self, pooled: Tensor) -> Tensor:
        """(B, C, T) -> (B, T, Dl) through the local 1x1 head."""
        head = self.encoders["local"].head
        out = F.conv1d(pooled, head.weight[..., 0, 0], head.bias)
        return _project(out.transpose(1, 2), self.cfg.l2_norm)


def frames_len(frames: Tensor) -> int:
    """Number of frames in a uint8 (B,T,H,W,3) or float (B,3,T,H,W) clip batch."""
    return frames.shape[1] if frames.dtype == torch.uint8 else frames.shape[2]
