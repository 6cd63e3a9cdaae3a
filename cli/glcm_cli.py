"""`glcm`: GLCM pretraining, finetuning and reports on avprep shards. Thin shims over the glcm package.

Exit status: 0 done; 1 the shards gave no batch (a data problem: the message names the
reason and the skip counts); 2 a mistake to fix (an option, the config, a checkpoint, the
output folder: one line `error: ...` saying what to do); 128 + N stopped by signal N
(130 Ctrl-C, 143 SIGTERM), after saving a checkpoint when it stopped between steps.
"""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="GLCM (global-local audio-visual contrastive) pretraining on avprep shards. "
                       "Exit status: 0 done, 1 no batch could be made from the shards, 2 a mistake to fix "
                       "(one line), 128+N stopped by signal N.",
                  no_args_is_help=True, add_completion=False)

CONFIG_HELP = "JSON config file (sections model, loss, data, train); see docs/glcm.md."
SET_HELP = "Override one config field, e.g. --set model.width=16 (repeatable; applied last)."
PRESET_HELP = "Start from a preset: paper, authors, tiny, avcorr or smoke (functions in glcm/config.py)."
SHARDS_HELP = ("Shards: a folder, a glob or a brace pattern of local files ('data/shard-{000000..000009}.tar'); "
               "a typed 'pipe:CMD' runs this command and reads its output; http(s):// URLs are fetched.")


def _exit_code(exc: BaseException) -> int | None:
    """2 for a mistake the user can fix, 1 for shards that give no batch, None otherwise."""
    from avprep.fsio import OutputError
    from glcm.config import ConfigError
    checkpoint, data = sys.modules.get("glcm.checkpoint"), sys.modules.get("glcm.data")
    if isinstance(exc, (ConfigError, OutputError)) or (checkpoint and isinstance(exc, checkpoint.CheckpointError)):
        return 2
    if data and isinstance(exc, data.NoBatchError):
        return 1
    return None


@contextlib.contextmanager
def one_line_errors():
    """Expected errors -> `error: <one line>` on stderr and the exit status above."""
    try:
        yield
    except KeyboardInterrupt as exc:        # glcm.train.Interrupted, or Ctrl-C before its handlers
        signum = getattr(exc, "signum", signal.SIGINT)
        typer.echo(f"stopped by {signal.Signals(signum).name}; the last saved checkpoint (if any) is kept", err=True)
        raise typer.Exit(128 + signum) from None
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            raise
        typer.echo("error: " + " ".join(str(exc).split()), err=True)
        raise typer.Exit(code) from None


def _config(config: Optional[Path], preset: Optional[str], sets: list[str], extra: dict):
    from glcm.config import load_config
    overrides = list(sets) + [f"{k}={v}" for k, v in extra.items() if v is not None]
    return load_config(config, overrides, preset)


def _resume_config(out: Optional[Path], config: Optional[Path], command: str) -> Path:
    """The config a --resume starts from: --config, else OUT/config.json (of a run of this
    command: a finetune run's config has a task section, a train run's none)."""
    from glcm.config import ConfigError
    if config is not None:
        return config
    if out is None:
        raise ConfigError("--resume needs --out (the run folder to continue)")
    if not (out / "config.json").is_file():
        raise ConfigError(f"--resume: no {out / 'config.json'}; is {out} a glcm run folder?")
    try:
        finetuned = "task" in json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return out / "config.json"                 # unreadable: load_config says why
    if finetuned and command == "train":
        raise ConfigError(f"--resume: {out} is a glcm finetune run; continue it with glcm finetune --resume --out {out}")
    if not finetuned and command == "finetune":
        raise ConfigError(f"--resume: {out} is a glcm train run, not a finetune run; finetune from it with "
                          f"--init {out / 'checkpoint.pt'} and a new --out")
    return out / "config.json"


