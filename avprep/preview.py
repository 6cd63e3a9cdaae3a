"""Contact sheets: frames along time with the mel spectrogram under them on the same axis."""
from __future__ import annotations

from contextlib import closing

import numpy as np

from avprep.shards import decode_jpegs, load_npy
from avprep.tools import expand_shards, iter_raw, read_meta


def _landmarks_in_crop(sample: dict, index: int) -> np.ndarray | None:
    if "landmarks.npy" not in sample or "transform.npy" not in sample:
        return None
    pts = load_npy(sample["landmarks.npy"])[index]
    m = load_npy(sample["transform.npy"])[index]
    return pts @ m[:, :2].T + m[:, 2]


def preview(spec: str | list[str], out_path: str, max_samples: int = 4, frames_per_row: int = 8) -> int:
    """Write a PNG contact sheet of the first `max_samples` samples; returns how many were drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = []
    for sample in iter_raw(expand_shards(spec)):
        samples.append(sample)
        if len(samples) >= max_samples:
            break
    if not samples:
        raise ValueError(f"no samples in {spec}")
    fig, axes = plt.subplots(2 * len(samples), 1, figsize=(12, 3.2 * len(samples)),
                             gridspec_kw={"height_ratios": [1.3, 1] * len(samples)}, squeeze=False)
    for n, sample in enumerate(samples):
        _draw_sample(sample, axes[2 * n, 0], axes[2 * n + 1, 0], frames_per_row)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return len(samples)


def _draw_sample(sample: dict, ax_frames, ax_mel, frames_per_row: int) -> None:
    meta = read_meta(sample)
    t, fps = meta["num_frames"], meta["fps"]
    t0, t1 = meta["start_time"], meta["end_time"]
    picks = np.linspace(0, t - 1, min(frames_per_row, t)).round().astype(int)
    frames = decode_jpegs(sample["frames.mjpeg"], meta["frame_offsets"], picks)
    slot = (t1 - t0) / len(picks)
    for j, (i, frame) in enumerate(zip(picks, frames)):
        left = t0 + j * slot
        ax_frames.imshow(frame, extent=[left, left + slot * 0.96, 0, 1], aspect="auto")
        pts = _landmarks_in_crop(sample, i)
        if pts is not None:
            h, w = frame.shape[:2]
            ax_frames.scatter(left + pts[:, 0] / w * slot * 0.96, 1 - pts[:, 1] / h, s=2, c="lime")
        ax_frames.text(left, 1.02, f"{(meta['first_frame'] + i) / fps:.1f}s", fontsize=7)
    ax_frames.set_xlim(t0, t1)
    ax_frames.set_ylim(0, 1.1)
    ax_frames.set_yticks([])
    ax_frames.set_title(f"{meta['key']}  ({meta['source']}, {t} frames @ {fps:g} fps)", fontsize=9)
    mel = load_npy(sample["mel.npy"]).astype(np.float32)
    ax_mel.imshow(mel, origin="lower", aspect="auto", extent=[t0, t1, 0, mel.shape[0]], cmap="magma")
    ax_mel.set_xlim(t0, t1)
    ax_mel.set_ylabel("mel band")
    ax_mel.set_xlabel("time (s, shared clock)")


def preview_crops(video: str, out_path: str, kind: str = "lips", fps: float = 25.0, size: int = 112,
                  frames_per_sheet: int = 6) -> dict:
    """Run the crop stage on the first clip of `video` and draw, for evenly spaced frames,
    the original frame with its (smoothed) landmarks beside the crop. Returns the crop meta.

    Raises MediaError (e.g. no_face) like a build would record it."""
    import cv2

    from avprep.clips import iter_clips
    from avprep.config import AudioConfig, BuildConfig, ClipConfig, CropConfig, VideoConfig
    from avprep.faces.draw import draw_landmarks
    from avprep.faces.stage import crop_clip
    from avprep.items import SourceItem

    crop = CropConfig(kind=kind, size=size)
    cfg = BuildConfig(video=VideoConfig(fps=fps, short_side=0), audio=AudioConfig(require_audio=False),
                      clip=ClipConfig(min_frames=1), crop=crop)
    with closing(iter_clips(SourceItem(video, "preview", "preview"), cfg)) as clips:
        clip = next(clips)           # closing stops the ffmpeg processes of the other segments
    out = crop_clip(clip, crop)
    landmarks = load_npy(out.members["landmarks.npy"])
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
    cv2.imwrite(out_path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out.meta
