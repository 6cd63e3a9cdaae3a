"""`avprep`: build, inspect, verify and preview audio-visual WebDataset shards."""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from avprep.config import ALIGNMENTS, CROP_KINDS, ConfigError
from avprep.recipes import RECIPES

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn raw video corpora into training-ready audio-visual WebDataset shards.")

RecipeName = Enum("RecipeName", {name: name for name in RECIPES}, type=str)   # names come from the registry
CropKind = Enum("CropKind", {kind: kind for kind in CROP_KINDS}, type=str)
Align = Enum("Align", {a: a for a in ALIGNMENTS}, type=str)

# Options shared by `build` and `crop-lips`. None = not given: the recipe's default holds;
# every value is checked by avprep.config.validate before any work.
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder for shards, stats and tables. "
                                   "Rerunning the same command there resumes a killed build.")]
Workers = Annotated[Optional[int], typer.Option(help="Local worker processes (default: all cores).")]
Ray = Annotated[Optional[str], typer.Option("--ray", help="Run the shard tasks on a Ray cluster: 'auto', "
                                            "'ray://host:port', or 'local'. Output must be on shared storage.")]
CropSize = Annotated[Optional[int], typer.Option("--crop-size", "--size", help="Crop side in pixels "
                                                 "(default: 112 lips, 128 face; 96 or 88 in other protocols).")]
Grey = Annotated[Optional[bool], typer.Option("--grey/--no-grey", help="Store grey crops.")]
DetectEvery = Annotated[Optional[int], typer.Option(help="Crops: run the face detector every N frames, "
                                                    "track in between (default 10; lrw: 30, i.e. once per clip).")]
PredictEvery = Annotated[Optional[int], typer.Option(help="Crops: on a steady track run the 68-point model "
                                                     "every N frames and interpolate between (default 3; "
                                                     "1: every frame).")]
AlignOpt = Annotated[Optional[Align], typer.Option("--align", help="Lip crops: align on eye corners + nose tip "
                                                   "by least squares (similarity, default) or exactly (affine, "
                                                   "the paper's).")]
LipFraction = Annotated[Optional[float], typer.Option(help="Lip crops: lip width / crop width (default 1/3).")]
MaxGap = Annotated[Optional[float], typer.Option("--max-gap", help="Crops: longest stretch without landmarks, in "
                                                 "seconds, that is interpolated (default 1); longer fails no_face.")]
MinFaceFraction = Annotated[Optional[float], typer.Option(help="Crops: fraction of frames that need landmarks "
                                                          "(default 0.5), else no_face.")]
VideosPerShard = Annotated[Optional[int], typer.Option(help="Inputs per shard (default 64; lrw 1000).")]


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


def _run(name: str, args: dict, options: dict, out: Path, per_split: Optional[bool],
         workers: Optional[int], ray: Optional[str]) -> None:
    """Forward to the library: the recipe's defaults with the given options on top.
    Bad values raise ConfigError before any work; main() reports them."""
    from avprep.recipes import build_recipe

    def report(done) -> None:
        from avprep.pipeline import format_summary    # imported only once a build has run
        if done.split is not None:
            typer.echo(f"== {done.split}")
        typer.echo(format_summary(done.result.summary))
        typer.echo(f"shards: {done.out_dir}/{done.cfg.shard_prefix}-{{000000..{len(done.result.shards) - 1:06d}}}"
                   f".tar; failures: {done.out_dir}/failures.csv")

    build_recipe(RECIPES[name], args, str(out), options, per_split=per_split,
                 workers=workers, ray_address=ray, on_done=report)


