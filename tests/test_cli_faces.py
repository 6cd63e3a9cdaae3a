"""`avprep build lrs2` and `avprep build dfdc` end to end on tiny corpora made from real GRID clips;
the face options from the command line to the crop stage (no media needed)."""
from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avprep.config import CropConfig
from avprep.faces import align
from avprep.faces.stage import FaceOptions, crops_from_track, options_for
from avprep.faces.track import DETECTED, Track
from avprep.format import TRANSFORM
from avprep.shards import decode_jpegs, load_npy
from avprep.tools import expand_shards, iter_raw
from cli.avprep_cli import app

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason="shared media folder ../shared/media is absent")
runner = CliRunner()


def build(*args) -> str:
    res = runner.invoke(app, ["build", *[str(a) for a in args], "--workers", "1"])
    assert res.exit_code == 0, res.output
    return res.output


def samples(out: Path) -> list[tuple[dict, dict]]:
    return [(json.loads(s["json"]), s) for s in iter_raw(expand_shards(str(out)))]


@needs_media
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


@needs_media
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


@needs_media
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


# ---------------------------------------------------------------- face options: config -> stage

CHANGED = {"align": "affine", "lip_fraction": 0.4, "max_gap_s": 0.5, "min_face_fraction": 0.7,
           "landmark_window_s": 0.1, "transform_window_s": 0.3}


def test_every_face_option_is_configurable_and_reaches_the_stage():
    configurable = {f.name for f in fields(CropConfig)}
    assert {f.name for f in fields(FaceOptions)} - {"track"} <= configurable     # none unreachable
    assert all(getattr(FaceOptions(), k) != v for k, v in CHANGED.items())      # all differ from the defaults
    opts = options_for(CropConfig(kind="lips", detect_every=3, predict_every=1, **CHANGED))
    assert {k: getattr(opts, k) for k in CHANGED} == CHANGED and opts.track.detect_every == 3
    assert opts.track.predict_every == 1
    lenient = FaceOptions(max_gap_s=9.0)
    assert options_for(CropConfig(kind="lips"), lenient) is lenient              # an explicit FaceOptions is used as is


def _sheared_face():
    """68 points whose nose tip sits off the template's axis: similarity != affine alignment."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(60, 200, size=(68, 2))
    pts[align.STABLE] = align.TEMPLATE + np.array([[0, 0], [0, 0], [18.0, 0]])
    pts[48:68] = np.column_stack([np.linspace(98, 158, 20), 215 + 5 * np.sin(np.linspace(0, 6, 20))])
    return pts


def _template_residual(transform: np.ndarray, pts: np.ndarray) -> float:
    """How far the stable points land from a scaled, moved copy of the template (px)."""
    mapped = align.apply(transform, pts[align.STABLE])
    fit = align.similarity(align.TEMPLATE, mapped)
    return float(np.abs(align.apply(fit, align.TEMPLATE) - mapped).max())


def test_align_affine_from_the_command_line_reaches_the_stage(tmp_path):
    root = tmp_path / "lrs2"
    (root / "mvlrs_v1" / "main").mkdir(parents=True)
    (root / "test.txt").write_text("6330311066473698535/00011\n")    # listed, file missing: no decoding
    res = runner.invoke(app, ["build", "lrs2", str(root), "--out", str(tmp_path / "out"), "--workers", "1",
                              "--short-side", "128", "--detect-every", "3", "--predict-every", "2", "--align", "affine",
                              "--lip-fraction", "0.4", "--max-gap", "0.5", "--min-face-fraction", "0.7",
                              "--landmark-window", "0.1", "--transform-window", "0.3"])
    assert res.exit_code == 0, res.output
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())["config"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]
    assert plan == manifest and manifest["video"]["short_side"] == 128      # explicit value, not the recipe's 0
    assert {k: manifest["crop"][k] for k in CHANGED} == CHANGED and manifest["crop"]["detect_every"] == 3
    assert manifest["crop"]["predict_every"] == 2
    # the recorded config drives the stage: exact 3-point alignment instead of least squares
    pts = np.stack([_sheared_face()] * 8)
    track = Track(pts, np.full(8, DETECTED, np.int8), 8)
    frames = np.zeros((8, 300, 300, 3), np.uint8)
    outs = {}
    for method in ("affine", "similarity"):
        cfg = CropConfig(**{**manifest["crop"], "align": method})
        outs[method] = crops_from_track(frames, track, 25.0, cfg, options_for(cfg))
    assert outs["affine"].meta["align"] == "affine" and outs["affine"].meta["lip_fraction"] == 0.4
    assert _template_residual(outs["affine"].arrays[TRANSFORM][0], pts[0]) < 1e-3
    assert _template_residual(outs["similarity"].arrays[TRANSFORM][0], pts[0]) > 1.0
