"""`glcm finetune --task lrs2`: sentence lip reading with CTC over characters (glcm/ctc.py).

Model: the pretrained global and local visual backbones pooled over space per frame (as
LRW's `Classifier.per_frame`: the global path on every s-th frame, repeated), dropout,
LRW's three temporal-conv blocks without the pooling over time (padded frames zeroed
before each block), and a linear layer to the 39 CTC symbols per frame.

Data: every sample is read whole (all its frames, augmented as in pretraining), so a batch
holds utterances of different lengths: frames are zero-padded to the longest and each
sample's length goes with it (`lengths`: the padding mask of the backend, and the frames
the CTC loss reads). A sample's transcript is its timed words inside its time span
(`extra.words`, pretrain and curriculum cuts) or `extra.text`. Skipped and counted:
`no_transcript`, `partial_transcript` (a later segment of a split utterance without word
timings), `bad_transcript` (characters outside the vocabulary), `too_long` (more than
`task.max_frames` frames) and `ctc_too_short` (fewer frames than CTC needs for the target).

Test: each utterance alone (no padding), centre crop; greedy and prefix-beam-search
hypotheses, WER / CER over the set (jiwer); metrics.json and predictions.csv.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import webdataset as wds
from torch import Tensor, nn
from torch.utils.data import DataLoader

from avprep.format import FormatError, Sample, SampleMeta, open_sample, parse_meta
from avprep.fsio import atomic_write, atomic_writer
from glcm import ctc
from glcm.config import ConfigError, FinetuneConfig, ModelConfig, validate_finetune
from glcm.data import (BatchStage, ClipSpec, DecodeStage, NoBatchError, ReadStage, SelectStage, ShuffleStage,
                       SkipCounter, SkipSample, decode_clip, init_worker, unread_note)
from glcm.finetune import FinetuneTrainer, check_run_folder, init_model, rank_world, task_shards
from glcm.heads import Classifier, TemporalBlock, encoder_names, load_init
from glcm.labelled import Scan, scan
from glcm.model import prepare_frames
from glcm.train import Job, LoopTrainer, run_job

# ---- samples ----------------------------------------------------------------------------


def _timed(words) -> bool:
    return isinstance(words, list) and bool(words) and all(
        isinstance(w, list) and len(w) == 3 and isinstance(w[0], str)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w[1:]) for w in words)


def has_transcript(meta: SampleMeta) -> bool:
    text = meta.extra.get("text")
    return (isinstance(text, str) and bool(text.strip())) or _timed(meta.extra.get("words"))


def sample_text(meta: SampleMeta) -> str:
    """The words spoken in this sample: the timed words whose midpoint lies in its span
    [start_time, end_time), else `extra.text` (only for a sample that starts its utterance)."""
    words = meta.extra.get("words")
    if _timed(words):
        inside = [w[0] for w in words if meta.start_time <= (w[1] + w[2]) / 2 < meta.end_time]
        if not inside:
            raise SkipSample("no_transcript", f"sample {meta.key}: no timed word falls in "
                                              f"{meta.start_time:.2f}-{meta.end_time:.2f} s")
        return " ".join(inside)
    text = meta.extra.get("text")
    if not isinstance(text, str) or not text.strip():
        raise SkipSample("no_transcript", f"sample {meta.key} has no transcript (extra.text)")
    if meta.segment > 0:
        raise SkipSample("partial_transcript", f"sample {meta.key} is segment {meta.segment} of a split "
                                               "utterance without word timings")
    return text


@dataclass(frozen=True)
class SentenceReader:
    """How the sentence task reads a sample: whole, with its transcript and CTC target."""
    max_frames: int

    def open(self, raw: dict) -> tuple[Sample, str, list[int]]:
        try:
            sample = open_sample(raw, require_video=True, require_audio=False)
        except FormatError as exc:
            raise SkipSample(exc.reason, exc.detail) from None
        meta = sample.meta
        text = ctc.normalise(sample_text(meta))
        try:
            target = ctc.encode(text)
        except ValueError as exc:
            raise SkipSample("bad_transcript", f"sample {meta.key}: {exc}") from None
        n, need = meta.num_frames, ctc.min_frames(target)
        if n > self.max_frames:
            raise SkipSample("too_long", f"sample {meta.key}: {n} frames > task.max_frames {self.max_frames}")
        if n < need:
            raise SkipSample("ctc_too_short", f"sample {meta.key}: {n} frames < the {need} CTC needs for "
                                              f"{len(target)} characters")
        return sample, text, target

    def frames(self, sample: Sample, spec: ClipSpec, rng: np.random.Generator | None) -> np.ndarray:
        """All frames, cropped (random, or centred for rng None): uint8 (T, c, c, 3) RGB."""
        try:
            return decode_clip(sample, list(range(sample.meta.num_frames)), spec, rng)
        except FormatError as exc:
            raise SkipSample(exc.reason, exc.detail) from None
        except (ValueError, IndexError, OSError) as exc:
            raise SkipSample("decode_error", f"{type(exc).__name__}: {exc}") from None


class SentenceDecode:
    """DecodeStage's `decode` for sentences (a plain class: DataLoader workers pickle it)."""

    def __init__(self, reader: SentenceReader):
        self.reader = reader

    def __call__(self, raw: dict, spec: ClipSpec, rng: np.random.Generator) -> dict:
        sample, text, target = self.reader.open(raw)
        return {"frames": self.reader.frames(sample, spec, rng), "target": target, "text": text,
                "key": sample.key}


