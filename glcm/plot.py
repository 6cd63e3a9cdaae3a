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
