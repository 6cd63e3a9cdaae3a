"""Tiny corpora in the Kinetics and AVSpeech layouts (docs: ../shared/paper/NOTES.md section 3).

Each writer returns a `Corpus` that records what it wrote: the CSV rows, which rows have a
file, which file each row points to, and whether that file is a whole download the recipe
must cut. Content comes from `clip_fn(rng, seconds, fps, sample_rate, width, height)
-> (frames (T,H,W,3) uint8, audio (N,) float32)`; the default draws pattern frames with a
per-video tone, so every video differs. Another generator (e.g. avprep.testing.avcorr)
can be plugged in through `clip_fn`.
"""
from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from avprep.testing.synthetic import pattern_frames, write_video

ClipFn = Callable[[np.random.Generator, float, float, int, int, int], tuple[np.ndarray, np.ndarray]]

LABELS = ("abseiling", "playing_drums", "tap_dancing")


def default_clip(rng: np.random.Generator, seconds: float, fps: float, sample_rate: int,
                 width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pattern frames and a quiet tone of a random pitch."""
    n = int(round(seconds * fps))
    frames = pattern_frames(n, height, width, seed=int(rng.integers(1 << 30)))
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    hz = float(rng.uniform(200, 2000))
    audio = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return frames, audio


@dataclass
class Row:
    vid: str
    start: float
    end: float
    label: str | None = None
    split: str | None = None
    x: float | None = None
    y: float | None = None
    path: str | None = None        # the file written for the row (None: missing on purpose)
    whole: bool = False            # the file is a whole download longer than [start, end]
    file_seconds: float = 0.0


@dataclass
class Corpus:
    root: str
    csv_path: str
    rows: list[Row] = field(default_factory=list)

    @property
    def present(self) -> list[Row]:
        return [r for r in self.rows if r.path is not None]

    @property
    def missing(self) -> list[Row]:
        return [r for r in self.rows if r.path is None]


def _vid(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    # YouTube-like 11-character ids; never start with '-' so file names stay ordinary
    return rng.choice(alphabet[:62]) + "".join(rng.choice(alphabet) for _ in range(10))


def _locate(row: Row, folder: str, clip_name: str, whole: bool) -> None:
    """Point `row` at a whole download `<id>.mp4` (1 s longer than the row's end, for the
    recipe to cut) or at a pre-cut clip named `clip_name`."""
    if whole:
        row.path, row.whole, row.file_seconds = os.path.join(folder, f"{row.vid}.mp4"), True, row.end + 1.0
    else:
        row.path, row.file_seconds = os.path.join(folder, clip_name), row.end - row.start


def _write(path: str, rng: np.random.Generator, seconds: float, clip_fn: ClipFn, fps: float,
           sample_rate: int, width: int, height: int, codec: str, audio_codec: str) -> None:
    frames, audio = clip_fn(rng, seconds, fps, sample_rate, width, height)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_video(path, frames, fps, audio, sample_rate, codec=codec, audio_codec=audio_codec)


def make_kinetics_corpus(root: str, n: int = 6, seed: int = 0, layout: str = "per_label",
                         whole_downloads: bool = False, *, clip_seconds: int = 4, lead_seconds: int = 1,
                         missing_every: int = 4, with_labels: bool = True, split: str = "train",
                         clip_fn: ClipFn = default_clip, fps: float = 10.0, sample_rate: int = 16000,
                         width: int = 96, height: int = 64, codec: str = "h264",
                         audio_codec: str = "aac", csv_name: str | None = None) -> Corpus:
    """`n` annotated rows; every `missing_every`-th row (1-based: rows 4, 8, ...) has no file.

    layout "per_label": `root/<label>/<id>_<start:06d>_<end:06d>.mp4`; "flat": all in `root`.
    whole_downloads: files are `<id>.mp4` of lead + clip + 1 s, the row's span is
    [lead, lead + clip] inside it (the recipe cuts it). with_labels=False writes a test-style
    CSV without the label column (files then go flat)."""
    if layout not in ("per_label", "flat"):
        raise ValueError(f"layout must be per_label or flat, not {layout!r}")
    rnd = random.Random(seed)
    nrng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    csv_path = os.path.join(root, csv_name or (f"{split}.csv" if with_labels else "test.csv"))
    corpus = Corpus(root, csv_path)
    for i in range(n):
        vid = _vid(rnd)
        label = LABELS[i % len(LABELS)] if with_labels else None
        start = lead_seconds + 10 * rnd.randint(0, 3) if whole_downloads else 10 * rnd.randint(0, 30)
        end = start + clip_seconds
        row = Row(vid, float(start), float(end), label=label, split=split)
        corpus.rows.append(row)
        if missing_every and (i + 1) % missing_every == 0:
            continue
        folder = os.path.join(root, label) if (layout == "per_label" and label) else root
        _locate(row, folder, f"{vid}_{start:06d}_{end:06d}.mp4", whole_downloads)
        _write(row.path, nrng, row.file_seconds, clip_fn, fps, sample_rate, width, height, codec, audio_codec)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow((["label"] if with_labels else []) + ["youtube_id", "time_start", "time_end", "split"])
        for r in corpus.rows:
            w.writerow(([r.label] if with_labels else []) + [r.vid, int(r.start), int(r.end), r.split])
    return corpus


def make_avspeech_corpus(root: str, n: int = 4, seed: int = 0, whole_downloads: bool = True, *,
                         clip_seconds: float = 3.5, lead_seconds: float = 1.25, missing_every: int = 3,
                         split: str = "train", clip_fn: ClipFn = default_clip, fps: float = 10.0,
                         sample_rate: int = 16000, width: int = 96, height: int = 64, codec: str = "h264",
                         audio_codec: str = "aac") -> Corpus:
    """Headerless `avspeech_<split>.csv` rows `id,start,end,x,y`; every `missing_every`-th row
    has no file. whole_downloads: `<id>.mp4` files longer than the row's span (cut by the
    recipe); else pre-cut `<id>_<start>_<end>.mp4` clips."""
    rnd = random.Random(seed + 1000)
    nrng = np.random.default_rng(seed + 1000)
    os.makedirs(root, exist_ok=True)
    csv_path = os.path.join(root, f"avspeech_{split}.csv")
    corpus = Corpus(root, csv_path)
    for i in range(n):
        vid = _vid(rnd)
        start = lead_seconds + 0.5 * rnd.randint(0, 2)
        end = start + clip_seconds
        x, y = round(rnd.uniform(0.2, 0.8), 6), round(rnd.uniform(0.2, 0.8), 6)
        row = Row(vid, start, end, split=split, x=x, y=y)
        corpus.rows.append(row)
        if missing_every and (i + 1) % missing_every == 0:
            continue
        _locate(row, root, f"{vid}_{start:.6f}_{end:.6f}.mp4", whole_downloads)
        _write(row.path, nrng, row.file_seconds, clip_fn, fps, sample_rate, width, height, codec, audio_codec)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        for r in corpus.rows:
            w.writerow([r.vid, f"{r.start:.6f}", f"{r.end:.6f}", r.x, r.y])
    return corpus
