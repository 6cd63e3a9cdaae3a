"""WebDataset loader for avprep shards (docs/format.md, version 1).

Only the three expected members are read (`json`, `mel.npy`, `frames.mjpeg`), and each
sample passes the format's validator (`avprep.format.open_sample`: metadata, frame offsets
and the mel's .npy header are checked before anything is allocated from them). Nothing
from a shard is ever unpickled. Per sample a random window of `frames` frames is chosen
(temporal jitter) as it is read, before the shuffle buffer, which then holds only the
window's JPEGs and its exact mel columns (`mel[:, k*s : k*(s+frames)]`); from a local tar
file only those JPEGs are read, and only they are decoded (each checked against the stated
size). One random crop / flip / grey-scale applies to the whole clip.
Each frame's crop goes from the decoded JPEG straight into its clip's row of the batch.

Training uses `wds.ResampledShards` with a fixed number of batches per worker per epoch,
so ranks and workers never run out at different times (no DDP desync). Samples are
shuffled in a buffer that spans shards. A sample that cannot be decoded is skipped and
counted by reason; each batch carries its worker's running counts. When no batch can come
(`data.skip_limit` unusable samples in a row, every shard read without a sample, a whole
pass without a batch, or no batch within `data.batch_timeout` s) the loader ends with
NoBatchError, one line naming the reason and the counts, instead of spinning forever.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import io
import logging
import lzma
import math
import os
import re
import signal
import sys
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import webdataset as wds
from webdataset import tariterators
from torch.utils.data import DataLoader, default_collate

from avprep.format import FORMAT_VERSION, FRAMES, MEMBERS, FormatError, Sample, open_sample, parse_meta  # noqa: F401
from glcm.config import DataConfig

log = logging.getLogger(__name__)

# What malformed bytes could still raise inside OpenCV past the format's checks.
DECODE_ERRORS = (ValueError, KeyError, TypeError, IndexError, EOFError, OSError, cv2.error)


class SkipSample(Exception):
    """A sample that cannot be used; `reason` is a short tag for the counts."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ClipSpec:
    frames: int = 32
    crop: int = 112
    resize_short: int = 0
    flip_prob: float = 0.5
    grey_prob: float = 0.2
    jitter: bool = True
    mel_per_frame: int = 10
    n_mels: int = 80

    @classmethod
    def from_config(cls, cfg: DataConfig, mel_per_frame: int, n_mels: int) -> "ClipSpec":
        return cls(cfg.frames, cfg.crop, cfg.resize_short, cfg.flip_prob, cfg.grey_prob,
                   cfg.jitter, mel_per_frame, n_mels)


def is_member(fname: str) -> bool:
    """Tar members worth reading: `<key>.<member>` for the expected members only."""
    return any(fname.endswith("." + m) for m in MEMBERS)


# ---- decoding one sample --------------------------------------------------------------

def open_checked(raw: dict, spec: ClipSpec) -> Sample:
    """The format's structural checks (avprep.format.open_sample), then the model's own:
    the shard's mel_per_frame and n_mels must be the model's. Pretraining needs both
    streams: visual-only and audio-only samples are skipped (reasons visual_only, audio_only)."""
    try:
        sample = open_sample(raw, require_video=True, require_audio=True)
    except FormatError as exc:
        raise SkipSample(exc.reason, exc.detail) from None
    meta = sample.meta
    if meta.mel_per_frame != spec.mel_per_frame:
        raise SkipSample("mel_per_frame", f"shard has {meta.mel_per_frame}, model expects {spec.mel_per_frame}")
    if meta.n_mels != spec.n_mels:
        raise SkipSample("n_mels", f"shard has {meta.n_mels}, model expects {spec.n_mels}")
    return sample


def choose_start(num_frames: int, length: int, jitter: bool, rng: np.random.Generator) -> int:
    if num_frames < length:
        raise SkipSample("too_short", f"{num_frames} frames < {length}")
    return int(rng.integers(0, num_frames - length + 1)) if jitter else 0


def crop_box(h: int, w: int, spec: ClipSpec, rng: np.random.Generator | None) -> tuple[float, int, int]:
    """(scale, y, x): resize factor for the frames, then the crop's top-left corner
    (random, or centred when `rng` is None)."""
    short = spec.resize_short or min(h, w)
    short = max(short, spec.crop)                      # never crop beyond the frame
    scale = short / min(h, w)
    sh, sw = round(h * scale), round(w * scale)
    if rng is None:
        return scale, (sh - spec.crop) // 2, (sw - spec.crop) // 2
    return scale, int(rng.integers(0, sh - spec.crop + 1)), int(rng.integers(0, sw - spec.crop + 1))


