"""Model shapes, attention pooling by hand, per-encoder checkpoints, config parsing."""
from __future__ import annotations

import json

import pytest
import torch

from glcm.checkpoint import load_encoder, model_config, save_encoder
from glcm.config import ConfigError, GLCMConfig, load_config
from glcm.model import GLCM, prepare_frames

TINY = ["model.width=4", "model.local_width=4", "model.audio_width=4", "model.blocks=1,1,1,1",
        "model.global_dim=8", "model.local_dim=6"]


def tiny_model(*extra: str, seed: int = 0) -> GLCM:
    torch.manual_seed(seed)
    return GLCM(load_config(overrides=TINY + list(extra)).model).eval()


def clips(b: int, t: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (b, t, size, size, 3), dtype=torch.uint8, generator=g)
    mel = torch.randn(b, 80, t * 10, generator=g) * 20 - 40
    return frames, mel


@pytest.mark.parametrize("size,stride,grid", [(112, 16, 7), (112, 8, 14), (128, 8, 16)])
def test_grids_and_time_steps(size, stride, grid):
    model = tiny_model(f"model.output_stride={stride}")
    frames, mel = clips(2, 32, size)
    with torch.no_grad():
        out = model(frames, mel)
        gfeat, grid_emb = model.global_features(frames)
        lfeat, _ = model.local_features(frames)
    assert out.attention.shape == (2, grid, grid)
    assert out.visual_grid.shape == (2, grid * grid, 8)
    assert gfeat.shape[2] == 8                      # every 4th of 32 frames, no temporal stride
    assert lfeat.shape[2:] == (32, grid, grid)      # local path keeps all 32 steps
    assert out.audio_local.shape == (2, 32, 3, 6)   # M = 3 audio steps per visual step
    assert out.visual_local.shape == (2, 32, 6)
    assert torch.allclose(out.attention.sum(dim=(1, 2)), torch.ones(2))


def test_attention_pooling_by_hand():
    model = tiny_model("model.temperature=0.5")
    frames, mel = clips(2, 8, 64, seed=1)
    with torch.no_grad():
        out = model(frames, mel)
        audio = model.audio_features(mel, 8).global_emb                 # (B, Dg)
        _, grid = model.global_features(frames)                         # (B, H, W, Dg)
        lfeat, _ = model.local_features(frames)                         # (B, C, T, H, W)
    b, h, w, _ = grid.shape
    head = model.encoders["local"].head
    for i in range(b):
        scores = torch.tensor([[float(audio[i] @ grid[i, y, x]) / 0.5 for x in range(w)] for y in range(h)])
        attn = torch.softmax(scores.flatten(), 0).view(h, w)
        torch.testing.assert_close(out.attention[i], attn, rtol=1e-5, atol=1e-6)
        for t in range(lfeat.shape[2]):
            pooled = sum(attn[y, x] * lfeat[i, :, t, y, x] for y in range(h) for x in range(w))
            proj = head.weight[:, :, 0, 0, 0] @ pooled + head.bias
            torch.testing.assert_close(out.visual_local[i, t], proj / proj.norm(), rtol=1e-4, atol=1e-5)


def test_average_pooling_when_attention_is_off():
    model = tiny_model("model.attention_pool=false", "model.l2_norm=false")
    frames, mel = clips(1, 8, 64, seed=2)
    with torch.no_grad():
        out = model(frames, mel)
        _, avg = model.local_features(frames)
    torch.testing.assert_close(out.visual_local, avg)


def test_authors_variant_has_raw_dot_products():
    cfg = load_config(preset="authors", overrides=TINY[:4])
    assert (cfg.model.l2_norm, cfg.model.temperature, cfg.model.global_dim, cfg.model.local_dim) == (False, 1.0, 512, 64)
    model = GLCM(cfg.model).eval()
    frames, mel = clips(1, 32, 112)
    with torch.no_grad():
        out = model(frames, mel)
    assert out.attention.shape == (1, 7, 7)
    assert not torch.allclose(out.audio_global.norm(dim=1), torch.ones(1))


def test_prepare_frames_layout():
    frames = torch.zeros(1, 2, 4, 4, 3, dtype=torch.uint8)
    frames[0, 1, :, :, 2] = 255
    x = prepare_frames(frames)
    assert x.shape == (1, 3, 2, 4, 4)
    assert x[0, 2, 1].min() > x[0, 2, 0].max()      # blue channel of frame 1 is bright


@pytest.mark.parametrize("name", ["audio", "global", "local"])
def test_encoder_saved_and_loaded_alone(tmp_path, name):
    model = tiny_model(seed=3)
    path = tmp_path / f"{name}.pt"
    save_encoder(model.state_dict(), model.cfg, name, path)
    loaded = load_encoder(path, name).eval()
    frames, mel = clips(1, 8, 64)
    with torch.no_grad():
        if name == "audio":
            a, b = model.encoders["audio"].backbone(mel), loaded.backbone(mel)
        else:
            x = prepare_frames(frames)
            a, b = model.encoders[name].backbone(x), loaded.backbone(x)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        load_encoder(path, "local" if name != "local" else "audio")


def test_config_overrides_and_errors(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model": {"width": 16, "blocks": [1, 1, 2, 2]}, "train": {"lr": 0.01}}))
    cfg = load_config(path, ["model.l2_norm=false", "train.steps=5"])
    assert (cfg.model.width, cfg.model.blocks, cfg.model.l2_norm, cfg.train.lr, cfg.train.steps) == \
        (16, (1, 1, 2, 2), False, 0.01, 5)
    for bad in (["model.nope=1"], ["model.width=abc"], ["model.width"], ["model.output_stride=2"],
                ["model.l2_norm=maybe"], ["loss.direction=sideways"]):
        with pytest.raises(ConfigError):
            load_config(overrides=bad)
    with pytest.raises(ConfigError):
        load_config(preset="huge")
    # a saved config reads back identically
    cfg.save(tmp_path / "again.json")
    assert load_config(tmp_path / "again.json") == cfg
    assert model_config(GLCMConfig().to_dict()["model"]) == GLCMConfig().model


def test_localisation_map_geometry_and_iou():
    import numpy as np
    from glcm.evaluate import localisation_scores, upsample_map
    a = torch.zeros(8, 8)
    a[3, 5] = 1.0
    up = upsample_map(a, 64)
    assert up[24, 40] == 1.0                          # cell (3, 5) sits on pixel (24, 40)
    assert up[24, 44] == pytest.approx(0.5) and up[28, 40] == pytest.approx(0.5)
    # by hand: the bilinear tent (1-|dx|/8)(1-|dy|/8) around (40, 24), thresholded at 0.5
    ys, xs = np.mgrid[0:64, 0:64]
    tent = np.clip(1 - abs(xs - 40) / 8, 0, None) * np.clip(1 - abs(ys - 24) / 8, 0, None)
    pred, gt = tent >= 0.5, np.zeros((64, 64), bool)
    gt[20:28, 36:44] = True
    iou, hit = localisation_scores(a, np.array([36, 20, 44, 28]), 64)
    assert iou == pytest.approx((pred & gt).sum() / (pred | gt).sum()) and hit
    iou, hit = localisation_scores(a, np.array([0, 0, 10, 10]), 64)
    assert iou == 0.0 and not hit
