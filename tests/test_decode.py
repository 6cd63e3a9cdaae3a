"""Frame content and geometry: exact frames through lossless FFV1, resize/crop/SAR/rotation."""
from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from avprep.clips import iter_clips
from avprep.config import AudioConfig, BuildConfig, ClipConfig, VideoConfig
from avprep.items import SourceItem
from avprep.probe import ffmpeg_exe, probe
from avprep.testing.synthetic import pattern_frames, write_video


def cfg_for(fps=10.0, short_side=0, square=False, min_frames=8, max_seconds=10.0) -> BuildConfig:
    return BuildConfig(video=VideoConfig(fps=fps, short_side=short_side, square=square),
                       audio=AudioConfig(), clip=ClipConfig(max_seconds=max_seconds, min_frames=min_frames))


def clips(path, cfg, start=None, end=None):
    return list(iter_clips(SourceItem(path=str(path), source="t", item_id="x", start=start, end=end), cfg))


def tone(seconds, sr=16000, hz=440.0):
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def remux(src, dst, in_args, out_args):
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *in_args,
                           "-i", str(src), "-c", "copy", *out_args, str(dst)], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def test_ffv1_frames_exact_at_source_rate(tmp_path):
    gt = pattern_frames(40, 64, 96, seed=3)
    path = write_video(str(tmp_path / "a.mkv"), gt, 10.0, tone(4.0))
    (clip,) = clips(path, cfg_for())
    assert clip.first_frame == 0
    assert clip.frames.shape == gt.shape
    assert np.array_equal(clip.frames, gt)


def test_ffv1_frames_exact_from_30fps(tmp_path):
    gt = pattern_frames(120, 64, 96, seed=4)          # 4 s at 30 fps, every frame distinct
    path = write_video(str(tmp_path / "a30.mkv"), gt, 30.0, tone(4.0))
    (clip,) = clips(path, cfg_for(fps=10.0))
    assert clip.num_frames == 40
    # output frame n sits at n/10 s, where source frame 3n starts (and is on screen)
    got = [next((j for j in range(len(gt)) if np.array_equal(clip.frames[n], gt[j])), None) for n in range(40)]
    assert got == [3 * n for n in range(40)], f"source frame shown by each output frame: {got[:6]}..."


def test_ffv1_frames_exact_at_25fps_target(tmp_path):
    gt = pattern_frames(50, 64, 96, seed=5)
    path = write_video(str(tmp_path / "a25.mkv"), gt, 25.0, tone(2.0))
    (clip,) = clips(path, cfg_for(fps=25.0))
    assert clip.num_frames == 50
    assert np.array_equal(clip.frames, gt)
    assert clip.mel.shape == (80, 50 * 4)


def test_cut_start_end_selects_frames(tmp_path):
    gt = pattern_frames(60, 64, 96, seed=6)
    path = write_video(str(tmp_path / "c.mkv"), gt, 10.0, tone(6.0))
    (clip,) = clips(path, cfg_for(), start=1.0, end=5.0)
    assert clip.num_frames == 40
    assert clip.first_frame == 0                    # times are relative to the cut start
    assert np.array_equal(clip.frames, gt[10:50])


def _resized(gt_frame, w, h):
    return cv2.resize(gt_frame, (w, h), interpolation=cv2.INTER_AREA).astype(np.int16)


def test_short_side_resize(tmp_path):
    gt = pattern_frames(40, 64, 96, seed=7)
    path = write_video(str(tmp_path / "s.mkv"), gt, 10.0, tone(4.0))
    (clip,) = clips(path, cfg_for(short_side=32))
    assert clip.frames.shape == (40, 32, 48, 3)
    diff = np.abs(clip.frames[5].astype(np.int16) - _resized(gt[5], 48, 32)).mean()
    assert diff < 4, diff
    (big,) = clips(path, cfg_for(short_side=128))
    assert big.frames.shape == (40, 128, 192, 3)


def test_square_centre_crop(tmp_path):
    gt = pattern_frames(40, 64, 96, seed=8)
    path = write_video(str(tmp_path / "q.mkv"), gt, 10.0, tone(4.0))
    (clip,) = clips(path, cfg_for(short_side=64, square=True))
    assert clip.frames.shape == (40, 64, 64, 3)
    # 96x64 at short side 64 stays 96x64; the centre crop is columns 16..80
    diff = np.abs(clip.frames[3].astype(np.int16) - gt[3, :, 16:80].astype(np.int16)).mean()
    assert diff < 2, diff


def test_portrait_short_side(tmp_path):
    gt = pattern_frames(40, 96, 64, seed=9)           # portrait 64x96
    path = write_video(str(tmp_path / "p.mkv"), gt, 10.0, tone(4.0))
    (clip,) = clips(path, cfg_for(short_side=32))
    assert clip.frames.shape == (40, 48, 32, 3)


def test_non_square_pixels(tmp_path):
    gt = pattern_frames(40, 64, 96, seed=10)
    src = write_video(str(tmp_path / "sq.mp4"), gt, 10.0, tone(4.0), codec="h264", audio_codec="aac")
    dst = tmp_path / "sar.mp4"
    remux(src, dst, [], ["-bsf:v", "h264_metadata=sample_aspect_ratio=2/1"])
    info = probe(str(dst))
    assert info.video.sar == 2 and info.video.display_size == (192, 64)
    (clip,) = clips(dst, cfg_for(short_side=0))
    assert clip.frames.shape == (40, 64, 192, 3)
    expect = cv2.resize(gt[7], (192, 64), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    assert np.abs(clip.frames[7].astype(np.int16) - expect).mean() < 6
    (clip,) = clips(dst, cfg_for(short_side=32))
    assert clip.frames.shape == (40, 32, 96, 3)


@pytest.mark.parametrize("angle", [90, 270, 180])
def test_rotation(tmp_path, angle):
    gt = pattern_frames(40, 64, 96, seed=11)
    src = write_video(str(tmp_path / "r.mp4"), gt, 10.0, tone(4.0), codec="h264", audio_codec="aac")
    dst = tmp_path / f"rot{angle}.mp4"
    remux(src, dst, ["-display_rotation", str(angle)], [])
    info = probe(str(dst))
    (clip,) = clips(dst, cfg_for(short_side=0))
    # -display_rotation is counter-clockwise: the shown picture is the stored one turned CCW
    expect = np.rot90(gt, k=angle // 90, axes=(1, 2)).astype(np.int16)
    wrong = np.rot90(gt, k=-(angle // 90), axes=(1, 2)).astype(np.int16)
    assert clip.frames.shape == expect.shape
    assert np.abs(clip.frames.astype(np.int16) - expect).mean() < 4
    if angle != 180:
        assert info.video.display_size == (64, 96)
        assert np.abs(clip.frames.astype(np.int16) - wrong).mean() > 10
    assert info.video.rotation in (90, 180, 270)