def decode_window(sample: Sample, start: int, spec: ClipSpec,
                  rng: np.random.Generator | None) -> tuple[np.ndarray, tuple[float, int, int]]:
    """Decode frames [start, start+spec.frames) and crop them: uint8 (T, crop, crop, 3) BGR,
    and the (scale, y, x) crop box (centred when `rng` is None). Every frame is checked to
    be height x width (the format's rule) before it is decoded."""
    return decode_frames(sample, list(range(start, start + spec.frames)), spec, rng)


def decode_frames(sample: Sample, indices: list[int], spec: ClipSpec, rng: np.random.Generator | None,
                  box: tuple[float, int, int] | None = None,
                  grey: bool = False) -> tuple[np.ndarray, tuple[float, int, int]]:
    """Frames `indices` (repeats allowed: each distinct frame is decoded once), cropped as in
    `decode_window` (or at `box`, when given, without drawing one): uint8 (len(indices),
    crop, crop, 3) BGR and the crop box. With `grey` only the JPEGs' luma is decoded:
    (len(indices), crop, crop) uint8."""
    c = spec.crop
    box = box or crop_box(sample.meta.height, sample.meta.width, spec, rng)
    out = np.empty((len(indices), c, c) if grey else (len(indices), c, c, 3), dtype=np.uint8)
    fill_clip(out, sample, indices, spec, box, grey, _put_as_is)
    return out, box


def fill_clip(out: np.ndarray, sample: Sample, indices: list[int], spec: ClipSpec,
              box: tuple[float, int, int], grey: bool, put) -> None:
    """Row j of `out` <- put(crop of frame indices[j], out[j]); a repeated frame is decoded
    once and its finished row copied."""
    first: dict[int, int] = {}          # frame -> its first row in `out`
    for j, i in enumerate(indices):
        if i in first:
            out[j] = out[first[i]]
            continue
        first[i] = j
        put(frame_crop(sample, i, spec, box, grey), out[j])


def frame_crop(sample: Sample, i: int, spec: ClipSpec, box: tuple[float, int, int], grey: bool) -> np.ndarray:
    """Frame i decoded (BGR, or luma with `grey`), resized by the box's scale, and the box's
    crop of it: a view, not a copy."""
    scale, y, x = box
    try:
        img = sample.frame(i, bgr=True, grey=grey)
    except FormatError as exc:
        raise SkipSample(exc.reason, exc.detail) from None
    if scale != 1.0:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return img[y:y + spec.crop, x:x + spec.crop]


def colour_draws(spec: ClipSpec, rng: np.random.Generator) -> tuple[bool, bool]:
    """(flip, grey) for one clip; drawn in this order, after the crop box."""
    flip = rng.random() < spec.flip_prob
    grey = rng.random() < spec.grey_prob
    return flip, grey


def decode_clip(sample: Sample, indices: list[int], spec: ClipSpec, rng: np.random.Generator | None,
                out: np.ndarray | None = None) -> np.ndarray:
    """Frames `indices` as one clip, uint8 (len(indices), crop, crop, 3) RGB: with `rng`, a
    random crop, flip and grey-scale (drawn in that order; a grey clip is decoded from the
    JPEGs' luma alone, the codec's own BT.601 Y); without, the centred crop as it is.
    `out`: a C-contiguous array of that shape to write into (e.g. the clip's row of the
    batch), else a new one. Each crop goes from the decoded frame to `out` in one pass."""
    box = crop_box(sample.meta.height, sample.meta.width, spec, rng)
    flip, grey = colour_draws(spec, rng) if rng is not None else (False, False)
    c = spec.crop
    if out is None:
        out = np.empty((len(indices), c, c, 3), dtype=np.uint8)
    elif out.shape != (len(indices), c, c, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out is {out.dtype} {out.shape}, not a C-contiguous uint8 {(len(indices), c, c, 3)}")
    fill_clip(out, sample, indices, spec, box, grey, PUT[flip, grey])
    return out


# One crop (a view of the decoded frame: BGR, or luma for a grey clip) -> its row of the clip,
# RGB, in one OpenCV pass. A mirrored RGB row is the BGR row's bytes in reverse order, so a
# flipped colour crop is one cv2.flip of its (rows, crop*3) bytes; a grey crop gets 3 equal
# channels, and is then mirrored the same way in place.
def _put_as_is(crop: np.ndarray, row: np.ndarray) -> None:
    row[...] = crop


def _put_rgb(crop: np.ndarray, row: np.ndarray) -> None:
    cv2.cvtColor(crop, cv2.COLOR_BGR2RGB, dst=row)


def _put_rgb_flipped(crop: np.ndarray, row: np.ndarray) -> None:
    cv2.flip(crop.reshape(crop.shape[0], -1), 1, dst=row.reshape(row.shape[0], -1))


def _put_grey(crop: np.ndarray, row: np.ndarray) -> None:
    cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB, dst=row)


