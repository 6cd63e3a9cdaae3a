"""Downstream metrics. The scores themselves come from scikit-learn (accuracy, top-k,
confusion matrix, ROC AUC); this module only shapes the inputs the way the protocols say
(../shared/paper/DOWNSTREAM.md):

* UCF101 / HMDB51 / ESC-50: a video's score = the softmax averaged over its clips
  (`video_average`), then top-1 (and top-5) over videos; per split / fold, and the mean.
* DFDC: a video's score = the mean clip score, continuous, then ROC AUC (never thresholded).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score, top_k_accuracy_score


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def video_average(clip_scores: np.ndarray, video_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """(video ids in first-seen order, the mean of each video's clip rows). Rows are
    softmax probabilities (classification) or clip scores (DFDC)."""
    order: dict[str, int] = {}
    for vid in video_ids:
        order.setdefault(vid, len(order))
    index = np.array([order[v] for v in video_ids])
    sums = np.zeros((len(order),) + clip_scores.shape[1:], dtype=np.float64)
    np.add.at(sums, index, clip_scores)
    counts = np.bincount(index, minlength=len(order)).astype(np.float64)
    return list(order), sums / counts.reshape((-1,) + (1,) * (clip_scores.ndim - 1))


def top1(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(accuracy_score(labels, scores.argmax(axis=1)))


def top_k(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest scores (1.0 when k >= classes)."""
    classes = scores.shape[1]
    if k >= classes:
        return 1.0
    if classes == 2:                       # sklearn reads binary scores as one column
        return top1(labels, scores)
    return float(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(classes)))


def confusion(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    return confusion_matrix(labels, predictions, labels=np.arange(classes))


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray) -> dict[int, float]:
    """Accuracy of each class that occurs among `labels`."""
    return {int(c): float((predictions[labels == c] == c).mean()) for c in np.unique(labels)}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of continuous scores (1 = the positive class, e.g. FAKE)."""
    return float(roc_auc_score(labels, scores))


def video_auc(labels: np.ndarray, clip_scores: np.ndarray, video_ids: list[str]) -> float:
    """DFDC: ROC AUC of the mean clip score per video (labels per clip, 1 = fake)."""
    ids, scores = video_average(np.asarray(clip_scores, dtype=np.float64), video_ids)
    first = {}
    for vid, label in zip(video_ids, labels):
        first.setdefault(vid, label)
    return auc(np.array([first[v] for v in ids]), scores)


def mean_of(values: list[float]) -> float:
    """The mean over splits or folds (the protocols' figure)."""
    if not values:
        raise ValueError("no values to average")
    return float(np.mean(values))
