"""LRW and DFDC end to end from real faces: corpora in the datasets' layouts cut from the
GRID talking heads (avprep.testing.faces_corpus) -> `avprep build lrw|dfdc` (real dlib lip /
face crops; whole frames with --crop none) -> `glcm finetune` (a few steps) -> the run
folder -> `glcm report`. The runs prove the chain and its bookkeeping (labels, ids, the
metric on the right videos), not that two steps learn; the attention-pool run
(--input full-frames --pool attention) starts from the shared avcorr GLCM checkpoint."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from avprep.testing.faces_corpus import make_dfdc_corpus, make_lrw_corpus
from cli.avprep_cli import app as avprep_app
from conftest import cli

pytestmark = pytest.mark.real_media
FAST = ["--device", "cpu", "--workers", 0, "--batch-size", 4, "--set", "data.frames=12", "--set", "train.threads=1",
        "--set", "data.shuffle_buffer=8", "--set", "data.initial_buffer=2", "--set", "train.warmup_steps=1"]


def build(*args) -> str:
    res = CliRunner().invoke(avprep_app, ["build", *map(str, args), "--workers", "1"])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def faces(media_dir, tmp_path_factory):
    """The two corpora and their builds: LRW lip crops, LRW whole frames (64 px), DFDC face crops."""
    base = tmp_path_factory.mktemp("faces")
    lrw, dfdc = make_lrw_corpus(str(base / "lrw"), str(media_dir)), make_dfdc_corpus(str(base / "dfdc"), str(media_dir))
    out = base / "out"
    build("lrw", lrw.root, "--out", out / "lrw")
    build("lrw", lrw.root, "--out", out / "lrw-full", "--crop", "none", "--short-side", 64)
    text = build("dfdc", dfdc.root, "--out", out / "dfdc", "--min-frames", 12)
    assert "5 inputs: 4 ok, 1 failed" in text and "no_audio: 1" in text       # the MOT20 clip, recorded
    return {"lrw": lrw, "dfdc": dfdc, "out": out, "runs": base / "runs"}


def rows(run: Path) -> list[dict]:
    with open(run / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_scored(run: Path, clips, metric: str) -> dict:
    """metrics.json and predictions.csv name exactly the test clips, with their labels, and
    the metric is the one the predictions give."""
    m = json.loads((run / "metrics.json").read_text())
    got = rows(run)
    assert sorted(r["id"] for r in got) == sorted(c.item_id for c in clips) and m["videos"] == len(clips)
    by_id = {c.item_id: c for c in clips}
    assert all((int(r["label"]), r["label_name"]) == (by_id[r["id"]].label_index, by_id[r["id"]].label) for r in got)
    assert m["top1"] == pytest.approx(sum(r["prediction"] == r["label"] for r in got) / len(got))
    assert m["metric"] == metric and m["value"] == m[metric]
    for picture in m["pictures"].values():
        assert (run / picture).stat().st_size > 1000
    return m


@pytest.fixture(scope="module")
def lrw_crops_run(faces) -> Path:
    """LRW on the lip-crop build, from scratch: train split, val split, test split."""
    out, run = faces["out"], faces["runs"] / "lrw-crops"
    code, text = cli("finetune", "--task", "lrw", "--shards", out / "lrw" / "train",
                     "--val-shards", out / "lrw" / "val",
                     "--test-shards", out / "lrw" / "test", "--init", "scratch", "--preset", "smoke", "--out", run,
                     "--steps", 2, *FAST, "--set", "data.frames=28", "--set", "task.classes=2",
                     "--set", "task.temporal_width=16", "--set", "task.boundary=true")
    assert code == 0, text
    return run


def test_lrw_lip_crops_end_to_end(faces, lrw_crops_run):
    run = lrw_crops_run
    m = check_scored(run, faces["lrw"].built("test"), "top1")
    assert (m["task"], m["split"], m["input"], m["pool"], m["clips_per_video"]) == ("lrw", "test", "crops", "mean", 1)
    assert m["val_videos"] == 1 and set(m["per_class"]) == {"BLUE", "PLACE"}
    assert len((run / "log.jsonl").read_text().splitlines()) >= 1


def test_dfdc_face_crops_with_chugh_lists_end_to_end(faces):
    out, run, corpus = faces["out"], faces["runs"] / "dfdc-crops", faces["dfdc"]
    code, text = cli("finetune", "--task", "dfdc", "--shards", out / "dfdc", "--init", "scratch", "--preset", "smoke",
                     "--out", run, "--steps", 2, "--clips", 2, *FAST,
                     "--set", f"task.train_list={corpus.lists['train']}",
                     "--set", f"task.test_list={corpus.lists['test']}")
    assert code == 0, text
    m = check_scored(run, corpus.built("test"), "auc")       # part 1's two built videos, not the failed one
    from sklearn.metrics import roc_auc_score
    got = rows(run)
    fake = [float(r["label_score"]) if r["label"] == "1" else 1 - float(r["label_score"]) for r in got]
    assert m["auc"] == pytest.approx(roc_auc_score([int(r["label"]) for r in got], fake), abs=1e-5)
    assert (m["input"], m["pool"], m["clips_per_video"]) == ("crops", "mean", 2)
    code, text = cli("report", run, "--out", run.parent / "dfdc.md")
    assert code == 0, text
    table = (run.parent / "dfdc.md").read_text()
    assert f"| dfdc | scratch | full | both | split lists | auc | {100 * m['auc']:.1f} |" in table
    assert "| 96.7 |" in table and "| crops, mean |" in table


def test_lrw_full_frames_with_the_attention_pool_end_to_end(faces, lrw_crops_run, avcorr_run):
    out, runs = faces["out"], faces["runs"]
    run = runs / "lrw-attention"
    code, text = cli("finetune", "--task", "lrw", "--input", "full-frames", "--pool", "attention",
                     "--shards", out / "lrw-full" / "train", "--test-shards", out / "lrw-full" / "test",
                     "--init", avcorr_run.checkpoint, "--out", run, "--steps", 2, *FAST, "--set", "data.frames=28",
                     "--set", "data.crop=48", "--set", "task.classes=2", "--set", "task.temporal_width=16")
    assert code == 0, text
    m = check_scored(run, faces["lrw"].built("test"), "top1")
    assert (m["input"], m["pool"], m["init"]) == ("full-frames", "attention", "pretrained")
    # the map's encoders stay the pretrained ones; the finetuned backbones moved
    pre = torch.load(avcorr_run.checkpoint, weights_only=True)["model"]
    now = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    key = "encoders.global.backbone.stem.0.weight"
    assert torch.equal(now[f"attention.model.{key}"], pre[key])
    head = "encoders.audio.global_head.weight"
    assert torch.equal(now[f"attention.model.{head}"], pre[head])
    assert not torch.equal(now["backbones.global.stem.0.weight"], pre[key])
    # a crop run and an attention run side by side in the report
    code, text = cli("report", lrw_crops_run, run, "--out", runs / "report.md")
    assert code == 0, text
    table = (runs / "report.md").read_text()
    assert "| input, pool |" in table
    assert "| lrw | scratch | full | both | split test | top1 |" in table and "| crops, mean |" in table
    assert "| lrw | pretrained | full | both | split test | top1 |" in table and "| full-frames, attention |" in table