def _put_grey_flipped(crop: np.ndarray, row: np.ndarray) -> None:
    cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB, dst=row)
    rows = row.reshape(row.shape[0], -1)
    cv2.flip(rows, 1, dst=rows)


PUT = {(False, False): _put_rgb, (True, False): _put_rgb_flipped,
       (False, True): _put_grey, (True, True): _put_grey_flipped}


def decode_sample(raw: dict, spec: ClipSpec, rng: np.random.Generator, out: np.ndarray | None = None) -> dict:
    """One raw tar sample -> {"frames": uint8 (T,c,c,3) RGB, "mel": float32 (n_mels, T*k), ...}
    (frames written into `out` when given, see decode_clip). SkipSample (with the format's
    reason code) for a sample that breaks a rule. The random draws come in a fixed order:
    window start, then decode_clip's crop box, flip, grey. (The loader does the same in two
    stages, `cut_window` before its shuffle buffer and `decode_cut` after it.)"""
    return decode_cut(cut_window(raw, spec, rng), spec, rng, out)


@dataclass
class Window:
    """A sample's training window, cut out before the shuffle buffer so that the buffer
    holds only what a clip needs: `sample` has the window's frames alone (its frame 0 is the
    sample's frame `start`; their bytes read from the tar file by range, or copied, so the
    sample's other frames are never read or are freed) and `mel` is the window's mel
    columns, float32, checked finite."""
    sample: Sample
    start: int
    mel: np.ndarray

    @property
    def key(self) -> str:
        return self.sample.key


def cut_window(raw: dict, spec: ClipSpec, rng: np.random.Generator) -> Window:
    """Check a raw sample (open_checked), draw its window start and cut the window out.
    A 10 s sample at 10 fps holds 100 JPEGs; a 32-frame window keeps 32 of them."""
    sample = open_checked(raw, spec)
    meta = sample.meta
    start = choose_start(meta.num_frames, spec.frames, spec.jitter, rng)
    offsets = meta.frame_offsets[start:start + spec.frames + 1]
    first = offsets[0]
    try:
        mel = sample.mel_window(start, spec.frames)
        jpegs = member_range(sample.members[FRAMES], first, offsets[-1])
    except FormatError as exc:
        raise SkipSample(exc.reason, exc.detail) from None
    except OSError as exc:
        raise SkipSample("shard_error", f"{type(exc).__name__}: {exc}") from None
    kept = dataclasses.replace(meta, num_frames=spec.frames, first_frame=meta.first_frame + start,
                               frame_offsets=[o - first for o in offsets])
    return Window(Sample(kept, {FRAMES: jpegs}, None), start, mel)


def decode_cut(window: Window, spec: ClipSpec, rng: np.random.Generator | None,
               out: np.ndarray | None = None) -> dict:
    """A cut window -> decode_sample's clip: decode_clip's crop box, flip and grey drawn from `rng`."""
    try:
        frames = decode_clip(window.sample, list(range(spec.frames)), spec, rng, out)
    except FormatError as exc:
        raise SkipSample(exc.reason, exc.detail) from None
    except DECODE_ERRORS as exc:
        raise SkipSample("decode_error", f"{type(exc).__name__}: {exc}") from exc
    return {"frames": frames, "mel": window.mel, "key": window.key, "start": window.start}


# ---- pipeline stages --------------------------------------------------------------------

class NoBatchError(RuntimeError):
    """No batch can be made from these shards; str() is one line: the reason and the skip counts."""


def no_batch(reason: str, counts: dict[str, int], unread=()) -> NoBatchError:
    """The one-line error; `unread`: suffixes of the tar members that were not read."""
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    return NoBatchError(f"no batch could be made: {reason}; skipped by reason: {skipped}{unread_note(unread)}")


def unread_note(unread) -> str:
    """'; tar members not read: .cls, .jpg' for the errors that say no sample was usable ('' for none)."""
    return f"; tar members not read: {', '.join(sorted(unread))}" if unread else ""


MEMBER_NAMES = ", ".join("." + m for m in MEMBERS)     # for messages: '.frames.mjpeg, .mel.npy, .json'


def note_member(fname: str, unread: set[str]) -> bool:
    """`is_member(fname)`; otherwise its suffix goes into `unread` (a few, up to 8), so that an
    error about shards without a usable sample can say what they held instead."""
    if is_member(fname):
        return True
    if len(unread) < 8:
        unread.add(member_suffix(fname))
    return False


def member_suffix(fname: str) -> str:
    """A tar member's suffix as webdataset splits it ('a/k1.mel.npy' -> '.mel.npy'); its
    name when it has none."""
    _, suffix = tariterators.base_plus_ext(fname)
    return "." + suffix if suffix else os.path.basename(fname)