def _str(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


def _face_options(detect_every, predict_every, align, lip_fraction, max_gap, min_face_fraction) -> dict:
    return {"crop.detect_every": detect_every, "crop.predict_every": predict_every,
            "crop.align": align.value if align else None,
            "crop.lip_fraction": lip_fraction, "crop.max_gap_s": max_gap,
            "crop.min_face_fraction": min_face_fraction}


@app.command(epilog="Recipes: " + "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values()) + ".")
def build(
    recipe: Annotated[RecipeName, typer.Argument(help="Which corpus layout to read (see Recipes below).")],
    root: Annotated[Optional[Path], typer.Argument(help="Corpus folder (every recipe but k-av).")] = None,
    out: Out = Path("shards"),
    kinetics: Annotated[Optional[Path], typer.Option(help="k-av: the Kinetics folder (clips + CSV).")] = None,
    avspeech: Annotated[Optional[Path], typer.Option(help="k-av: the AVSpeech folder (clips + avspeech_*.csv).")] = None,
    per_source: Annotated[Optional[int], typer.Option(help="k-av: random videos drawn from each source "
                                                      "(default 120000).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="k-av: seed of the draw and mix (default 0).")] = None,
    only_present: Annotated[Optional[bool], typer.Option("--only-present/--no-only-present", help="k-av: draw only rows "
                                                         "whose file exists (default: all rows; missing ones are "
                                                         "recorded as `missing`).")] = None,
    csv: Annotated[Optional[list[Path]], typer.Option(help="kinetics, avspeech: annotation CSV(s) "
                                                      "(default: the *.csv in ROOT).")] = None,
    splits: Annotated[Optional[Path], typer.Option(help="ucf101: the ucfTrainTestlist/ folder; hmdb51: the "
                                                   "testTrainMulti_7030_splits/ folder (default: that folder in "
                                                   "or beside ROOT).")] = None,
    max_words: Annotated[Optional[int], typer.Option(help="lrs2: cut timed pretrain utterances into runs of at "
                                                     "most N words (a curriculum; default 0: whole "
                                                     "utterances).")] = None,
    classes: Annotated[Optional[Path], typer.Option(help="kinetics: keep only these labels, one class name per "
                                                    "line (e.g. Kinetics-Sounds); names match loosely, classes "
                                                    "that match none are listed as failures.")] = None,
    require_audio: Annotated[Optional[bool], typer.Option("--require-audio/--audio-optional", help="A video "
                                                          "without an audio track fails (no_audio), or becomes a "
                                                          "visual-only sample (default: optional for ucf101 and "
                                                          "hmdb51, else required).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Target frame rate (default: 25 for lrs2 and lrw, "
                                                 "else 10).")] = None,
    short_side: Annotated[Optional[int], typer.Option(help="Resize frames so the short side is this; 0 keeps "
                                                      "the size (default: 128, or 0 for crops).")] = None,
    square: Annotated[Optional[bool], typer.Option("--square/--no-square", help="Centre-crop frames to "
                                                   "short_side x short_side.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option(help="Split longer inputs into segments of this length "
                                                         "(default 10; lrw 2; ucf101, hmdb51 60).")] = None,
    min_frames: Annotated[Optional[int], typer.Option(help="Drop segments with fewer frames (default 32; "
                                                      "lrw 20; ucf101, hmdb51, esc50 1).")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(help="Quality of the stored JPEG frames, 1-100 "
                                                        "(default 90).")] = None,
    hop: Annotated[Optional[int], typer.Option(help="Mel hop in samples at 16 kHz (default 160; "
                                               "k = 16000/(hop*fps) must be whole).")] = None,
    crop: Annotated[Optional[CropKind], typer.Option(help="Store lip or face crops instead of whole frames "
                                                     "(default: lips for lrs2 and lrw, face for dfdc, else none; "
                                                     "avspeech face crops follow its x,y).")] = None,
    crop_size: CropSize = None,
    grey: Grey = None,
    detect_every: DetectEvery = None,
    predict_every: PredictEvery = None,
    align: AlignOpt = None,
    lip_fraction: LipFraction = None,
    max_gap: MaxGap = None,
    min_face_fraction: MinFaceFraction = None,
    landmark_window: Annotated[Optional[float], typer.Option(help="Crops: smoothing window of the stored "
                                                             "landmarks, seconds (default 0.2).")] = None,
    transform_window: Annotated[Optional[float], typer.Option(help="Crops: smoothing window of the points the "
                                                              "crop is aligned on, seconds (default 0.4).")] = None,
    face_margin: Annotated[Optional[float], typer.Option(help="Face crops: margin around the face box "
                                                         "(default 0.3).")] = None,
    videos_per_shard: VideosPerShard = None,
    prefix: Annotated[Optional[str], typer.Option(help="Shard name prefix, a plain name (default: the recipe "
                                                  "name).")] = None,
    per_split: Annotated[Optional[bool], typer.Option("--per-split/--one-set", help="One shard set per split in "
                                                      "OUT/<split> (default: lrw per split, else one set).")] = None,
    workers: Workers = None,
    ray: Ray = None,
) -> None:
    """Build shards from a corpus, e.g. `avprep build k-av --kinetics K/ --avspeech A/ --out kav/`."""
    args = {"root": _str(root), "kinetics": _str(kinetics), "avspeech": _str(avspeech),
            "per_source": per_source, "seed": seed,
            "only_present": only_present, "csv": [str(c) for c in csv] if csv else None,
            "splits": _str(splits), "classes": _str(classes), "max_words": max_words}
    options = {"video.fps": fps, "video.short_side": short_side, "video.square": square,
               "audio.require_audio": require_audio,
               "video.jpeg_quality": jpeg_quality, "audio.hop_length": hop, "clip.max_seconds": max_seconds,
               "clip.min_frames": min_frames, "crop.kind": crop.value if crop else None, "crop.size": crop_size,
               "crop.grey": grey, "crop.face_margin": face_margin, "crop.landmark_window_s": landmark_window,
               "crop.transform_window_s": transform_window, "videos_per_shard": videos_per_shard,
               "shard_prefix": prefix,
               **_face_options(detect_every, predict_every, align, lip_fraction, max_gap, min_face_fraction)}
    _run(recipe.value, args, options, out, per_split, workers, ray)


@app.command("crop-lips")
def crop_lips(
    root: Annotated[Path, typer.Argument(help="LRW folder (lipread_mp4/<WORD>/{train,val,test}/*.mp4 + .txt).")],
    out: Out = Path("lrw-shards"),
    size: CropSize = None,
    grey: Grey = None,
    detect_every: DetectEvery = None,
    predict_every: PredictEvery = None,
    align: AlignOpt = None,
    lip_fraction: LipFraction = None,
    max_gap: MaxGap = None,
    min_face_fraction: MinFaceFraction = None,
    videos_per_shard: VideosPerShard = None,
    workers: Workers = None,
    ray: Ray = None,
) -> None:
    """`avprep build lrw` with its defaults: lip crops at native 25 fps, all 29 frames, one
    shard set per split (every build option: `avprep build lrw --help`)."""
    options = {"crop.size": size, "crop.grey": grey, "videos_per_shard": videos_per_shard,
               **_face_options(detect_every, predict_every, align, lip_fraction, max_gap, min_face_fraction)}
    _run("lrw", {"root": str(root)}, options, out, None, workers, ray)


Shards = Annotated[list[str], typer.Argument(help="A build folder, a glob or a brace pattern of .tar shards "
                                             "(names found are always read as local files).")]
AllowCommands = Annotated[bool, typer.Option(
    "--allow-commands", help="Accept typed `pipe:CMD` specs and URLs: runs this command / fetches this URL. "
    "Off by default.")]


def _shards_or_fail(call):
    """Run `call()`; a refused command/URL spec or shards that are not there: one line, rc 2."""
    try:
        return call()
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))


@app.command()
def inspect(shards: Shards, allow_commands: AllowCommands = False) -> None:
    """Counts, hours, sources and failure reasons of built shards. Exit 1 if a shard or
    stats file cannot be read (the counts are then incomplete), as verify does."""
    from avprep.tools import inspect_shards
    res = _shards_or_fail(lambda: inspect_shards(shards, allow_commands))
    typer.echo(res.report())
    if not res.ok:
        raise typer.Exit(1)


@app.command()
def verify(shards: Shards, allow_commands: AllowCommands = False) -> None:
    """Every sample passes the format's full check (docs/format.md) and every shard holds the
    samples its build recorded (manifest.json for a build folder, each tar's stats file for a
    pattern). Names each bad sample and goes on; exit 1 if anything is wrong."""
    from avprep.tools import verify_shards
    from avprep.format import is_command_or_url
    for spec in shards:      # a path that is not there is a mistake (exit 2), not a bad build (exit 1)
        if not (is_command_or_url(spec) or any(c in spec for c in "*?[{") or os.path.exists(spec)):
            _fail(f"{spec} does not exist: give a build folder, a glob or a brace pattern of .tar shards")
    res = _shards_or_fail(lambda: verify_shards(shards, allow_commands))
    for where, why in res.bad[:50]:
        typer.echo(f"BAD {where}: {why}")
    if len(res.bad) > 50:
        typer.echo(f"... and {len(res.bad) - 50} more")
    for note in res.notes[:20]:
        typer.echo(f"NOT CHECKED {note}")
    typer.echo(res.summary())
    if not res.ok:
        raise typer.Exit(1)


@app.command()
def preview(shards: Shards,
            out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("preview.png"),
            samples: Annotated[int, typer.Option(help="How many samples to draw.")] = 4,
            allow_commands: AllowCommands = False) -> None:
    """A contact sheet: frames over time with the mel spectrogram under them."""
    from avprep.preview import preview as draw
    if samples < 1:
        _fail("--samples must be >= 1")
    res = _shards_or_fail(lambda: draw(shards, str(out), samples, allow_commands=allow_commands))
    skipped = f"; skipped {len(res.skipped)} bad (run avprep verify)" if res.skipped else ""
    typer.echo(f"wrote {out} ({res.drawn} samples{skipped})")


@app.command("preview-crops")
def preview_crops(video: Annotated[Path, typer.Argument(help="A video with a face.")],
                  out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("crops.png"),
                  kind: Annotated[CropKind, typer.Option(help="lips or face.")] = CropKind.lips,
                  fps: Annotated[float, typer.Option(help="Frame rate of the crop stage.")] = 25.0,
                  size: Annotated[int, typer.Option(help="Crop side in pixels.")] = 112) -> None:
    """Frames with their tracked landmarks drawn, beside the lip or face crops the stage makes."""
    from avprep.fsio import local_path
    from avprep.preview import preview_crops as draw
    from avprep.probe import MediaError
    if kind == CropKind.none:
        _fail("--kind must be lips or face")
    try:
        meta = draw(local_path(str(video)), str(out), kind.value, fps, size)
    except MediaError as e:
        _fail(f"{e.reason}: {e.message}")
    typer.echo(f"wrote {out}; detected/tracked/interpolated frames: "
               f"{meta['detected']}/{meta['tracked']}/{meta['interpolated']}")


@app.command()
def demo(out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the corpus, shards and run.")] = Path("demo_out"),
         videos: Annotated[int, typer.Option(help="Synthetic videos per source.")] = 12,
         train_steps: Annotated[int, typer.Option(help="glcm training steps on CPU after the build (0: skip).")] = 300,
         probe_steps: Annotated[int, typer.Option(help="Linear-probe steps of the downstream step after training "
                                                      "(0: skip it).")] = 60,
         workers: Workers = 2) -> None:
    """The main job on a built-in default: generate a small corpus in the Kinetics and AVSpeech
    layouts, build K-AV shards, verify them, write a preview, train GLCM briefly on CPU, then
    build a generated ESC-50-layout set, linear-probe the pretrained and a random audio encoder
    on it (glcm finetune), write glcm report and print pretrained vs scratch accuracy."""
    from avprep.config import check_workers
    from cli.demo import run_demo
    if videos < 1:
        _fail(f"--videos {videos}: must be 1 or more")
    for option, steps in (("--train-steps", train_steps), ("--probe-steps", probe_steps)):
        if steps < 0:
            _fail(f"{option} {steps}: must be 0 (skip) or more")
    check_workers(workers)
    run_demo(str(out), videos, train_steps, workers or 2, echo=typer.echo, probe_steps=probe_steps)


@app.command()
def bench(files: Annotated[Optional[list[Path]], typer.Argument(help="Videos to decode (default: ../shared/media "
                                                                   "or generated ones).")] = None,
          repeat: Annotated[int, typer.Option(help="Passes over the files.")] = 3,
          workers: Annotated[str, typer.Option(help="Worker counts for the scaling table, comma-separated.")] = "1,2") -> None:
    """avprep per-core cost vs a bare `ffmpeg -vf fps=10,scale` decode of the same files, and scaling."""
    from avprep.bench import run_bench
    from avprep.fsio import local_path
    from avprep.probe import MediaError, probe
    counts = [w.strip() for w in workers.split(",")]
    if not all(w.isdigit() and int(w) >= 1 for w in counts):
        _fail(f"--workers {workers!r}: give worker counts >= 1, comma-separated, e.g. 1,2")
    if repeat < 1:
        _fail(f"--repeat {repeat}: must be 1 or more")
    paths = [local_path(str(f)) for f in files or []]
    for f in paths:
        try:
            probe(f)
        except MediaError as e:
            _fail(f"{f}: {e.reason}: {e.message}; give readable video files")
    run_bench(paths or None, repeat, [int(w) for w in counts], echo=typer.echo)


def main() -> None:
    """The entry point; the one place a user's mistake becomes `error: ...` and exit 2."""
    from avprep.fsio import OutputError
    from cli.entry import run
    run(app, mistakes=(ConfigError, FileNotFoundError, OutputError))


if __name__ == "__main__":
    main()
