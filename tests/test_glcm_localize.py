"""`glcm localize`: window maps, the overlay video (probed: H.264 + the original audio), the
contact sheet, recorded reasons for bad inputs, one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import cli, one_line_error
from glcm.localize import nearest_window, upsample_to, window_starts


def test_windows_cover_the_clip_and_frames_take_the_nearest():
    assert window_starts(40, 32, 4).tolist() == [0, 4, 8]
    assert window_starts(42, 32, 4).tolist() == [0, 4, 8, 10]          # the last window ends at the end
    assert window_starts(32, 32, 4).tolist() == [0]
    w = nearest_window(40, window_starts(40, 32, 4), 32)
    assert w[0] == 0 and w[17] == 0 and w[18] == 1 and w[39] == 2     # centres 15.5, 19.5, 23.5


def test_a_clip_shorter_than_the_window_is_looped_and_drawn_on_its_real_frames():
    """A 5-frame clip with an 8-frame model used to be `too_short`; it is looped to one window
    (each frame with its own mel columns) and its map serves the 5 real frames only."""
    import torch

    from glcm.config import load_config
    from glcm.localize import loop_to_window, video_maps
    from glcm.model import GLCM
    torch.manual_seed(0)
    model = GLCM(load_config(preset="smoke").model)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    mel = rng.standard_normal((80, 50)).astype(np.float32)          # k = 10 columns per frame
    looped_frames, looped_mel = loop_to_window(frames, mel, 8)
    assert looped_frames.shape[0] == 8 and (looped_frames[5:] == frames[:3]).all()
    assert (looped_mel[:, 50:80] == mel[:, :30]).all() and looped_mel.shape == (80, 80)   # frame 5 = frame 0, aligned
    maps = video_maps(model, frames, mel, 8, 4)
    assert maps.padded == 3 and maps.starts.tolist() == [0]
    assert maps.frame_window.tolist() == [0] * 5 and maps.per_frame().shape[0] == 5     # no padded frame drawn
    whole = video_maps(model, looped_frames, looped_mel, 8, 4)
    assert whole.padded == 0 and np.allclose(maps.similarity, whole.similarity, atol=1e-5)


def test_map_upsampling_keeps_the_peak_on_its_cell():
    grid = np.zeros((4, 4))
    grid[1, 3] = 5.0
    up = upsample_to(grid, 31, 61)                                     # cell (1, 3) -> pixel (10, 60)
    assert up.shape == (31, 61) and up.max() == 1.0 and up.min() == 0.0
    assert np.unravel_index(up.argmax(), up.shape) == (10, 60)
    assert not upsample_to(np.ones((4, 4)), 8, 8).any()                # flat map: no heat


def test_outputs_never_overwrite_an_input(tmp_path):
    """`glcm localize talk.mp4 --out .` used to replace talk.mp4 by its overlay."""
    from cli.locinput import output_names
    here, there = tmp_path / "talk.mp4", tmp_path / "in" / "talk.mp4"
    assert output_names([here, there, tmp_path / "in" / "talk_2.mp4"], tmp_path) == ["talk_2", "talk_3", "talk_2_2"]
    assert output_names([there, there], tmp_path) == ["talk", "talk_2"]
    assert output_names([tmp_path / "a.png"], tmp_path) == ["a_2"]          # a.png is an output name too


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from avprep.testing import avcorr
    from avprep.testing.synthetic import write_video
    folder = tmp_path_factory.mktemp("loc")
    clip = avcorr.make_clips(1, seed=7, min_seconds=4, max_seconds=4, obj=22)[0]
    paths = {"good": folder / "good.mp4", "silent": folder / "silent.mp4", "short": folder / "short.mp4",
             "broken": folder / "broken.mp4"}
    write_video(str(paths["good"]), clip.frames, clip.fps, clip.audio, clip.sample_rate, codec="h264",
                audio_codec="aac")
    write_video(str(paths["silent"]), clip.frames, clip.fps, None, codec="h264")
    write_video(str(paths["short"]), clip.frames[:12], clip.fps, clip.audio[:19200], clip.sample_rate,
                codec="h264", audio_codec="aac")
    paths["broken"].write_bytes(b"\x00" * 500)
    return paths, clip


def test_overlay_of_odd_sized_frames_is_written(clips, tmp_path):
    """--short-side 129 gave 129-pixel frames, which H.264 4:2:0 refuses: every video failed
    with 'encode_error'; the overlay is padded to even sides."""
    from avprep.probe import probe
    from cli.locinput import write_overlay_video
    paths, clip = clips
    write_overlay_video(np.zeros((5, 33, 45, 3), np.uint8), clip.fps, str(paths["good"]), 0.0, tmp_path / "o.mp4")
    info = probe(str(tmp_path / "o.mp4"))
    assert (info.video.width, info.video.height) == (46, 34) and info.audio is not None


@pytest.mark.parametrize("args,says", [
    (["--max-seconds", "inf"], "--max-seconds inf: must be above 0 and at most 3600 seconds"),  # was an OverflowError
    (["--short-side", 100000], "--short-side 100000: must be at most 1024 pixels"),             # was a MemoryError
    (["--alpha", "nan"], "--alpha nan: must be between 0 and 1"),
])
def test_localize_options_out_of_range_are_one_line_before_the_checkpoint(args, says, tmp_path):
    code, text = cli("localize", tmp_path / "v.mp4", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path, *args)
    assert code == 2 and one_line_error(text) == f"error: {says}"


def test_eval_localization_size_out_of_range_is_one_line(tmp_path):
    code, text = cli("eval-localization", "--checkpoint", tmp_path / "none.pt", "--benchmark", "flickr",
                     "--root", tmp_path, "--size", 5000)                    # was an OpenCV allocation traceback
    assert code == 2 and one_line_error(text) == "error: --size 5000: must be at most 1024 pixels"


def test_localize_writes_overlay_with_audio_and_sheet(avcorr_run, clips, tmp_path, monkeypatch):
    import shutil

    import cv2

    from avprep.probe import probe
    paths, clip = clips
    out = tmp_path / "out"
    shutil.copy(paths["good"], tmp_path / "pipe:copy.mp4")
    monkeypatch.chdir(tmp_path)                # a relative name that looks like an ffmpeg protocol
    code, text = cli("localize", paths["good"], paths["silent"], paths["short"], paths["broken"],
                     tmp_path / "absent.mp4", "pipe:copy.mp4", "--checkpoint", avcorr_run.checkpoint, "--out", out,
                     "--short-side", 64)
    assert code == 0, text
    assert probe(str(out / "pipe:copy.mp4")).audio is not None            # read and written as files
    info = probe(str(out / "good.mp4"))
    assert info.video.codec == "h264" and (info.video.width, info.video.height) == (64, 64)
    assert info.audio is not None and info.audio.codec == "aac"
    assert info.duration == pytest.approx(4.0, abs=0.15)
    sheet = cv2.imread(str(out / "good.png"))
    assert sheet is not None and sheet.shape[0] == 2 * 64 + 6
    record = json.loads((out / "localize.json").read_text())["videos"]
    reasons = {r["video"].rsplit("/", 1)[-1]: r.get("reason") for r in record}
    assert reasons == {"good.mp4": None, "silent.mp4": "no_audio", "short.mp4": None,       # was too_short
                       "broken.mp4": "corrupt", "absent.mp4": "missing", "pipe:copy.mp4": None}
    short = next(r for r in record if r["video"].endswith("short.mp4"))
    assert (short["frames"], short["padded_frames"], short["windows"]) == (12, 20, 1)
    assert "looped to fill it, 20 padded frames not drawn" in text
    with np.load(out / "short.maps.npz", allow_pickle=False) as z:
        assert z["softmax"].shape == (1, 16, 16) and z["frame_window"].shape == (12,)
    assert probe(str(out / "short.mp4")).duration == pytest.approx(1.2, abs=0.15)   # the real frames only
    with np.load(out / "good.maps.npz", allow_pickle=False) as z:
        soft, windows = z["softmax"], z["frame_window"]
    assert soft.shape == (3, 16, 16) and windows.shape == (40,)
    assert np.allclose(soft.sum(axis=(1, 2)), 1.0, atol=1e-5)
    # the trained model's attention peaks on the sounding object (cell (i, j) is centred on
    # pixel (4i, 4j) of the 64 px frame) in most frames
    hits = []
    for i in range(40):
        y, x = np.unravel_index(soft[windows[i]].argmax(), (16, 16))
        x0, y0, x1, y1 = clip.boxes[i]
        hits.append(x0 <= x * 4 < x1 and y0 <= y * 4 < y1)
    assert np.mean(hits) >= 0.8


def test_localize_with_no_usable_video_exits_1_and_bad_options_are_one_line(avcorr_run, clips, tmp_path):
    paths, _ = clips
    code, text = cli("localize", paths["silent"], "--checkpoint", avcorr_run.checkpoint, "--out", tmp_path / "o")
    assert code == 1 and "no_audio" in text and "no video could be localised" in one_line_error(text)
    code, text = cli("localize", paths["good"], "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "o")
    assert code == 2 and "does not exist" in one_line_error(text)
    (tmp_path / "file").write_text("x")
    code, text = cli("localize", paths["good"], "--checkpoint", avcorr_run.checkpoint, "--out", tmp_path / "file")
    assert code == 2 and "is a file" in one_line_error(text)
    code, text = cli("localize", paths["good"], "--checkpoint", avcorr_run.checkpoint, "--out", tmp_path / "o",
                     "--map", "heat")
    assert code == 2 and "--map heat" in one_line_error(text)
    code, text = cli("eval-localization", "--checkpoint", avcorr_run.checkpoint, "--benchmark", "flickr")
    assert code == 2 and "needs --root" in one_line_error(text)
    code, text = cli("eval-localization", "--checkpoint", avcorr_run.checkpoint)
    assert code == 2 and "either --benchmark" in one_line_error(text)