@app.command()
def train(
    shards: Optional[str] = typer.Option(None, help=SHARDS_HELP + " Default: data.shards of the config "
                                                   "(with --resume: of OUT/config.json)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (train.out): config.json, checkpoint.pt, log.jsonl, "
                                                  "tb/, curves.png. One run at a time (OUT/.lock)."),
    config: Optional[Path] = typer.Option(None, help=CONFIG_HELP),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, help="Continue OUT's run from OUT/checkpoint.pt (model, optimiser, step, "
                                            "RNG) with OUT/config.json (shards, epoch length and all); options "
                                            "given here override it, but the model must stay the same."),
    steps: Optional[int] = typer.Option(None, help="Total training steps (train.steps)."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per step per process (train.batch_size)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda (train.device)."),
    workers: Optional[int] = typer.Option(None, help="DataLoader workers per process (data.workers)."),
    epoch_batches: Optional[int] = typer.Option(None, help="Batches per process per loader epoch "
                                                           "(train.epoch_batches, default 1000)."),
) -> None:
    """Train GLCM. The same command works under torchrun (DDP from env vars).

    Exit status: 1 the shards give no batch (e.g. every sample skipped); 2 a mistake to fix;
    128+N stopped by signal N (a checkpoint is saved first when it stopped between steps)."""
    with one_line_errors():
        from glcm.train import train as run_training
        if resume:
            config = _resume_config(out, config, "train")
        cfg = _config(config, preset, set_, {
            "data.shards": shards, "train.out": out, "train.steps": steps, "train.batch_size": batch_size,
            "train.device": device, "data.workers": workers, "train.epoch_batches": epoch_batches})
        logging.basicConfig(level=logging.WARNING)
        last = run_training(cfg, resume=resume)
    typer.echo(json.dumps(last))
    if last.get("interrupted") and last.get("signal"):
        raise typer.Exit(128 + signal.Signals[last["signal"]])


