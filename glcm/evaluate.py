"""Evaluation on an annotated corpus (avprep.testing.avcorr or alike).

* Sound-source localisation: the audio-visual similarity map over the global grid
  ((audio . cell) / tau, before the attention softmax; as in LVS-style cIoU protocols) is
  bilinearly upsampled to the crop (cell centres at stride * i, see `upsample_map`),
  min-max normalised and thresholded at `threshold`; cIoU here = IoU of that mask with the
  sounding object's box (one annotator, so the consensus weighting of Senocak et al.
  reduces to a plain IoU). The same on the softmaxed attention map (much peakier, so its
  mask is smaller than the object) is reported as `softmax_ciou_*`. Also the pointing
  game: is the map's maximum inside the box (the same for both maps).
* Audio-visual synchrony (local path): for each clip, the local score
  mean_t logsumexp_m (v_t . a_{t,m}) / tau with the aligned audio is compared with the
  same clip's audio shifted by `shift` frames; accuracy = share of clips where the
  aligned audio scores higher (chance 0.5).
* The benchmarks' metric (glcm/locbench.py, LVS / EZ-VSL) on the same similarity maps, the
  box scaled onto the 224x224 grid as a single VGG-SS-style box: `benchmark` holds its
  cIoU (AP50), AUC and mean cIoU; `maps` the raw grid maps it scored (for --save-maps).
Windows start at frame 0 with a centred crop and no flip / grey-scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import webdataset as wds

from avprep.format import SampleMeta, expand_shards
from glcm import locbench
from glcm.data import (MEMBER_NAMES, ClipSpec, SkipCounter, SkipSample, decode_window, open_checked, read_shard,
                       unread_note)
from glcm.model import GLCM


@dataclass
class EvalClip:
    key: str
    frames: np.ndarray       # (T, c, c, 3) uint8 RGB
    mel: np.ndarray          # (n_mels, T*k) aligned with the frames
    mel_shifted: np.ndarray  # the same length, `shift` frames later
    box: np.ndarray          # sounding object's [x0, y0, x1, y1] in crop pixels (middle frame)


def box_in_crop(record: dict, meta: SampleMeta, frame: int, crop: tuple[float, int, int], size: int) -> np.ndarray:
    """The annotated box of `frame`, mapped from the source video into crop pixels."""
    scale, y, x = crop
    sx = meta.width / record["width"] * scale
    sy = meta.height / record["height"] * scale
    x0, y0, x1, y1 = record["boxes"][frame]
    box = np.array([x0 * sx - x, y0 * sy - y, x1 * sx - x, y1 * sy - y])
    return np.clip(box, 0, size)


def read_samples(urls: list[str], counter: SkipCounter):
    """The raw samples of the shards in order (glcm.data.read_shard); a shard that cannot be
    read is an error, not skipped."""
    for url in urls:
        yield from read_shard(url, wds.reraise_exception, counter.select)


def load_eval_clips(shards: str | list[str], annotations: dict[str, dict], frames: int = 32,
                    crop: int = 64, shift: int = 8, mel_per_frame: int = 10, n_mels: int = 80) -> list[EvalClip]:
    """Decode every annotated sample once (first window, centred crop). A sample that breaks
    a rule of the format (or has the wrong mel_per_frame / n_mels) is an error: an
    evaluation must not silently drop clips. Names from a glob are local files; a typed
    `pipe:` or URL spec runs / fetches as in training. Shards without one sample of the format
    (e.g. another tool's tars) are a ValueError naming the members they hold."""
    spec = ClipSpec(frames=frames, crop=crop, flip_prob=0.0, grey_prob=0.0, jitter=False,
                    mel_per_frame=mel_per_frame, n_mels=n_mels)
    urls = expand_shards(shards, allow_commands=True)
    counter, read = SkipCounter(), 0            # the counter notes the tar members not read
    clips = []
    for raw in read_samples(urls, counter):
        read += 1
        try:
            sample = open_checked(raw, spec)
            meta = sample.meta
            record = annotations.get(meta.source_path)
            if record is None or meta.num_frames < frames + shift:
                continue
            mel = sample.mel_window(0, frames + shift)
            bgr, box = decode_window(sample, 0, spec, None)
        except (SkipSample, ValueError) as exc:
            raise ValueError(f"sample {raw.get('__key__', '?')} of {raw.get('__url__', '?')}: {exc}") from None
        k = meta.mel_per_frame
        clips.append(EvalClip(sample.key, np.ascontiguousarray(bgr[..., ::-1]), mel[:, :frames * k],
                              mel[:, shift * k:(shift + frames) * k],
                              box_in_crop(record, meta, meta.first_frame + frames // 2, box, crop)))
    if not read and counter.unread:
        raise ValueError(f"no tar member is one of {MEMBER_NAMES} (not avprep shards?){unread_note(counter.unread)}")
    return clips


def upsample_map(attention: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsampling of an (H, W) map to (size, size) pixels with cell i centred on
    pixel i * size / W: every strided layer here pads symmetrically, so a cell's receptive
    field is centred there, not at the cell's middle (align_corners=False would shift the
    map by almost half a cell). Beyond the last cell centre the border value is kept."""
    h, w = attention.shape
    py = torch.arange(size, dtype=torch.float32) * h / size
    px = torch.arange(size, dtype=torch.float32) * w / size
    gy = 2 * py / max(h - 1, 1) - 1
    gx = 2 * px / max(w - 1, 1) - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    return F.grid_sample(attention[None, None].float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=True)[0, 0]


def localisation_scores(attention: torch.Tensor, box: np.ndarray, size: int, threshold: float = 0.5) -> tuple[float, bool]:
    """(IoU of the thresholded upsampled map with the box, pointing-game hit)."""
    up = upsample_map(attention, size)
    up = (up - up.min()) / (up.max() - up.min()).clamp_min(1e-12)
    pred = (up >= threshold).numpy()
    gt = np.zeros((size, size), dtype=bool)
    x0, y0, x1, y1 = np.round(box).astype(int)
    gt[y0:y1, x0:x1] = True
    iou = (pred & gt).sum() / max((pred | gt).sum(), 1)
    yy, xx = np.unravel_index(int(up.argmax()), up.shape)
    return float(iou), bool(gt[yy, xx])


def sync_score(model: GLCM, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Per clip: mean over steps of logsumexp over the window's audio steps of v.a / tau."""
    out = model(frames, mel)
    scores = torch.einsum("btd,btmd->btm", out.visual_local, out.audio_local) / model.cfg.temperature
    return torch.logsumexp(scores, dim=2).mean(dim=1)


def benchmark_ciou(similarity: torch.Tensor, box: np.ndarray, size: int) -> float:
    """The benchmarks' cIoU of a map with one box given in pixels of a size x size frame."""
    box224 = np.clip(np.asarray(box, dtype=np.float64) / size, 0, 1)
    gt = locbench.vggss_gt([locbench.vggss_box(tuple(box224))[0]])
    return locbench.ciou(locbench.predicted_mask(similarity), gt)


@torch.no_grad()
def evaluate(model: GLCM, clips: list[EvalClip], batch_size: int = 16, threshold: float = 0.5) -> dict:
    model.eval()
    dev = next(model.parameters()).device
    ious, soft_ious, hits, sync, bench, maps = [], [], [], [], [], {}
    for i in range(0, len(clips), batch_size):
        chunk = clips[i:i + batch_size]
        frames = torch.from_numpy(np.stack([c.frames for c in chunk])).to(dev)
        mel = torch.from_numpy(np.stack([c.mel for c in chunk])).to(dev)
        shifted = torch.from_numpy(np.stack([c.mel_shifted for c in chunk])).to(dev)
        similarity = model.similarity_map(frames, mel).float().cpu()
        for sim, att, clip in zip(similarity, GLCM.softmax_map(similarity), chunk):
            iou, hit = localisation_scores(sim, clip.box, frames.shape[2], threshold)
            ious.append(iou)
            hits.append(hit)
            soft_ious.append(localisation_scores(att, clip.box, frames.shape[2], threshold)[0])
            bench.append(benchmark_ciou(sim, clip.box, frames.shape[2]))
            maps[clip.key] = sim.float().numpy()
        sync += (sync_score(model, frames, mel) > sync_score(model, frames, shifted)).tolist()
    return {"clips": len(clips), "ciou_mean": float(np.mean(ious)),
            "ciou_at_0.5": float(np.mean(np.array(ious) >= 0.5)), "pointing": float(np.mean(hits)),
            "softmax_ciou_mean": float(np.mean(soft_ious)),
            "softmax_ciou_at_0.5": float(np.mean(np.array(soft_ious) >= 0.5)),
            "sync_accuracy": float(np.mean(sync)), "benchmark": locbench.summarise(bench), "ious": ious,
            "keys": [c.key for c in clips], "maps": maps}
