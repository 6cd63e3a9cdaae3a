"""`glcm finetune`: a downstream task on labelled shards, through the pretraining loop.

`finetune(cfg)` checks the shards against the task before anything is built (labels,
label range, the split / fold, the stream the task reads, the --init architecture), then
runs `glcm.train.run_job` (the same loop, DDP, checkpoints, --resume, logs and signals as
pretraining) with a `FinetuneTrainer`, and finally, on rank 0, scores the test set by the
task's protocol and writes the run folder: metrics.json, predictions.csv, confusion.png,
per_class.png (plus the loop's config.json, checkpoint.pt, log.jsonl, tb/, curves.png).
`finetune_all` runs every split (`--split all`) or fold (`--folds all`) into OUT/split-N or
OUT/fold-N and writes their mean to OUT/metrics.json.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import webdataset as wds

from avprep.format import FormatError, parse_meta
from avprep.fsio import atomic_write, atomic_writer, make_output_dir, read_json
from glcm import metrics
from glcm.config import TASKS, ConfigError, FinetuneConfig, Task, input_of, validate_finetune
from glcm.data import ClipSpec, NoBatchError, ReadStage, SkipCounter, SkipSample, make_loader, unread_note
from glcm.heads import Classifier, encoder_names, freeze_backbones, load_pretrained
from glcm.model import prepare_frames
from glcm.labelled import Reader, Scan, Selection, decode_train, label_of, read_list, scan, test_windows
from glcm.plot import plot_confusion, plot_per_class, plot_roc
from glcm.train import Job, LoopTrainer, resolve_shards, run_job

def task_of(cfg: FinetuneConfig) -> Task:
    return TASKS[cfg.task.name]


def classes_of(cfg: FinetuneConfig) -> int:
    return cfg.task.classes or task_of(cfg).classes


def clips_of(cfg: FinetuneConfig) -> int:
    return cfg.task.clips or task_of(cfg).clips


def where(cfg: FinetuneConfig) -> tuple[str, int]:
    """(protocol, split or fold number; 0 for LRW's and DFDC's protocols)."""
    task = task_of(cfg)
    return task.protocol, {"split": cfg.task.split, "fold": cfg.task.fold}.get(task.protocol, 0)


def reader_of(cfg: FinetuneConfig) -> Reader:
    task = task_of(cfg)
    return Reader(task.modality, classes_of(cfg), cfg.task.boundary and task.temporal, cfg.task.pool == "attention")


def selection(cfg: FinetuneConfig, role: str) -> Selection:
    """The samples of `role` (train or test) in --shards; DFDC reads its list files."""
    protocol, number = where(cfg)
    listed = cfg.task.train_list if role == "train" else cfg.task.test_list
    ids = read_list(listed) if protocol == "lists" and listed else None
    return Selection(protocol, number, role, ids)


def build_classifier(cfg: FinetuneConfig) -> Classifier:
    t, task = cfg.task, task_of(cfg)
    return Classifier(cfg.model, encoder_names(task.modality, t.features), classes_of(cfg), t.dropout,
                      t.temporal_width if task.temporal else 0, t.boundary and task.temporal, t.pool == "attention")


class FinetuneTrainer(LoopTrainer):
    """Cross-entropy on labelled clips; the encoders start from `task.init` (unless resuming)
    and are frozen in linear mode."""

    curves = (("loss", "accuracy"), "cross-entropy / batch accuracy", "finetuning")

    def __init__(self, cfg: FinetuneConfig, device: torch.device, load_weights: bool = True):
        self.load_weights = load_weights
        super().__init__(cfg, device)

    def build_model(self) -> Classifier:
        t = self.cfg.task
        model = self.new_model()
        if t.init != "scratch" and self.load_weights:
            self.load_encoders(model, t.init)
        if t.mode == "linear":
            freeze_backbones(model)
        return model

    def new_model(self) -> Classifier:
        return build_classifier(self.cfg)

    def load_encoders(self, model: Classifier, path: str) -> None:
        load_pretrained(model, path)

    def video_modules(self) -> list:
        return [b for name, b in self.model.backbones.items() if name != "audio"]

    def inputs(self, batch: dict) -> tuple:
        frames, mel = batch.get("frames"), batch.get("mel")
        if frames is not None:
            frames = frames.to(self.device, non_blocking=True)
            if self.channels_last:
                frames = prepare_frames(frames, True)
        if mel is not None:
            mel = mel.to(self.device, non_blocking=True)
        boundary = batch.get("boundary")
        return frames, mel, None if boundary is None else boundary.to(self.device, non_blocking=True)

    def batch_step(self, batch: dict) -> dict[str, torch.Tensor]:
        self.start_step()
        if self.cfg.task.mode == "linear":
            self.model.backbones.eval()
        labels = batch["label"].to(self.device)
        with self.autocast():
            logits = self.net(*self.inputs(batch))
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return self.optimise(loss, {"loss": loss.detach(), "accuracy": accuracy.detach()})


# ---- checks before training ---------------------------------------------------------------

def check_samples(cfg: FinetuneConfig, found: Scan, option: str, role: str) -> None:
    """Refuse shards that cannot serve this task (one ConfigError line each)."""
    if not found.scanned:
        return
    task, name = task_of(cfg), cfg.task.name
    if not found.metas:
        bad = ", ".join(f"{k} {v}" for k, v in sorted(found.bad.items())) or "no samples"
        raise ConfigError(f"{option}: no readable sample ({bad}{unread_note(found.unread)})")
    labelled = [m for m in found.metas if isinstance(m.labels, dict) and "label_index" in m.labels]
    if not labelled:
        raise ConfigError(f"{option}: the samples carry no labels (labels.label_index); task {name} needs "
                          f"shards built by `avprep build {name}`")
    classes = classes_of(cfg)
    for meta in labelled:
        try:
            label_of(meta, classes)
        except SkipSample as exc:
            raise ConfigError(f"{option}: {exc.args[0].split(': ', 1)[1]} ({name} has {classes} classes; "
                              "--set task.classes=N for another label set)") from None
    stream = "has_audio" if task.modality == "audio" else "has_video"
    if not any(getattr(m, stream) for m in labelled):
        kind = "visual-only (has_audio false)" if task.modality == "audio" else "audio-only (has_video false)"
        raise ConfigError(f"{option}: task {name} reads the {task.modality}, but every sample is {kind}")
    check_input(cfg, labelled, option)
    if role != "all":
        check_part(cfg, labelled, option, role)
    if task.metric == "auc" and role != "train":
        chosen = selection(cfg, role) if role != "all" else Selection("lists", 0, "all")
        test = [m for m in labelled if chosen(m)]
        if len({m.labels["label_index"] for m in test}) < 2:
            raise ConfigError(f"{option}: the {name} test samples are all of one class; ROC AUC needs "
                              "REAL and FAKE videos")


def check_input(cfg: FinetuneConfig, metas: list, option: str) -> None:
    """Crops for --input crops, whole frames for --input full-frames; audio for the
    attention map (samples without it are skipped as visual_only while training)."""
    task, name, kind = task_of(cfg), cfg.task.name, input_of(cfg.task)
    if not task.crop:
        return
    cropped = sorted({str(m.crop.get("kind")) for m in metas if isinstance(m.crop, dict)})
    whole = sum(1 for m in metas if not isinstance(m.crop, dict))
    if kind == "crops" and whole:
        raise ConfigError(f"{option}: {whole} of {len(metas)} samples are whole frames (no crop); task {name} reads "
                          f"{task.crop} crops (`avprep build {name}`), or give --input full-frames")
    if kind == "full-frames" and cropped:
        raise ConfigError(f"{option}: the samples hold {' and '.join(cropped)} crops; --input full-frames needs "
                          f"whole frames (`avprep build {name} --crop none`)")
    if cfg.task.pool != "attention":
        return
    voiced = [m for m in metas if m.has_audio]
    if not voiced:
        raise ConfigError(f"{option}: --pool attention makes its map from the audio, but every sample is "
                          "visual-only (has_audio false); use --pool mean")
    ks = sorted({m.mel_per_frame for m in voiced})
    if len(ks) > 1:
        raise ConfigError(f"{option}: the samples mix mel_per_frame {', '.join(map(str, ks))}; the attention pool "
                          "batches their mels: build them at one fps and hop")


def check_part(cfg: FinetuneConfig, metas: list, option: str, role: str) -> None:
    """The split / fold must exist in the samples and hold `role` samples."""
    protocol, number = where(cfg)
    chosen = selection(cfg, role)
    if protocol in ("given", "lists"):
        if not any(chosen(m) for m in metas):
            what = (f"samples with split {role!r} (an `avprep build lrw` split folder)" if protocol == "given" else
                    f"samples named in task.{role}_list" if getattr(cfg.task, f"{role}_list") else "samples")
            hint = "; give --test-shards" if role == "test" else ""
            raise ConfigError(f"{option}: no {what}{hint}")
        return
    if protocol == "split":
        have = sorted({s for m in metas if isinstance(m.extra.get("splits"), dict) for s in m.extra["splits"]})
        if str(number) not in have:
            raise ConfigError(f"{option}: no sample has split {number} (extra.splits names "
                              f"{', '.join(have) or 'no split'}); choose --split {' or '.join(have) or '1'} "
                              "or rebuild with that split's lists")
    else:
        have = sorted({m.extra["fold"] for m in metas if isinstance(m.extra.get("fold"), int)})
        if number not in have:
            raise ConfigError(f"{option}: no sample is in fold {number} (folds present: "
                              f"{', '.join(map(str, have)) or 'none; the samples carry no extra.fold'})")
    if not any(chosen(m) for m in metas):
        raise ConfigError(f"{option}: {protocol} {number} holds no {role} sample")


def task_shards(cfg: FinetuneConfig) -> dict[str, list[str]]:
    """The shard files by option: --shards, and --test-shards / --val-shards when given."""
    urls = {"--shards": option_shards("--shards", cfg.data.shards)}
    for option, spec in (("--test-shards", cfg.task.test_shards), ("--val-shards", cfg.task.val_shards)):
        if spec:
            urls[option] = option_shards(option, spec)
    return urls


def option_shards(option: str, spec: str) -> list[str]:
    """resolve_shards; its error names the option and, for the folder of a per-split build
    (`avprep build lrw`: OUT/train, OUT/test), the split folders to choose from."""
    try:
        return resolve_shards(spec)
    except ConfigError as exc:
        if not spec:
            raise
        folder = Path(spec)
        splits = sorted(d.name for d in folder.iterdir() if d.is_dir() and any(d.glob("*.tar"))) \
            if folder.is_dir() else []
        hint = f"; it holds per-split folders ({', '.join(splits)}): give one, e.g. {folder / splits[0]}" if splits else ""
        raise ConfigError(f"{option}: {exc}{hint}") from None


def check_finetune(cfg: FinetuneConfig) -> dict[str, list[str]]:
    """Everything checkable before a lock or a model exists; the shard lists by option."""
    validate_finetune(cfg)
    t = cfg.task
    urls = task_shards(cfg)
    train = scan(urls["--shards"])
    check_samples(cfg, train, "--shards", "train")
    if not t.test_shards:
        if task_of(cfg).protocol == "lists" and not t.test_list:
            raise ConfigError(f"{t.name}: give --test-shards, or --set task.test_list=FILE (Chugh et al.) "
                              "to test on listed videos of --shards")
        check_samples(cfg, train, "--shards", "test")
    for option in ("--test-shards", "--val-shards"):
        if option in urls:
            check_samples(cfg, scan(urls[option]), option, "all")
    if t.init != "scratch":
        init_model(t.init)                         # a finetuned model is refused by name
        load_pretrained(build_classifier(cfg), t.init)
    return urls


# what a run is: --resume may lengthen it (train.steps) but not make it another task or part
RUN_IDENTITY = ("name", "split", "fold", "classes", "mode", "features", "input", "pool")


def saved_task(out: str) -> dict | None:
    """The task section of OUT/config.json; None when there is no readable one."""
    try:
        saved = json.loads((Path(out) / "config.json").read_text(encoding="utf-8"))["task"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return saved if isinstance(saved, dict) else None


def check_run_folder(cfg: FinetuneConfig, resume: bool) -> None:
    """OUT/config.json's task must be this one on --resume (resuming a fold-1 run with
    --fold 3 would score fold 3 with a model trained on it and overwrite fold 1's metrics);
    a new run must not go into the folder of a run of every split/fold (it would overwrite
    that run's config.json and mean metrics.json)."""
    saved = saved_task(cfg.train.out)
    if saved is None:
        return
    if not resume:
        if saved.get("all_parts") is True:
            raise ConfigError(f"{cfg.train.out} holds a run of every split/fold; give this run another --out")
        return
    changed = [f"task.{k} {saved.get(k)!r} there, {getattr(cfg.task, k)!r} here" for k in RUN_IDENTITY
               if k in saved and saved[k] != getattr(cfg.task, k)]
    if changed:
        raise ConfigError(f"--resume: {cfg.train.out} is another run ({'; '.join(changed)}); resume it as it was "
                          "(drop --task/--split/--fold/--mode/...) or start a new --out")


# ---- evaluation ---------------------------------------------------------------------------

def clip_spec(cfg: FinetuneConfig) -> ClipSpec:
    return ClipSpec.from_config(cfg.data, cfg.model.mel_per_frame, cfg.model.n_mels)


@torch.no_grad()
def score_videos(model: Classifier, urls: list[str], select, cfg: FinetuneConfig, device: torch.device,
                 amp: torch.dtype | None = None, part: tuple[int, int] = (0, 1)) -> dict:
    """Every selected sample once: N test windows -> softmax per clip (the mean per video
    comes in `summarise`). Unreadable samples are skipped and counted. `part` (rank, world):
    this rank scores samples i with i % world == rank."""
    model.eval()
    spec, reader = clip_spec(cfg), reader_of(cfg)
    counter = SkipCounter()
    source = wds.DataPipeline(wds.SimpleShardList(urls), ReadStage(counter))
    probs, ids, labels, names = [], [], {}, {}
    for i, raw in enumerate(source):
        if i % part[1] != part[0]:
            continue
        try:
            if not select(parse_meta(raw["json"])):
                continue                          # another split's sample: not read further
        except (KeyError, FormatError):
            pass                                  # unreadable metadata: skipped and counted below
        try:
            sample = reader.open(raw, spec)
            label = label_of(sample.meta, reader.classes)
            clips = test_windows(sample, spec, reader, clips_of(cfg))
        except SkipSample as exc:
            counter.skip(exc.reason, raw.get("__key__", "?"), str(exc))
            continue
        vid = sample.meta.item_id or sample.key
        labels[vid], names[label] = label, str(sample.meta.labels.get("label", label))
        frames = torch.from_numpy(clips["frames"]).to(device) if "frames" in clips else None
        mel = torch.from_numpy(clips["mel"]).to(device) if "mel" in clips else None
        boundary = torch.from_numpy(clips["boundary"]).to(device) if "boundary" in clips else None
        ctx = torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False)
        with ctx:
            logits = model(frames, mel, boundary)
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        ids += [vid] * len(probs[-1])
    return {"probs": probs, "ids": ids, "labels": labels, "names": names, "skipped": dict(counter.counts),
            "unread": sorted(counter.unread)}


