"""Tiny sound-source localisation benchmarks in the distributed layouts, from the
correspondence generator (avprep.testing.avcorr).

Per clip: the still frame is a frame where the sounding object is lit, nearest the clip's
middle; the audio is the clip's sound centred on that frame (as long as the clip allows);
the boxes are that frame's sounding-object box. With `crop`, the still is a crop x crop
window around the sounding object (placed at random), so the object fills a share of the
picture closer to the real benchmarks' (the median-threshold cIoU of a perfect map is about
twice the box's share of the image, capped at 1).

* Flickr-SoundNet layout: `frames/<id>.jpg`, `audio/<id>.wav` (16-bit PCM, 16 kHz),
  `Annotations/<id>.xml` with one `<object><bbox>` per annotator (3 annotators whose boxes
  are the true box moved by up to `jitter` pixels), coordinates on the 256x256 scale.
* VGG-SS layout: `metadata/vggss.json` = [{"file", "class", "bbox": [[x0, y0, x1, y1]]}]
  with coordinates normalised to [0, 1], plus the same frames/ and audio/ folders.

`bad=True` adds the failures a reader must record: an id without its XML (or json entry),
one without audio, and one whose box reaches outside the image (clipped, still scored).
"""
from __future__ import annotations

import json
import os
import wave

import cv2
import numpy as np

from avprep.testing.avcorr import AVClip, make_clips

ANNOTATORS = 3
FLICKR_SCALE = 256


def still_index(clip: AVClip) -> int:
    """The lit frame nearest the middle (the middle frame if the object never lights)."""
    lit = np.flatnonzero(clip.envelope)
    mid = len(clip.envelope) // 2
    return int(lit[np.abs(lit - mid).argmin()]) if lit.size else mid


def still_frame(clip: AVClip, index: int, crop: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frame, sounding box in its pixels): the whole frame, or a crop x crop window placed at
    random around the sounding object (real benchmark objects fill much of the picture)."""
    frame, box = clip.frames[index], clip.boxes[index].copy()
    if not crop:
        return frame, box
    size = frame.shape[0]
    lo = np.clip(box[2:] - crop, 0, size - crop)          # window origins that keep the box inside
    hi = np.clip(box[:2], 0, size - crop)
    x, y = (int(rng.integers(a, max(a, b) + 1)) for a, b in zip(lo, hi))
    return frame[y:y + crop, x:x + crop], box - np.array([x, y, x, y])


def centred_audio(clip: AVClip, index: int) -> np.ndarray:
    """The clip's samples centred on frame `index`'s middle, as long as the clip allows."""
    per = clip.sample_rate / clip.fps
    centre = int((index + 0.5) * per)
    half = min(centre, clip.audio.size - centre)
    return clip.audio[centre - half:centre + half]


def write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def flickr_xml(sid: str, boxes: list[list[int]]) -> str:
    objects = "".join(
        f"<object><bbox><annotator>{i + 1}</annotator><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bbox></object>" for i, b in enumerate(boxes))
    return f"<annotation><filename>{sid}.jpg</filename>{objects}</annotation>\n"


def _write_media(root: str, sid: str, clip: AVClip, index: int, frame: np.ndarray, audio: bool = True) -> None:
    cv2.imwrite(os.path.join(root, "frames", f"{sid}.jpg"), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if audio:
        write_wav(os.path.join(root, "audio", f"{sid}.wav"), centred_audio(clip, index), clip.sample_rate)


def _dirs(root: str, *names: str) -> None:
    for name in names:
        os.makedirs(os.path.join(root, name), exist_ok=True)


def annotator_boxes(box: np.ndarray, size: int, rng: np.random.Generator, jitter: int) -> list[list[int]]:
    """3 annotators' boxes on the 256 scale: the true box, each side moved by up to `jitter` px."""
    scale = FLICKR_SCALE / size
    out = []
    for _ in range(ANNOTATORS):
        moved = box + rng.integers(-jitter, jitter + 1, size=4)
        out.append([int(round(v * scale)) for v in np.clip(moved, 0, size)])
    return out


def write_flickr(root: str, count: int, seed: int = 3, jitter: int = 1, bad: bool = False,
                 crop: int | None = None, **kw) -> dict:
    """Flickr-layout corpus of `count` scored ids (+ 3 bad ones with `bad`); returns
    {"ids": scored ids, "missing_xml": [...], "missing_audio": [...], "clipped": n boxes}."""
    _dirs(root, "frames", "audio", "Annotations")
    kw.setdefault("obj", 22)
    clips = make_clips(count + (3 if bad else 0), seed=seed, **kw)
    rng = np.random.default_rng(seed)
    info = {"ids": [], "missing_xml": [], "missing_audio": [], "clipped": 0}
    for i, clip in enumerate(clips):
        sid = f"{1000 + i:05d}"
        index = still_index(clip)
        frame, box = still_frame(clip, index, crop, rng)
        boxes = annotator_boxes(box, frame.shape[0], rng, jitter)
        role = i - count if bad and i >= count else None
        _write_media(root, sid, clip, index, frame, audio=role != 1)
        if role == 2:                      # the third annotator's box reaches outside the image
            boxes[2][2] = FLICKR_SCALE + 40
            info["clipped"] += 1
        if role != 0:
            with open(os.path.join(root, "Annotations", f"{sid}.xml"), "w") as f:
                f.write(flickr_xml(sid, boxes))
        key = {0: "missing_xml", 1: "missing_audio"}.get(role, "ids")
        info[key].append(sid)
    return info


def write_vggss(root: str, count: int, seed: int = 4, bad: bool = False, crop: int | None = None, **kw) -> dict:
    """VGG-SS-layout corpus; ids look like `<ytid>_<start>`; one normalised box per clip."""
    _dirs(root, "frames", "audio", "metadata")
    kw.setdefault("obj", 22)
    clips = make_clips(count + (3 if bad else 0), seed=seed, **kw)
    rng = np.random.default_rng(seed)
    entries, info = [], {"ids": [], "not_annotated": [], "missing_audio": [], "clipped": 0}
    for i, clip in enumerate(clips):
        sid = f"yt{i:09d}_{10 * i:06d}"
        index = still_index(clip)
        frame, pixels = still_frame(clip, index, crop, rng)
        box = [round(float(v) / frame.shape[0], 4) for v in pixels]
        role = i - count if bad and i >= count else None
        _write_media(root, sid, clip, index, frame, audio=role != 1)
        if role == 2:
            box[0] = -0.1                   # a negative coordinate, as a few real entries have
            info["clipped"] += 1
        if role != 0:
            entries.append({"file": sid, "class": clip.colour, "bbox": [box]})
        info[{0: "not_annotated", 1: "missing_audio"}.get(role, "ids")].append(sid)
    with open(os.path.join(root, "metadata", "vggss.json"), "w") as f:
        json.dump(entries, f)
    return info
