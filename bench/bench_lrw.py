"""LRW-shaped lip crops: per-clip CPU cost of avprep against the naive per-frame dlib loop.

Run through bench/bench_faces.py (`--case lrw`, `--clips N`, `--repeat R`). The clips are
cut from the GRID talking heads in ../shared/media: 29 frames (1.16 s) at 25 fps, h264 +
AAC like LRW's mp4s, at 360x288 (GRID's own size) and 512x512 (the face region scaled up),
laid out as an LRW corpus (lipread_mp4/<WORD>/test/<WORD>_<5 digits>.mp4 + .txt).

Per clip, CPU seconds (user+sys of this process and its children), measured side by side:
- naive: ffmpeg decodes the grey frames, HOG with one upsample + 68 points on every frame;
- avprep in-process: `process_item` with the lrw recipe's defaults (the work of
  `avprep crop-lips` for one clip: decode video + audio, mel, lip crops, JPEG, encoding);
- avprep CLI: marginal cost of a clip in whole `avprep crop-lips --workers 1` runs, (run on
  the corpus with every clip twice - run on the corpus once) / clips; start-up excluded,
  and reported apart (run once - clips x marginal).
Passes are interleaved (naive clip, avprep clip, ...; CLI runs between passes) and medians
taken, because the machine is shared. Agreement: median lip-centre distance between
avprep's stored landmarks and the naive ones, as a fraction of the crop width, over frames
where both found the face by themselves (not gap-filled; avprep's frames interpolated between
two predictions on a steady track count, they are part of its tracking).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avprep.faces import quality  # noqa: E402
from avprep.faces.naive import naive_track  # noqa: E402
from avprep.faces.track import MISSING  # noqa: E402
from avprep.faces.video import read_frames  # noqa: E402
from avprep.format import FACE_STATUS, LANDMARKS, TRANSFORM, load_npy  # noqa: E402
from avprep.items import SourceItem  # noqa: E402
from avprep.pipeline import process_item  # noqa: E402
from avprep.probe import ffmpeg_exe  # noqa: E402
from avprep.recipes import RECIPES  # noqa: E402

FRAMES, SECONDS = 29, 1.16
# word -> the ffmpeg filter that makes that size from a 360x288 GRID frame
SIZES = {"GRIDHEAD": ("360x288", None), "CLOSEUP": ("512x512", "crop=288:288:36:0,scale=512:512")}


def cpu() -> float:
    """User+sys CPU seconds of this process and its finished children (ffmpeg, CLI runs)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cut_clip(src: Path, start: float, vf: str | None, dst: Path) -> None:
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(src),
            "-ss", f"{start:.2f}", "-frames:v", str(FRAMES), "-t", f"{SECONDS}"]
    if vf:
        args += ["-vf", vf]
    args += ["-r", "25", "-c:v", "libx264", "-preset", "fast", "-crf", "20", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-ar", "16000", str(dst)]
    subprocess.run(args, check=True)


def make_corpus(media: Path, root: Path, per_video: int, copies: int = 1) -> list[Path]:
    """An LRW test split of 29-frame clips (each `copies` times); returns the mp4 paths."""
    videos = sorted((media / "grid").glob("*.mpg"))
    if not videos:
        raise SystemExit(f"no GRID videos in {media / 'grid'}")
    starts = np.linspace(0.1, 3.0 - SECONDS - 0.1, per_video)
    out = []
    for word, (_, vf) in SIZES.items():
        folder = root / "lipread_mp4" / word / "test"
        folder.mkdir(parents=True, exist_ok=True)
        n = 0
        for video in videos:
            for start in starts:
                first = folder / f"{word}_{n + 1:05d}.mp4"
                cut_clip(video, float(start), vf, first)
                for c in range(copies):
                    path = folder / f"{word}_{n + 1 + c:05d}.mp4"
                    if c:
                        shutil.copyfile(first, path)
                    path.with_suffix(".txt").write_text("Text: WORD\nConf: 5\n\nDuration: 0.50 seconds\n")
                    out.append(path)
                n += copies
    return out


def naive_clip(path: Path) -> tuple[float, object]:
    c = cpu()
    grey, _ = read_frames(str(path), grey=True)
    track = naive_track(grey)
    return cpu() - c, track


def avprep_clip(path: Path, cfg, root: Path) -> tuple[float, dict]:
    word, split = path.parent.parent.name, path.parent.name
    item = SourceItem(str(path), "lrw", f"{word}/{split}/{path.stem}", split=split)
    c = cpu()
    outcome, samples = process_item(item, cfg, str(root))
    spent = cpu() - c
    if outcome["status"] != "ok":
        raise SystemExit(f"{path}: {outcome['reason']}: {outcome['message']}")
    return spent, samples[0]


def cli_run(root: Path, out: Path, env: dict) -> float:
    """CPU seconds of `avprep crop-lips ROOT --workers 1` and all its children."""
    shutil.rmtree(out, ignore_errors=True)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "cli.avprep_cli", "crop-lips", str(root), "--out", str(out),
                    "--workers", "1"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    d = resource.getrusage(resource.RUSAGE_CHILDREN)
    return d.ru_utime + d.ru_stime - c.ru_utime - c.ru_stime


def deviations(sample: dict, naive) -> np.ndarray:
    """Per-frame lip-centre distance / crop width where both found the face themselves."""
    lm = load_npy(sample[LANDMARKS]).astype(np.float64)
    tf = load_npy(sample[TRANSFORM]).astype(np.float64)
    own = load_npy(sample[FACE_STATUS]) != MISSING
    both = own & (naive.status != MISSING)
    dev = np.linalg.norm(quality.lip_centres(lm) - quality.lip_centres(naive.points), axis=1)
    return (dev / quality.crop_width_px(tf, 112))[both]


def run(media: str, per_video: int, repeat: int, env: dict | None = None) -> dict:
    cfg = RECIPES["lrw"].config({})
    env = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="bench_lrw_") as tmp:
        tmp = Path(tmp)
        once, twice = tmp / "once", tmp / "twice"
        clips = make_corpus(Path(media), once, per_video)
        make_corpus(Path(media), twice, per_video, copies=2)
        avprep_clip(clips[0], cfg, once)                      # load models, warm caches
        naive_clip(clips[0])
        costs = {word: {"naive": [], "avprep": []} for word in SIZES}
        devs = {word: [] for word in SIZES}
        model_runs = {word: [] for word in SIZES}
        runs = {"once": [], "twice": []}
        for r in range(repeat):
            runs["once"].append(cli_run(once, tmp / "out1", env))
            for i, path in enumerate(clips):
                word = path.parent.parent.name
                order = ("naive", "avprep") if (i + r) % 2 == 0 else ("avprep", "naive")
                for who in order:
                    if who == "naive":
                        spent, naive = naive_clip(path)
                    else:
                        spent, sample = avprep_clip(path, cfg, once)
                    costs[word][who].append(spent)
                if r == 0:
                    devs[word].append(deviations(sample, naive))
                    model_runs[word].append(json.loads(sample["json"])["crop"]["predicted"])
            runs["twice"].append(cli_run(twice, tmp / "out2", env))
    return report(costs, devs, model_runs, runs, len(clips), repeat)


