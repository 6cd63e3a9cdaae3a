"""The CUDA speed options, exercised on the CPU: bf16 autocast and channels_last_3d.

No GPU is needed: torch runs both on the CPU, so the code paths the GPU trainer takes
(autocast around the forward, channels_last_3d weights and inputs) are checked here.
"""
from __future__ import annotations

import math

import torch

from glcm.config import load_config
from glcm.losses import glcm_loss
from glcm.model import GLCM, prepare_frames
from glcm.train import Trainer


def batch(seed: int, b: int = 4):
    """Random uint8 clips (32 frames, 32 px: the smoke preset's crop) and log-mel windows."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (b, 32, 32, 32, 3), dtype=torch.uint8, generator=g),
            torch.randn(b, 80, 320, generator=g) * 20 - 40)


def test_bf16_autocast_steps_train_and_change_the_weights():
    cfg = load_config(preset="smoke", overrides=["train.precision=bf16"])
    trainer = Trainer(cfg, torch.device("cpu"))
    assert trainer.amp is torch.bfloat16
    before = [p.detach().clone() for p in trainer.model.parameters()]
    for i in range(3):
        parts = trainer.train_step(*batch(i))
        assert all(math.isfinite(float(v)) for v in parts.values())
    moved = sum(not torch.equal(a, p.detach()) for a, p in zip(before, trainer.model.parameters()))
    assert moved > len(before) // 2
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())   # master weights stay fp32


def test_channels_last_3d_gives_the_same_outputs():
    cfg = load_config(preset="smoke")
    torch.manual_seed(0)
    model = GLCM(cfg.model).eval()
    frames, mel = batch(7)
    with torch.no_grad():
        ref = glcm_loss(model(prepare_frames(frames), mel), cfg.loss, cfg.model.temperature)[0]
        for name in ("global", "local"):
            model.encoders[name].to(memory_format=torch.channels_last_3d)
        x = prepare_frames(frames, channels_last=True)
        assert x.is_contiguous(memory_format=torch.channels_last_3d)
        got = glcm_loss(model(x, mel), cfg.loss, cfg.model.temperature)[0]
    assert torch.allclose(ref, got, rtol=1e-4, atol=1e-5)
