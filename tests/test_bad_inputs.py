"""Awkward and broken inputs in one build: every one ends with the right recorded outcome."""
from __future__ import annotations

import json
import os
import re

import pytest

from avprep.config import BuildConfig
from avprep.items import SourceItem
from avprep.pipeline import build_dataset
from avprep.testing import badinputs
from avprep.tools import verify_shards

from conftest import read_outcomes

REASONS = {"missing", "empty", "corrupt", "unreadable", "no_video", "no_audio", "no_frames", "too_short",
           "decode_error", "error"}


@pytest.fixture(scope="module")
def bad_build(bad_corpus, tmp_path_factory):
    folder, expected = bad_corpus
    items = [SourceItem(path=str(folder / name), source="bad", item_id=name) for name in sorted(expected)]
    items.append(SourceItem(path=str(folder / "not_there.mp4"), source="bad", item_id="not_there.mp4",
                            missing=True))
    out = tmp_path_factory.mktemp("badout") / "out"
    cwd = os.getcwd()
    build_dataset(items, str(out), BuildConfig(videos_per_shard=len(items)), workers=1, root=str(folder),
                  recipe="bad", progress=False)
    assert os.getcwd() == cwd
    return folder, expected, out, {o["item_id"]: o for o in read_outcomes(out)}


def test_corpus_has_enough_kinds(bad_corpus):
    _, expected = bad_corpus
    failing = {r for r in expected.values() if r not in (None, "CORRUPT_MIDDLE")}
    assert len(expected) >= 12 and failing <= REASONS
    assert {"empty", "corrupt", "unreadable", "no_video", "no_audio", "too_short"} <= failing


def test_every_input_gets_its_outcome(bad_build):
    folder, expected, out, outcomes = bad_build
    assert len(outcomes) == len(expected) + 1
    got = {}
    for name, want in expected.items():
        o = outcomes[name]
        if want == "CORRUPT_MIDDLE":
            continue
        got[name] = (o["status"], o["reason"])
        assert o["status"] in ("ok", "failed")
        if want is not None:
            assert o["message"] and o["message"].strip(), name
            assert o["samples"] == 0
    want = {n: ("ok", None) if r is None else ("failed", r) for n, r in expected.items() if r != "CORRUPT_MIDDLE"}
    assert got == want
    assert outcomes["not_there.mp4"]["status"] == "missing" and outcomes["not_there.mp4"]["reason"] == "missing"


def test_corrupt_middle_is_ok_with_concealed_frames(bad_build):
    # garbage over the middle third of an h264 stream in Matroska: ffmpeg's decoder
    # conceals the damage and every frame keeps its timestamp, so the input is usable;
    # the outcome is ok with all 40 frames (not a crash, not a silent frame-number jump).
    _, _, out, outcomes = bad_build
    o = outcomes["corrupt_middle.mkv"]
    assert (o["status"], o["reason"], o["samples"]) == ("ok", None, 1)
    assert o["seconds"] == pytest.approx(4.0)


def test_ok_inputs_have_expected_frames_and_geometry(bad_build):
    folder, expected, out, outcomes = bad_build
    import webdataset as wds
    metas = {json.loads(s["json"])["item_id"]: json.loads(s["json"])
             for s in wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False,
                                     empty_check=False)}
    ok_names = {n for n, r in expected.items() if r is None}
    assert ok_names | {"corrupt_middle.mkv"} == set(metas)
    for name in ok_names:
        frames, w, h = badinputs.EXPECT[name]
        m = metas[name]
        assert (m["width"], m["height"]) == (w, h), name
        if name == "mpeg4.avi":     # the AVI/mpeg4 pair may repeat the last frame once
            assert m["num_frames"] in (frames, frames + 1)
        else:
            assert m["num_frames"] == frames, name
        assert m["first_frame"] == 0
        assert m["source_path"] == name
    assert metas["rotated_90.mp4"]["source_video"]["rotation"] in (90, 270)
    assert metas["sar_2_1.mp4"]["source_video"]["sar"] == "2"


def test_strange_names_never_execute(bad_build, tmp_path):
    folder, _, out, outcomes = bad_build
    for name in badinputs.STRANGE_NAMES:
        assert outcomes[name]["status"] == "ok", (name, outcomes[name])
    assert not (folder / "pwned").exists() and not (out / "pwned").exists()
    assert folder.is_dir() and any(folder.iterdir())      # `rm -rf` did not run


def test_relative_leading_dash_path(bad_corpus, tmp_path, monkeypatch):
    """`-x.mp4` as a relative path: ffmpeg must not read it as an option."""
    from avprep.clips import iter_clips
    folder, _ = bad_corpus
    monkeypatch.chdir(folder)
    clips = list(iter_clips(SourceItem(path="-x.mp4", source="bad", item_id="dash"), BuildConfig()))
    assert len(clips) == 1 and clips[0].num_frames == 40


def test_too_short_message_reports_usable_frames(bad_build):
    """The message of a too_short outcome must give the number of frames that counted
    (those with audio), which is below min_frames, not the number decoded."""
    _, _, _, outcomes = bad_build
    for name in ("too_short.mp4", "audio_1s_video_6s.mp4"):
        msg = outcomes[name]["message"]
        n = int(re.search(r"(\d+) frames", msg).group(1))
        assert n < 32, f"{name}: {msg!r}"


def test_verify_passes_on_bad_input_build(bad_build):
    _, _, out, _ = bad_build
    res = verify_shards(str(out))
    assert res.ok, res.bad
    assert res.checked == sum(1 for o in bad_build[3].values() if o["status"] == "ok")
