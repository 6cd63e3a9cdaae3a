"""The `avprep` command line: help, build + inspect + verify + preview, clear errors."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from unittest import mock

import pytest

from avprep.config import ConfigError
from avprep.fsio import OutputError
from cli.avprep_cli import main

from conftest import PY, ROOT, read_outcomes

ENV = {"COLUMNS": "240", "TERMINAL_WIDTH": "240", "NO_COLOR": "1"}


def run(*args, entry=main, prog="avprep"):
    """`avprep ARGS` in this process through main() (the entry point, where errors are
    reported): (exit code, stdout + stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", [prog, *map(str, args)]), mock.patch.dict(os.environ, ENV), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            entry()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue() + err.getvalue()


def test_help_via_entry_point():
    exe = os.path.join(os.path.dirname(PY), "avprep")
    cmd = [exe] if os.path.exists(exe) else [PY, "-m", "cli.avprep_cli"]
    r = subprocess.run(cmd + ["--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0
    for word in ("build", "inspect", "verify", "preview", "crop-lips"):
        assert word in r.stdout
    code, out = run("build", "--help")
    assert code == 0
    for opt in ("--out", "--videos-per-shard", "--fps", "--hop", "--kinetics", "--avspeech", "--ray", "--workers",
                "--align", "--lip-fraction", "--max-gap", "--detect-every", "--per-split"):
        assert opt in out, opt


@pytest.fixture(scope="module")
def cli_build(small_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "shards"
    code, text = run("build", "videos", small_videos, "--out", out, "--videos-per-shard", 3,
                          "--workers", 1)
    assert code == 0, text
    return out, text


def test_build_reports_summary(cli_build):
    out, text = cli_build
    assert "6 inputs: 5 ok, 1 failed, 0 missing; 5 samples" in text
    assert "corrupt: 1" in text
    assert "videos-{000000..000001}.tar" in text
    assert sorted(p.name for p in out.glob("*.tar")) == ["videos-000000.tar", "videos-000001.tar"]
    assert len(read_outcomes(out)) == 6


def test_inspect(cli_build):
    out, _ = cli_build
    code, text = run("inspect", out)
    assert code == 0
    assert "2 shards, 5 samples" in text
    assert "sources: videos=5" in text
    assert "inputs: failed=1, ok=5" in text
    assert "failure reasons: corrupt=1" in text


def test_verify_ok_and_bad(cli_build, tmp_path):
    out, _ = cli_build
    code, text = run("verify", out)
    assert code == 0 and "5 samples checked, 0 bad" in text
    # a damaged copy: truncate one shard
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (out / "videos-000000.tar").read_bytes()
    (bad / "videos-000000.tar").write_bytes(data[: len(data) // 2])
    code, text = run("verify", bad)
    assert code == 1 and "BAD" in text
    # cut inside the first member: the tar itself is unreadable, said without object reprs
    (bad / "videos-000000.tar").write_bytes(data[:3000])
    code, text = run("verify", bad)
    assert code == 1 and "unreadable shard after 0 samples: ReadError: unexpected end of data" in text, text
    code, text = run("inspect", bad)
    assert "unreadable: " in text and "ReadError: unexpected end of data" in text and "<_io" not in text, text


def test_preview(cli_build, tmp_path):
    out, _ = cli_build
    png = tmp_path / "p.png"
    code, text = run("preview", out, "--out", png, "--samples", 2)
    assert code == 0, text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 samples" in text


def test_verify_of_a_path_that_is_not_there_is_one_line(tmp_path):
    code, text = run("verify", tmp_path / "nope")
    assert code == 2 and text == f"error: {tmp_path / 'nope'} does not exist: give a build folder, a glob or a " \
                                 "brace pattern of .tar shards\n", text


def test_preview_out_is_exactly_the_given_file(cli_build, tmp_path):
    out, _ = cli_build
    code, text = run("preview", out, "--out", tmp_path, "--samples", 1)
    assert code == 2 and text == f"error: --out {tmp_path} is a folder; give the PNG's file name, e.g. " \
                                 f"{tmp_path / 'preview.png'}\n", text
    sheet = tmp_path / "new" / "sheet"          # no .png suffix, a folder still to make
    code, text = run("preview", out, "--out", sheet, "--samples", 1)
    assert code == 0 and f"wrote {sheet} " in text, text
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(sheet.parent) == ["sheet"]


@pytest.mark.parametrize("args,says", [
    (["preview-crops", "v.mp4", "--fps", "0"], "error: --fps must be a finite number > 0, got 0.0"),
    (["preview-crops", "v.mp4", "--fps", "nan"], "error: --fps must be a finite number > 0, got nan"),
    (["bench", "--repeat", "0"], "error: --repeat 0: must be 1 or more"),
    (["bench", "--workers", "1,x"], "error: --workers '1,x': give worker counts >= 1"),
    (["bench", "--workers", "0"], "error: --workers '0': give worker counts >= 1"),
    (["bench", "missing.mp4"], "error: missing.mp4: missing: no such file"),
])
def test_preview_crops_and_bench_refuse_bad_values_in_one_line(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.mp4").write_bytes(b"\x00" * 100)
    code, text = run(*args)
    assert code == 2 and text.startswith(says) and text.count("\n") == 1, text
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]


def test_fps_hop_mismatch_is_a_clear_error(small_videos, tmp_path):
    code, text = run("build", "videos", small_videos, "--out", tmp_path / "o", "--fps", 29.97,
                        "--hop", 160, "--workers", 1)
    assert code == 2
    assert "whole number" in text
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_fps_hop_mismatch_via_subprocess(small_videos, tmp_path):
    r = subprocess.run([PY, "-m", "cli.avprep_cli", "build", "videos", str(small_videos), "--out",
                        str(tmp_path / "o"), "--fps", "29.97", "--workers", "1"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "error:" in r.stderr and "whole number" in r.stderr
    assert "Traceback" not in r.stderr


def test_kav_needs_both_roots(small_videos, tmp_path):
    code, text = run("build", "k-av", "--kinetics", small_videos, "--out", tmp_path / "o")
    assert code == 2
    assert "--avspeech" in text


def test_missing_root_and_empty_folder(tmp_path):
    code, text = run("build", "videos", "--out", tmp_path / "o")
    assert code == 2 and "corpus folder" in text
    (tmp_path / "empty").mkdir()
    code, text = run("build", "videos", tmp_path / "empty", "--out", tmp_path / "o")
    assert code == 2 and "no inputs" in text


def test_rerun_with_other_options_is_a_clear_error(cli_build, small_videos):
    out, _ = cli_build
    code, text = run("build", "videos", small_videos, "--out", out, "--videos-per-shard", 3,
                        "--workers", 1, "--fps", 25)
    assert code == 2 and "other inputs or options" in text
    code, text = run("build", "videos", small_videos, "--out", out, "--videos-per-shard", 3, "--workers", 1)
    assert code == 0 and "2/2 shards" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["video"]["fps"] == 10.0


def test_help_loads_no_heavy_module():
    """The recipe choices come from the registry without loading the pipeline or dlib."""
    code = ("import sys; from cli.avprep_cli import app; app(['build', '--help'], standalone_mode=False); "
            "print(sorted(m for m in ('dlib', 'cv2', 'torch', 'avprep.pipeline', 'avprep.faces') if m in sys.modules))")
    r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **ENV})
    assert r.returncode == 0, r.stderr
    assert "lrw" in r.stdout and r.stdout.strip().endswith("[]"), r.stdout[-300:]


# ---------------------------------------------------------------- bad values: one line, rc 2, before any work

BAD_VALUES = [
    (["--fps", "0"], "fps"), (["--fps", "nan"], "fps"), (["--fps", "inf"], "fps"), (["--hop", "0"], "hop_length"),
    (["--workers", "0"], "workers"), (["--workers", "-3"], "workers"),
    (["--jpeg-quality", "150"], "jpeg_quality"), (["--jpeg-quality", "-1"], "jpeg_quality"),
    (["--crop-size", "-5"], "crop size"), (["--crop", "lips", "--crop-size", "0"], "crop size"),
    (["--prefix", "../evil"], "shard_prefix"), (["--prefix", "a/b"], "shard_prefix"),
    (["--prefix", ".hidden"], "shard_prefix"), (["--videos-per-shard", "0"], "videos_per_shard"),
    (["--max-seconds", "-1"], "max_seconds"), (["--short-side", "15"], "short_side"),
    (["--lip-fraction", "0"], "lip_fraction"), (["--max-gap", "nan"], "max_gap_s"),
    (["--min-face-fraction", "1.5"], "min_face_fraction"), (["--detect-every", "0"], "detect_every"),
    (["--predict-every", "0"], "predict_every"),
    (["--seed", "3"], "does not take --seed"),
    (["--short-side", "100000"], "from 16 to 4096"), (["--crop-size", "100000"], "from 16 to 4096"),
    (["--ray", "bogus://"], "--ray 'bogus://'"), (["--ray", "1.2.3"], "ray://HOST:PORT"),
]


@pytest.mark.parametrize("extra,name", BAD_VALUES, ids=[" ".join(e) for e, _ in BAD_VALUES])
def test_bad_value_is_one_line_before_any_work(tmp_path, extra, name):
    # the corpus folder does not exist: had the recipe listed it, the error would be about it
    out = tmp_path / "out"
    code, text = run("build", "videos", tmp_path / "no-corpus", "--out", out, *extra)
    assert code == 2, text
    assert text.startswith("error: ") and text.count("\n") == 1 and name in text, text
    assert "no-corpus" not in text
    assert os.listdir(tmp_path) == []          # no output folder, nothing written beside it


def test_kav_per_source_zero_is_refused_before_listing(tmp_path):
    code, text = run("build", "k-av", "--kinetics", tmp_path / "k", "--avspeech", tmp_path / "a",
                     "--per-source", 0, "--out", tmp_path / "o")
    assert code == 2 and text.startswith("error: ") and "per_source must be >= 1" in text, text
    assert os.listdir(tmp_path) == []


def test_unreachable_ray_cluster_is_one_line(monkeypatch):
    ray = pytest.importorskip("ray")
    from avprep.pipeline import run_ray

    def refuse(**kwargs):
        raise ConnectionError("ray client connection timeout")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ConfigError, match=r"--ray ray://h:1: cannot reach a Ray cluster \(ray client connection"):
        run_ray([], "ray://h:1", print)


def test_corpus_folder_named_like_a_protocol_stays_a_folder(small_videos, tmp_path, monkeypatch):
    """ffmpeg reads `pipe:c/a.mp4` as its pipe protocol; the build reads the local file."""
    (tmp_path / "pipe:c").mkdir()
    video = next(p for p in sorted(small_videos.rglob("*.mp4")) if p.name != "broken.mp4")
    (tmp_path / "pipe:c" / "a.mp4").write_bytes(video.read_bytes())
    monkeypatch.chdir(tmp_path)
    code, text = run("build", "videos", "pipe:c", "--out", "o", "--workers", 1)
    assert code == 0 and "1 inputs: 1 ok" in text, text


def test_split_names_must_be_plain_names(tmp_path):
    """A per-split build writes OUT/<split>: a split read from the corpus cannot leave OUT."""
    part = tmp_path / "dfdc" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    (part / "metadata.json").write_text(json.dumps({"a.mp4": {"label": "REAL", "split": "../escape"}}))
    code, text = run("build", "dfdc", tmp_path / "dfdc", "--per-split", "--out", tmp_path / "o")
    assert code == 2 and "split name" in text and "'../escape'" in text, text
    assert sorted(os.listdir(tmp_path)) == ["dfdc"]


@pytest.mark.parametrize("exc", [ConfigError("bad\noption"), FileNotFoundError(2, "No such file", "x.csv"),
                                 OutputError("out is on a full disk: free space and rerun")])
def test_main_reports_user_errors_in_one_line(monkeypatch, tmp_path, exc):
    def fail(*args, **kwargs):
        raise exc
    monkeypatch.setattr("avprep.recipes.build_recipe", fail)
    code, text = run("build", "videos", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and text == "error: " + str(exc).replace("\n", " ") + "\n"


@pytest.mark.parametrize("prog,args,says", [
    ("avprep", ["build", "videos", "x", "--fps", "abc"], "Invalid value for '--fps'"),
    ("avprep", ["build", "nosuch", "x"], "'nosuch' is not one of"),
    ("avprep", ["--nope"], "No such option: --nope"),
    ("glcm", ["finetune", "--fold", "abc"], "Invalid value for '--fold'"),
    ("glcm", ["nosuch"], "No such command 'nosuch'"),
    ("glcm", ["report"], "Missing argument"),
])
def test_command_line_mistakes_are_one_line(prog, args, says):
    from cli import glcm_cli
    code, text = run(*args, entry=main if prog == "avprep" else glcm_cli.main, prog=prog)
    assert code == 2 and text.startswith("error: ") and says in text and text.count("\n") == 1, text
    assert "(see: " in text and "--help)" in text and "Usage" not in text and "Traceback" not in text


def test_bare_command_still_shows_help():
    code, text = run()
    assert "Usage" in text and "build" in text and code in (0, 2), text


def _lrw_without_videos(root):
    """An LRW tree whose clips are all missing (.txt only): a build lists them, records them
    as `missing` and finishes at once, without decoding."""
    for split in ("train", "val"):
        folder = root / "lipread_mp4" / "ABOUT" / split
        folder.mkdir(parents=True)
        (folder / "ABOUT_00001.txt").write_text("Duration: 0.5 seconds\n")


def test_crop_lips_is_build_lrw(tmp_path):
    _lrw_without_videos(tmp_path / "lrw")
    code, text = run("crop-lips", tmp_path / "lrw", "--out", tmp_path / "a", "--align", "affine", "--workers", 1)
    assert code == 0 and "== train" in text and "a/val/lrw-val-{000000..000000}.tar" in text, text
    code, text = run("build", "lrw", tmp_path / "lrw", "--out", tmp_path / "b", "--align", "affine", "--workers", 1)
    assert code == 0, text
    for split in ("train", "val"):
        a = json.loads((tmp_path / "a" / split / "manifest.json").read_text())
        assert a == json.loads((tmp_path / "b" / split / "manifest.json").read_text())
        cfg = a["config"]
        assert cfg["shard_prefix"] == f"lrw-{split}" and cfg["videos_per_shard"] == 1000
        assert (cfg["video"]["fps"], cfg["video"]["short_side"], cfg["clip"]) == \
               (25.0, 0, {"max_seconds": 2.0, "min_frames": 20})
        assert (cfg["crop"]["kind"], cfg["crop"]["size"], cfg["crop"]["align"]) == ("lips", 112, "affine")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["train", "val"]
    # per-split output is a recipe default, not CLI code: --one-set makes one shard set
    code, text = run("build", "lrw", tmp_path / "lrw", "--out", tmp_path / "c", "--one-set", "--workers", 1)
    assert code == 0 and (tmp_path / "c" / "lrw-000000.tar").exists(), text
