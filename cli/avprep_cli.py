"""`avprep`: build, inspect, verify and preview audio-visual WebDataset shards."""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from avprep.config import AudioConfig, BuildConfig, ClipConfig, ConfigError, CropConfig, VideoConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn raw video corpora into training-ready audio-visual WebDataset shards.")


class Recipe(str, Enum):
    videos = "videos"
    kinetics = "kinetics"
    avspeech = "avspeech"
    k_av = "k-av"
    lrs2 = "lrs2"
    dfdc = "dfdc"


class CropKind(str, Enum):
    none = "none"
    lips = "lips"
    face = "face"


DEFAULT_CROP = {Recipe.lrs2: CropKind.lips, Recipe.dfdc: CropKind.face}

Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder for shards, stats and tables. "
                                   "Rerunning the same command there resumes a killed build.")]
Workers = Annotated[Optional[int], typer.Option(help="Local worker processes (default: all cores).")]
Ray = Annotated[Optional[str], typer.Option("--ray", help="Run the shard tasks on a Ray cluster: 'auto', "
                                            "'ray://host:port', or 'local'. Output must be on shared storage.")]


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


def _run(items, out: Path, cfg: BuildConfig, workers, ray, recipe: str, root: str) -> None:
    from avprep.pipeline import build_dataset, format_summary
    if not items:
        _fail("the recipe found no inputs")
    try:
        result = build_dataset(items, str(out), cfg, workers=workers, ray_address=ray, root=root, recipe=recipe)
    except ConfigError as e:
        _fail(str(e))
    typer.echo(format_summary(result.summary))
    typer.echo(f"shards: {out}/{cfg.shard_prefix}-{{000000..{len(result.shards) - 1:06d}}}.tar; "
               f"failures: {out}/failures.csv")


@app.command()
def build(
    recipe: Annotated[Recipe, typer.Argument(help="Which corpus layout to read.")],
    root: Annotated[Optional[Path], typer.Argument(help="Corpus folder (videos, kinetics, avspeech, lrs2, dfdc).")] = None,
    out: Out = Path("shards"),
    kinetics: Annotated[Optional[Path], typer.Option(help="k-av: the Kinetics folder (clips + CSV).")] = None,
    avspeech: Annotated[Optional[Path], typer.Option(help="k-av: the AVSpeech folder (clips + avspeech_*.csv).")] = None,
    per_source: Annotated[int, typer.Option(help="k-av: random videos drawn from each source.")] = 120_000,
    seed: Annotated[int, typer.Option(help="Seed of the k-av draw and mix.")] = 0,
    only_present: Annotated[bool, typer.Option(help="k-av: draw only rows whose file exists "
                                               "(else missing rows are drawn and recorded as `missing`).")] = False,
    csv: Annotated[Optional[list[Path]], typer.Option(help="Annotation CSV(s) (default: the *.csv in ROOT).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Target frame rate (default: 25 for lrs2, else 10).")] = None,
    short_side: Annotated[int, typer.Option(help="Resize frames so the short side is this (0: keep).")] = 128,
    square: Annotated[bool, typer.Option(help="Centre-crop frames to short_side x short_side.")] = False,
    max_seconds: Annotated[float, typer.Option(help="Split longer inputs into segments of this length.")] = 10.0,
    min_frames: Annotated[int, typer.Option(help="Drop segments with fewer frames.")] = 32,
    jpeg_quality: Annotated[int, typer.Option(help="Quality of the stored JPEG frames.")] = 90,
    hop: Annotated[int, typer.Option(help="Mel hop in samples at 16 kHz (k = 16000/(hop*fps) must be whole).")] = 160,
    crop: Annotated[Optional[CropKind], typer.Option(help="Store lip or face crops instead of whole frames "
                                                     "(default: lips for lrs2, face for dfdc, else none; "
                                                     "avspeech face crops follow its x,y).")] = None,
    crop_size: Annotated[int, typer.Option(help="Crop side in pixels.")] = 0,
    videos_per_shard: Annotated[int, typer.Option(help="Inputs per shard.")] = 64,
    prefix: Annotated[Optional[str], typer.Option(help="Shard name prefix (default: the recipe name).")] = None,
    workers: Workers = None,
    ray: Ray = None,
) -> None:
    """Build shards from a corpus, e.g. `avprep build k-av --kinetics K/ --avspeech A/ --out kav/`."""
    from avprep import recipes
    kind = (crop or DEFAULT_CROP.get(recipe, CropKind.none)).value
    crop_cfg = CropConfig(kind=kind, size=crop_size or (128 if kind == "face" else 112))
    if kind != "none" and short_side == 128:
        short_side = 0   # crops are cut from full-resolution frames
    fps = fps or (25.0 if recipe == Recipe.lrs2 else 10.0)
    cfg = BuildConfig(video=VideoConfig(fps=fps, short_side=short_side, square=square, jpeg_quality=jpeg_quality),
                      audio=AudioConfig(hop_length=hop), clip=ClipConfig(max_seconds, min_frames), crop=crop_cfg,
                      videos_per_shard=videos_per_shard, shard_prefix=prefix or recipe.value)
    csvs = [str(c) for c in csv] if csv else None
    try:
        if recipe == Recipe.k_av:
            if not kinetics or not avspeech:
                _fail("k-av needs --kinetics DIR and --avspeech DIR")
            items = recipes.prepare_kav(str(kinetics), str(avspeech), per_source, seed, only_present)
            root_dir = os.path.commonpath([os.path.abspath(kinetics), os.path.abspath(avspeech)])
        else:
            if root is None:
                _fail(f"`avprep build {recipe.value}` needs the corpus folder")
            items = recipes.prepare(recipe.value, str(root), csvs)
            root_dir = str(root)
    except (OSError, ValueError) as e:
        _fail(str(e))
    _run(items, out, cfg, workers, ray, recipe.value, root_dir)


