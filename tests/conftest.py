"""Shared fixtures: generated media (once per session), the real-media folder, small helpers."""
from __future__ import annotations

import os

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
PY = sys.executable


def pytest_configure(config):
    config.addinivalue_line("markers", "real_media: needs ../shared/media")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not (MEDIA / "SOURCES.md").exists() and not MEDIA.is_dir():
        pytest.skip(f"real media folder {MEDIA} is absent")
    return MEDIA


def media_file(*parts: str) -> Path:
    path = MEDIA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"real media file {path} is absent")
    return path


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory):
    """(folder, {name: expected reason}) of avprep.testing.badinputs, generated once."""
    from avprep.testing.badinputs import make_bad_inputs
    folder = tmp_path_factory.mktemp("bad") / "inputs"
    expected = make_bad_inputs(str(folder))
    return folder, expected


def write_small_videos(folder: Path, n: int = 4, seconds: float = 4.0, seed: int = 0) -> list[Path]:
    """`n` tiny h264/aac videos (96x64, 10 fps) in two label folders; distinct content."""
    from avprep.testing.synthetic import pattern_frames, write_video
    paths = []
    for i in range(n):
        label = ("cats", "dogs")[i % 2]
        path = folder / label / f"clip_{i:02d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(seconds * 16000)) / 16000
        audio = (0.3 * np.sin(2 * np.pi * (300 + 150 * i) * t)).astype(np.float32)
        write_video(str(path), pattern_frames(int(seconds * 10), 64, 96, seed=seed + i), 10.0, audio,
                    codec="h264", audio_codec="aac")
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def small_videos(tmp_path_factory) -> Path:
    """A `videos`-recipe folder: 5 short clips (one of them 12 s -> 2 segments) and one bad file."""
    folder = tmp_path_factory.mktemp("small") / "videos"
    write_small_videos(folder, n=4)
    from avprep.testing.synthetic import pattern_frames, write_video
    t = np.arange(12 * 16000) / 16000
    (folder / "long").mkdir(parents=True)
    write_video(str(folder / "long" / "long_12s.mp4"), pattern_frames(120, 64, 96, seed=9), 10.0,
                (0.2 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), codec="h264", audio_codec="aac")
    (folder / "cats" / "broken.mp4").write_bytes(b"\x00" * 1000)
    return folder


def folder_digest(folder: Path, names: list[str] | None = None) -> dict[str, str]:
    """sha256 of every (non-hidden) file in a folder, by name."""
    out = {}
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and not p.name.startswith(".") and (names is None or p.name in names):
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def read_outcomes(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "outcomes.jsonl").read_text().splitlines()]


def read_samples(out: Path) -> list[dict]:
    """All samples of a build folder as raw dicts via plain webdataset."""
    import webdataset as wds
    shards = sorted(str(p) for p in Path(out).glob("*.tar"))
    return list(wds.WebDataset(shards, shardshuffle=False, empty_check=False))


def cli(*args):
    """Run the glcm CLI in this process; (exit code, output)."""
    from typer.testing import CliRunner

    from cli.glcm_cli import app
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def one_line_error(output: str) -> str:
    """The `error: ...` line, after checking it is the whole story (no traceback)."""
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@dataclass
class AvcorrRun:
    """One GLCM run on the synthetic correspondence corpus (avprep.testing.avcorr), trained
    once per session with the `avcorr` preset and shared by every test that needs a model
    that has learnt something (the learning, localisation and pretraining-helps tests)."""
    root: Path              # train-*.tar (96 clips, no annotations), test-000000.tar (32 clips) + annotations
    cfg: object             # the GLCMConfig it was trained with
    checkpoint: Path        # root/run/checkpoint.pt
    last: dict              # train()'s last record (losses)
    test_shard: Path


@pytest.fixture(scope="session")
def avcorr_run(tmp_path_factory) -> AvcorrRun:
    from avprep.testing import avcorr
    from glcm.config import avcorr as avcorr_preset
    from glcm.train import train
    root = tmp_path_factory.mktemp("avcorr")
    avcorr.write_shards(avcorr.make_clips(96, seed=1, obj=22), str(root), per_shard=16, prefix="train",
                        annotations=False)
    avcorr.write_shards(avcorr.make_clips(32, seed=2, obj=22), str(root), per_shard=32, prefix="test")
    cfg = avcorr_preset()
    cfg.data.shards, cfg.train.out = str(root / "train-{000000..000005}.tar"), str(root / "run")
    # two threads: the loader worker is light (64 px frames), so the second core goes to the
    # model (the fixture took 146 s instead of 189 s; the preset keeps 1 for loaded machines)
    cfg.train.threads = min(2, len(os.sched_getaffinity(0)))
    last = train(cfg)
    return AvcorrRun(root, cfg, root / "run" / "checkpoint.pt", last, root / "test-000000.tar")