@dataclass(frozen=True)
class SplitSelect:
    """Train on samples whose `split` is one of `train_splits`, test on `split == test`;
    role `all` takes every sample (a separate --test-shards / --val-shards build)."""
    train_splits: tuple[str, ...]
    role: str

    def __call__(self, meta: SampleMeta) -> bool:
        if self.role == "all":
            return True
        return meta.split in (self.train_splits if self.role == "train" else ("test",))


def splits_of(cfg: FinetuneConfig) -> tuple[str, ...]:
    return tuple(s.strip() for s in cfg.task.train_splits.split(",") if s.strip())


def pad_collate(clips: list[dict], worker: int, skipped: dict[str, int]) -> dict:
    """Utterances of different lengths in one batch: frames zero-padded to the longest,
    `lengths` (frames per sample), targets concatenated with `target_lengths` (CTC's layout)."""
    lengths = [len(c["frames"]) for c in clips]
    first = clips[0]["frames"]
    frames = np.zeros((len(clips), max(lengths)) + first.shape[1:], dtype=first.dtype)
    for i, c in enumerate(clips):
        frames[i, :lengths[i]] = c["frames"]
    return {"frames": torch.from_numpy(frames), "lengths": torch.tensor(lengths),
            "targets": torch.tensor([s for c in clips for s in c["target"]], dtype=torch.long),
            "target_lengths": torch.tensor([len(c["target"]) for c in clips]),
            "key": [c["key"] for c in clips], "text": [c["text"] for c in clips], "worker": worker,
            "skipped": skipped}


class PadBatchStage(BatchStage):
    """BatchStage with `pad_collate` (the same worker reports: no_batch, pass_end)."""

    collate_fn = staticmethod(pad_collate)


def sentence_loader(urls: list[str], cfg: FinetuneConfig, seed_offset: int, pin_memory: bool) -> DataLoader:
    """glcm.data's read / select / shuffle / decode stages with whole utterances and padded batches."""
    d, workers = cfg.data, max(cfg.data.workers, 0)
    per_worker = math.ceil(cfg.train.epoch_batches / max(workers, 1))
    counter, seed = SkipCounter(d.skip_limit, len(urls)), d.seed + seed_offset
    source = ([wds.ResampledShards(urls, seed=seed, deterministic=True)] if d.resample
              else [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker])
    pipeline = wds.DataPipeline(*source, ReadStage(counter), SelectStage(SplitSelect(splits_of(cfg), "train"), counter),
                                ShuffleStage(d.shuffle_buffer, d.initial_buffer, seed),
                                DecodeStage(clip_spec(cfg), counter, seed, SentenceDecode(reader_of(cfg))),
                                PadBatchStage(cfg.train.batch_size, counter))
    pipeline.skip_counter = counter
    if d.resample:
        pipeline = pipeline.with_epoch(per_worker)
    return DataLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      worker_init_fn=functools.partial(init_worker, os.getpid()) if workers else None,
                      timeout=d.batch_timeout if workers else 0)


def clip_spec(cfg: FinetuneConfig) -> ClipSpec:
    return ClipSpec.from_config(cfg.data, cfg.model.mel_per_frame, cfg.model.n_mels)


