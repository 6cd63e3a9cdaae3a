"""Labelled samples for finetuning (docs/format.md, "Downstream labels").

* Which samples a run uses: the split / fold in each sample's metadata (`select`):
  UCF101/HMDB51 `extra.splits[<split>]` is "train" or "test"; ESC-50 trains on the folds
  other than `extra.fold == <fold>` and tests on that fold. One build serves every split.
* The label: `labels.label_index` (0-based), checked against the head size.
* Training clips (`decode_train`): one window of `frames` frames with temporal jitter (the
  frames or the mel the task reads), augmented as in pretraining. A sample shorter than a
  window is looped (frame i of the window is frame (start + i) mod T), not dropped.
* Test clips (`test_windows`): N windows with uniformly spaced starts over the sample,
  centre crop, no flip / grey-scale.
* `scan`: every sample's metadata of local shards (only the json members are read), so a
  run can refuse shards that do not fit the task before anything is built.
"""
from __future__ import annotations

import re
import tarfile
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avprep.format import MAX_META_BYTES, FormatError, Sample, SampleMeta, is_command_or_url, open_sample, parse_meta
from glcm.config import ConfigError
from glcm.data import ClipSpec, SkipSample, decode_clip, note_member


@dataclass(frozen=True)
class Selection:
    """Which samples of a build a run's train or test set holds. `role`: train, test or
    all (a separate --test-shards / --val-shards build is taken whole). Protocols: split
    (extra.splits[number]), fold (extra.fold), given (the sample's own `split`, LRW) and
    lists (`ids`: the DFDC list keys of this role; None: every sample)."""
    protocol: str          # split, fold, given or lists
    number: int            # the split (1-3) or the fold (1-5)
    role: str
    ids: frozenset | None = None

    def __call__(self, meta: SampleMeta) -> bool:
        if self.role == "all":
            return True
        if self.protocol == "split":
            splits = meta.extra.get("splits")
            return isinstance(splits, dict) and splits.get(str(self.number)) == self.role
        if self.protocol == "given":
            return meta.split == self.role
        if self.protocol == "lists":
            return self.ids is None or dfdc_key(meta.item_id) in self.ids
        fold = meta.extra.get("fold")
        return fold is not None and (fold == self.number) == (self.role == "test")


_PART = re.compile(r"dfdc_train_part_(\d+)$")


def dfdc_key(name: str) -> tuple[int, str] | None:
    """(part number, video stem) of a DFDC item_id `dfdc_train_part_N/<id>.mp4` or a list
    line `<id>[.mp4].dfdc_train_part_NN`; None if it is neither. The stem is compared in
    Unicode NFC (a list and a build on macOS may spell one name in two forms)."""
    if "/" in name:
        part, _, video = name.rpartition("/")
    else:
        video, _, part = name.rpartition(".")
    m = _PART.search(part)
    stem = video[:-4] if video.endswith(".mp4") else video
    return (int(m.group(1)), unicodedata.normalize("NFC", stem)) if m and stem else None


