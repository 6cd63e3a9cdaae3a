"""--pool attention (paper Table 7): the pooling itself on hand-made maps, the frozen
pretrained map inside the classifier, and every refused combination as one line before
training."""
from __future__ import annotations

import pytest
import torch

from glcm import checkpoint as ckpt
from glcm.config import smoke
from glcm.heads import Classifier, load_pretrained, pool_space
from glcm.model import GLCM, prepare_frames
from conftest import cli, one_line_error
from test_glcm_finetune import FAST, write
from test_glcm_finetune_tasks import sample


def test_a_one_hot_map_pools_that_cell_and_a_uniform_map_is_the_mean():
    feats = torch.randn(2, 3, 4, 5, 6)
    one_hot = torch.zeros(2, 5, 6)
    one_hot[0, 2, 3] = one_hot[1, 4, 0] = 1
    pooled = pool_space(feats, one_hot)
    assert pooled.shape == (2, 3, 4)
    assert torch.equal(pooled[0], feats[0, :, :, 2, 3]) and torch.equal(pooled[1], feats[1, :, :, 4, 0])
    uniform = torch.full((2, 5, 6), 1 / 30)
    assert torch.allclose(pool_space(feats, uniform), feats.mean(dim=(3, 4)), atol=1e-6)
    assert torch.equal(pool_space(feats), feats.mean(dim=(3, 4)))
    # a map on another grid is resampled and renormalised: uniform stays the mean
    assert torch.allclose(pool_space(feats, torch.full((2, 2, 3), 1 / 6)), feats.mean(dim=(3, 4)), atol=1e-6)
    # weights in between: 0.25 / 0.75 on two cells
    mixed = torch.zeros(2, 5, 6)
    mixed[:, 0, 0], mixed[:, 1, 1] = 0.25, 0.75
    assert torch.allclose(pool_space(feats, mixed), 0.25 * feats[..., 0, 0] + 0.75 * feats[..., 1, 1], atol=1e-6)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A GLCM training checkpoint of the smoke model (random weights: what matters is that
    the classifier's map is this model's map)."""
    torch.manual_seed(0)
    cfg = smoke()
    model = GLCM(cfg.model)
    path = tmp_path_factory.mktemp("pre") / "checkpoint.pt"
    ckpt.atomic_save({"format": ckpt.CHECKPOINT_FORMAT, "step": 1, "config": cfg.to_dict(),
                      "model": model.state_dict()}, path)
    return model.eval(), path


def test_the_classifier_pools_with_the_pretrained_models_frozen_map(pretrained):
    model, path = pretrained
    head = Classifier(model.cfg, ["global", "local"], 2, dropout=0.0, attention=True)
    load_pretrained(head, path)
    head.train()
    assert not head.attention.training and not any(p.requires_grad for p in head.attention.parameters())
    frames = torch.randint(0, 255, (2, 8, 32, 32, 3), dtype=torch.uint8)
    mel = torch.randn(2, 80, 8 * 4)
    with torch.no_grad():
        expected = model.attention_map(frames, mel)
    attn = head.attention(frames, mel)
    assert torch.allclose(attn, expected, atol=1e-6) and torch.allclose(attn.sum(dim=(1, 2)), torch.ones(2))
    head.eval()
    with torch.no_grad():
        got = head.features(frames, mel)
        local = pool_space(head.backbones["local"](prepare_frames(frames)), attn).mean(dim=2)
        other = head.features(frames, mel.flip(2) * 3)          # another sound, another map
    assert torch.allclose(got[:, -local.shape[1]:], local, atol=1e-5)
    assert not torch.allclose(got, other)
    head.train()
    head(frames, mel).sum().backward()
    assert all(p.grad is None for p in head.attention.parameters())
    assert head.backbones["local"].stem[0].weight.grad is not None


def lrw_shards(folder, crop="lips", mel=True):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        write(folder / f"{split}.tar", [sample(f"W{i % 2}/{split}/W{i % 2}_0000{i}", f"W{i % 2}", i % 2, split,
                                               i + 10 * len(split), frames=12, crop=crop, mel=mel) for i in range(4)])
    return ["--shards", folder / "train.tar", "--test-shards", folder / "test.tar"]


BAD = [
    ("attention on crops", lambda t, p: ["--task", "lrw", *lrw_shards(t), "--pool", "attention", "--init", p],
     "--pool attention replaces the lips crops: add --input full-frames"),
    ("attention from scratch", lambda t, p: ["--task", "dfdc", *lrw_shards(t, None), "--input", "full-frames",
                                             "--pool", "attention", "--init", "scratch"],
     "--pool attention with --init scratch: a random model's attention map means nothing"),
    ("attention on esc50", lambda t, p: ["--task", "esc50", "--shards", t, "--pool", "attention", "--init", p],
     "--input / --pool attention are for lrw and dfdc (the map instead of their lip/face crops, paper Table 7); "
     "task esc50 has no video"),
    ("crops for ucf101", lambda t, p: ["--task", "ucf101", "--shards", t, "--input", "crops", "--init", "scratch"],
     "task ucf101 reads whole frames and has no crops to replace"),
    ("bad input value", lambda t, p: ["--task", "lrw", "--shards", t, "--input", "frames", "--init", "scratch"],
     "task.input must be crops or full-frames, got 'frames'"),
    ("bad pool value", lambda t, p: ["--task", "lrw", "--shards", t, "--pool", "max", "--init", "scratch"],
     "task.pool must be mean or attention, got 'max'"),
    ("full frames on lip crops", lambda t, p: ["--task", "lrw", *lrw_shards(t), "--input", "full-frames",
                                               "--init", "scratch"],
     "--shards: the samples hold lips crops; --input full-frames needs whole frames (`avprep build lrw --crop none`)"),
    ("crops on whole frames", lambda t, p: ["--task", "lrw", *lrw_shards(t, None), "--init", "scratch"],
     "--shards: 4 of 4 samples are whole frames (no crop); task lrw reads lips crops"),
    ("attention without audio", lambda t, p: ["--task", "lrw", *lrw_shards(t, None, mel=False), "--input",
                                              "full-frames", "--pool", "attention", "--init", p],
     "--pool attention makes its map from the audio, but every sample is visual-only"),
]


@pytest.mark.parametrize("case,args,says", BAD, ids=[b[0] for b in BAD])
def test_bad_combinations_are_one_line_before_training(case, args, says, pretrained, tmp_path, monkeypatch):
    import glcm.finetune as gf
    monkeypatch.setattr(gf, "FinetuneTrainer", lambda *a, **k: pytest.fail("training started"))
    code, out = cli("finetune", *args(tmp_path / "s", pretrained[1]), "--out", tmp_path / "run", *FAST)
    assert code == 2, out
    assert says in one_line_error(out)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_an_encoder_file_cannot_make_the_map(pretrained, tmp_path):
    _, path = pretrained
    enc = tmp_path / "local.pt"
    code, out = cli("export-encoder", "--checkpoint", path, "--encoder", "local", "--out", enc)
    assert code == 0, out
    code, out = cli("finetune", "--task", "lrw", *lrw_shards(tmp_path / "s", None), "--input", "full-frames",
                    "--pool", "attention", "--features", "local", "--init", enc, "--out", tmp_path / "run", *FAST)
    assert code == 2 and "--pool attention needs the pretraining checkpoint.pt" in one_line_error(out)


def test_the_reader_adds_the_windows_own_mel_and_skips_samples_without_audio():
    import numpy as np

    from glcm.data import ClipSpec, SkipSample
    from glcm.labelled import Reader, decode_train
    spec = ClipSpec(frames=8, crop=32, flip_prob=0, grey_prob=0, jitter=False, mel_per_frame=10)
    reader = Reader("video", 2, audio=True)
    raw = sample("W0/train/W0_00001", "W0", 0, "train", 3, frames=6, crop=None, mel=True)
    out = decode_train(raw, spec, np.random.default_rng(0), reader)
    # the sample's own 4 columns per frame (not the model's 10); frames 0-5 then 0-1 again (looped)
    stored = np.random.default_rng(3).normal(-40, 5, (80, 24)).astype(np.float16).astype(np.float32)
    expected = np.concatenate([stored, stored[:, :8]], axis=1)
    assert out["frames"].shape == (8, 32, 32, 3) and np.array_equal(out["mel"], expected)
    silent = sample("W0/train/W0_00002", "W0", 0, "train", 4, frames=6, crop=None, mel=False)
    with pytest.raises(SkipSample) as info:
        decode_train(silent, spec, np.random.default_rng(0), reader)
    assert info.value.reason == "visual_only"                   # counted as a skip, the run goes on
    assert "mel" not in decode_train(silent, spec, np.random.default_rng(0), Reader("video", 2))
