"""Kill a CLI build with SIGKILL after some shards are finished; the rerun ends byte-identical."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import PY, ROOT, folder_digest, write_small_videos


def _cmd(src, out):
    return [PY, "-m", "cli.avprep_cli", "build", "videos", str(src), "--out", str(out),
            "--videos-per-shard", "1", "--workers", "1"]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def resume_corpus(tmp_path_factory):
    src = tmp_path_factory.mktemp("resume") / "videos"
    write_small_videos(src, n=10, seconds=6.0, seed=40)
    return src


def _killed_build(src, out) -> int:
    """Run the build and SIGKILL it once 1..n-1 shards are finished; returns finished count
    at the kill (0 if the build ended before it could be killed)."""
    proc = subprocess.Popen(_cmd(src, out), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            done = list(out.glob("*.stats.json")) if out.exists() else []
            if 1 <= len(done) < 10:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return len(done)
            time.sleep(0.01)
        return 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_and_resume_is_byte_identical(resume_corpus, tmp_path):
    src = resume_corpus
    full = tmp_path / "full"
    r = subprocess.run(_cmd(src, full), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    reference = folder_digest(full)
    assert len([n for n in reference if n.endswith(".tar")]) == 10

    for attempt in range(3):
        out = tmp_path / f"killed{attempt}"
        finished = _killed_build(src, out)
        if finished:
            break
    else:
        pytest.fail("could not kill the build between its first and last shard")
    assert not (out / "manifest.json").exists()
    assert 1 <= len(list(out.glob("*.stats.json"))) < 10
    # a stray partial shard of a killed run (the tool's temp name) goes; a user's file stays
    (out / ".videos-000009.tar.999999.0badf00d.tmp").write_bytes(b"stray partial shard")
    (out / ".x.tar.tmp").write_bytes(b"a user's file")
    r = subprocess.run(_cmd(src, out), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == [".x.tar.tmp"]
    resumed = folder_digest(out)
    assert resumed == reference
    for name in ("manifest.json", "outcomes.jsonl", "failures.csv", "summary.json"):
        assert name in resumed
