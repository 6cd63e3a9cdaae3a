"""The avcorr corpus through the real avprep build, read back by the glcm loader/eval:
boxes land on the sounding object and its flashes line up with the tone in the mel. And
the layering that lets both packages meet only there: avprep never imports glcm; glcm
imports only avprep.format and avprep.fsio; no script imports a test module."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from avprep import pipeline
from avprep.testing import avcorr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from avprep.config import BuildConfig, VideoConfig
    from avprep.recipes import prepare_videos
    root = tmp_path_factory.mktemp("avcorr")
    corpus = root / "videos"
    avcorr.write_corpus(str(corpus), 3, seed=7, min_seconds=4.0, max_seconds=4.5)
    cfg = BuildConfig(video=VideoConfig(short_side=96))          # 64 px videos stored at 96 px
    result = pipeline.build_dataset(prepare_videos(str(corpus)), str(root / "shards"), cfg, workers=2,
                                    root=str(corpus), recipe="videos", progress=False)
    return result, avcorr.load_annotations(str(corpus))


def test_boxes_and_envelope_survive_the_build(built):
    from glcm.evaluate import load_eval_clips
    result, records = built
    clips = load_eval_clips(result.shards, records, frames=32, crop=96, shift=4)
    assert len(clips) == 3
    by_key = {}
    for clip in clips:
        x0, y0, x1, y1 = clip.box
        assert x1 - x0 == pytest.approx(18 * 1.5, abs=1) and y1 - y0 == pytest.approx(18 * 1.5, abs=1)
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        centre = clip.frames[16, cy - 3:cy + 4, cx - 3:cx + 4].reshape(-1, 3).mean(0)
        by_key[clip.key] = (clip, centre)
    for name, rec in records.items():
        match = [c for c, centre in by_key.values()
                 if np.allclose(centre / max(centre.max(), 1), np.array(avcorr.PALETTE[rec["colour"]]) / 255 /
                                max(avcorr.PALETTE[rec["colour"]]) * 255, atol=0.15)]
        assert match, f"no decoded clip shows a {rec['colour']} object inside its box ({name})"


def test_mel_tone_follows_the_flashes(built):
    from glcm.evaluate import load_eval_clips
    result, records = built
    clips = load_eval_clips(result.shards, records, frames=32, crop=96, shift=4)
    for clip in clips:
        x0, y0, x1, y1 = clip.box.astype(int)
        brightness = clip.frames[:, y0 + 4:y1 - 4, x0 + 4:x1 - 4].reshape(32, -1).mean(1)
        lit = brightness > brightness.min() + 0.5 * (brightness.max() - brightness.min())
        energy = clip.mel.reshape(80, 32, 10).max(axis=0).mean(axis=1)     # loudest band per frame
        loud = energy > energy.min() + 0.5 * (energy.max() - energy.min())
        # frame-exact alignment except at burst edges (the 5 ms ramps / mel window overlap)
        assert (lit == loud).mean() >= 0.9


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports (absolute imports, at any depth in the file);
    `from a import b` counts as a.b."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_layering_avprep_never_imports_glcm_and_glcm_only_the_format_and_fsio():
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "avprep").rglob("*.py")):
        bad = [m for m in imported_modules(path) if m == "glcm" or m.startswith("glcm.")]
        assert not bad, f"{path.relative_to(root)} imports {bad} (the demo's orchestration lives in cli/)"
    allowed = {"avprep.format", "avprep.fsio"}
    for path in sorted((root / "glcm").rglob("*.py")):
        bad = [m for m in imported_modules(path) if m.split(".")[0] in ("avprep", "cli")
               and not any(m == a or m.startswith(a + ".") for a in allowed)]
        assert not bad, f"{path.relative_to(root)} imports {bad}; glcm may import only {sorted(allowed)}"
    for path in sorted((root / "bench").glob("*.py")) + sorted((root / "cli").glob("*.py")):
        bad = [m for m in imported_modules(path) if m.startswith("test_") or m.startswith("tests")]
        assert not bad and "parents[1] / \"tests\"" not in path.read_text(), f"{path} imports a test module"