def gather_scored(scored: dict, folder: Path, tag: str, classes: int) -> dict | None:
    """Under DDP: every rank's clip scores through files in the run folder (npz read with
    allow_pickle=False, json), merged on rank 0 (None on the others)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return scored
    rank, world = dist.get_rank(), dist.get_world_size()
    base = folder / f".eval-{tag}-{rank}"
    probs = np.concatenate(scored["probs"]) if scored["probs"] else np.zeros((0, classes), np.float32)
    with atomic_writer(f"{base}.npz", "wb") as f:
        np.savez(f, probs=probs, ids=np.array(scored["ids"], dtype=str))
    atomic_write(f"{base}.json", json.dumps({"labels": scored["labels"], "skipped": scored["skipped"],
                                             "unread": scored["unread"],
                                             "names": {str(k): v for k, v in scored["names"].items()}}))
    dist.barrier()
    if rank != 0:
        return None
    merged: dict = {"probs": [], "ids": [], "labels": {}, "names": {}, "skipped": Counter(), "unread": set()}
    for r in range(world):
        base = folder / f".eval-{tag}-{r}"
        with np.load(f"{base}.npz", allow_pickle=False) as z:
            merged["probs"].append(z["probs"])
            merged["ids"] += z["ids"].tolist()
        part = json.loads(Path(f"{base}.json").read_text())
        merged["labels"].update(part["labels"])
        merged["names"].update({int(k): v for k, v in part["names"].items()})
        merged["skipped"].update(part["skipped"])
        merged["unread"].update(part["unread"])
        for ext in (".npz", ".json"):
            Path(f"{base}{ext}").unlink()
    merged["probs"] = [p for p in merged["probs"] if len(p)]
    merged["skipped"], merged["unread"] = dict(merged["skipped"]), sorted(merged["unread"])
    return merged


def rank_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def summarise(scored: dict, cfg: FinetuneConfig) -> tuple[dict, list[dict], np.ndarray]:
    """(metrics, one prediction row per video, video-level probabilities)."""
    if not scored["probs"]:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(scored["skipped"].items())) or "none"
        raise NoBatchError(f"no test video could be scored; skipped by reason: {skipped}"
                           f"{unread_note(scored.get('unread', ()))}")
    ids, probs = metrics.video_average(np.concatenate(scored["probs"]), scored["ids"])
    labels = np.array([scored["labels"][v] for v in ids])
    result = {"top1": metrics.top1(labels, probs), "top5": metrics.top_k(labels, probs, 5),
              "videos": len(ids), "clips_per_video": clips_of(cfg), "skipped": scored["skipped"]}
    if task_of(cfg).metric == "auc":              # DFDC: the mean clip P(fake) per video, continuous
        if len(set(labels.tolist())) < 2:
            raise NoBatchError(f"the {len(ids)} test videos that could be scored are all of one class; "
                               "ROC AUC needs both (skipped: " + (", ".join(f"{k} {v}" for k, v in
                                                                            sorted(scored["skipped"].items())) or "none") + ")")
        result["auc"] = metrics.auc(labels, probs[:, 1])
    rows = []
    for vid, label, p in zip(ids, labels, probs):
        best = np.argsort(-p)[:5]
        rows.append({"id": vid, "label": int(label), "label_name": scored["names"].get(int(label), ""),
                     "prediction": int(best[0]), "score": round(float(p[best[0]]), 6),
                     "label_score": round(float(p[label]), 6),
                     "top5": " ".join(f"{int(c)}:{p[c]:.4f}" for c in best)})
    return result, rows, probs


def write_predictions(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def run_facts(cfg: FinetuneConfig) -> dict:
    protocol, number = where(cfg)
    t = cfg.task
    if protocol in ("given", "lists"):
        protocol, number = "split", ("lists" if t.test_list else "test shards") if protocol == "lists" else "test"
    return {"task": t.name, "init": "scratch" if t.init == "scratch" else "pretrained", "init_path": t.init,
            "mode": t.mode, "features": t.features if task_of(cfg).modality == "video" else "audio",
            **({"input": input_of(t), "pool": t.pool} if task_of(cfg).crop else {}),
            protocol: number, "metric": task_of(cfg).metric, "paper": task_of(cfg).paper}


def evaluate_run(trainer: FinetuneTrainer, urls: dict[str, list[str]], last: dict) -> dict | None:
    """Score the test set (and the val set; each rank a share of the samples under DDP);
    on rank 0 write metrics.json, predictions.csv and the pictures into the run folder and
    return the metrics (None on the other ranks)."""
    cfg, out = trainer.cfg, Path(trainer.cfg.train.out)
    protocol, number = where(cfg)
    test_urls = urls.get("--test-shards") or urls["--shards"]
    select = Selection(protocol, number, "all") if "--test-shards" in urls else selection(cfg, "test")
    part = rank_world()
    scored = gather_scored(score_videos(trainer.model, test_urls, select, cfg, trainer.device, trainer.amp, part),
                           out, "test", classes_of(cfg))
    val = None
    if "--val-shards" in urls:
        val = gather_scored(score_videos(trainer.model, urls["--val-shards"], Selection(protocol, number, "all"), cfg,
                                         trainer.device, trainer.amp, part), out, "val", classes_of(cfg))
    if part[0] != 0:
        return None
    result, rows, probs = summarise(scored, cfg)
    found = {**run_facts(cfg), **result, "value": result[task_of(cfg).metric], "steps": trainer.step,
             "train_skipped": last.get("skipped_by_reason", {})}
    if val is not None:
        val = summarise(val, cfg)[0]
        found["val_top1"], found["val_videos"] = val["top1"], val["videos"]
    labels = np.array([r["label"] for r in rows])
    predictions = probs.argmax(axis=1)
    names = {c: scored["names"].get(c, str(c)) for c in range(classes_of(cfg))}
    plot_confusion(metrics.confusion(labels, predictions, classes_of(cfg)), names, out / "confusion.png",
                   f"{cfg.task.name} {protocol} {number}: top-1 {100 * result['top1']:.1f}%")
    per_class = metrics.per_class_accuracy(labels, predictions)
    plot_per_class(per_class, names, out / "per_class.png", f"{cfg.task.name} {protocol} {number}: per-class accuracy")
    found["per_class"] = {names[c]: a for c, a in per_class.items()}
    found["pictures"] = {"confusion": "confusion.png", "per_class": "per_class.png", "curves": "curves.png"}
    if "auc" in result:
        plot_roc(labels, probs[:, 1], out / "roc.png", f"{cfg.task.name}: video ROC AUC {result['auc']:.3f}")
        found["pictures"]["roc"] = "roc.png"
    write_predictions(rows, out / "predictions.csv")
    atomic_write(out / "metrics.json", json.dumps(found, indent=2) + "\n")
    return found


def finetune(cfg: FinetuneConfig, resume: bool = False) -> dict:
    """One finetuning run; returns the last training record with the test metrics
    (`metrics`) when the run finished all its steps."""
    if task_of(cfg).sequence:                     # LRS2: CTC over characters (glcm/sentence.py)
        from glcm.sentence import finetune_sentence
        return finetune_sentence(cfg, resume)
    urls: dict[str, list[str]] = {}
    reader = reader_of(cfg)

    def prepare() -> None:
        check_run_folder(cfg, resume)
        urls.update(check_finetune(cfg))

    def loader(trainer: LoopTrainer):
        return make_loader(urls["--shards"], cfg.data, cfg.train.batch_size, clip_spec(cfg), cfg.train.epoch_batches,
                           seed_offset=trainer.step, pin_memory=trainer.device.type == "cuda",
                           decode=_Decode(reader), select=selection(cfg, "train"))

    def finish(trainer: LoopTrainer, last: dict) -> dict:
        found = evaluate_run(trainer, urls, last)
        if dist.is_initialized():
            dist.barrier()                        # every rank ends together, after rank 0 has written
        return last if found is None else {**last, "metrics": found}

    job = Job("glcm finetune", prepare, lambda device: FinetuneTrainer(cfg, device, not resume), loader, finish)
    return run_job(cfg, resume, job)


class _Decode:
    """decode_train bound to a reader; a plain class so DataLoader workers can pickle it.
    A video task's frames go straight into their batch row (`fills_rows`, see make_dataset)."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.fills_rows = reader.modality == "video"

    def __call__(self, raw, spec, rng, out=None):
        return decode_train(raw, spec, rng, self.reader, out)