class SkipCounter:
    """Counts skipped samples and unreadable shards in one worker process, and gives up with
    NoBatchError when no batch can come: `skip_limit` unusable samples in a row (0: never),
    or every one of the `shards` read through, since the last sample, without one sample.
    Neither can happen while some shard still gives samples that decode.

    "In a row" is counted per stage (select, cut, decode), each in the order its samples
    reach it: the stages before the shuffle buffer see samples long before decoding does,
    so one count across them would add up a buffer's worth of skips while the usable
    samples that should reset it wait in the buffer."""

    def __init__(self, skip_limit: int = 0, shards: int = 0):
        self.counts: Counter[str] = Counter()
        self.skip_limit, self.shards = skip_limit, shards
        self.in_a_row: Counter[str] = Counter()    # per stage: unusable samples since its last usable one
        self.barren: set[str] = set()      # shards read with no sample since the last sample
        self.unread: set[str] = set()      # suffixes of tar members not read (not one of MEMBERS)

    def select(self, fname: str) -> bool:
        """select_files for the tar readers: `is_member`, noting the other members' suffixes
        (a few), so that "no batch" can say what the shards held instead."""
        return note_member(fname, self.unread)

    def skip(self, reason: str, where: str, detail: str) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= 5:
            log.warning("skipped %s (%s): %s", where, reason, detail)

    def skip_sample(self, exc: SkipSample, key: str, stage: str = "decode") -> None:
        """A sample skipped by a stage: counted by its reason, and one more unusable in a row."""
        self.skip(exc.reason, key, str(exc))
        self.sample_done(False, stage)

    def tar_error(self, exc: Exception) -> bool:
        """webdataset handler for shard-level errors: count, warn, go on."""
        self.skip("shard_error", str(exc.args[-1]) if exc.args else "?", f"{type(exc).__name__}: {exc}")
        return True

    def sample_done(self, usable: bool, stage: str = "decode") -> None:
        """A stage's verdict on one sample."""
        if usable:
            self.in_a_row[stage] = 0
            return
        self.in_a_row[stage] += 1
        if self.skip_limit and self.in_a_row[stage] >= self.skip_limit:
            raise no_batch(f"{self.in_a_row[stage]} samples in a row could not be used (data.skip_limit)",
                           self.counts, self.unread)

    def shard_done(self, url: str, samples: int) -> None:
        """The read stage finished one shard, which gave `samples` samples."""
        if samples:
            self.barren.clear()
            return
        self.barren.add(url)
        if self.shards and len(self.barren) >= self.shards:
            raise no_batch(f"none of the {self.shards} shards gave a sample " + (
                f"(no member is one of {MEMBER_NAMES}: not avprep shards?)"
                if self.unread else "(empty, unreadable or not tar files)"), self.counts, self.unread)


class ReadStage:
    """Pipeline stage: shards -> raw samples (the expected members only), one shard at a
    time, so the counter learns how many samples each shard read gave. `lazy`: members left
    in a local tar file until they are read by range (see read_shard); only for a pipeline
    whose next stages cut what they need at once (pretraining's CutStage)."""

    def __init__(self, counter: SkipCounter, lazy: frozenset[str] = frozenset()):
        self.counter, self.lazy = counter, lazy

    def __call__(self, src):
        for shard in src:
            n = 0
            for sample in read_shard(shard["url"], self.counter.tar_error, self.counter.select, self.lazy):
                n += 1
                yield sample
            self.counter.shard_done(shard["url"], n)


# What reading a shard can raise; each goes to the handler (counted as shard_error).
READ_ERRORS = (OSError, ValueError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError)
WDS_META_NAME = re.compile(r"__[^/]*__($|/)")       # webdataset's own files in a tar: never samples


def read_shard(url: str, handler, select=is_member, lazy: frozenset[str] = frozenset()) -> Iterator[dict]:
    """The samples of one shard as webdataset makes them ({"__key__", "__url__", member:
    bytes}, the members `select(name)` accepts, grouped by key by webdataset). A local tar file is
    read with random access, each member's bytes in one read; webdataset's reader (tarfile's
    stream mode, which copies every member through 10 KB chunks: ~1 ms a 0.7 MB sample)
    reads the rest: commands' and URLs' streams, compressed tars. Errors go to `handler`,
    the url last in their args, as in webdataset.

    In a local tar file the members named in `lazy` (e.g. {"frames.mjpeg"}) are not read:
    they come as `TarMember`s, read by range later (`member_range`), so that a reader that
    needs 32 frames of 100 reads only those."""
    try:
        stream = wds.gopen(url)
    except READ_ERRORS as exc:
        exc.args += (url,)
        handler(exc)
        return iter(())
    if url != "-" and isinstance(stream, io.IOBase) and stream.seekable():     # not stdin: it is closed after
        files = local_tar_files(stream, url, handler, select, lazy)
    else:
        files = stream_tar_files(stream, url, handler, select)
    return tariterators.group_by_keys(files, handler=handler)


