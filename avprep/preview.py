"""Contact sheets: frames along time with the mel spectrogram under them on the same axis."""
from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from avprep import fsio
from avprep.format import LANDMARKS, TRANSFORM, FormatError, SampleMeta, expand_shards, open_sample
from avprep.tools import TAR_ERRORS, iter_raw, tar_error


@dataclass
class Drawn:
    """What one sample contributes to the sheet, decoded (and so checked) before drawing."""
    meta: SampleMeta
    picks: np.ndarray              # frame indices shown
    frames: np.ndarray | None      # (len(picks), H, W, 3) RGB; None: an audio-only sample
    mel: np.ndarray | None         # (n_mels, T*k) float32; None: a visual-only sample
    points: list                   # per pick: (68, 2) landmarks in crop pixels, or None


@dataclass
class PreviewResult:
    drawn: int                     # samples on the sheet
    skipped: list[str]             # "key: reason" of samples that break a rule of the format


def _prepare(raw: dict, frames_per_row: int) -> Drawn:
    """Everything the sheet shows of one sample; FormatError if the sample breaks a rule."""
    sample = open_sample(raw)
    t = sample.meta.num_frames
    picks = np.linspace(0, t - 1, min(frames_per_row, t)).round().astype(int)
    points = [None] * len(picks)
    if LANDMARKS in raw and TRANSFORM in raw:
        lm, tf = sample.array(LANDMARKS), sample.array(TRANSFORM)
        points = [lm[i] @ tf[i][:, :2].T + tf[i][:, 2] for i in picks]
    frames = sample.frames(picks) if sample.has_video else None
    mel = sample.mel_window(0, t) if sample.has_audio else None
    return Drawn(sample.meta, picks, frames, mel, points)


def _collect(shards: list[str], count: int, frames_per_row: int) -> tuple[list[Drawn], list[str]]:
    drawn, skipped = [], []
    for shard in shards:
        try:
            for raw in iter_raw([shard]):
                try:
                    drawn.append(_prepare(raw, frames_per_row))
                except FormatError as exc:
                    skipped.append(f"{raw.get('__key__', '?')}: {exc}")
                if len(drawn) >= count:
                    return drawn, skipped
        except TAR_ERRORS as exc:
            skipped.append(f"{shard}: unreadable ({tar_error(exc)})")
    return drawn, skipped


def check_png_out(out_path: str, example: str = "preview.png") -> None:
    """The PNG path is a file name (not a folder) in a folder that exists or can be made;
    fsio.OutputError (one line) otherwise. Checked before any work."""
    if os.path.isdir(out_path):
        raise fsio.OutputError(f"--out {out_path} is a folder; give the PNG's file name, e.g. "
                               f"{os.path.join(out_path, example)}")
    fsio.make_output_dir(os.path.dirname(out_path) or ".")


