"""Start-up: what the commands import, and the standard-library tar writer (bench/bench_startup.py times them)."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

HEAVY = ("torch", "librosa", "numba", "scipy", "webdataset")


def _imported(code: str) -> list[str]:
    """Modules of HEAVY + numpy/cv2 that `code` leaves imported, in a fresh interpreter."""
    probe = (f"{code}\nimport sys\n"
             f"print('imported:', *(m for m in {HEAVY + ('numpy', 'cv2')!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1].split()[1:]


def test_a_build_imports_nothing_heavy():
    # everything a build (and each of its workers) runs: recipes, pipeline, decode, mel, shards
    got = _imported("import cli.avprep_cli, avprep.recipes, avprep.pipeline, avprep.clips, avprep.audio, "
                    "avprep.shards, avprep.decode")
    assert not set(got) & set(HEAVY), got


def test_help_imports_no_numpy():
    code = ("import sys\nsys.argv = ['avprep', '--help']\nimport cli.avprep_cli as c\n"
            "try:\n    c.app()\nexcept SystemExit:\n    pass")
    assert _imported(code) == []


def test_tar_writer_writes_webdatasets_bytes():
    import webdataset as wds
    from avprep.shards import _TarWriter
    samples = [{"__key__": "clip_a_s00", "json": b'{"x": 1}', "frames.mjpeg": bytes(range(256)) * 40,
                "mel.npy": b"\x93NUMPY", "__url__": "ignored", "_private": b"skipped"},
               {"__key__": "d\u00e9j\u00e0_vu_s01", "json": b"{}", "empty.npy": b"", "frames.mjpeg": bytearray(b"ab")}]
    ours, theirs = io.BytesIO(), io.BytesIO()
    writer = _TarWriter(ours)
    reference = wds.TarWriter(theirs, user="avprep", group="avprep", mtime=0, encoder=False)
    for sample in samples:
        writer.write(sample)
        reference.write(sample)
    writer.close()
    reference.close()
    assert ours.getvalue() == theirs.getvalue()
    with pytest.raises(ValueError):
        _TarWriter(io.BytesIO()).write({"__key__": "k", "json": "a str, not bytes"})
