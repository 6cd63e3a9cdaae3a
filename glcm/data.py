"""WebDataset loader for avprep shards (docs/format.md, version 1).

Only the three expected members are read (`json`, `mel.npy`, `frames.mjpeg`), and each
sample passes the format's validator (`avprep.format.open_sample`: metadata, frame offsets
and the mel's .npy header are checked before anything is allocated from them). Nothing
from a shard is ever unpickled. Per sample a random window of `frames` frames is chosen
(temporal jitter), only its JPEGs are decoded (each checked against the stated size), and
its exact mel columns are cut (`mel[:, k*s : k*(s+frames)]`). One random crop / flip / grey-scale applies to the whole clip.

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
import functools
import logging
import math
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, default_collate

from avprep.format import FORMAT_VERSION, MEMBERS, FormatError, Sample, open_sample, parse_meta  # noqa: F401
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
    scale, y, x = box
    out = np.empty((len(indices), c, c) if grey else (len(indices), c, c, 3), dtype=np.uint8)
    first: dict[int, int] = {}          # frame -> its first row in `out` (a repeat is copied)
    for j, i in enumerate(indices):
        if i in first:
            out[j] = out[first[i]]
            continue
        first[i] = j
        try:
            img = sample.frame(i, bgr=True, grey=grey)
        except FormatError as exc:
            raise SkipSample(exc.reason, exc.detail) from None
        if scale != 1.0:
            img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        out[j] = img[y:y + c, x:x + c]          # straight into the batch row: one copy
    return out, box


def colour_draws(spec: ClipSpec, rng: np.random.Generator) -> tuple[bool, bool]:
    """(flip, grey) for one clip; drawn in this order, after the crop box."""
    flip = rng.random() < spec.flip_prob
    grey = rng.random() < spec.grey_prob
    return flip, grey


def decode_clip(sample: Sample, indices: list[int], spec: ClipSpec, rng: np.random.Generator | None) -> np.ndarray:
    """Frames `indices` as one clip, uint8 (len(indices), crop, crop, 3) RGB: with `rng`, a
    random crop, flip and grey-scale (drawn in that order; a grey clip is decoded from the
    JPEGs' luma alone, the codec's own BT.601 Y); without, the centred crop as it is."""
    box = crop_box(sample.meta.height, sample.meta.width, spec, rng)
    flip, grey = colour_draws(spec, rng) if rng is not None else (False, False)
    frames, _ = decode_frames(sample, indices, spec, None, box, grey)
    return finish_colour(frames, flip, grey)


def finish_colour(frames: np.ndarray, flip: bool, grey: bool) -> np.ndarray:
    """(..., H, W, 3) BGR, or (..., H, W) luma with `grey` -> contiguous (..., H, W, 3) RGB,
    mirrored left-right with `flip` (a grey clip gets 3 equal channels)."""
    if not grey:
        return _to_rgb(frames, flip)
    shape = frames.shape
    if flip:
        frames = cv2.flip(np.ascontiguousarray(frames).reshape(-1, shape[-1]), 1).reshape(shape)
    return cv2.cvtColor(np.ascontiguousarray(frames).reshape(-1, shape[-1]), cv2.COLOR_GRAY2RGB).reshape(*shape, 3)


def _to_rgb(bgr: np.ndarray, flip: bool) -> np.ndarray:
    """(..., H, W, 3) BGR -> contiguous RGB, mirrored left-right with `flip`. The same
    pixels as numpy's reversed views (bgr[..., ::-1], bgr[..., ::-1, ::-1]), ~10x faster
    than copying those: a mirrored RGB row is the BGR row's bytes in reverse order, so one
    cv2.flip of the (rows, W*3) view does both; without flip, cv2's channel swap."""
    if bgr.size == 0:
        return np.ascontiguousarray(bgr[..., ::-1, ::-1] if flip else bgr[..., ::-1])
    shape = bgr.shape
    bgr = np.ascontiguousarray(bgr)
    if flip:
        return cv2.flip(bgr.reshape(-1, shape[-2] * 3), 1).reshape(shape)
    return cv2.cvtColor(bgr.reshape(-1, shape[-2], 3), cv2.COLOR_BGR2RGB).reshape(shape)


def decode_sample(raw: dict, spec: ClipSpec, rng: np.random.Generator) -> dict:
    """One raw tar sample -> {"frames": uint8 (T,c,c,3) RGB, "mel": float32 (n_mels, T*k), ...}.
    SkipSample (with the format's reason code) for a sample that breaks a rule. The random
    draws come in a fixed order: window start, then decode_clip's crop box, flip, grey."""
    sample = open_checked(raw, spec)
    start = choose_start(sample.meta.num_frames, spec.frames, spec.jitter, rng)
    try:
        frames = decode_clip(sample, list(range(start, start + spec.frames)), spec, rng)
        window = sample.mel_window(start, spec.frames)
    except FormatError as exc:
        raise SkipSample(exc.reason, exc.detail) from None
    except DECODE_ERRORS as exc:
        raise SkipSample("decode_error", f"{type(exc).__name__}: {exc}") from exc
    return {"frames": frames, "mel": window, "key": sample.key, "start": start}


# ---- pipeline stages --------------------------------------------------------------------

class NoBatchError(RuntimeError):
    """No batch can be made from these shards; str() is one line: the reason and the skip counts."""


def no_batch(reason: str, counts: dict[str, int]) -> NoBatchError:
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    return NoBatchError(f"no batch could be made: {reason}; skipped by reason: {skipped}")


