"""Loss curves of a run (log.jsonl) as a PNG, with the non-interactive Agg backend,
written atomically (avprep.fsio)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from avprep.fsio import atomic_writer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CURVES = ("loss", "loss_global", "loss_local")


def read_log(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(log_path: str | Path, png_path: str | Path, title: str = "GLCM training",
                curves: tuple[str, ...] = CURVES, ylabel: str = "MIL-NCE loss") -> None:
    records = read_log(log_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in curves:
        pts = [(r["step"], r[key]) for r in records if key in r]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png_path)


def save_figure(fig, png_path: str | Path, dpi: int = 100) -> None:
    """tight_layout, then the PNG written atomically; the figure is closed in any case."""
    fig.tight_layout()
    try:
        with atomic_writer(png_path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def plot_confusion(matrix, names: dict[int, str], png_path: str | Path, title: str, top: int = 30) -> None:
    """Row-normalised confusion matrix: rows = the `top` most frequent true classes, columns =
    those and every class they were predicted as (up to `top` more), so no mistake is hidden."""
    import numpy as np
    rows = [int(c) for c in np.argsort(-matrix.sum(axis=1), kind="stable")[:top] if matrix[c].sum() > 0]
    rows = sorted(rows) or list(range(min(top, len(matrix))))
    predicted = matrix[rows].sum(axis=0)
    extra = [int(c) for c in np.argsort(-predicted, kind="stable")[:top] if predicted[c] > 0 and c not in rows]
    cols = sorted(rows + extra)
    sub = matrix[np.ix_(rows, cols)].astype(float)
    sub = sub / np.maximum(matrix[rows].sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * len(cols) + 3), max(3.0, 0.3 * len(rows) + 2)))
    im = ax.imshow(sub, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), [names.get(c, str(c)) for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), [names.get(c, str(c)) for c in rows], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    save_figure(fig, png_path)


def plot_per_class(accuracy: dict[int, float], names: dict[int, str], png_path: str | Path, title: str) -> None:
    """Horizontal bars of each class's accuracy, best first."""
    ranked = sorted(accuracy.items(), key=lambda kv: -kv[1])
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.18 * len(ranked) + 1.5)))
    ax.barh(range(len(ranked)), [a for _, a in ranked], color="#4c72b0")
    ax.set_yticks(range(len(ranked)), [names.get(c, str(c)) for c, _ in ranked], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, png_path)


def plot_roc(labels, scores, png_path: str | Path, title: str) -> None:
    """The ROC curve of continuous scores (sklearn.metrics.roc_curve)."""
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, lw=2)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    save_figure(fig, png_path)
