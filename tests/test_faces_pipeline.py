"""End to end: a tiny LRW-layout corpus cut from real GRID clips -> lip-crop shards."""
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from avprep.config import BuildConfig, ClipConfig, CropConfig, VideoConfig
from avprep.pipeline import build_dataset
from avprep.probe import ffmpeg_exe
from avprep.recipes.lrw import prepare_lrw
from avprep.shards import decode_jpegs

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="shared media folder ../shared/media is absent")

# (word, split, source clip, start second): 1.16 s cuts like LRW's 29-frame clips
CLIPS = [("AGAIN", "train", "swwp2s", 0.8), ("AGAIN", "val", "lbbc2a", 1.0), ("BLUE", "test", "bbaf2n", 0.6)]


def _lrw_corpus(root: Path) -> None:
    for num, (word, split, source, start) in enumerate(CLIPS, 1):
        folder = root / "lipread_mp4" / word / split
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{word}_{num:05d}"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-ss", str(start),
                        "-i", str(MEDIA / "grid" / f"{source}.mpg"), "-t", "1.16", "-c:v", "libx264",
                        "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        str(folder / f"{stem}.mp4")], check=True)
        (folder / f"{stem}.txt").write_text(f"Text: {word}\nConf: 2\n\nDuration: 0.4{num} seconds\n")
    (root / "lipread_mp4" / "BLUE" / "train").mkdir()
    (root / "lipread_mp4" / "BLUE" / "train" / "BLUE_00009.txt").write_text("Duration: 0.30 seconds\n")


def _samples(tar_path: str) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            out.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return out


def test_lrw_corpus_to_lip_crop_shards(tmp_path):
    _lrw_corpus(tmp_path / "lrw")
    items = prepare_lrw(str(tmp_path / "lrw"))
    assert [i.missing for i in items] == [False, False, True, False]
    cfg = BuildConfig(video=VideoConfig(fps=25.0, short_side=288), clip=ClipConfig(min_frames=20),
                      crop=CropConfig(kind="lips", size=88, grey=True), videos_per_shard=8)
    result = build_dataset(items, str(tmp_path / "out"), cfg, workers=1, root=str(tmp_path / "lrw"),
                           recipe="lrw", progress=False)
    assert (result.summary["ok"], result.summary["missing"], result.summary["failed"]) == (3, 1, 0)
    samples = _samples(result.shards[0])
    assert len(samples) == 3
    words = []
    for sample in samples.values():
        meta = json.loads(sample["json"])
        t = meta["num_frames"]
        assert 20 <= t <= 29                         # trailing frames without audio are cut
        frames = decode_jpegs(sample["frames.mjpeg"], meta["frame_offsets"])
        assert frames.shape == (t, 88, 88, 3)
        crop = meta["crop"]
        assert crop["kind"] == "lips" and crop["size"] == 88
        assert crop["detected"] >= 1 and crop["detected"] + crop["tracked"] + crop["interpolated"] == t
        landmarks = np.load(io.BytesIO(sample["landmarks.npy"]), allow_pickle=False)
        transform = np.load(io.BytesIO(sample["transform.npy"]), allow_pickle=False)
        assert landmarks.shape == (t, 68, 2) and transform.shape == (t, 2, 3)
        mouth = landmarks[:, 48:68].mean(axis=1)
        in_crop = np.einsum("tij,tj->ti", transform[:, :, :2], mouth) + transform[:, :, 2]
        assert np.abs(in_crop - 43.5).max() < 6                      # lips at the crop centre
        assert 0 < mouth[:, 0].min() and mouth[:, 0].max() < 360      # original-frame pixels
        words.append((meta["labels"]["label"], meta["labels"]["label_index"], meta["extra"]["word_duration"]))
    assert sorted(words) == [("AGAIN", 0, 0.41), ("AGAIN", 0, 0.42), ("BLUE", 1, 0.43)]
