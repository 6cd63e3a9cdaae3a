"""The build: reproducible shards whatever the worker count, plain-webdataset readable, failures as data."""
from __future__ import annotations

import csv
import io
import json
import re
import tarfile

import numpy as np
import pytest
import webdataset as wds

from avprep.config import BuildConfig, ClipConfig, ConfigError, VideoConfig
from avprep.pipeline import build_dataset
from avprep.recipes import prepare_videos

from conftest import folder_digest, read_outcomes

CFG = BuildConfig(videos_per_shard=2, shard_prefix="vid")


@pytest.fixture(scope="module")
def two_builds(small_videos, tmp_path_factory):
    items = prepare_videos(str(small_videos))
    outs = []
    for workers in (1, 2):
        out = tmp_path_factory.mktemp(f"w{workers}") / "out"
        build_dataset(items, str(out), CFG, workers=workers, root=str(small_videos), recipe="videos",
                      progress=False)
        outs.append(out)
    return items, outs


def test_worker_count_does_not_change_bytes(two_builds):
    items, (one, two) = two_builds
    d1, d2 = folder_digest(one), folder_digest(two)
    assert len(items) == 6
    assert sorted(n for n in d1 if n.endswith(".tar")) == [f"vid-{i:06d}.tar" for i in range(3)]
    assert {"manifest.json", "outcomes.jsonl", "failures.csv", "summary.json", "plan.json"} <= set(d1)
    assert d1 == d2
    assert read_outcomes(one) == read_outcomes(two)


def test_shards_read_with_plain_webdataset(two_builds):
    items, (out, _) = two_builds
    shards = sorted(str(p) for p in out.glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False))
    # 4 clips of 4 s (1 sample each) + one 12 s clip (10 s + a 2 s rest that is dropped)
    assert len(samples) == 5
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == len(keys)
    for s in samples:
        assert set(s) - {"__key__", "__url__", "__local_path__"} == {"frames.mjpeg", "mel.npy", "json"}
        assert re.fullmatch(r"videos_[A-Za-z0-9_-]+_[0-9a-f]{8}_s\d\d", s["__key__"])
        meta = json.loads(s["json"])
        assert meta["format_version"] == 1 and meta["key"] == s["__key__"]
        mel = np.load(io.BytesIO(s["mel.npy"]), allow_pickle=False)
        assert mel.dtype == np.float16 and mel.shape == (80, meta["num_frames"] * 10)
        offs = meta["frame_offsets"]
        assert len(offs) == meta["num_frames"] + 1 and offs[-1] == len(s["frames.mjpeg"])
        data = s["frames.mjpeg"]
        for i in range(meta["num_frames"]):
            jpg = data[offs[i]:offs[i + 1]]
            assert jpg[:2] == b"\xff\xd8" and jpg[-2:] == b"\xff\xd9"
        assert (meta["width"], meta["height"]) == (192, 128)
        assert meta["labels"]["label"] in ("cats", "dogs", "long")
    by_item = {json.loads(s["json"])["item_id"]: json.loads(s["json"]) for s in samples}
    assert by_item["long/long_12s"]["num_frames"] == 100


def test_no_pickled_members_and_reproducible_tar_headers(two_builds):
    _, (out, _) = two_builds
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                assert m.name.rsplit(".", 1)[0].count(".") <= 1
                assert m.name.split(".", 1)[1] in ("frames.mjpeg", "mel.npy", "json"), m.name
                assert not m.name.endswith((".pyd", ".pickle", ".pkl", ".pth"))
                assert m.mtime == 0 and m.uid == 0 and m.gid == 0
                if m.name.endswith(".npy"):
                    np.load(io.BytesIO(tar.extractfile(m).read()), allow_pickle=False)


def test_a_build_passes_the_formats_full_check(two_builds):
    """What the build writes passes avprep.format's validator, and verify's counts agree with
    the manifest and stats files the build wrote (no check left undone)."""
    from avprep.format import verify_sample
    from avprep.tools import verify_shards
    _, (out, _) = two_builds
    res = verify_shards(str(out))
    assert (res.ok, res.shards, res.checked, res.notes) == (True, 3, 5, [])
    for s in wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False, empty_check=False):
        meta = verify_sample(s).meta
        assert meta.has_audio and meta.channels == 3 and meta.source_video.audio_sample_rate > 0


def test_failures_table_and_summary(two_builds):
    items, (out, _) = two_builds
    outcomes = read_outcomes(out)
    assert [o["item_id"] for o in outcomes] == [i.item_id for i in items]
    bad = [o for o in outcomes if o["status"] != "ok"]
    assert [(o["item_id"], o["status"], o["reason"]) for o in bad] == [("cats/broken", "failed", "corrupt")]
    assert bad[0]["message"]
    with open(out / "failures.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert rows[0]["path"] == "cats/broken.mp4" and rows[0]["reason"] == "corrupt" and rows[0]["message"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 6 and summary["ok"] == 5 and summary["failed"] == 1
    assert summary["samples"] == 5 and summary["reasons"] == {"corrupt": 1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["samples"] == 5
    assert [s["name"] for s in manifest["shards"]] == [f"vid-{i:06d}.tar" for i in range(3)]
    ok = [o for o in outcomes if o["status"] == "ok"]
    assert sorted(o["samples"] for o in ok) == [1, 1, 1, 1, 1]
    assert sum(o["seconds"] for o in ok) == pytest.approx(4 * 4.0 + 10.0)


def test_rerun_with_other_options_is_refused(two_builds, small_videos):
    items, (out, _) = two_builds
    before = folder_digest(out)
    other = BuildConfig(video=VideoConfig(fps=25.0), clip=ClipConfig(), videos_per_shard=2, shard_prefix="vid")
    with pytest.raises(ConfigError, match="other inputs or options"):
        build_dataset(items, str(out), other, workers=1, root=str(small_videos), recipe="videos", progress=False)
    with pytest.raises(ConfigError):
        build_dataset(items[:-1], str(out), CFG, workers=1, root=str(small_videos), recipe="videos",
                      progress=False)
    # the same build again is a no-op resume
    build_dataset(items, str(out), CFG, workers=1, root=str(small_videos), recipe="videos", progress=False)
    assert folder_digest(out) == before


def test_duplicate_keys_are_refused(small_videos, tmp_path):
    items = prepare_videos(str(small_videos))
    with pytest.raises(ConfigError, match="same sample key"):
        build_dataset(items + items[:1], str(tmp_path / "o"), CFG, workers=1, progress=False)


def test_hung_decode_is_stopped_and_recorded(tmp_path):
    """A decode past its time limit is killed and recorded as `timeout`; the next input still lands."""
    import dataclasses
    from avprep.config import BuildConfig
    from avprep.items import SourceItem
    from avprep.pipeline import process_item
    from avprep.testing.synthetic import flash_clip, write_video
    clip = flash_clip(seconds=12.0, fps=25.0, height=240, width=320)     # ~0.2 s to decode, limit 0.05 s
    path = write_video(str(tmp_path / "long.mp4"), clip.frames, 25.0, clip.audio, codec="h264", audio_codec="aac")
    strict = dataclasses.replace(BuildConfig(), timeout_base_s=0.05, timeout_per_s=0.0)
    outcome, samples = process_item(SourceItem(path, "t", "long"), strict)
    assert (outcome["status"], outcome["reason"], samples) == ("failed", "timeout", [])
    assert "time limit" in outcome["message"]
    outcome, samples = process_item(SourceItem(path, "t", "long"), BuildConfig())
    assert outcome["status"] == "ok" and len(samples) == 1
