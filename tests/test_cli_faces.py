"""`avprep build lrs2` and `avprep build dfdc` end to end on tiny corpora made from real GRID clips."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avprep.shards import decode_jpegs, load_npy
from avprep.tools import expand_shards, iter_raw
from cli.avprep_cli import app

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="shared media folder ../shared/media is absent")
runner = CliRunner()


def build(*args) -> str:
    res = runner.invoke(app, ["build", *[str(a) for a in args], "--workers", "1"])
    assert res.exit_code == 0, res.output
    return res.output


def samples(out: Path) -> list[tuple[dict, dict]]:
    return [(json.loads(s["json"]), s) for s in iter_raw(expand_shards(str(out)))]


def test_lrs2_builds_lip_crops_at_25_fps(tmp_path):
    root = tmp_path / "lrs2"
    for vid, clip, name in (("5535415699068794046", "00001", "swwp2s"), ("6330311066473698535", "00011", "bbaf2n")):
        folder = root / "mvlrs_v1" / "main" / vid
        folder.mkdir(parents=True)
        shutil.copy(MEDIA / "grid" / f"{name}.mpg", folder / f"{clip}.mp4")
        (folder / f"{clip}.txt").write_text("Text:  PLACE WHITE\nConf:  5\n")
    (root / "train.txt").write_text("5535415699068794046/00001\n")
    (root / "test.txt").write_text("6330311066473698535/00011 NF\n6330311066473698535/00099 MV\n")
    out = tmp_path / "out"
    text = build("lrs2", root, "--out", out)
    assert "3 inputs: 2 ok, 0 failed, 1 missing" in text
    got = samples(out)
    assert len(got) == 2
    for meta, sample in got:
        assert meta["fps"] == 25.0 and meta["mel_per_frame"] == 4 and meta["crop"]["kind"] == "lips"
        assert (meta["width"], meta["height"]) == (112, 112)
        assert meta["extra"]["text"] == "PLACE WHITE" and meta["extra"]["set"] == "main"
        frames = decode_jpegs(sample["frames.mjpeg"], meta["frame_offsets"])
        lm = load_npy(sample["landmarks.npy"])
        assert frames.shape[0] == lm.shape[0] == meta["num_frames"] >= 70     # 3 s at 25 fps
        assert load_npy(sample["mel.npy"]).shape == (80, 4 * meta["num_frames"])
        # landmarks are in original 360x288 pixels, on the face
        assert 100 < np.median(lm[:, 48:68, 0]) < 260 and 100 < np.median(lm[:, 48:68, 1]) < 288
    assert {m["split"] for m, _ in got} == {"train", "test"}


def test_dfdc_builds_face_crops_with_labels(tmp_path):
    part = tmp_path / "dfdc" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    shutil.copy(MEDIA / "grid" / "lbax4n.mpg", part / "aaa.mp4")
    shutil.copy(MEDIA / "grid" / "lbbc2a.mpg", part / "bbb.mp4")
    shutil.copy(MEDIA / "misc" / "MOT20-05-raw_even_shorter.mp4", part / "ccc.mp4")
    (part / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "REAL", "split": "train"},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "ccc.mp4": {"label": "REAL", "split": "train"}}))
    out = tmp_path / "out"
    text = build("dfdc", tmp_path / "dfdc", "--out", out, "--fps", 25, "--min-frames", 20)
    assert "3 inputs: 2 ok, 1 failed" in text and "no_audio: 1" in text
    got = {m["item_id"].split("/")[-1]: m for m, _ in samples(out)}
    assert got["aaa.mp4"]["labels"]["label"] == "REAL" and got["bbb.mp4"]["labels"]["label"] == "FAKE"
    for meta in got.values():
        assert meta["crop"]["kind"] == "face" and (meta["width"], meta["height"]) == (128, 128)


def test_preview_crops_draws_frames_beside_crops(tmp_path):
    import cv2
    out = tmp_path / "crops.png"
    res = runner.invoke(app, ["preview-crops", str(MEDIA / "grid" / "swwp2s.mpg"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    sheet = cv2.imread(str(out))
    # 6 rows of (240 px frame at 360x288 -> 300 wide) + 8 px gap + 240 px crop
    assert sheet.shape[1] == 300 + 8 + 240 and sheet.shape[0] == 6 * (240 + 8)
    frame_part = sheet[:240, :300].astype(int)
    assert ((frame_part[..., 1] > 200) & (frame_part[..., 0] < 80) & (frame_part[..., 2] < 80)).sum() > 50  # green landmarks
    res = runner.invoke(app, ["preview-crops", str(MEDIA / "misc" / "MOT20-05-raw_even_shorter.mp4"),
                              "--out", str(tmp_path / "none.png")])
    assert res.exit_code == 2 and "no_face" in res.output
