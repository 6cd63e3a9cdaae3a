"""Sound-source localisation benchmarks (Flickr-SoundNet test, VGG-SS): readers of their
distributed layouts and the LVS / EZ-VSL metric.

Metric, as the reference test scripts compute it (hche11/Localizing-Visual-Sounds-the-Hard-Way
`test.py` / `utils.py`, stoneMo/EZ-VSL `test.py` / `utils.py`):

* ground truth on a 224x224 grid. Flickr: every box of every annotator (XML, 256x256 scale,
  each coordinate `int(224 * v / 256)`) adds 1 over rows ymin:ymax, cols xmin:xmax; the sum is
  halved and capped at 1 (consensus: a pixel two annotators agree on counts fully). VGG-SS:
  normalised boxes, `int(224 * max(v, 0))` (we also cap at 1), union of the boxes.
* prediction: the map is bilinearly upsampled to 224x224, min-max normalised (a flat map is
  left as it is) and binarised at its own median element `sort(p)[224*224 // 2]`.
  `rule="ezvsl"` (default): `F.interpolate(align_corners=True)`, pixels `>=` the median.
  `rule="lvs"`: cv2-style resize (half-pixel centres, `align_corners=False`), the LVS
  sequence `1 - minmax(-p)`, pixels `>` the median set to 1, the rest below 1 set to 0,
  then `>= 0.5` (so a flat map predicts everything when its value is >= 0, nothing else).
* cIoU = sum(P*G) / (sum(G) + sum(P*[G == 0])) per sample; reported "cIoU" (AP50) = share
  of samples with cIoU >= 0.5; AUC = area by trapezoids (`sklearn.metrics.auc`) of the success rate
  (share with cIoU >= t) at t = 0, 0.05, ..., 1; mean cIoU.

Layouts (docs/glcm.md, "Localisation"): Flickr `frames/<id>.jpg`, `audio/<id>.wav`, one XML
per id in `Annotations/` (or `annotations/`, `gt/`, `gt_bbox/`, `xml/`, or any folder given);
VGG-SS `metadata/vggss.json` (or `vggss.json` in the root), `frames/<file>.jpg`,
`audio/<file>.wav` (`.jpeg`/`.png` and `.flac`/`.mp3`/`.m4a` accepted too). Problems are data:
a missing frame / audio / XML, an unreadable XML or a sample without boxes is listed by
reason; boxes outside the image are clipped and counted.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

GT_SIZE = 224
FLICKR_SCALE = 256
AUC_THRESHOLDS = np.array([0.05 * i for i in range(21)])
FRAME_EXTS = (".jpg", ".jpeg", ".png")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a")
XML_DIRS = ("Annotations", "annotations", "gt", "gt_bbox", "xml")
VGGSS_JSON = ("metadata/vggss.json", "vggss.json")
RULES = ("ezvsl", "lvs")


# ------------------------------------------------------------------ metric

def box_mask(box: tuple[int, int, int, int], size: int = GT_SIZE) -> np.ndarray:
    """1 over rows ymin:ymax, cols xmin:xmax (numpy slicing: empty when max <= min)."""
    m = np.zeros((size, size))
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 1
    return m


def flickr_gt(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Consensus map of all annotators' boxes (already on the 224 grid): sum / 2, capped at 1."""
    gt = sum((box_mask(b) for b in boxes), np.zeros((GT_SIZE, GT_SIZE))) / 2
    return np.minimum(gt, 1)