def reader_of(cfg: FinetuneConfig) -> SentenceReader:
    return SentenceReader(cfg.task.max_frames)


# ---- model and trainer ------------------------------------------------------------------

class SentenceModel(Classifier):
    """Visual backbones per frame -> dropout -> three temporal-conv blocks (LRW's MS-TCN
    blocks, dilations 1, 2, 4, `width` channels, no pooling over time) -> linear over the
    CTC symbols. Padded frames are zeroed before every block, so they add nothing to the
    real frames' features. forward(frames (B,T,H,W,3), lengths (B,)) -> (B, T, V) log probs."""

    def __init__(self, cfg: ModelConfig, names: list[str], width: int, dropout: float = 0.5):
        super().__init__(cfg, names, len(ctc.VOCAB), dropout=dropout)
        dim = sum(b.out_channels for b in self.backbones.values())
        self.blocks = nn.ModuleList(TemporalBlock(dim if i == 0 else width, width, d) for i, d in enumerate((1, 2, 4)))
        self.fc = nn.Linear(width, len(ctc.VOCAB))

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        x = self.dropout(self.per_frame(frames))                             # (B, C, T)
        mask = (torch.arange(x.shape[2], device=x.device)[None] < lengths.to(x.device)[:, None])[:, None]
        for block in self.blocks:
            x = block(x * mask)
        return self.fc(self.dropout(x.transpose(1, 2))).float().log_softmax(dim=-1)


def build_sentence_model(cfg: FinetuneConfig) -> SentenceModel:
    t = cfg.task
    return SentenceModel(cfg.model, encoder_names("video", t.features), t.temporal_width, t.dropout)


class SentenceTrainer(FinetuneTrainer):
    """CTC loss on padded batches of whole utterances."""

    curves = (("loss",), "CTC loss", "LRS2 finetuning")

    def new_model(self) -> SentenceModel:
        return build_sentence_model(self.cfg)

    def load_encoders(self, model: SentenceModel, path: str) -> None:
        load_init(model, path)

    def batch_step(self, batch: dict) -> dict[str, torch.Tensor]:
        self.start_step()
        if self.cfg.task.mode == "linear":
            self.model.backbones.eval()
        frames = batch["frames"].to(self.device, non_blocking=True)
        if self.channels_last:
            frames = prepare_frames(frames, True)
        lengths = batch["lengths"]
        with self.autocast():
            log_probs = self.net(frames, lengths.to(self.device))
        loss = F.ctc_loss(log_probs.float().transpose(0, 1), batch["targets"].to(self.device), lengths,
                          batch["target_lengths"], blank=ctc.BLANK, zero_infinity=True)
        return self.optimise(loss, {"loss": loss.detach()})


# ---- checks before training -------------------------------------------------------------

def check_transcripts(cfg: FinetuneConfig, found: Scan, option: str, role: str) -> None:
    """Refuse shards that cannot serve the sentence task (one ConfigError line each)."""
    if not found.scanned:
        return
    if not found.metas:
        bad = ", ".join(f"{k} {v}" for k, v in sorted(found.bad.items())) or "no samples"
        raise ConfigError(f"{option}: no readable sample ({bad}{unread_note(found.unread)})")
    with_text = [m for m in found.metas if has_transcript(m)]
    if not with_text:
        raise ConfigError(f"{option}: the samples carry no transcripts (extra.text); task {cfg.task.name} needs "
                          "shards built by `avprep build lrs2`")
    if not any(m.has_video for m in with_text):
        raise ConfigError(f"{option}: task {cfg.task.name} reads the video, but every sample is audio-only")
    if role != "all" and not any(SplitSelect(splits_of(cfg), role)(m) for m in with_text):
        have = ", ".join(sorted({str(m.split) for m in with_text}))
        want = ", ".join(splits_of(cfg)) if role == "train" else "test"
        hint = " (--set task.train_splits=...)" if role == "train" else "; give --test-shards"
        raise ConfigError(f"{option}: no transcribed sample with split {want} (splits present: {have}){hint}")