def report(costs: dict, devs: dict, model_runs: dict, runs: dict, n_clips: int, repeat: int) -> dict:
    once, twice = float(np.median(runs["once"])), float(np.median(runs["twice"]))
    marginal = (twice - once) / n_clips
    naive_all = float(np.mean([v for w in costs.values() for v in w["naive"]]))
    print(f"LRW-shaped clips ({FRAMES} frames, {SECONDS} s, 25 fps, h264+aac), CPU ms per clip, "
          f"median of {repeat} interleaved pass(es):")
    print(f"{'clips':>22s} {'n':>4s} {'naive':>8s} {'avprep':>8s} {'x':>6s} {'median dev':>10s} {'p90 dev':>8s} "
          f"{'model runs':>10s}")
    rows = {}
    for word, (size, _) in SIZES.items():
        c = costs[word]
        naive, ours = float(np.median(c["naive"])), float(np.median(c["avprep"]))
        d = np.concatenate(devs[word]) if devs[word] else np.zeros(0)
        rows[size] = {"naive_ms": naive * 1e3, "avprep_ms": ours * 1e3, "x": naive / ours,
                      "median_dev": float(np.median(d)), "p90_dev": float(np.percentile(d, 90)),
                      "model_runs": float(np.mean(model_runs[word]))}
        r = rows[size]
        print(f"{size:>22s} {len(c['naive']) // repeat:4d} {r['naive_ms']:8.0f} {r['avprep_ms']:8.0f} {r['x']:6.1f} "
              f"{r['median_dev']:10.4f} {r['p90_dev']:8.4f} {r['model_runs']:10.1f}")
    print(f"avprep crop-lips CLI, whole runs (--workers 1): corpus once {once:.2f} CPU-s, twice {twice:.2f} CPU-s "
          f"-> marginal {marginal * 1e3:.0f} ms per clip ({naive_all / marginal:.1f}x the naive mean of "
          f"{naive_all * 1e3:.0f} ms), start-up {once - n_clips * marginal:.2f} CPU-s")
    print("(avprep = decode video+audio, mel, lip crops, JPEG and sample encoding; naive = grey decode + HOG with "
          "one upsample + 68 points on every frame; dev = lip-centre distance / crop width, over frames with "
          "landmarks of the tracker's own (predicted or interpolated between predictions); model runs = "
          "68-point predictions per clip)")
    return {"sizes": rows, "cli_marginal_ms": marginal * 1e3, "cli_startup_s": once - n_clips * marginal}