def vggss_gt(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    gt = sum((box_mask(b) for b in boxes), np.zeros((GT_SIZE, GT_SIZE)))
    return (gt > 0).astype(np.float64)


def _scale(v: float, factor: float) -> int:
    return int(factor * v)


def flickr_box(raw: tuple[float, float, float, float]) -> tuple[tuple[int, ...], bool]:
    """256-scale box -> 224 grid as the reference (`int(224 * int(v) / 256)`); clipped to the
    image, with a flag saying whether it had to be."""
    box = tuple(_scale(int(v), GT_SIZE / FLICKR_SCALE) for v in raw)
    clipped = tuple(min(max(v, 0), GT_SIZE) for v in box)
    return clipped, clipped != box


def vggss_box(raw: tuple[float, float, float, float]) -> tuple[tuple[int, ...], bool]:
    """Normalised box -> 224 grid (`int(224 * v)` with v clipped to [0, 1]); flag: clipped."""
    outside = any(v < 0 or v > 1 for v in raw)
    return tuple(_scale(min(max(float(v), 0.0), 1.0), GT_SIZE) for v in raw), outside


def _minmax(v: np.ndarray) -> np.ndarray:
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi - lo != 0 else v


def upsample(raw: np.ndarray | torch.Tensor, rule: str = "ezvsl", size: int = GT_SIZE) -> np.ndarray:
    """(H, W) map -> (size, size) float32, bilinear as the rule's reference does it."""
    t = torch.as_tensor(np.asarray(raw, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=(rule == "ezvsl"))
    return up[0, 0].numpy()


def saved_map(raw: np.ndarray | torch.Tensor, rule: str = "ezvsl") -> np.ndarray:
    """The 224x224 float32 map that is binarised (upsampled, min-max): what --save-maps stores;
    `predicted_mask` of it gives the same mask under the ezvsl rule."""
    return _minmax(upsample(raw, rule)).astype(np.float32)


def predicted_mask(raw: np.ndarray | torch.Tensor, rule: str = "ezvsl") -> np.ndarray:
    """0/1 prediction on the 224 grid from a raw (H, W) map (module docstring)."""
    up = upsample(raw, rule).astype(np.float64)
    median = GT_SIZE * GT_SIZE // 2
    if rule == "ezvsl":
        p = _minmax(up)
        return (p >= np.sort(p.ravel())[median]).astype(np.float64)
    p = 1 - _minmax(-up)
    thr = np.sort(p.ravel())[median]
    p[p > thr] = 1
    p[p < 1] = 0
    return (p >= 0.5).astype(np.float64)


def ciou(mask: np.ndarray, gt: np.ndarray) -> float:
    """sum(P*G) / (sum(G) + sum(P*[G=0])); 0 when both are empty (the reference gives NaN)."""
    den = gt.sum() + (mask * (gt == 0)).sum()
    return float((mask * gt).sum() / den) if den > 0 else 0.0


def summarise(cious: list[float]) -> dict:
    """AP50 (reported as "cIoU"), AUC of the success-rate curve (trapezoids over the 21
    thresholds: what `sklearn.metrics.auc` computes in the references), mean cIoU."""
    from sklearn.metrics import auc          # the references' own; np.trapezoid needs numpy >= 2
    c = np.asarray(cious, dtype=np.float64)
    if c.size == 0:
        return {"samples": 0, "ciou": None, "auc": None, "ciou_mean": None}
    success = [(c >= t).mean() for t in AUC_THRESHOLDS]
    return {"samples": int(c.size), "ciou": float((c >= 0.5).mean()),
            "auc": float(auc(AUC_THRESHOLDS, success)), "ciou_mean": float(c.mean())}


# ------------------------------------------------------------------ readers

@dataclass
class LocSample:
    id: str
    frame: str                  # image path
    audio: str                  # audio path
    gt: np.ndarray              # (224, 224) ground-truth map
    boxes: list = field(default_factory=list)   # boxes on the 224 grid (after clipping)


@dataclass
class Benchmark:
    name: str
    samples: list[LocSample]
    problems: dict[str, list[str]]      # reason -> ids (missing_frame, missing_audio, missing_xml, ...)
    clipped_boxes: int = 0

    def problem_counts(self) -> dict[str, int]:
        return {reason: len(ids) for reason, ids in sorted(self.problems.items())}


def _files(folder: str, exts: tuple[str, ...]) -> dict[str, str]:
    """stem -> absolute path (so ffmpeg never reads a name as a protocol such as `pipe:`) of
    the files in `folder` with one of `exts` (the earlier ext in `exts` wins)."""
    if not os.path.isdir(folder):
        return {}
    folder = os.path.abspath(folder)
    out: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        path = os.path.join(folder, name)
        if ext.lower() in exts and os.path.isfile(path):
            if stem not in out or exts.index(ext.lower()) < exts.index(os.path.splitext(out[stem])[1].lower()):
                out[stem] = path
    return out


def parse_flickr_xml(text: str | bytes) -> list[tuple[float, float, float, float]]:
    """Boxes of every annotator: each `bbox` element below the root, coordinates from its
    xmin/ymin/xmax/ymax children, or, without those names, its children after the first
    (the reference's positional reading)."""
    root = ET.fromstring(text)
    boxes = []
    for bbox in root.iter("bbox"):
        named = {child.tag: child.text for child in bbox}
        if all(k in named for k in ("xmin", "ymin", "xmax", "ymax")):
            values = [named[k] for k in ("xmin", "ymin", "xmax", "ymax")]
        else:
            values = [child.text for child in list(bbox)[1:5]]
        if len(values) != 4:
            raise ValueError(f"a bbox with {len(values)} coordinates")
        boxes.append(tuple(float(v) for v in values))
    return boxes


def find_xml_dir(root: str, given: str | None = None) -> str | None:
    if given:
        return given
    for name in XML_DIRS:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


def _check_root(root: str) -> None:
    from glcm.config import ConfigError
    if not os.path.isdir(root):
        raise ConfigError(f"--root {root}: no such folder")
    if not os.path.isdir(os.path.join(root, "frames")):
        raise ConfigError(f"--root {root}: no frames/ folder (expected frames/<id>.jpg and audio/<id>.wav)")


def read_ids(path: str) -> list[str]:
    """First comma-separated field of each non-empty line (flickr_test.csv, vggss_test.csv)."""
    with open(path, encoding="utf-8") as f:
        ids = [line.split(",")[0].strip() for line in f if line.strip()]
    return [os.path.splitext(i)[0] if i.endswith((".mp4", ".jpg", ".wav")) else i for i in ids]


def _pair(sid: str, frames: dict, audio: dict, problems: dict) -> tuple[str, str] | None:
    for reason, table in (("missing_frame", frames), ("missing_audio", audio)):
        if sid not in table:
            problems.setdefault(reason, []).append(sid)
            return None
    return frames[sid], audio[sid]


def read_flickr(root: str, xml_dir: str | None = None, ids: list[str] | None = None) -> Benchmark:
    """Flickr-SoundNet test: ids = `ids` (a test list) or every frame and XML present."""
    from glcm.config import ConfigError
    _check_root(root)
    if xml_dir is not None and not os.path.isdir(xml_dir):
        raise ConfigError(f"--annotations {xml_dir}: no such folder (flickr wants the folder of <id>.xml files)")
    xml_dir = find_xml_dir(root, xml_dir)
    if xml_dir is None:
        raise ConfigError(f"--root {root}: no annotation folder ({', '.join(XML_DIRS)}); give it with --annotations")
    frames, audio = _files(os.path.join(root, "frames"), FRAME_EXTS), _files(os.path.join(root, "audio"), AUDIO_EXTS)
    xmls = _files(xml_dir, (".xml",))
    bench = Benchmark("flickr", [], {})
    for sid in ids if ids is not None else sorted(set(frames) | set(xmls)):
        paths = _pair(sid, frames, audio, bench.problems)
        if paths is None:
            continue
        if sid not in xmls:
            bench.problems.setdefault("missing_xml", []).append(sid)
            continue
        try:
            with open(xmls[sid], "rb") as f:
                raw = parse_flickr_xml(f.read())
        except (OSError, ET.ParseError, ValueError, TypeError):      # TypeError: an empty coordinate
            bench.problems.setdefault("bad_xml", []).append(sid)
            continue
        boxes = _boxes(sid, raw, flickr_box, bench)
        if boxes is not None:
            bench.samples.append(LocSample(sid, *paths, flickr_gt(boxes), boxes))
    return bench


def _boxes(sid: str, raw: list, convert, bench: Benchmark) -> list | None:
    if not raw:
        bench.problems.setdefault("no_boxes", []).append(sid)
        return None
    boxes = []
    for r in raw:
        box, clipped = convert(r)
        bench.clipped_boxes += int(clipped)
        boxes.append(box)
    return boxes


def vggss_json(root: str, given: str | None = None) -> str:
    from glcm.config import ConfigError
    candidates = [given] if given else [os.path.join(root, p) for p in VGGSS_JSON]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise ConfigError(f"--root {root}: no {' or '.join(VGGSS_JSON)}; give the file with --annotations")


def read_vggss(root: str, annotations: str | None = None, ids: list[str] | None = None) -> Benchmark:
    """VGG-SS: the json's entries (or those of `ids`), frames/<file>.jpg + audio/<file>.wav."""
    from glcm.config import ConfigError
    _check_root(root)
    path = vggss_json(root, annotations)
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a VGG-SS annotation list of {{file, bbox}} entries ({exc})") from None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: not a VGG-SS annotation list of {{file, bbox}} entries (no JSON list)")
    table, malformed = {}, []
    for i, e in enumerate(entries):          # a malformed entry is recorded; the others are scored
        if isinstance(e, dict) and isinstance(e.get("file"), (str, int)):
            table[str(e["file"])] = e.get("bbox") or []
        else:
            malformed.append(f"entry {i}")
    frames, audio = _files(os.path.join(root, "frames"), FRAME_EXTS), _files(os.path.join(root, "audio"), AUDIO_EXTS)
    bench = Benchmark("vggss", [], {"bad_entry": malformed} if malformed else {})
    if ids is None:
        ids = sorted(table)
        extra = sorted(set(frames) - set(table))
        if extra:
            bench.problems["not_annotated"] = extra
    for sid in ids:
        if sid not in table:
            bench.problems.setdefault("not_annotated", []).append(sid)
            continue
        paths = _pair(sid, frames, audio, bench.problems)
        if paths is None:
            continue
        try:
            raw = [tuple(float(v) for v in b) for b in table[sid]]
            if any(len(b) != 4 for b in raw):
                raise ValueError
        except (TypeError, ValueError):
            bench.problems.setdefault("bad_boxes", []).append(sid)
            continue
        boxes = _boxes(sid, raw, vggss_box, bench)
        if boxes is not None:
            bench.samples.append(LocSample(sid, *paths, vggss_gt(boxes), boxes))
    return bench


def read_benchmark(name: str, root: str, annotations: str | None = None, ids: list[str] | None = None) -> Benchmark:
    from glcm.config import ConfigError
    if name == "flickr":
        return read_flickr(root, annotations, ids)
    if name == "vggss":
        return read_vggss(root, annotations, ids)
    raise ConfigError(f"--benchmark {name!r}: choose flickr or vggss")


# ------------------------------------------------------------------ scoring

def still_clip(frame: np.ndarray, frames: int) -> np.ndarray:
    """The static clip the model sees for a still image: the frame repeated `frames` times."""
    return np.repeat(frame[None], frames, axis=0)


@torch.no_grad()
def raw_maps(model, frames: np.ndarray, mel: np.ndarray, kind: str = "similarity") -> np.ndarray:
    """(B, H, W) maps of a batch: `similarity` = (audio . cell) / tau before the softmax, or
    `softmax` = the attention map (softmax over the grid)."""
    model.eval()
    dev = next(model.parameters()).device
    sim = model.similarity_map(torch.from_numpy(frames).to(dev), torch.from_numpy(mel).to(dev))
    return (model.softmax_map(sim) if kind == "softmax" else sim).float().cpu().numpy()


def score(maps: dict[str, np.ndarray], samples: list[LocSample], rule: str = "ezvsl") -> tuple[dict, dict[str, float]]:
    """(summary, id -> cIoU) of raw maps against the samples' ground truth."""
    per = {s.id: ciou(predicted_mask(maps[s.id], rule), s.gt) for s in samples if s.id in maps}
    return summarise(list(per.values())), per