def check_sentence(cfg: FinetuneConfig) -> dict[str, list[str]]:
    """Everything checkable before a lock or a model exists; the shard lists by option."""
    validate_finetune(cfg)
    t = cfg.task
    if not splits_of(cfg):
        raise ConfigError("task.train_splits names no split (e.g. train, or pretrain,train)")
    if getattr(t, "pool", "mean") != "mean":
        raise ConfigError(f"--pool {t.pool}: task {t.name} pools its lip crops by the mean only")
    urls = task_shards(cfg)
    train = scan(urls["--shards"])
    check_transcripts(cfg, train, "--shards", "train")
    if "--test-shards" not in urls:
        check_transcripts(cfg, train, "--shards", "test")
    for option in ("--test-shards", "--val-shards"):
        if option in urls:
            check_transcripts(cfg, scan(urls[option]), option, "all")
    if t.init != "scratch":
        init_model(t.init)                         # a finetuned model is refused by name
        load_init(build_sentence_model(cfg), t.init)
    return urls


# ---- evaluation -------------------------------------------------------------------------

@torch.no_grad()
def transcribe(model: SentenceModel, urls: list[str], select, cfg: FinetuneConfig, device: torch.device,
               amp: torch.dtype | None = None, part: tuple[int, int] = (0, 1)) -> dict:
    """Every selected utterance alone (this rank's share: i % world == rank): its reference
    and greedy / beam hypotheses. Unusable samples are skipped and counted."""
    model.eval()
    spec, reader, counter = clip_spec(cfg), reader_of(cfg), SkipCounter()
    source = wds.DataPipeline(wds.SimpleShardList(urls), ReadStage(counter))
    rows = []
    for i, raw in enumerate(source):
        if i % part[1] != part[0]:
            continue
        try:
            if not select(parse_meta(raw["json"])):
                continue
        except (KeyError, FormatError):
            pass                                  # unreadable metadata: skipped and counted below
        try:
            sample, text, _ = reader.open(raw)
            frames = torch.from_numpy(reader.frames(sample, spec, None))[None].to(device)
        except SkipSample as exc:
            counter.skip(exc.reason, raw.get("__key__", "?"), str(exc))
            continue
        ctx = torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False)
        with ctx:
            lp = model(frames, torch.tensor([frames.shape[1]]))[0].float().cpu().numpy()
        rows.append({"id": sample.meta.item_id or sample.key, "reference": text, "greedy": ctc.greedy(lp),
                     "beam": ctc.beam_search(lp, cfg.task.beam)})
    return {"rows": rows, "skipped": dict(counter.counts), "unread": sorted(counter.unread)}


def gather_rows(found: dict, folder: Path, tag: str) -> dict | None:
    """Under DDP: every rank's rows through a JSON file in the run folder, merged on rank 0
    (None on the others)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return found
    rank, world = dist.get_rank(), dist.get_world_size()
    atomic_write(folder / f".eval-{tag}-{rank}.json", json.dumps(found))
    dist.barrier()
    if rank != 0:
        return None
    merged: dict = {"rows": [], "skipped": {}, "unread": set()}
    for r in range(world):
        path = folder / f".eval-{tag}-{r}.json"
        part = json.loads(path.read_text())
        merged["rows"] += part["rows"]
        for k, v in part["skipped"].items():
            merged["skipped"][k] = merged["skipped"].get(k, 0) + v
        merged["unread"].update(part["unread"])
        path.unlink()
    merged["unread"] = sorted(merged["unread"])
    return merged


def score_rows(found: dict) -> dict:
    """Per-utterance WER / CER on the rows (in place) and the set's figures."""
    rows = found["rows"]
    if not rows:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(found["skipped"].items())) or "none"
        raise NoBatchError(f"no test utterance could be transcribed; skipped by reason: {skipped}"
                           f"{unread_note(found.get('unread', ()))}")
    for r in rows:
        for prefix, hyp in (("", r["beam"]), ("greedy_", r["greedy"])):
            r[prefix + "wer"], r[prefix + "cer"] = ctc.wer([r["reference"]], [hyp]), ctc.cer([r["reference"]], [hyp])
    refs = [r["reference"] for r in rows]
    beams, greedys = [r["beam"] for r in rows], [r["greedy"] for r in rows]
    return {"wer": ctc.wer(refs, beams), "cer": ctc.cer(refs, beams), "greedy_wer": ctc.wer(refs, greedys),
            "greedy_cer": ctc.cer(refs, greedys), "utterances": len(rows), "skipped": found["skipped"]}


