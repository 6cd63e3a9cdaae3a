"""`glcm`: GLCM pretraining on avprep shards. Thin shims over the glcm package."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="GLCM (global-local audio-visual contrastive) pretraining on avprep shards.",
                  no_args_is_help=True, add_completion=False)

CONFIG_HELP = "JSON config file (sections model, loss, data, train); see docs/glcm.md."
SET_HELP = "Override one config field, e.g. --set model.width=16 (repeatable; applied last)."
PRESET_HELP = "Start from a preset: paper, authors or tiny (see glcm/config.py)."


def _config(config: Optional[Path], preset: Optional[str], sets: list[str], extra: dict):
    from glcm.config import ConfigError, load_config
    try:
        overrides = list(sets) + [f"{k}={v}" for k, v in extra.items() if v is not None]
        return load_config(config, overrides, preset)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def train(
    shards: str = typer.Option(..., help="Shard URLs: brace pattern, local paths or pipe:/http(s) URLs, "
                                         "e.g. 'data/shard-{000000..000009}.tar'."),
    out: Path = typer.Option(..., help="Run folder: config.json, checkpoint.pt, log.jsonl, tb/, curves.png."),
    config: Optional[Path] = typer.Option(None, help=CONFIG_HELP),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, help="Continue from OUT/checkpoint.pt (model, optimiser, step, RNG); "
                                            "uses OUT/config.json unless --config is given."),
    steps: Optional[int] = typer.Option(None, help="Total training steps (train.steps)."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per step per process (train.batch_size)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda (train.device)."),
    workers: Optional[int] = typer.Option(None, help="DataLoader workers per process (data.workers)."),
    epoch_batches: int = typer.Option(1000, help="Batches per process per loader epoch (resampled shards)."),
) -> None:
    """Train GLCM. The same command works under torchrun (DDP from env vars)."""
    from glcm.train import train as run_training
    if resume and config is None and (out / "config.json").exists():
        config = out / "config.json"
    cfg = _config(config, preset, set_, {"train.steps": steps, "train.batch_size": batch_size,
                                         "train.device": device, "data.workers": workers})
    logging.basicConfig(level=logging.WARNING)
    last = run_training(cfg, shards, out, resume=resume, epoch_batches=epoch_batches)
    typer.echo(json.dumps(last))


@app.command()
def bench(
    shards: Optional[str] = typer.Option(None, help="Shards to read; default: synthetic 128x128 clips "
                                                     "written to a temporary folder."),
    config: Optional[Path] = typer.Option(None, help=CONFIG_HELP),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    device: str = typer.Option("auto", help="auto, cpu or cuda for the model figure."),
    batch_sizes: str = typer.Option("", help="Comma-separated batch sizes for the model figure "
                                             "(default: 32,64 on CUDA, 8 on CPU)."),
    steps: int = typer.Option(10, help="Timed training steps per batch size."),
    loader_batches: int = typer.Option(20, help="Timed loader batches."),
    skip_model: bool = typer.Option(False, help="Only measure the loader."),
) -> None:
    """Print loader clips/s per worker and model training clips/s on this device."""
    import torch
    from glcm.bench import loader_rate, model_rate, synthetic_shards
    cfg = _config(config, preset, set_, {})
    with tempfile.TemporaryDirectory() as tmp:
        pattern = shards or synthetic_shards(tmp)
        rate = loader_rate(pattern, cfg, loader_batches)
    typer.echo(f"loader: {rate:.1f} clips/s per worker (crop {cfg.data.crop}, {cfg.data.frames} frames, "
               f"batch {cfg.train.batch_size})")
    if skip_model:
        return
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    sizes = [int(b) for b in batch_sizes.split(",") if b] or ([32, 64] if dev.type == "cuda" else [8])
    for b in sizes:
        cfg.train.batch_size = b
        r = model_rate(cfg, dev, steps)
        typer.echo(f"model: {r:.1f} clips/s train, batch {b}, precision {cfg.train.precision}, "
                   f"compile {cfg.train.compile}, device {dev}")


@app.command("eval-localization")
def eval_localization(
    checkpoint: Path = typer.Option(..., help="Training checkpoint (checkpoint.pt)."),
    shards: str = typer.Option(..., help="Held-out shards of an annotated corpus."),
    annotations: Path = typer.Option(..., help="avcorr.json with the sounding object's boxes."),
    crop: int = typer.Option(64, help="Centred crop side in pixels of the stored frames."),
    shift: int = typer.Option(8, help="Frames by which the audio is shifted for the synchrony test."),
    threshold: float = typer.Option(0.5, help="Threshold on the min-max normalised map for cIoU."),
) -> None:
    """cIoU / pointing of the attention map and aligned-vs-shifted audio accuracy."""
    from glcm.checkpoint import load
    from glcm.config import from_dict
    from glcm.evaluate import evaluate, load_eval_clips
    from glcm.model import GLCM
    data = load(checkpoint)
    cfg = from_dict(data["config"])
    model = GLCM(cfg.model)
    model.load_state_dict(data["model"])
    records = json.loads(annotations.read_text())["videos"]
    clips = load_eval_clips(shards, records, cfg.data.frames, crop, shift, cfg.model.mel_per_frame, cfg.model.n_mels)
    if not clips:
        raise typer.BadParameter("no annotated clips long enough in those shards")
    result = evaluate(model, clips, threshold=threshold)
    result.pop("ious")
    typer.echo(json.dumps(result))


@app.command("export-encoder")
def export_encoder(
    checkpoint: Path = typer.Option(..., help="Training checkpoint (checkpoint.pt)."),
    encoder: str = typer.Option(..., help="audio, global or local."),
    out: Path = typer.Option(..., help="Encoder file to write (load with glcm.checkpoint.load_encoder)."),
) -> None:
    """Save one encoder alone, for downstream use."""
    from glcm.checkpoint import load, model_config, save_encoder
    data = load(checkpoint)
    save_encoder(data["model"], model_config(data["config"]["model"]), encoder, out)
    typer.echo(str(out))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