def finetune_all(cfg: FinetuneConfig, resume: bool = False) -> dict:
    """Every split (UCF101/HMDB51) or fold (ESC-50) into OUT/split-N or OUT/fold-N, then
    OUT/metrics.json with each part's top-1 and their mean (the protocol's figure).
    OUT/config.json records the whole run (`task.all_parts`), so `glcm finetune --resume
    --out OUT` continues it: finished parts (metrics.json at `train.steps`) are kept, the
    others resume from their checkpoint or start."""
    protocol = task_of(cfg).protocol
    if protocol not in ("split", "fold"):
        raise ConfigError(f"{cfg.task.name} has no splits or folds to run all of; drop --split all / --folds all")
    numbers = (1, 2, 3) if protocol == "split" else (1, 2, 3, 4, 5)
    out, parts = Path(cfg.train.out), {}
    if not cfg.train.out:
        raise ConfigError("no run folder: give --out (or train.out in the config)")
    if not resume and (out / "checkpoint.pt").exists():     # its config.json and metrics.json would be replaced
        every = "--split all" if protocol == "split" else "--folds all"
        raise ConfigError(f"{out} holds a single run (checkpoint.pt); give {every} its own --out")
    runs = []
    for n in numbers:
        part = copy.deepcopy(cfg)
        setattr(part.task, protocol, n)
        part.task.all_parts = False
        part.train.out = str(out / f"{protocol}-{n}")
        check_finetune(part)                       # every part's samples before any training
        if not resume and (Path(part.train.out) / "checkpoint.pt").exists():
            raise ConfigError(f"{part.train.out} already holds a checkpoint; add --resume to continue "
                              f"{out}, or choose another --out")
        runs.append((n, part))
    cfg.task.all_parts = True
    if int(os.environ.get("RANK", "0")) == 0:
        make_output_dir(out)
        cfg.save(out / "config.json")              # `--resume --out OUT` continues every part
    for n, part in runs:
        done = finished_part(part) if resume else None
        if done is not None:
            parts[n] = done
            continue
        rerun = resume and (Path(part.train.out) / "checkpoint.pt").exists()
        last = finetune(part, rerun)
        if last.get("interrupted"):               # stopped by a signal
            return last
        if "metrics" in last:                     # rank 0 scores; the other ranks go on to the next part
            parts[n] = last["metrics"]
    if not parts:
        return last
    summary = parts_summary(cfg, protocol, parts)
    atomic_write(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    return {"metrics": summary}


def finished_part(part: FinetuneConfig) -> dict | None:
    """A part's metrics.json when it was scored after all of `train.steps`, else None."""
    found = read_json(Path(part.train.out) / "metrics.json")
    steps = found.get("steps") if isinstance(found, dict) else None
    return found if isinstance(steps, int) and steps >= part.train.steps and "top1" in found else None


def parts_summary(cfg: FinetuneConfig, protocol: str, parts: dict[int, dict]) -> dict:
    """OUT/metrics.json of an all-parts run: each part's top-1, their mean (and the mean
    val top-1 when every part has one)."""
    facts = {k: v for k, v in run_facts(cfg).items() if k != protocol}
    mean = metrics.mean_of([p["top1"] for p in parts.values()])
    summary = {**facts, protocol: "all", "value": mean, "top1": mean,
               f"{protocol}s": {str(n): p["top1"] for n, p in parts.items()},
               "runs": {str(n): f"{protocol}-{n}" for n in parts}}
    if all("val_top1" in p for p in parts.values()):
        summary["val_top1"] = metrics.mean_of([p["val_top1"] for p in parts.values()])
    return summary


def init_model(path: str) -> dict:
    """The model section (architecture) of an --init checkpoint or encoder file."""
    from glcm import checkpoint as ckpt
    data = ckpt.load(path)
    if ckpt.require_pretraining(data, path, encoder_ok=True, option="--init") == "encoder":
        return dict(data["model_config"])
    config = data.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ckpt.CheckpointError(f"{path}: its config cannot be read (no model section)")
    return dict(config["model"])