def stream_tar_files(stream, url: str, handler, select) -> Iterator[dict]:
    """webdataset's tar reader over an open stream: {"fname", "data", "__url__"} per member."""
    return tariterators.tar_file_expander([{"url": url, "stream": stream}], handler=handler, select_files=select)


def local_tar_files(stream, url: str, handler, select, lazy: frozenset[str] = frozenset()) -> Iterator[dict]:
    """As stream_tar_files, for a seekable plain tar file: the same members and names,
    each member read at once, or left in the file as a TarMember when its suffix is in
    `lazy`. A file that does not open as a plain tar goes through stream_tar_files (which
    opens compressed tars, or reports the error as before)."""
    with stream:
        try:
            tar = tarfile.open(fileobj=BoundedFile(stream), mode="r:")
        except READ_ERRORS:
            stream.seek(0)
            yield from stream_tar_files(stream, url, handler, select)
            return
        shared = SharedFd(stream) if lazy else None
        try:
            while (info := tar.next()) is not None:
                tar.members = []                        # keep no list of the members read
                if not info.isreg() or WDS_META_NAME.match(info.name) or not select(info.name):
                    continue
                if shared is not None and tariterators.base_plus_ext(info.name)[1] in lazy:
                    data = TarMember(shared, info.offset_data, info.size)
                else:
                    data = tar.extractfile(info).read()
                yield {"fname": info.name, "data": data, "__url__": url}
        except READ_ERRORS as exc:
            exc.args += (url,)
            handler(exc)


class SharedFd:
    """A copy of an open file's descriptor, closed when the last object holding it is gone
    (TarMembers outlive the reading of their shard: a sample is grouped after the next
    one's first header), and the file's size."""

    def __init__(self, stream):
        self.size = os.fstat(stream.fileno()).st_size
        self.fd = os.dup(stream.fileno())

    def __del__(self):
        os.close(self.fd)


