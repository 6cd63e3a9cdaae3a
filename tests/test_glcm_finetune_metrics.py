"""Downstream metric code against hand-computed values: clip-to-video softmax averaging,
top-k, ROC AUC on continuous scores, split / fold means, window placement, selection."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avprep.format import SampleMeta, SourceVideo
from glcm import metrics
from glcm.config import load_finetune_config
from glcm.finetune import summarise
from glcm.labelled import Selection, window_starts
from glcm.report import write_report


def test_video_average_is_the_mean_of_each_videos_clip_rows():
    clips = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.4, 0.6]])
    ids, avg = metrics.video_average(clips, ["a", "b", "a", "c", "a"])
    assert ids == ["a", "b", "c"]
    np.testing.assert_allclose(avg, [[1.7 / 3, 1.3 / 3], [0.2, 0.8], [0.5, 0.5]])


def test_video_top1_averages_softmax_not_votes():
    # video v: one confident clip for class 0, two weak ones for class 1: the mean says 0,
    # a majority vote would say 1
    scored = {"probs": [np.array([[0.9, 0.1], [0.4, 0.6], [0.4, 0.6]]), np.array([[0.3, 0.7]])],
              "ids": ["v", "v", "v", "w"], "labels": {"v": 0, "w": 1}, "names": {0: "zero", 1: "one"},
              "skipped": {}}
    cfg = load_finetune_config(overrides=["task.clips=3"])
    result, rows, probs = summarise(scored, cfg)
    assert result["top1"] == 1.0 and result["videos"] == 2
    assert rows[0]["id"] == "v" and rows[0]["prediction"] == 0 and rows[0]["score"] == pytest.approx(1.7 / 3, abs=1e-6)
    assert rows[0]["top5"].startswith("0:0.5667 1:0.4333")
    np.testing.assert_allclose(probs[1], [0.3, 0.7])


def test_top_k_by_hand():
    scores = np.array([[0.5, 0.3, 0.2, 0.0],      # label 1: second -> top-2 hit, top-1 miss
                       [0.1, 0.2, 0.3, 0.4],      # label 0: last -> miss up to top-3
                       [0.0, 0.1, 0.6, 0.3]])     # label 2: first
    labels = np.array([1, 0, 2])
    assert metrics.top1(labels, scores) == pytest.approx(1 / 3)
    assert metrics.top_k(labels, scores, 2) == pytest.approx(2 / 3)
    assert metrics.top_k(labels, scores, 3) == pytest.approx(2 / 3)
    assert metrics.top_k(labels, scores, 5) == 1.0                  # k >= classes


def test_video_auc_uses_the_continuous_mean_clip_score():
    # video means: a 0.45 (real), b 0.55 (fake), c 0.40 (fake), d 0.10 (real)
    clip_scores = [0.4, 0.5, 0.9, 0.2, 0.4, 0.1]
    ids = ["a", "a", "b", "b", "c", "d"]
    labels = [0, 0, 1, 1, 1, 0]
    # pairs (fake > real): b>a, b>d, c>d yes; c>a no -> 3/4
    assert metrics.video_auc(labels, clip_scores, ids) == pytest.approx(0.75)
    # thresholding at 0.5 first would give b 1, others 0: AUC 0.75 too only by chance; at 0.42 it differs
    thresholded = [1.0 if s > 0.42 else 0.0 for s in (0.45, 0.55, 0.40, 0.10)]
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score([0, 1, 1, 0], thresholded) != pytest.approx(0.75)


def test_means_and_confusion():
    assert metrics.mean_of([0.5, 0.7, 0.9]) == pytest.approx(0.7)
    assert metrics.mean_of([0.8, 0.6, 0.7, 0.9, 1.0]) == pytest.approx(0.8)
    cm = metrics.confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert metrics.per_class_accuracy(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1])) == {0: 0.5, 1: 1.0, 2: 0.0}


def test_test_windows_are_uniformly_spaced():
    assert window_starts(100, 32, 10) == [0, 8, 15, 23, 30, 38, 45, 53, 60, 68]
    assert window_starts(32, 32, 3) == [0, 0, 0]
    assert window_starts(12, 32, 2) == [0, 0]                  # shorter than a window: looped from 0
    assert window_starts(50, 8, 1) == [0]


def meta(**extra) -> SampleMeta:
    src = SourceVideo(width=None, height=None, sar=None, rotation=None, fps=None, codec=None, audio_codec=None,
                      audio_channels=None, audio_sample_rate=None)
    return SampleMeta(key="k", source="t", item_id="k", split=None, source_path="k", segment=0, first_frame=0,
                      fps=10.0, start_time=0.0, end_time=1.0, cut_start=None, cut_end=None, has_audio=True,
                      sample_rate=16000, hop_length=160, n_fft=400, n_mels=80, mel_per_frame=10, labels={},
                      extra=extra, source_video=src)


def test_selection_by_split_and_fold():
    m = meta(splits={"1": "train", "2": "test", "3": "unused"})
    assert Selection("split", 1, "train")(m) and not Selection("split", 1, "test")(m)
    assert Selection("split", 2, "test")(m) and not Selection("split", 3, "train")(m)
    assert not Selection("split", 3, "test")(m) and Selection("split", 3, "all")(m)
    f = meta(fold=2)
    assert Selection("fold", 2, "test")(f) and not Selection("fold", 2, "train")(f)
    assert Selection("fold", 1, "train")(f) and not Selection("fold", 1, "test")(f)
    assert not Selection("fold", 1, "train")(meta())           # no fold: in neither set


def test_report_adds_the_three_split_mean(tmp_path):
    for n, top1 in ((1, 0.5), (2, 0.6), (3, 0.9)):
        run = tmp_path / "runs" / f"ucf-s{n}"
        run.mkdir(parents=True)
        (run / "confusion.png").write_bytes(b"png")
        (run / "metrics.json").write_text(json.dumps({
            "task": "ucf101", "init": "pretrained", "init_path": "p.pt", "mode": "full", "features": "both",
            "split": n, "value": top1, "top1": top1, "pictures": {"confusion": "confusion.png"}}))
    (tmp_path / "runs" / "pretrain").mkdir()
    rows = write_report(sorted((tmp_path / "runs").iterdir()), tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert rows == 4
    assert "| (mean) | ucf101 | pretrained | full | both | split mean of 3 | top1 | 66.7 |  | 91.2 |" in text
    assert "[confusion](runs/ucf-s1/confusion.png)" in text and "| 50.0 |  | 91.2 |" in text     # val: empty
    assert "Not scored (no metrics.json):" in text and "pretrain" in text