class SkipCounter:
    """Counts skipped samples and unreadable shards in one worker process, and gives up with
    NoBatchError when no batch can come: `skip_limit` unusable samples in a row (0: never),
    or every one of the `shards` read through, since the last sample, without one sample.
    Neither can happen while some shard still gives samples that decode."""

    def __init__(self, skip_limit: int = 0, shards: int = 0):
        self.counts: Counter[str] = Counter()
        self.skip_limit, self.shards = skip_limit, shards
        self.in_a_row = 0                  # unusable samples since the last usable one
        self.barren: set[str] = set()      # shards read with no sample since the last sample

    def skip(self, reason: str, where: str, detail: str) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= 5:
            log.warning("skipped %s (%s): %s", where, reason, detail)

    def tar_error(self, exc: Exception) -> bool:
        """webdataset handler for shard-level errors: count, warn, go on."""
        self.skip("shard_error", str(exc.args[-1]) if exc.args else "?", f"{type(exc).__name__}: {exc}")
        return True

    def sample_done(self, usable: bool) -> None:
        """The decode stage's verdict on one sample."""
        if usable:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        if self.skip_limit and self.in_a_row >= self.skip_limit:
            raise no_batch(f"{self.in_a_row} samples in a row could not be used (data.skip_limit)", self.counts)

    def shard_done(self, url: str, samples: int) -> None:
        """The read stage finished one shard, which gave `samples` samples."""
        if samples:
            self.barren.clear()
            return
        self.barren.add(url)
        if self.shards and len(self.barren) >= self.shards:
            raise no_batch(f"none of the {self.shards} shards gave a sample (empty, unreadable or not tar files)",
                           self.counts)


class ReadStage:
    """Pipeline stage: shards -> raw samples (the expected members only), one shard at a
    time, so the counter learns how many samples each shard read gave."""

    def __init__(self, counter: SkipCounter):
        self.counter = counter

    def __call__(self, src):
        for shard in src:
            n = 0
            for sample in wds.tarfile_samples(iter([shard]), handler=self.counter.tar_error, select_files=is_member):
                n += 1
                yield sample
            self.counter.shard_done(shard["url"], n)


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
            if self.select(meta):
                yield raw
            else:
                self.counter.sample_done(False)


class DecodeStage:
    """Pipeline stage: raw samples -> decoded, augmented clips; skips are counted.
    `decode(raw, spec, rng)` makes one clip (default: `decode_sample`, pretraining's)."""

    def __init__(self, spec: ClipSpec, counter: SkipCounter, seed: int, decode=None):
        self.spec, self.counter, self.seed, self.epoch = spec, counter, seed, -1
        self.decode = decode or decode_sample

    def __call__(self, src):
        self.epoch += 1
        cv2.setNumThreads(1)
        rng = worker_rng(self.seed, self.epoch)
        for sample in src:
            try:
                clip = self.decode(sample, self.spec, rng)
            except SkipSample as exc:
                self.counter.skip(exc.reason, sample.get("__key__", "?"), str(exc))
                self.counter.sample_done(False)
                continue
            self.counter.sample_done(True)
            yield clip


class BatchStage:
    """Pipeline stage: clips -> batches of tensors; each carries this worker's skip counts.

    In a DataLoader worker, a NoBatchError becomes a last item {"no_batch": message} (and a
    pass that made no batch ends with {"pass_end": ..., "skipped": counts}), so the main
    process can raise it as one line (`batches`); in the main process it is raised as is.
    A subclass may batch differently by setting `collate_fn` (glcm.sentence pads)."""

    def __init__(self, batch_size: int, counter: SkipCounter):
        self.batch_size, self.counter = batch_size, counter

    def __call__(self, src):
        _, _, worker, _ = wds.utils.pytorch_worker_info()
        in_worker = torch.utils.data.get_worker_info() is not None
        buf, made = [], 0
        try:
            for clip in src:
                buf.append(clip)
                if len(buf) == self.batch_size:
                    yield self.collate_fn(buf, worker, dict(self.counter.counts))
                    buf, made = [], made + 1
        except NoBatchError as exc:
            if not in_worker:
                raise
            yield {"no_batch": str(exc), "worker": worker}
            return
        if in_worker and not made:
            yield {"pass_end": True, "worker": worker, "skipped": dict(self.counter.counts)}


def collate(clips: list[dict], worker: int, skipped: dict[str, int]) -> dict:
    """Stack the clips' arrays (frames, mel, boundary: whichever the clips carry) and labels."""
    out = {name: stack([c[name] for c in clips]) for name in ("frames", "mel", "boundary") if name in clips[0]}
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
    `decode`: how a raw sample becomes a clip (default: pretraining's `decode_sample`);
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
    stages = source + [
        ReadStage(counter),
        *([SelectStage(select, counter)] if select is not None else []),
        ShuffleStage(cfg.shuffle_buffer, cfg.initial_buffer, seed),
        DecodeStage(spec, counter, seed, decode),
        BatchStage(batch_size, counter),
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
    made, reports = 0, {}
    try:
        for batch in loader:
            if "no_batch" in batch:
                raise NoBatchError(batch["no_batch"])
            if "pass_end" in batch:
                reports[batch["worker"]] = batch["skipped"]
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
        raise no_batch("a whole pass over the shards gave no batch", counts)


def total_skipped(latest: dict[int, dict[str, int]]) -> dict[str, int]:
    """Sum the latest running counts reported by each worker."""
    total: Counter[str] = Counter()
    for counts in latest.values():
        total.update(counts)
    return dict(total)
