"""Sound-source maps of a decoded video and their pictures (`glcm localize`).

The model sees windows of `frames` frames (the training clip length) with their exact mel
columns; each window gives the global path's map over its grid: the similarity
(audio . cell) / tau and its softmax over the grid (the paper's attention map). Windows
start every `hop` frames (the last one ends at the last frame); frame i takes the map of
the window whose centre is nearest to it. A clip shorter than one window is looped to one
window (frames and their mel columns together, so each padded frame keeps its own
sound); the window's map serves the real frames only (`VideoMaps.padded` counts the
padding). For display a map is bilinearly upsampled to
the frame (`align_corners=True`, as the EZ-VSL evaluation does), min-max normalised per
frame and blended as a JET heatmap. Decoding and muxing live in cli/ (glcm imports only
avprep.format and avprep.fsio).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from glcm.model import GLCM


@dataclass
class VideoMaps:
    starts: np.ndarray        # (W,) first frame of each window
    similarity: np.ndarray    # (W, H, W') pre-softmax maps
    softmax: np.ndarray       # (W, H, W') attention maps (softmax over the grid)
    frame_window: np.ndarray  # (N,) window index used for each frame
    padded: int = 0           # frames looped in to fill one window (a clip shorter than it)

    def per_frame(self, kind: str = "softmax") -> np.ndarray:
        maps = self.softmax if kind == "softmax" else self.similarity
        return maps[self.frame_window]


def window_starts(n: int, frames: int, hop: int) -> np.ndarray:
    """Window starts 0, hop, 2 hop, ... and n - frames (so the end is covered); n >= frames."""
    starts = list(range(0, n - frames + 1, hop))
    if starts[-1] != n - frames:
        starts.append(n - frames)
    return np.array(starts)


def nearest_window(n: int, starts: np.ndarray, frames: int) -> np.ndarray:
    centres = starts + (frames - 1) / 2
    return np.abs(np.arange(n)[:, None] - centres[None, :]).argmin(axis=1)


def loop_to_window(frames: np.ndarray, mel: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """A clip of n < window frames looped to `window` frames: frame j is frame j % n with
    that frame's own k mel columns, so the audio stays aligned with the frames."""
    n = frames.shape[0]
    k = mel.shape[1] // n
    order = np.arange(window) % n
    columns = (order[:, None] * k + np.arange(k)).ravel()
    return frames[order], mel[:, columns]


@torch.no_grad()
def video_maps(model: GLCM, frames: np.ndarray, mel: np.ndarray, window: int, hop: int,
               batch: int = 8) -> VideoMaps:
    """Maps of every window of a (N, H, W, 3) uint8 clip with its (n_mels, N*k) mel; a clip
    shorter than `window` is looped to one window, whose map all its N frames take."""
    model.eval()
    dev = next(model.parameters()).device
    n = frames.shape[0]
    if n == 0 or mel.shape[1] < n:
        raise ValueError(f"no frames or no mel columns to localise ({n} frames, {mel.shape[1]} columns)")
    padded = max(0, window - n)
    if padded:
        frames, mel = loop_to_window(frames, mel, window)
    k = mel.shape[1] // frames.shape[0]
    starts = window_starts(frames.shape[0], window, hop)
    sims = []
    for i in range(0, len(starts), batch):
        chunk = starts[i:i + batch]
        f = torch.from_numpy(np.stack([frames[s:s + window] for s in chunk])).to(dev)
        m = torch.from_numpy(np.stack([mel[:, s * k:(s + window) * k] for s in chunk]).astype(np.float32)).to(dev)
        sims.append(model.similarity_map(f, m).float().cpu())
    sim = torch.cat(sims)
    return VideoMaps(starts, sim.numpy(), GLCM.softmax_map(sim).numpy(), nearest_window(n, starts, window), padded)


def upsample_to(grid_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear (align_corners=True) upsampling of an (h, w) map to the frame, min-max to 0-1.
    Bilinear values lie between the grid's, so the grid is normalised first (a flat grid
    gives no heat, without float noise being stretched to 0-1)."""
    g = np.asarray(grid_map, dtype=np.float64)
    lo, hi = g.min(), g.max()
    if not hi > lo:
        return np.zeros((height, width), np.float32)
    t = torch.from_numpy(((g - lo) / (hi - lo)).astype(np.float32))[None, None]
    up = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=True)[0, 0].numpy()
    return np.clip(up, 0, 1)


def heat_overlay(frame: np.ndarray, grid_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB frame with the map as a JET heatmap blended on it (alpha = heatmap weight)."""
    h, w = frame.shape[:2]
    heat = (upsample_to(grid_map, h, w) * 255).astype(np.uint8)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)[..., ::-1]
    return cv2.addWeighted(colour, alpha, frame, 1 - alpha, 0)


def overlay_frames(frames: np.ndarray, maps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return np.stack([heat_overlay(f, m, alpha) for f, m in zip(frames, maps)])


def contact_sheet(frames: np.ndarray, overlays: np.ndarray, fps: float, first_frame: int = 0,
                  columns: int = 8) -> np.ndarray:
    """RGB picture: `columns` evenly spaced frames (top row) over their heatmaps (bottom row),
    each labelled with its time in seconds."""
    n = frames.shape[0]
    picks = np.unique(np.linspace(0, n - 1, min(columns, n)).round().astype(int))
    h, w = frames.shape[1:3]
    pad = 2
    sheet = np.full((2 * h + 3 * pad, len(picks) * (w + pad) + pad, 3), 255, np.uint8)
    for c, i in enumerate(picks):
        x = pad + c * (w + pad)
        sheet[pad:pad + h, x:x + w] = frames[i]
        sheet[2 * pad + h:2 * pad + 2 * h, x:x + w] = overlays[i]
        label = f"{(first_frame + i) / fps:.1f}s"
        cv2.putText(sheet, label, (x + 2, pad + min(h - 3, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.3, h / 300), (255, 255, 255), 1, cv2.LINE_AA)
    return sheet


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