def preview(spec: str | list[str], out_path: str, max_samples: int = 4, frames_per_row: int = 8,
            allow_commands: bool = False) -> PreviewResult:
    """Write a PNG contact sheet of the first `max_samples` good samples to exactly `out_path`;
    samples that break a rule of the format are skipped and named. ValueError if none can be
    drawn; fsio.OutputError if `out_path` cannot be written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_png_out(out_path)
    samples, skipped = _collect(expand_shards(spec, allow_commands), max_samples, frames_per_row)
    if not samples:
        detail = f" ({len(skipped)} bad: {skipped[0]}; run avprep verify)" if skipped else ""
        raise ValueError(f"no samples to draw in {spec}{detail}")
    fig, axes = plt.subplots(2 * len(samples), 1, figsize=(12, 3.2 * len(samples)),
                             gridspec_kw={"height_ratios": [1.3, 1] * len(samples)}, squeeze=False)
    for n, sample in enumerate(samples):
        _draw_sample(sample, axes[2 * n, 0], axes[2 * n + 1, 0])
    fig.tight_layout()
    with fsio.atomic_writer(out_path) as f:    # format given: a name without .png stays as given
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return PreviewResult(len(samples), skipped)


def _draw_sample(d: Drawn, ax_frames, ax_mel) -> None:
    meta = d.meta
    t0, t1 = meta.start_time, meta.end_time
    slot = (t1 - t0) / len(d.picks)
    if d.frames is None:
        ax_frames.text((t0 + t1) / 2, 0.5, "audio only: no video", ha="center", va="center")
    for j, (i, frame, pts) in enumerate(zip(d.picks, d.frames if d.frames is not None else [], d.points)):
        left = t0 + j * slot
        ax_frames.imshow(frame, extent=[left, left + slot * 0.96, 0, 1], aspect="auto")
        if pts is not None:
            h, w = frame.shape[:2]
            ax_frames.scatter(left + pts[:, 0] / w * slot * 0.96, 1 - pts[:, 1] / h, s=2, c="lime")
        ax_frames.text(left, 1.02, f"{(meta.first_frame + i) / meta.fps:.1f}s", fontsize=7)
    ax_frames.set_xlim(t0, t1)
    ax_frames.set_ylim(0, 1.1)
    ax_frames.set_yticks([])
    ax_frames.set_title(f"{meta.key}  ({meta.source}, {meta.num_frames} frames @ {meta.fps:g} fps)", fontsize=9)
    if d.mel is None:
        ax_mel.text((t0 + t1) / 2, 0.5, "visual only: no audio", ha="center", va="center")
    else:
        ax_mel.imshow(d.mel, origin="lower", aspect="auto", extent=[t0, t1, 0, d.mel.shape[0]], cmap="magma")
    ax_mel.set_xlim(t0, t1)
    ax_mel.set_ylabel("mel band")
    ax_mel.set_xlabel("time (s, shared clock)")


def preview_crops(video: str, out_path: str, kind: str = "lips", fps: float = 25.0, size: int = 112,
                  frames_per_sheet: int = 6) -> dict:
    """Run the crop stage on the first clip of `video` and draw, for evenly spaced frames,
    the original frame with its (smoothed) landmarks beside the crop. Returns the crop meta.

    Raises MediaError (e.g. no_face) like a build would record it, ConfigError for a bad
    fps or crop option, fsio.OutputError if `out_path` cannot be written."""
    import cv2

    from avprep.clips import iter_clips
    from avprep.config import (AudioConfig, BuildConfig, ClipConfig, CropConfig, VideoConfig, check_number,
                               validate_crop)
    from avprep.faces.draw import draw_landmarks
    from avprep.faces.stage import crop_clip
    from avprep.items import SourceItem

    check_number("--fps", fps, low=0, low_open=True)
    crop = CropConfig(kind=kind, size=size)
    validate_crop(crop)
    check_png_out(out_path, "crops.png")
    cfg = BuildConfig(video=VideoConfig(fps=fps, short_side=0), audio=AudioConfig(require_audio=False),
                      clip=ClipConfig(min_frames=1), crop=crop)
    with closing(iter_clips(SourceItem(video, "preview", "preview"), cfg)) as clips:
        clip = next(clips)           # closing stops the ffmpeg processes of the other segments
    out = crop_clip(clip, crop)
    landmarks = out.arrays[LANDMARKS]
    picks = np.linspace(0, clip.num_frames - 1, min(frames_per_sheet, clip.num_frames)).round().astype(int)
    h = 240
    rows = []
    for i in picks:
        frame = draw_landmarks(clip.frames[i], landmarks[i])
        scale = h / frame.shape[0]
        frame = cv2.resize(frame, (int(round(frame.shape[1] * scale)), h), interpolation=cv2.INTER_AREA)
        cropped = cv2.resize(out.frames[i], (h, h), interpolation=cv2.INTER_NEAREST)
        row = np.concatenate([frame, np.full((h, 8, 3), 255, np.uint8), cropped], axis=1)
        cv2.putText(row, f"{(clip.first_frame + i) / fps:.2f}s", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    sheet = np.concatenate([np.pad(r, ((0, 8), (0, 0), (0, 0)), constant_values=255) for r in rows], axis=0)
    fsio.atomic_write(out_path, cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))[1].tobytes())
    return out.meta