@app.command("crop-lips")
def crop_lips(
    root: Annotated[Path, typer.Argument(help="LRW folder (lipread_mp4/<WORD>/{train,val,test}/*.mp4 + .txt).")],
    out: Out = Path("lrw-shards"),
    size: Annotated[int, typer.Option(help="Crop side in pixels (112 paper; 96 or 88 elsewhere).")] = 112,
    grey: Annotated[bool, typer.Option(help="Store grey crops.")] = False,
    detect_every: Annotated[int, typer.Option(help="Run the face detector every N frames (else track).")] = 10,
    videos_per_shard: Annotated[int, typer.Option(help="Clips per shard.")] = 1000,
    workers: Workers = None,
    ray: Ray = None,
) -> None:
    """Lip crops for LRW at native 25 fps, all 29 frames, one shard set per split."""
    from avprep.recipes.lrw import prepare_lrw
    items = prepare_lrw(str(root))
    cfg_for = lambda split: BuildConfig(  # noqa: E731
        video=VideoConfig(fps=25.0, short_side=0), clip=ClipConfig(max_seconds=2.0, min_frames=20),
        crop=CropConfig(kind="lips", size=size, grey=grey, detect_every=detect_every),
        videos_per_shard=videos_per_shard, shard_prefix=f"lrw-{split}")
    for split in sorted({i.split for i in items}):
        typer.echo(f"== {split}")
        _run([i for i in items if i.split == split], out / split, cfg_for(split), workers, ray, "lrw", str(root))


@app.command()
def inspect(shards: Annotated[list[str], typer.Argument(help="Shard folder, glob or brace pattern.")]) -> None:
    """Counts, hours, sources and failure reasons of built shards."""
    from avprep.tools import inspect_shards
    typer.echo(inspect_shards(shards).report())


@app.command()
def verify(shards: Annotated[list[str], typer.Argument(help="Shard folder, glob or brace pattern.")]) -> None:
    """Decode every sample; check shapes and frame/mel alignment. Exit 1 if any is bad."""
    from avprep.tools import verify_shards
    res = verify_shards(shards)
    for where, why in res.bad[:50]:
        typer.echo(f"BAD {where}: {why}")
    typer.echo(f"{res.checked} samples checked, {len(res.bad)} bad")
    if not res.ok:
        raise typer.Exit(1)


@app.command()
def preview(shards: Annotated[list[str], typer.Argument(help="Shard folder, glob or brace pattern.")],
            out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("preview.png"),
            samples: Annotated[int, typer.Option(help="How many samples to draw.")] = 4) -> None:
    """A contact sheet: frames over time with the mel spectrogram under them."""
    from avprep.preview import preview as draw
    n = draw(shards, str(out), samples)
    typer.echo(f"wrote {out} ({n} samples)")


@app.command("preview-crops")
def preview_crops(video: Annotated[Path, typer.Argument(help="A video with a face.")],
                  out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("crops.png"),
                  kind: Annotated[CropKind, typer.Option(help="lips or face.")] = CropKind.lips,
                  fps: Annotated[float, typer.Option(help="Frame rate of the crop stage.")] = 25.0,
                  size: Annotated[int, typer.Option(help="Crop side in pixels.")] = 112) -> None:
    """Frames with their tracked landmarks drawn, beside the lip or face crops the stage makes."""
    from avprep.preview import preview_crops as draw
    from avprep.probe import MediaError
    if kind == CropKind.none:
        _fail("--kind must be lips or face")
    try:
        meta = draw(str(video), str(out), kind.value, fps, size)
    except MediaError as e:
        _fail(f"{e.reason}: {e.message}")
    typer.echo(f"wrote {out}; detected/tracked/interpolated frames: "
               f"{meta['detected']}/{meta['tracked']}/{meta['interpolated']}")


@app.command()
def demo(out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the corpus, shards and run.")] = Path("demo_out"),
         videos: Annotated[int, typer.Option(help="Synthetic videos per source.")] = 12,
         train_steps: Annotated[int, typer.Option(help="glcm training steps on CPU after the build (0: skip).")] = 300,
         workers: Workers = 2) -> None:
    """The main job on a built-in default: generate a small corpus in the Kinetics and AVSpeech
    layouts, build K-AV shards, verify them, write a preview, then train GLCM briefly on CPU."""
    from avprep.demo import run_demo
    run_demo(str(out), videos, train_steps, workers or 2, echo=typer.echo)


@app.command()
def bench(files: Annotated[Optional[list[Path]], typer.Argument(help="Videos to decode (default: ../shared/media "
                                                                   "or generated ones).")] = None,
          repeat: Annotated[int, typer.Option(help="Passes over the files.")] = 3,
          workers: Annotated[str, typer.Option(help="Worker counts for the scaling table, comma-separated.")] = "1,2") -> None:
    """avprep per-core cost vs a bare `ffmpeg -vf fps=10,scale` decode of the same files, and scaling."""
    from avprep.bench import run_bench
    run_bench([str(f) for f in files] if files else None, repeat, [int(w) for w in workers.split(",")],
              echo=typer.echo)


def main() -> None:
    try:
        app()
    except (ConfigError, FileNotFoundError) as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
