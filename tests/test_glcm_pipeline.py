"""The avcorr corpus through the real avprep build, read back by the glcm loader/eval:
boxes land on the sounding object and its flashes line up with the tone in the mel."""
from __future__ import annotations

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