def read_list(path: str) -> frozenset:
    """The keys of a Chugh et al. DFDC list file (one `<id>.dfdc_train_part_NN` per line)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read list {path}: {getattr(exc, 'strerror', None) or exc}") from None
    keys = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key = dfdc_key(line.split()[0])
        if key is None:
            raise ConfigError(f"{path}:{n}: expected `<id>.dfdc_train_part_NN`, got {line.strip()[:60]!r}")
        keys.add(key)
    if not keys:
        raise ConfigError(f"list {path} names no video")
    return frozenset(keys)


def word_boundary(meta: SampleMeta) -> np.ndarray:
    """LRW: float32 (T,) ones over the centred span of word_duration x fps frames (all ones
    when the duration is unknown)."""
    n, duration = meta.num_frames, meta.extra.get("word_duration")
    out = np.ones(n, dtype=np.float32)
    if isinstance(duration, (int, float)) and duration > 0:
        span = min(n, max(1, int(round(duration * meta.fps))))
        out[:] = 0
        start = (n - span) // 2
        out[start:start + span] = 1
    return out


def label_of(meta: SampleMeta, classes: int) -> int:
    """labels.label_index, or SkipSample (no_label / bad_label)."""
    index = meta.labels.get("label_index") if isinstance(meta.labels, dict) else None
    if index is None:
        raise SkipSample("no_label", f"sample {meta.key} has no labels.label_index")
    if type(index) is not int or not 0 <= index < classes:
        raise SkipSample("bad_label", f"sample {meta.key}: label_index {index!r} outside 0..{classes - 1}")
    return index


@dataclass(frozen=True)
class Reader:
    """How a task reads a sample: the stream (video or audio) and the head size."""
    modality: str
    classes: int
    boundary: bool = False      # add the word-boundary vector of the window (LRW)
    audio: bool = False         # video tasks: add the window's mel too (it makes the attention map)

    def open(self, raw: dict, spec: ClipSpec) -> Sample:
        try:
            sample = open_sample(raw, require_video=self.modality == "video",
                                 require_audio=self.modality == "audio" or self.audio)
        except FormatError as exc:
            raise SkipSample(exc.reason, exc.detail) from None
        meta = sample.meta
        if self.audio and meta.n_mels != spec.n_mels:
            raise SkipSample("n_mels", f"shard has {meta.n_mels} mel bands, model expects {spec.n_mels}")
        if self.modality == "audio" and (meta.mel_per_frame, meta.n_mels) != (spec.mel_per_frame, spec.n_mels):
            raise SkipSample("mel_per_frame" if meta.mel_per_frame != spec.mel_per_frame else "n_mels",
                             f"shard has {meta.mel_per_frame} x {meta.n_mels}, model expects "
                             f"{spec.mel_per_frame} x {spec.n_mels}")
        if meta.num_frames < 1:
            raise SkipSample("too_short", "no frames")
        return sample

    def clip(self, sample: Sample, start: int, spec: ClipSpec, rng: np.random.Generator | None,
             out: np.ndarray | None = None) -> dict:
        """One window from `start` (looped over a short sample): frames RGB (written into
        `out` when given, see decode_clip) or a mel."""
        n = sample.meta.num_frames
        indices = [(start + i) % n for i in range(spec.frames)]
        extra = {"boundary": word_boundary(sample.meta)[indices]} if self.boundary else {}
        try:
            if self.modality == "audio" or self.audio:
                k = sample.meta.mel_per_frame      # the sample's own: the map's audio is pooled over time
                mel = sample.mel_window(0, n).reshape(spec.n_mels, n, k)[:, indices].reshape(spec.n_mels, -1)
                extra["mel"] = np.ascontiguousarray(mel)
            if self.modality == "audio":
                return extra
            frames = decode_clip(sample, indices, spec, rng, out)
        except FormatError as exc:
            raise SkipSample(exc.reason, exc.detail) from None
        except (ValueError, IndexError, OSError) as exc:
            raise SkipSample("decode_error", f"{type(exc).__name__}: {exc}") from None
        return {"frames": frames, **extra}


def decode_train(raw: dict, spec: ClipSpec, rng: np.random.Generator, reader: Reader,
                 out: np.ndarray | None = None) -> dict:
    """A training clip with its label (DecodeStage's `decode`; `out`: its batch row, video tasks)."""
    sample = reader.open(raw, spec)
    label = label_of(sample.meta, reader.classes)
    n = sample.meta.num_frames
    start = int(rng.integers(0, max(n - spec.frames, 0) + 1)) if spec.jitter else 0
    return {**reader.clip(sample, start, spec, rng, out), "label": label, "key": sample.key, "start": start}


def window_starts(num_frames: int, length: int, clips: int) -> list[int]:
    """`clips` uniformly spaced window starts over a sample (first at 0, last at the end)."""
    return [int(round(s)) for s in np.linspace(0, max(num_frames - length, 0), clips)]


def test_windows(sample: Sample, spec: ClipSpec, reader: Reader, clips: int) -> dict:
    """The N test clips of one sample, stacked: {"frames" or "mel": (N, ...)}."""
    made = [reader.clip(sample, s, spec, None) for s in window_starts(sample.meta.num_frames, spec.frames, clips)]
    return {name: np.stack([m[name] for m in made]) for name in made[0]}


@dataclass
class Scan:
    """The metadata of every readable sample of some shards, and the unreadable ones by reason."""
    metas: list[SampleMeta] = field(default_factory=list)
    bad: Counter = field(default_factory=Counter)
    scanned: bool = True        # False: command / URL shards, not scanned
    unread: set = field(default_factory=set)     # suffixes of a few members that are none of the format's


def scan(urls: list[str]) -> Scan:
    """Read only the json members of local tar shards. Command / URL specs are not scanned
    (their checks then happen while loading, as skip counts)."""
    if any(is_command_or_url(u) for u in urls):
        return Scan(scanned=False)
    out = Scan()
    for url in urls:
        try:
            with tarfile.open(url) as tar:
                for member in tar:
                    if not (member.isfile() and note_member(member.name, out.unread)
                            and member.name.endswith(".json")):
                        continue
                    if member.size > MAX_META_BYTES:        # checked before reading: a header may lie
                        out.bad["bad_json"] += 1
                        continue
                    try:
                        out.metas.append(parse_meta(tar.extractfile(member).read()))
                    except FormatError as exc:
                        out.bad[exc.reason] += 1
        except (tarfile.TarError, OSError, EOFError):
            out.bad["shard_error"] += 1
    return out