PREDICTION_FIELDS = ("id", "reference", "greedy", "beam", "wer", "cer", "greedy_wer", "greedy_cer")


def write_predictions(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PREDICTION_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in PREDICTION_FIELDS})
    with atomic_writer(path, "w") as f:
        f.write(buf.getvalue())


def run_facts(cfg: FinetuneConfig) -> dict:
    t = cfg.task
    return {"task": t.name, "init": "scratch" if t.init == "scratch" else "pretrained", "init_path": t.init,
            "mode": t.mode, "features": t.features, "metric": "wer", "paper": None, "beam_width": t.beam,
            "train_splits": list(splits_of(cfg))}


def evaluate_sentences(trainer: LoopTrainer, urls: dict[str, list[str]], last: dict) -> dict | None:
    """Transcribe the test set (and the val set) and, on rank 0, write metrics.json and
    predictions.csv; return the metrics (None on the other ranks)."""
    cfg, out, part = trainer.cfg, Path(trainer.cfg.train.out), rank_world()
    whole = SplitSelect(splits_of(cfg), "all")
    test = ((urls["--test-shards"], whole) if "--test-shards" in urls
            else (urls["--shards"], SplitSelect(splits_of(cfg), "test")))
    found = gather_rows(transcribe(trainer.model, *test, cfg, trainer.device, trainer.amp, part), out, "test")
    val = None
    if "--val-shards" in urls:
        val = gather_rows(transcribe(trainer.model, urls["--val-shards"], whole, cfg, trainer.device, trainer.amp,
                                     part), out, "val")
    if part[0] != 0:
        return None
    result = score_rows(found)
    metrics = {**run_facts(cfg), **result, "value": result["wer"], "steps": trainer.step,
               "train_skipped": last.get("skipped_by_reason", {}), "pictures": {"curves": "curves.png"}}
    if val is not None:
        v = score_rows(val)
        metrics["val_wer"], metrics["val_cer"], metrics["val_utterances"] = v["wer"], v["cer"], v["utterances"]
    write_predictions(found["rows"], out / "predictions.csv")
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def finetune_sentence(cfg: FinetuneConfig, resume: bool = False) -> dict:
    """One LRS2 run through the shared loop; the last record, with `metrics` once scored."""
    urls: dict[str, list[str]] = {}

    def prepare() -> None:
        check_run_folder(cfg, resume)
        urls.update(check_sentence(cfg))

    def loader(trainer: LoopTrainer):
        return sentence_loader(urls["--shards"], cfg, trainer.step, trainer.device.type == "cuda")

    def finish(trainer: LoopTrainer, last: dict) -> dict:
        found = evaluate_sentences(trainer, urls, last)
        if dist.is_initialized():
            dist.barrier()
        return last if found is None else {**last, "metrics": found}

    job = Job("glcm finetune", prepare, lambda device: SentenceTrainer(cfg, device, not resume), loader, finish)
    return run_job(cfg, resume, job)


def sentence_rate(cfg, device: torch.device, steps: int = 10, warmup: int = 3) -> tuple[float, int]:
    """`glcm bench --task lrs2`: training utterances/s of the sentence model (full mode, CTC,
    backward, Adam) with the architecture and settings of `cfg` (a GLCMConfig), on random
    padded batches of `data.frames`-frame utterances with targets of half as many
    characters; returns (utterances/s, frames per utterance)."""
    import copy
    from glcm.bench import steps_rate
    from glcm.config import TASK_DEFAULTS, apply_overrides, load_finetune_config
    ft = load_finetune_config(overrides=["task.name=lrs2"])
    ft.model, ft.data, ft.train = copy.deepcopy(cfg.model), copy.deepcopy(cfg.data), copy.deepcopy(cfg.train)
    apply_overrides(ft, TASK_DEFAULTS["lrs2"])
    trainer = SentenceTrainer(ft, device)
    b, t, c = ft.train.batch_size, ft.data.frames, ft.data.crop
    n = max(1, t // 2)
    batch = {"frames": torch.randint(0, 256, (b, t, c, c, 3), dtype=torch.uint8, device=device),
             "lengths": torch.full((b,), t), "targets": torch.randint(3, len(ctc.VOCAB), (b * n,)),
             "target_lengths": torch.full((b,), n)}
    return steps_rate(trainer, batch, b, device, steps, warmup), t
