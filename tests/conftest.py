"""Shared fixtures: generated media (once per session), the real-media folder, small helpers."""
from __future__ import annotations

import os

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
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


AVCORR_TIMEOUT_S = 1800
AVCORR_KEY = pytest.StashKey[tuple]()          # (training process, its root folder)


def _uses_avcorr(item) -> bool:
    return "avcorr_run" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """When some selected test needs the avcorr run, start training it now in a process of
    its own (tests/avcorr_train.py, one thread) and move those tests to the end: the
    training then runs on the second core while the other tests run (the session took
    ~450 s with it trained in line on this 2-core machine)."""
    users = [item for item in items if _uses_avcorr(item)]
    if not users:
        return
    items[:] = [item for item in items if not _uses_avcorr(item)] + users
    if config.option.collectonly:
        return
    root = Path(tempfile.mkdtemp(prefix="avcorr-"))
    log = open(root / "train.log", "wb")
    proc = subprocess.Popen([PY, str(Path(__file__).with_name("avcorr_train.py")), str(root)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    log.close()
    config.stash[AVCORR_KEY] = (proc, root)


def pytest_sessionfinish(session, exitstatus):
    started = session.config.stash.get(AVCORR_KEY, None)
    if started is None:
        return
    proc, root = started
    if proc.poll() is None:           # the session ended early (-x, Ctrl-C): stop the training
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def avcorr_run(request) -> AvcorrRun:
    from avcorr_train import config
    started = request.config.stash.get(AVCORR_KEY, None)
    if started is None:
        pytest.fail("the avcorr run was not started at collection (conftest.pytest_collection_modifyitems)")
    proc, root = started
    try:
        rc = proc.wait(timeout=AVCORR_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"training the avcorr run took over {AVCORR_TIMEOUT_S} s")
    if rc != 0:
        tail = (root / "train.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"training the avcorr run failed (exit {rc}):\n{tail}")
    last = json.loads((root / "last.json").read_text())
    return AvcorrRun(root, config(root), root / "run" / "checkpoint.pt", last, root / "test-000000.tar")
