"""The `avprep` command line: help, build + inspect + verify + preview, clear errors."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from typer.testing import CliRunner

from cli.avprep_cli import app

from conftest import PY, ROOT, read_outcomes

runner = CliRunner()


def run(*args):
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240", "NO_COLOR": "1"})
    try:
        err = res.stderr
    except (ValueError, AttributeError):
        err = ""
    return res.exit_code, res.output + (err if err not in res.output else ""), res


def test_help_via_entry_point():
    exe = os.path.join(os.path.dirname(PY), "avprep")
    cmd = [exe] if os.path.exists(exe) else [PY, "-m", "cli.avprep_cli"]
    r = subprocess.run(cmd + ["--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0
    for word in ("build", "inspect", "verify", "preview", "crop-lips"):
        assert word in r.stdout
    code, out, _ = run("build", "--help")
    assert code == 0
    for opt in ("--out", "--videos-per-shard", "--fps", "--hop", "--kinetics", "--avspeech", "--ray", "--workers"):
        assert opt in out, opt


@pytest.fixture(scope="module")
def cli_build(small_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "shards"
    code, text, res = run("build", "videos", small_videos, "--out", out, "--videos-per-shard", 3,
                          "--workers", 1)
    assert code == 0, (text, res.exception)
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
    code, text, _ = run("inspect", out)
    assert code == 0
    assert "2 shards, 5 samples" in text
    assert "sources: videos=5" in text
    assert "inputs: failed=1, ok=5" in text
    assert "failure reasons: corrupt=1" in text


def test_verify_ok_and_bad(cli_build, tmp_path):
    out, _ = cli_build
    code, text, _ = run("verify", out)
    assert code == 0 and "5 samples checked, 0 bad" in text
    # a damaged copy: truncate one shard
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (out / "videos-000000.tar").read_bytes()
    (bad / "videos-000000.tar").write_bytes(data[: len(data) // 2])
    code, text, _ = run("verify", bad)
    assert code == 1 and "BAD" in text


def test_preview(cli_build, tmp_path):
    out, _ = cli_build
    png = tmp_path / "p.png"
    code, text, res = run("preview", out, "--out", png, "--samples", 2)
    assert code == 0, (text, res.exception)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 samples" in text


def test_fps_hop_mismatch_is_a_clear_error(small_videos, tmp_path):
    code, text, _ = run("build", "videos", small_videos, "--out", tmp_path / "o", "--fps", 29.97,
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
    code, text, _ = run("build", "k-av", "--kinetics", small_videos, "--out", tmp_path / "o")
    assert code == 2
    assert "--avspeech" in text


def test_missing_root_and_empty_folder(tmp_path):
    code, text, _ = run("build", "videos", "--out", tmp_path / "o")
    assert code == 2 and "corpus folder" in text
    (tmp_path / "empty").mkdir()
    code, text, _ = run("build", "videos", tmp_path / "empty", "--out", tmp_path / "o")
    assert code == 2 and "no inputs" in text


def test_rerun_with_other_options_is_a_clear_error(cli_build, small_videos):
    out, _ = cli_build
    code, text, _ = run("build", "videos", small_videos, "--out", out, "--videos-per-shard", 3,
                        "--workers", 1, "--fps", 25)
    assert code == 2 and "other inputs or options" in text
    code, text, _ = run("build", "videos", small_videos, "--out", out, "--videos-per-shard", 3, "--workers", 1)
    assert code == 0 and "2/2 shards" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["video"]["fps"] == 10.0
