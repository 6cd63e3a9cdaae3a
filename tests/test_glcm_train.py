"""Trainer: schedule, checkpoint round-trip, weights-only loading, Ctrl-C, CLI end to end."""
from __future__ import annotations

import json
import os
import pickle
import signal

import pytest
import torch
from typer.testing import CliRunner

from avprep.testing import avcorr
from cli.glcm_cli import app
from glcm import checkpoint as ckpt
from glcm.config import load_config
from glcm.train import Trainer, lr_factor, run_loop, RunLog, StopFlag

TINY = ["model.width=4", "model.local_width=4", "model.audio_width=8", "model.blocks=1,1,1,1",
        "model.global_dim=8", "model.local_dim=8", "data.crop=32", "train.batch_size=4",
        "train.warmup_steps=2", "train.steps=6", "train.threads=1"]


def batch(seed: int, b: int = 4):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (b, 32, 32, 32, 3), dtype=torch.uint8, generator=g),
            torch.randn(b, 80, 320, generator=g) * 20 - 40)


def test_schedule_warms_up_then_decays():
    cfg = load_config(overrides=["train.warmup_steps=10", "train.steps=110"]).train
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.0)
    cfg.schedule = "constant"
    assert lr_factor(100, cfg) == 1.0


def test_resume_restores_identical_next_step(tmp_path):
    cfg = load_config(overrides=TINY)
    a = Trainer(cfg, torch.device("cpu"))
    for s in range(3):
        a.train_step(*batch(s))
    a.save(tmp_path / "c.pt")
    next_a = a.train_step(*batch(99))["loss"].item()
    rand_a = torch.rand(3)

    b = Trainer(load_config(overrides=TINY + ["train.seed=5"]), torch.device("cpu"))
    b.load(tmp_path / "c.pt")
    assert b.step == 3
    next_b = b.train_step(*batch(99))["loss"].item()
    assert next_b == next_a                              # same weights, BN stats, Adam moments, lr
    torch.rand(3)                                        # (the step used no randomness)
    b.load(tmp_path / "c.pt")
    torch.testing.assert_close(torch.rand(3), rand_a)    # RNG state restored too
    fresh = Trainer(load_config(overrides=TINY + ["train.seed=5"]), torch.device("cpu"))
    assert fresh.train_step(*batch(99))["loss"].item() != next_a


def test_checkpoints_are_weights_only(tmp_path):
    data = Trainer(load_config(overrides=TINY), torch.device("cpu")).state()
    ckpt.atomic_save(data, tmp_path / "c.pt")
    torch.load(tmp_path / "c.pt", weights_only=True)    # plain tensors and data only
    assert not list(tmp_path.glob(".*tmp"))

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": ckpt.CHECKPOINT_FORMAT, "x": Evil()}, f)
    with pytest.raises(ValueError):
        ckpt.load(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_sigint_saves_a_checkpoint_and_stops(tmp_path):
    cfg = load_config(overrides=TINY + ["train.steps=100", "train.checkpoint_every=1000"])
    trainer = Trainer(cfg, torch.device("cpu"))

    def loader():
        for i in range(100):
            if i == 2:
                os.kill(os.getpid(), signal.SIGINT)       # what Ctrl-C delivers
            f, m = batch(i)
            yield {"frames": f, "mel": m, "worker": 0, "skipped": {}}

    log = RunLog(tmp_path, True)
    before = signal.getsignal(signal.SIGINT)   # SIG_IGN when run in the background (nohup, CI)
    with StopFlag() as stop:
        last = run_loop(trainer, loader(), log, stop, tmp_path / "checkpoint.pt", 0, 1)
    log.close()
    assert last["interrupted"] and trainer.step == 3
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
    assert signal.getsignal(signal.SIGINT) == before   # the handler in place before is restored


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    avcorr.write_shards(avcorr.make_clips(8, seed=0, min_seconds=3.3, max_seconds=4.0), str(out), per_shard=4)
    return str(out / "avcorr-{000000..000001}.tar"), out


def test_cli_train_resume_and_eval(shards, tmp_path):
    pattern, folder = shards
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["train", "--shards", pattern, "--out", str(run), "--steps", "4", "--batch-size", "4",
            "--device", "cpu", "--workers", "0", "--epoch-batches", "3"]
    sets = [x for s in TINY[:-4] + ["train.warmup_steps=1", "train.log_every=2", "train.threads=1"]
            for x in ("--set", s)]
    res = runner.invoke(app, args + sets)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["loss"] > 0 and r["clips_per_s"] > 0 for r in records)
    assert (run / "curves.png").stat().st_size > 1000 and list((run / "tb").iterdir())
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 4

    res = runner.invoke(app, ["train", "--shards", pattern, "--out", str(run), "--resume", "--steps", "6",
                              "--workers", "0", "--epoch-batches", "3"])
    assert res.exit_code == 0, res.output
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6
    assert json.loads((run / "config.json").read_text())["model"]["width"] == 4   # config kept on resume

    res = runner.invoke(app, ["eval-localization", "--checkpoint", str(run / "checkpoint.pt"), "--shards", pattern,
                              "--annotations", str(folder / "avcorr.json"), "--shift", "1"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output.strip().splitlines()[-1])
    assert result["clips"] == 8 and 0 <= result["ciou_mean"] <= 1

    enc = tmp_path / "audio.pt"
    res = runner.invoke(app, ["export-encoder", "--checkpoint", str(run / "checkpoint.pt"),
                              "--encoder", "audio", "--out", str(enc)])
    assert res.exit_code == 0, res.output
    assert ckpt.load_encoder(enc, "audio").global_head.out_channels == 8


def test_cli_rejects_bad_overrides(shards, tmp_path):
    res = CliRunner().invoke(app, ["train", "--shards", shards[0], "--out", str(tmp_path), "--set", "model.wdth=3"])
    assert res.exit_code != 0 and "wdth" in res.output