class TarMember:
    """A tar member's data left in its file: `len()` is the size its header gives, and
    `read(start, end)` reads that range of it (FormatError `truncated` when the file ends
    first)."""
    __slots__ = ("file", "offset", "size")

    def __init__(self, file: SharedFd, offset: int, size: int):
        self.file, self.offset, self.size = file, offset, size

    def __len__(self) -> int:
        return self.size

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the member; a range past the file's end is refused before
        anything is allocated for it (a header may claim any size)."""
        if self.offset + end <= self.file.size:
            data = os.pread(self.file.fd, end - start, self.offset + start)
            if len(data) == end - start:
                return data
        raise FormatError("truncated", f"the tar file ends inside the member (bytes {start}-{end} of {self.size})")


def member_range(member, start: int, end: int) -> bytes:
    """Bytes [start, end) of a member: read from its file (a TarMember) or copied."""
    return member.read(start, end) if isinstance(member, TarMember) else bytes(memoryview(member)[start:end])


class BoundedFile:
    """A seekable file whose reads never ask for more than the file holds: a tar header
    that claims a huge size (a member's or a pax header's) gives a short read, which
    tarfile reports as ReadError, instead of allocating that size."""

    def __init__(self, f):
        self.f, self.size = f, os.fstat(f.fileno()).st_size

    def read(self, n: int = -1) -> bytes:
        left = max(self.size - self.f.tell(), 0)
        return self.f.read(left if n is None or n < 0 else min(n, left))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()


def worker_rng(seed: int, epoch: int) -> np.random.Generator:
    """A generator distinct per seed, rank, DataLoader worker and epoch."""
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return np.random.default_rng([seed, rank, worker, epoch])


class ShuffleStage:
    """Buffer shuffle across shards, seeded per rank, worker and epoch."""

    def __init__(self, bufsize: int, initial: int, seed: int):
        self.bufsize, self.initial, self.seed, self.epoch = bufsize, min(initial, bufsize), seed, -1

    def __call__(self, src):
        self.epoch += 1
        rng = worker_rng(self.seed + 7919, self.epoch)
        buf, it = [], iter(src)
        for item in it:
            buf.append(item)
            if len(buf) < self.bufsize:          # read two per yield: the buffer grows
                nxt = next(it, None)
                if nxt is not None:
                    buf.append(nxt)
            if len(buf) < self.initial:
                continue
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()
        rng.shuffle(buf)
        yield from buf


class SelectStage:
    """Pipeline stage: only the raw samples `select(meta)` accepts (e.g. one split's train
    samples) go on; the others are dropped uncounted, but they do count as unusable samples
    in a row (so a selection that matches nothing ends with NoBatchError). A sample whose
    metadata cannot be read goes on, to be skipped and counted by the decode stage."""

    def __init__(self, select, counter: SkipCounter):
        self.select, self.counter = select, counter

    def __call__(self, src):
        for raw in src:
            try:
                meta = parse_meta(raw["json"])
            except (KeyError, FormatError):
                yield raw
                continue
            chosen = self.select(meta)
            self.counter.sample_done(chosen, "select")
            if chosen:
                yield raw


class CutStage:
    """Pipeline stage (pretraining, before the shuffle buffer): raw samples -> their
    training windows (`cut_window`: checks, window start, only the window's bytes kept);
    a sample that cannot be used is skipped and counted here. Its own generator per
    worker and epoch draws the starts."""

    def __init__(self, spec: ClipSpec, counter: SkipCounter, seed: int):
        self.spec, self.counter, self.seed, self.epoch = spec, counter, seed, -1

    def __call__(self, src):
        self.epoch += 1
        rng = worker_rng(self.seed + CUT_SEED, self.epoch)
        for raw in src:
            try:
                window = cut_window(raw, self.spec, rng)
            except SkipSample as exc:
                self.counter.skip_sample(exc, raw.get("__key__", "?"), "cut")
                continue
            self.counter.sample_done(True, "cut")
            yield window


CUT_SEED = 104729     # CutStage's generator: seed + this (the shuffle's is seed + 7919, decoding's the seed)


class DecodeStage:
    """Pipeline stage: raw samples (or CutStage's windows) -> decoded, augmented clips;
    skips are counted. `decode(item, spec, rng)` makes one clip (default: `decode_cut`,
    pretraining's, after CutStage). With `rows` (BatchRows) each clip's frames are decoded
    into the next batch row, `decode(item, spec, rng, out=row)`."""

    def __init__(self, spec: ClipSpec, counter: SkipCounter, seed: int, decode=None,
                 rows: BatchRows | None = None):
        self.spec, self.counter, self.seed, self.epoch = spec, counter, seed, -1
        self.decode, self.rows = decode or decode_cut, rows

    def __call__(self, src):
        self.epoch += 1
        cv2.setNumThreads(1)
        rng = worker_rng(self.seed, self.epoch)
        for sample in src:
            try:
                if self.rows is None:
                    clip = self.decode(sample, self.spec, rng)
                else:
                    clip = self.decode(sample, self.spec, rng, out=self.rows.row())
                    self.rows.keep(clip["frames"])
            except SkipSample as exc:
                self.counter.skip_sample(exc, sample.key if isinstance(sample, Window) else sample.get("__key__", "?"))
                continue
            self.counter.sample_done(True)
            yield clip


class BatchStage:
    """Pipeline stage: clips -> batches of tensors; each carries this worker's skip counts.

    In a DataLoader worker, a NoBatchError becomes a last item {"no_batch": message} (and a
    pass that made no batch ends with {"pass_end": ..., "skipped": counts}), so the main
    process can raise it as one line (`batches`); in the main process it is raised as is.
    A subclass may batch differently by setting `collate_fn` (glcm.sentence pads). With
    `rows` (the DecodeStage's BatchRows) the clips' frames come already batched."""

    def __init__(self, batch_size: int, counter: SkipCounter, rows: BatchRows | None = None):
        self.batch_size, self.counter, self.rows = batch_size, counter, rows

    def __call__(self, src):
        _, _, worker, _ = wds.utils.pytorch_worker_info()
        in_worker = torch.utils.data.get_worker_info() is not None
        buf, made = [], 0
        if self.rows is not None:
            self.rows.reset()                 # a new pass: rows left from the last one are not a batch
        try:
            for clip in src:
                buf.append(clip)
                if len(buf) == self.batch_size:
                    yield self.make_batch(buf, worker)
                    buf, made = [], made + 1
        except NoBatchError as exc:
            if not in_worker:
                raise
            yield {"no_batch": str(exc), "worker": worker}
            return
        if in_worker and not made:
            yield {"pass_end": True, "worker": worker, "skipped": dict(self.counter.counts),
                   "unread": sorted(self.counter.unread)}

    def make_batch(self, clips: list[dict], worker: int) -> dict:
        skipped = dict(self.counter.counts)
        frames = self.rows.take([c.get("frames") for c in clips]) if self.rows is not None else None
        if frames is None:
            return self.collate_fn(clips, worker, skipped)
        return self.collate_fn(clips, worker, skipped, frames=frames)


class BatchRows:
    """The frames tensor of the batch being made, one row per clip, so that each clip is
    decoded straight into its place: no array per clip and no stacking copy. In a
    DataLoader worker the tensor is in shared memory (as default_collate's), so handing the
    batch to the training process copies nothing either. Rows go out in order (`row`: the
    same one again until `keep`); `take` gives the tensor when a batch's clips are exactly
    its rows, and starts a new one. A tensor is never written again once taken."""

    def __init__(self, batch_size: int, shape: tuple[int, ...]):
        self.batch_size, self.shape = batch_size, tuple(shape)
        self.reset()

    def reset(self) -> None:
        self.tensor, self.array, self.kept, self.given = None, None, [], None

    def row(self) -> np.ndarray:
        """Where the next clip's frames go."""
        if len(self.kept) >= self.batch_size:          # more clips than a batch: one of its own
            self.given = np.empty(self.shape, np.uint8)
        else:
            if self.tensor is None:
                self.tensor = batch_tensor((self.batch_size, *self.shape))
                self.array = self.tensor.numpy()
            self.given = self.array[len(self.kept)]
        return self.given

    def keep(self, frames: np.ndarray) -> None:
        """The last clip is kept; `frames`: its frames as decoded (the row, if the decoder wrote it)."""
        self.kept.append(frames if frames is self.given else None)

    def take(self, frames: list) -> torch.Tensor | None:
        """The batch tensor if `frames` are its rows 0..batch_size-1, in order; else None
        (the caller stacks them). Either way the next row starts a new tensor."""
        whole = len(frames) == len(self.kept) == self.batch_size and all(
            f is not None and f is k for f, k in zip(frames, self.kept))
        tensor = self.tensor if whole else None
        self.reset()
        return tensor


def batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor. In the main process numpy's memory (numpy asks for
    huge pages for large arrays: writing a fresh 38 MB batch faults ~20 times, not ~9,400);
    in a DataLoader worker shared memory, allocated as torch's default_collate allocates a
    batch there."""
    if torch.utils.data.get_worker_info() is None:
        return torch.from_numpy(np.empty(shape, np.uint8))
    elem = torch.empty(0, dtype=torch.uint8)
    storage = elem._typed_storage()._new_shared(math.prod(shape), device=elem.device)
    return elem.new(storage).resize_(*shape)


def collate(clips: list[dict], worker: int, skipped: dict[str, int], frames: torch.Tensor | None = None) -> dict:
    """Stack the clips' arrays (frames, mel, boundary: whichever the clips carry) and labels.
    `frames`: the clips' frames already batched (BatchRows), used as they are."""
    out = {name: frames if name == "frames" and frames is not None else stack([c[name] for c in clips])
           for name in ("frames", "mel", "boundary") if name in clips[0]}
    if "label" in clips[0]:
        out["label"] = torch.tensor([c["label"] for c in clips])
    return {**out, "start": torch.tensor([c["start"] for c in clips]),
            "key": [c["key"] for c in clips], "worker": worker, "skipped": skipped}


def stack(arrays: list[np.ndarray]) -> torch.Tensor:
    """np.stack as a tensor. In a DataLoader worker torch's default_collate stacks straight
    into shared memory instead: sending the batch then needs no second copy (a batch of 32
    clips: 31 ms, against 41 ms for np.stack + the move to shared memory when it is sent;
    in the main process np.stack alone, 14 ms, is the faster)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.from_numpy(np.stack(arrays))
    return default_collate([torch.from_numpy(a) for a in arrays])


BatchStage.collate_fn = staticmethod(collate)


def make_dataset(urls: str | list[str], cfg: DataConfig, batch_size: int, spec: ClipSpec,
                 epoch_batches: int | None = None, seed_offset: int = 0, decode=None,
                 select=None) -> wds.DataPipeline:
    """The batch pipeline. `urls`: brace pattern(s), local paths or pipe:/http(s) URLs.
    `decode`: how a raw sample becomes a clip (default: pretraining's, `decode_sample` in two
    stages: CutStage before the shuffle buffer, so that the buffer holds only the windows'
    bytes, then `decode_cut`; a `decode` with a true `fills_rows` attribute takes `out=`, its
    frames' batch row, as pretraining's does);
    `select(meta)`: which samples to use (default: all), see SelectStage.

    With `cfg.resample` shards are drawn with replacement (per rank/worker/epoch seeds)
    and each worker yields exactly `epoch_batches` batches per epoch (required then).
    Without it every shard is read once, split by rank and then by worker.
    """
    counter = SkipCounter(cfg.skip_limit, len(wds.shardlists.expand_urls(urls)) if isinstance(urls, str) else len(urls))
    seed = cfg.seed + seed_offset
    if cfg.resample:
        if not epoch_batches:
            raise ValueError("resampled shards need epoch_batches (batches per worker per epoch)")
        source = [wds.ResampledShards(urls, seed=seed, deterministic=True)]
    else:
        source = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker]
    # pretraining's clips, and a `decode` with `fills_rows` (finetuning's video), are decoded into their batch's rows
    pretraining = decode is None
    in_rows = pretraining or getattr(decode, "fills_rows", False)
    rows = BatchRows(batch_size, (spec.frames, spec.crop, spec.crop, 3)) if in_rows else None
    stages = source + [
        ReadStage(counter, frozenset({FRAMES}) if pretraining else frozenset()),   # CutStage reads the window
        *([SelectStage(select, counter)] if select is not None else []),
        *([CutStage(spec, counter, seed)] if pretraining else []),
        ShuffleStage(cfg.shuffle_buffer, cfg.initial_buffer, seed),
        DecodeStage(spec, counter, seed, decode, rows),
        BatchStage(batch_size, counter, rows),
    ]
    pipeline = wds.DataPipeline(*stages)
    pipeline.skip_counter = counter     # in-process view of the counts (workers hold their own)
    return pipeline.with_epoch(epoch_batches) if cfg.resample else pipeline


def make_loader(urls: str | list[str], cfg: DataConfig, batch_size: int, spec: ClipSpec,
                epoch_batches: int | None = None, seed_offset: int = 0, pin_memory: bool = False,
                decode=None, select=None) -> DataLoader:
    """DataLoader over `make_dataset`; `epoch_batches` is per rank (split over the workers)."""
    workers = max(cfg.workers, 0)
    per_worker = math.ceil(epoch_batches / max(workers, 1)) if epoch_batches else None
    ds = make_dataset(urls, cfg, batch_size, spec, per_worker, seed_offset, decode, select)
    return DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      worker_init_fn=functools.partial(init_worker, os.getpid()) if workers else None,
                      timeout=cfg.batch_timeout if workers else 0)


def init_worker(parent: int, worker_id: int) -> None:
    """DataLoader worker start. Ctrl-C belongs to the main process (which stops the workers);
    SIGTERM ends a worker at once with status 0 (the main process does not mistake it for a
    crash); on Linux the kernel sends SIGTERM when the main process dies, so no worker is
    ever left behind."""
    signal.signal(signal.SIGINT, lambda signum, frame: None)   # a handler, not SIG_IGN: pipe: children keep Ctrl-C
    signal.signal(signal.SIGTERM, _end_worker)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:            # the main process died before the line above
        os._exit(0)


def _end_worker(signum, frame) -> None:
    """SIGTERM in a worker: end the commands it started (pipe: shards) and exit with status 0."""
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    os._exit(0)


def _descendants(pid: int) -> list[int]:
    """Child processes of `pid`, their children and so on (Linux /proc; [] elsewhere)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        return found
    return found + [d for child in found for d in _descendants(child)]


def shutdown_loader(loader) -> None:
    """Stop a DataLoader's persistent worker processes now. Without a pin-memory thread
    (nothing else reads their queue) each gets SIGTERM first, so a worker stuck in a read
    (e.g. a pipe: command) ends at once rather than after torch's 5 s join timeout."""
    it = getattr(loader, "_iterator", None)
    if it is None or not hasattr(it, "_shutdown_workers"):
        return
    if not hasattr(it, "_pin_memory_thread"):
        for w in getattr(it, "_workers", []):
            w.terminate()
    it._shutdown_workers()
    if isinstance(loader, DataLoader):
        loader._iterator = None


def batches(loader):
    """The batches of one pass over `loader`. NoBatchError (one line) when a worker reports
    that no batch can come, when the pass ends without a batch, or when one batch takes
    longer than the loader's timeout (data.batch_timeout)."""
    made, reports, unread = 0, {}, set()
    try:
        for batch in loader:
            if "no_batch" in batch:
                raise NoBatchError(batch["no_batch"])
            if "pass_end" in batch:
                reports[batch["worker"]] = batch["skipped"]
                unread.update(batch.get("unread", ()))
                continue
            made += 1
            yield batch
    except RuntimeError as exc:
        if isinstance(exc, NoBatchError) or "timed out" not in str(exc):
            raise
        raise no_batch(f"no batch within {getattr(loader, 'timeout', 0):g} s (data.batch_timeout); "
                       "are the shard reads stuck?", total_skipped(reports)) from None
    if not made:
        counter = getattr(getattr(loader, "dataset", None), "skip_counter", None)
        counts = total_skipped(reports) if reports else dict(counter.counts) if counter else {}
        unread = unread if reports else counter.unread if counter else ()
        raise no_batch("a whole pass over the shards gave no batch", counts, unread)


def total_skipped(latest: dict[int, dict[str, int]]) -> dict[str, int]:
    """Sum the latest running counts reported by each worker."""
    total: Counter[str] = Counter()
    for counts in latest.values():
        total.update(counts)
    return dict(total)