def _synthetic_shards(out_dir: str, clips: int = 32, size: int = 128, seconds: float = 6.0) -> str:
    """Write avcorr clips (size x size, 10 fps) as shards; return their folder."""
    from avprep.testing import avcorr
    made = avcorr.make_clips(clips, seed=0, min_seconds=seconds, max_seconds=seconds, size=size, obj=size // 4)
    avcorr.write_shards(made, out_dir, per_shard=8, prefix="bench", annotations=False)
    return out_dir


def _positive(**options: int) -> None:
    from glcm.config import ConfigError
    for name, value in options.items():
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be a positive number")


def _max_side(**options: int) -> None:
    """Frame sides (decode, squash) at most glcm.config.MAX_SIDE: a slip of a digit is one
    line, not a MemoryError."""
    from glcm.config import MAX_SIDE, ConfigError
    for name, value in options.items():
        if value > MAX_SIDE:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be at most {MAX_SIDE} pixels")


MAX_LOCALIZE_S = 3600.0     # --max-seconds: the decoded clip and its overlay are held in memory


def _batch_sizes(text: str, cuda: bool) -> list[int]:
    from glcm.config import ConfigError
    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batch-sizes {text!r}: expected comma-separated whole numbers, e.g. 32,64") from None
    if any(b < 1 for b in sizes):
        raise ConfigError(f"--batch-sizes {text!r}: batch sizes must be positive")
    return sizes or ([32, 64] if cuda else [8])


@app.command()
def bench(
    shards: Optional[str] = typer.Option(None, help=SHARDS_HELP + " Default: synthetic 128x128 clips "
                                                   "written to a temporary folder."),
    config: Optional[Path] = typer.Option(None, help=CONFIG_HELP),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda for the model figure (train.device)."),
    batch_sizes: str = typer.Option("", help="Comma-separated batch sizes for the model figure "
                                             "(default: 32,64 on CUDA, 8 on CPU)."),
    steps: int = typer.Option(10, help="Timed training steps per batch size."),
    loader_batches: int = typer.Option(20, help="Timed loader batches."),
    skip_model: bool = typer.Option(False, help="Only measure the loader."),
    task: Optional[str] = typer.Option(None, help="Also measure finetuning clips/s of this task (ucf101, hmdb51, "
                                                 "esc50, lrw, lrs2, dfdc; full mode, random clips, its task "
                                                 "defaults)."),
) -> None:
    """Print loader clips/s per worker and model training clips/s on this device."""
    with one_line_errors():
        from glcm.bench import loader_rate, model_rate
        from glcm.train import pick_device, resolve_shards
        _positive(steps=steps, loader_batches=loader_batches)
        cfg = _config(config, preset, set_, {"train.device": device})
        if task is not None:
            from glcm.config import TASKS, ConfigError
            if task not in TASKS:
                raise ConfigError(f"--task {task!r}: must be one of {', '.join(TASKS)}")
        dev = pick_device(cfg.train.device)
        sizes = _batch_sizes(batch_sizes, dev.type == "cuda")
        with tempfile.TemporaryDirectory() as tmp:
            rate = loader_rate(resolve_shards(shards or _synthetic_shards(tmp)), cfg, loader_batches)
        typer.echo(f"loader: {rate:.1f} clips/s per worker (crop {cfg.data.crop}, {cfg.data.frames} frames, "
                   f"batch {cfg.train.batch_size})")
        if skip_model:
            return
        for b in sizes:
            cfg.train.batch_size = b
            r = model_rate(cfg, dev, steps)
            typer.echo(f"model: {r:.1f} clips/s train, batch {b}, precision {cfg.train.precision}, "
                       f"compile {cfg.train.compile}, device {dev}")
            if task is not None:
                from glcm.bench import finetune_rate
                from glcm.config import TASKS
                if TASKS[task].sequence:          # lrs2: the CTC sentence model (glcm/sentence.py)
                    from glcm.sentence import sentence_rate
                    r, frames = sentence_rate(cfg, dev, steps)
                else:
                    r, frames = finetune_rate(cfg, task, dev, steps)
                typer.echo(f"finetune {task}: {r:.1f} clips/s train, batch {b}, {frames} frames, "
                           f"crop {cfg.data.crop}, precision {cfg.train.precision}, device {dev}")


def _annotations(path: Path) -> dict:
    from glcm.config import ConfigError
    try:
        videos = json.loads(path.read_text())["videos"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--annotations {path}: not a readable avcorr.json "
                          f"({exc.strerror if isinstance(exc, OSError) else exc})") from None
    if not isinstance(videos, dict):
        raise ConfigError(f"--annotations {path}: 'videos' must map video paths to records")
    return videos


@app.command("eval-localization")
def eval_localization(
    checkpoint: Path = typer.Option(..., help="Training checkpoint (checkpoint.pt)."),
    benchmark: Optional[str] = typer.Option(None, help="flickr (Flickr-SoundNet test) or vggss (VGG-SS), read "
                                                       "from --root in their distributed layouts (docs/glcm.md)."),
    root: Optional[Path] = typer.Option(None, help="Benchmark folder: frames/<id>.jpg, audio/<id>.wav and "
                                                   "Annotations/<id>.xml (flickr) or metadata/vggss.json (vggss)."),
    shards: Optional[str] = typer.Option(None, help="Synthetic corpus instead: held-out shards of an annotated "
                                                    "corpus (with --annotations avcorr.json). " + SHARDS_HELP),
    annotations: Optional[Path] = typer.Option(None, help="--shards: avcorr.json; flickr: the XML folder; vggss: "
                                                          "the json (default: found under --root)."),
    ids: Optional[Path] = typer.Option(None, help="Benchmark test list (first column: ids, e.g. flickr_test.csv); "
                                                  "default: every annotated id."),
    size: int = typer.Option(128, help="Benchmark frames are squashed to size x size (the scale the model "
                                       "was trained at: avprep's short side)."),
    map_: str = typer.Option("similarity", "--map", help="similarity (pre-softmax) or softmax (attention) map."),
    rule: str = typer.Option("ezvsl", help="Reference the metric follows: ezvsl (default) or lvs."),
    save_maps: Optional[Path] = typer.Option(None, help="Write id -> 224x224 float32 map (np.savez)."),
    out: Optional[Path] = typer.Option(None, help="Write the results (JSON) here too."),
    crop: int = typer.Option(64, help="--shards: centred crop side in pixels of the stored frames."),
    shift: int = typer.Option(8, help="--shards: frames by which the audio is shifted for the synchrony test."),
    threshold: float = typer.Option(0.5, help="--shards: threshold (0-1) on the min-max normalised map for IoU."),
    device: str = typer.Option("auto", help="auto (CUDA when there is one), cpu or cuda."),
) -> None:
    """Localisation scores: cIoU (AP50), AUC and mean cIoU on Flickr-SoundNet / VGG-SS
    (LVS / EZ-VSL protocol), or on a synthetic annotated corpus (--shards)."""
    with one_line_errors():
        from glcm.config import ConfigError
        if (benchmark is None) == (shards is None):
            raise ConfigError("give either --benchmark flickr|vggss with --root, or --shards with --annotations")
        _device_name(device)
        for option, path, example in (("--save-maps", save_maps, "maps.npz"), ("--out", out, "results.json")):
            _output_file(option, path, example)      # before the evaluation, not after it
        if benchmark is not None:
            result = _eval_benchmark(checkpoint, benchmark, root, annotations, ids, size, map_, rule, save_maps, device)
        else:
            result = _eval_shards(checkpoint, shards, annotations, crop, shift, threshold, save_maps, device)
        if out is not None:
            from cli.locinput import write_json
            write_json(out, result)
    result.pop("per_sample", None)
    result.pop("problem_ids", None)
    typer.echo(json.dumps(result))


def _output_file(option: str, path: Optional[Path], example: str) -> None:
    """A file to write later: not a folder; its folder is made now (a mistake shows at once)."""
    from avprep.fsio import OutputError, make_output_dir
    if path is None:
        return
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name in it, e.g. {path / example}")
    make_output_dir(path.parent)


def _device_name(device: str) -> None:
    from glcm.config import ConfigError
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: choose auto, cpu or cuda")


def _load_on(checkpoint, device: str):
    """The checkpoint's model on the chosen device, and its config."""
    from glcm.checkpoint import load_model
    from glcm.train import pick_device
    model, cfg = load_model(checkpoint)
    return model.to(pick_device(device)), cfg


def _eval_benchmark(checkpoint, name, root, annotations, ids, size, kind, rule, save_maps, device) -> dict:
    from cli.locinput import bench_report, evaluate_benchmark, save_maps as write_maps
    from glcm.config import ConfigError
    from glcm.locbench import RULES, read_benchmark, read_ids
    _positive(size=size)
    _max_side(size=size)
    if root is None:
        raise ConfigError(f"--benchmark {name} needs --root (the benchmark folder)")
    if kind not in ("similarity", "softmax"):
        raise ConfigError(f"--map {kind}: choose similarity or softmax")
    if rule not in RULES:
        raise ConfigError(f"--rule {rule}: choose {' or '.join(RULES)}")
    try:
        listed = read_ids(str(ids)) if ids is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--ids {ids}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    bench = read_benchmark(name, str(root), str(annotations) if annotations else None, listed)
    if not bench.samples:
        where = f"--ids {ids}: none of its {len(listed)} ids is a scorable sample under --root {root}" if listed \
            else f"--root {root}: no scorable {name} sample"
        raise ConfigError(f"{where} ({bench.problem_counts() or 'no ids'}); check --root, --ids and --annotations")
    model, cfg = _load_on(checkpoint, device)
    result = evaluate_benchmark([model], cfg, bench, size, kind, rule)[0]
    if not result.maps:
        counts = {r: len(v) for r, v in result.failed.items()}
        raise ConfigError(f"--root {root}: no sample could be decoded ({counts})")
    if save_maps is not None:
        write_maps(save_maps, result.maps, rule)
    return bench_report(bench, result, {"size": size, "map": kind, "rule": rule, "frames": cfg.data.frames})


def _eval_shards(checkpoint, shards, annotations, crop, shift, threshold, save_maps, device) -> dict:
    from glcm.config import ConfigError
    from glcm.evaluate import evaluate, load_eval_clips
    from glcm.train import resolve_shards
    _positive(crop=crop, shift=shift)
    if not 0 <= threshold <= 1:
        raise ConfigError(f"--threshold {threshold}: must be between 0 and 1")
    if annotations is None:
        raise ConfigError("--shards needs --annotations (the corpus's avcorr.json)")
    records = _annotations(annotations)
    model, cfg = _load_on(checkpoint, device)
    try:
        clips = load_eval_clips(resolve_shards(shards), records, cfg.data.frames, crop, shift,
                                cfg.model.mel_per_frame, cfg.model.n_mels)
    except (ValueError, OSError, tarfile.TarError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"--shards {shards}: cannot evaluate on them ({exc})") from None
    if not clips:
        raise ConfigError("no annotated clips long enough in those shards; check --shards and --annotations")
    result = evaluate(model, clips, threshold=threshold)
    maps = result.pop("maps")
    if save_maps is not None:
        from cli.locinput import save_maps as write_maps
        write_maps(save_maps, maps)
    result["per_sample"] = dict(zip(result.pop("keys"), result.pop("ious")))
    return result


@app.command()
def localize(
    videos: list[Path] = typer.Argument(..., help="Video files (any format ffmpeg reads, with audio)."),
    checkpoint: Path = typer.Option(..., help="Training checkpoint (checkpoint.pt)."),
    out: Path = typer.Option(..., help="Folder for <name>.mp4 (heatmap overlay with the original audio), "
                                       "<name>.png (contact sheet), <name>.maps.npz and localize.json."),
    short_side: int = typer.Option(128, help="Decode frames with this short side (the scale the model was "
                                             "trained at: avprep's stored short side)."),
    hop: Optional[int] = typer.Option(None, help="Frames between window starts (default model.global_stride)."),
    max_seconds: float = typer.Option(30.0, help="Localise at most the first this many seconds of each video."),
    map_: str = typer.Option("softmax", "--map", help="Map drawn: softmax (attention, the paper's) or similarity."),
    alpha: float = typer.Option(0.5, help="Heatmap weight in the blend (0-1)."),
    batch: int = typer.Option(8, help="Windows per forward pass."),
    device: str = typer.Option("auto", help="auto (CUDA when there is one), cpu or cuda."),
) -> None:
    """Sound-source heatmaps of videos: the global path's map per window, upsampled onto the
    frames. A clip shorter than the model's window is looped to one window and drawn on its
    real frames (localize.json: padded_frames). A video that cannot be used (no audio,
    undecodable, no frame with audio) is recorded with its reason in localize.json; exit 1
    when no video worked."""
    with one_line_errors():
        from avprep.fsio import make_output_dir
        from cli.locinput import run_localize
        from glcm.config import ConfigError
        _positive(short_side=short_side, batch=batch, **({"hop": hop} if hop is not None else {}))
        _max_side(short_side=short_side)
        if map_ not in ("softmax", "similarity"):
            raise ConfigError(f"--map {map_}: choose softmax or similarity")
        if not 0 <= alpha <= 1:
            raise ConfigError(f"--alpha {alpha}: must be between 0 and 1")
        if not 0 < max_seconds <= MAX_LOCALIZE_S:           # nan and inf fail here too
            raise ConfigError(f"--max-seconds {max_seconds}: must be above 0 and at most {MAX_LOCALIZE_S:g} seconds")
        _device_name(device)
        model, cfg = _load_on(checkpoint, device)
        make_output_dir(out)
        opts = {"short_side": short_side, "hop": hop or cfg.model.global_stride, "max_seconds": max_seconds,
                "map": map_, "alpha": alpha, "batch": batch}
        records = run_localize(model, cfg, list(videos), out, opts)
    for r in records:
        done = f"{r['overlay']}, {r['sheet']}" if r["ok"] else f"{r['reason']}: {r['message']}"
        if r.get("padded_frames"):
            done += (f" ({r['frames']} frames, shorter than the model's {r['frames'] + r['padded_frames']}-frame "
                     f"window: looped to fill it, {r['padded_frames']} padded frames not drawn)")
        typer.echo(f"{r['video']}: {done}")
    if not any(r["ok"] for r in records):
        typer.echo("error: no video could be localised (reasons above and in localize.json)", err=True)
        raise typer.Exit(1)


@app.command("export-encoder")
def export_encoder(
    checkpoint: Path = typer.Option(..., help="Training checkpoint (checkpoint.pt)."),
    encoder: str = typer.Option(..., help="audio, global or local."),
    out: Path = typer.Option(..., help="Encoder file to write (load with glcm.checkpoint.load_encoder)."),
) -> None:
    """Save one encoder alone, for downstream use."""
    with one_line_errors():
        from glcm.checkpoint import check_encoder_name, load_training, save_encoder
        check_encoder_name(encoder)
        _output_file("--out", out, f"{encoder}.pt")
        data, cfg = load_training(checkpoint)
        save_encoder(data["model"], cfg.model, encoder, out)
    typer.echo(str(out))


def _part_options(task: Optional[str], split: Optional[str], fold: Optional[int], folds: Optional[str]) -> tuple[dict, bool]:
    """(task.split / task.fold overrides, whether every split or fold runs)."""
    from glcm.config import ConfigError
    if folds is not None and folds != "all":
        raise ConfigError(f"--folds {folds!r}: only 'all' (runs folds 1-5); use --fold N for one fold")
    if folds and fold is not None:
        raise ConfigError("give --fold N or --folds all, not both")
    every = folds == "all" or split == "all"
    sets = {"task.fold": fold}
    if split not in (None, "all"):
        if split not in ("1", "2", "3"):
            raise ConfigError(f"--split {split!r}: must be 1, 2, 3 or all")
        sets["task.split"] = split
    if task == "esc50" and split is not None:
        raise ConfigError("esc50 has folds, not splits: use --fold N or --folds all")
    if task in ("ucf101", "hmdb51") and (fold is not None or folds):
        raise ConfigError(f"{task} has splits, not folds: use --split 1, 2, 3 or all")
    if task in ("lrw", "dfdc") and (split is not None or fold is not None or folds):
        raise ConfigError(f"{task} has no --split / --fold: LRW trains on its train build and tests on --test-shards; "
                          "DFDC takes --test-shards or --set task.train_list/test_list (Chugh et al. lists)")
    if task == "lrs2" and (split is not None or fold is not None or folds):
        raise ConfigError("lrs2 has no --split / --fold: it trains on the samples whose split is in "
                          "task.train_splits (default train) and tests on split test or on --test-shards")
    return sets, every


@app.command()
def finetune(
    task: Optional[str] = typer.Option(None, help="ucf101, hmdb51, esc50, lrw, lrs2 or dfdc (task.name)."),
    shards: Optional[str] = typer.Option(None, help="Labelled shards of one build (avprep build ucf101|hmdb51|esc50): "
                                                   "the split / fold picks train and test samples. " + SHARDS_HELP),
    val_shards: Optional[str] = typer.Option(None, help="Held-out shards, scored at the end (task.val_shards)."),
    test_shards: Optional[str] = typer.Option(None, help="Test shards, taken whole (default: the test split / "
                                                        "fold of --shards)."),
    init: Optional[str] = typer.Option(None, help="A glcm checkpoint.pt (or export-encoder file) to start the "
                                                 "encoders from, or 'scratch' (same architecture, random init)."),
    out: Optional[Path] = typer.Option(None, help="Run folder: config.json, checkpoint.pt, log.jsonl, tb/, curves.png, "
                                                  "metrics.json, predictions.csv, confusion.png, per_class.png."),
    split: Optional[str] = typer.Option(None, help="UCF101/HMDB51: split 1, 2 or 3 (default 1), or 'all' "
                                                   "(OUT/split-N each, and their mean)."),
    fold: Optional[int] = typer.Option(None, help="ESC-50: the test fold 1-5 (default 1)."),
    folds: Optional[str] = typer.Option(None, help="ESC-50: 'all' runs folds 1-5 (OUT/fold-N) and writes the mean."),
    mode: Optional[str] = typer.Option(None, help="full (finetune everything, the paper) or linear (frozen encoders)."),
    features: Optional[str] = typer.Option(None, help="Visual tasks: global, local or both (concatenated; default)."),
    clips: Optional[int] = typer.Option(None, help="Test clips per video (task.clips; default 10, LRW 1)."),
    input_: Optional[str] = typer.Option(None, "--input", help="lrw/dfdc: crops (lip/face crops, default) or "
                                                              "full-frames (shards of `avprep build lrw|dfdc --crop none`)."),
    pool: Optional[str] = typer.Option(None, help="Spatial pooling of the visual features: mean (default) or "
                                                 "attention (the pretrained model's audio-visual map; needs "
                                                 "--input full-frames, samples with audio and a checkpoint --init)."),
    config: Optional[Path] = typer.Option(None, help="JSON config (sections model, loss, data, train, task)."),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP + " Default with a checkpoint --init: its "
                                                   "architecture."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP + " Also task.*, e.g. --set task.dropout=0.2."),
    resume: bool = typer.Option(False, help="Continue OUT's run (OUT/config.json, OUT/checkpoint.pt); a --split all / "
                                            "--folds all run continues its unfinished parts."),
    steps: Optional[int] = typer.Option(None, help="Training steps (train.steps)."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per step per process (train.batch_size)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda (train.device)."),
    workers: Optional[int] = typer.Option(None, help="DataLoader workers per process (data.workers)."),
    epoch_batches: Optional[int] = typer.Option(None, help="Batches per process per loader epoch."),
) -> None:
    """Finetune (or linear-probe) the encoders on a downstream task and score it by the
    task's protocol. The same command works under torchrun. Exit status as for train."""
    with one_line_errors():
        from glcm.config import ConfigError, load_finetune_config
        from glcm.finetune import finetune as run_finetune, finetune_all, init_model
        parts, every = _part_options(task, split, fold, folds)
        if clips is not None:
            _positive(clips=clips)                 # task.clips 0 means the task's default; --clips 0 is a slip
        if resume:
            config = _resume_config(out, config, "finetune")
        elif task is None or init is None:
            raise ConfigError("give --task (ucf101, hmdb51, esc50, lrw, lrs2 or dfdc) and --init (a checkpoint.pt or "
                              "scratch)")
        adopt = init not in (None, "scratch") and preset is None and config is None
        cfg = load_finetune_config(config, list(set_) + [f"{k}={v}" for k, v in {
            "task.name": task, "task.init": init, "data.shards": shards, "task.val_shards": val_shards,
            "task.test_shards": test_shards, "train.out": out, "task.mode": mode, "task.features": features,
            "task.clips": clips, "task.input": input_, "task.pool": pool, "train.steps": steps,
            "train.batch_size": batch_size, "train.device": device,
            "data.workers": workers, "train.epoch_batches": epoch_batches, "task.all_parts": every or None,
            **parts}.items() if v is not None],
            preset, init_model(init) if adopt else None)
        if resume and cfg.task.all_parts and (fold is not None or split not in (None, "all")):
            raise ConfigError(f"{out} is a run of every split/fold: resume it without --split/--fold, or resume "
                              "one part with --out OUT/split-N (OUT/fold-N)")
        logging.basicConfig(level=logging.WARNING)
        last = finetune_all(cfg, resume) if cfg.task.all_parts else run_finetune(cfg, resume)
    typer.echo(json.dumps(last.get("metrics", last), default=str))
    if last.get("interrupted") and last.get("signal"):
        raise typer.Exit(128 + signal.Signals[last["signal"]])


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders (glcm finetune --out), e.g. runs/*."),
    out: Path = typer.Option(Path("report.md"), help="Markdown file to write."),
) -> None:
    """One Markdown table of every run side by side, with the paper's numbers and links to the pictures."""
    with one_line_errors():
        from glcm.report import write_report
        rows = write_report(runs, out)
    typer.echo(f"{out}: {rows} runs")


def main() -> None:
    """The entry point: a command line mistake is one line and exit 2 (cli.entry)."""
    from cli.entry import run
    run(app)


if __name__ == "__main__":
    main()
