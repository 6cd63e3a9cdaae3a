"""Frame content and geometry: exact frames through lossless FFV1, resize/crop/SAR/rotation."""
from __future__ import annotations

import dataclasses
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


# ---------------------------------------------------------------- one process per input

@pytest.fixture
def launches(monkeypatch):
    """Counts the ffmpeg processes started (probes included); layout guesses start empty."""
    from avprep import decode
    monkeypatch.setattr(decode, "_last_layout", {})
    started = []
    real = subprocess.Popen

    def popen(args, *a, **kw):
        started.append(list(args))
        return real(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return started


def _h264(tmp_path, name, h, w, audio=True, seed=0):
    return write_video(str(tmp_path / name), pattern_frames(30, h, w, seed=seed), 10.0,
                       tone(3.0) if audio else None, codec="h264", audio_codec="aac")


def test_one_process_per_input_whose_header_is_the_probe(tmp_path, launches):
    from avprep.decode import DecodeSpec, open_source
    cfg = cfg_for(fps=10.0, min_frames=8)
    same = [_h264(tmp_path, f"s{i}.mp4", 64, 96, seed=i) for i in range(3)]
    other = _h264(tmp_path, "big.mp4", 96, 128, seed=5)
    silent = _h264(tmp_path, "silent.mp4", 96, 128, audio=False, seed=6)
    counts = []
    for path in same + [other]:
        before = len(launches)
        (clip,) = clips(path, cfg)
        counts.append(len(launches) - before)
        assert clip.info == probe(path)             # the decoding process's input dump = the probe
        assert clip.mel.shape == (80, 300)
    # first input: probe + decode; same layout: one process; a new size: the guess is redone
    assert counts == [2, 1, 1, 2]
    spec = DecodeSpec(10.0, 0, False, 16000, require_audio=False)
    source = open_source(silent, spec)               # the guess had audio: redone without
    try:
        assert source.info == probe(silent) and source.audio is None and source.geometry.width == 128
        assert len([f for _, f in source.frames()]) == 30
    finally:
        source.close()
    spec = DecodeSpec(10.0, 0, False, 16000, require_audio=True)
    before = len(launches)
    source = open_source(silent, spec)               # no audio but audio required: nothing runs
    assert source.info.audio is None and source.geometry is None and source.audio is None
    assert len(launches) - before == 1               # only the header (no audio: refused at once)


def test_large_inputs_use_a_process_per_stream_with_the_same_result(tmp_path, launches, monkeypatch):
    from avprep import decode
    path = _h264(tmp_path, "a.mp4", 64, 96)
    cfg = cfg_for(fps=10.0, min_frames=8, max_seconds=1.0)
    one = clips(path, cfg)
    monkeypatch.setattr(decode, "ONE_PROCESS_MAX_BYTES", 1)
    before = len(launches)
    two = clips(path, cfg)
    assert len(launches) - before == 3               # the header process, then video and audio apart
    assert [c.first_frame for c in two] == [c.first_frame for c in one] == [0, 10, 20]
    for a, b in zip(one, two):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.mel, b.mel)


def test_audio_late_in_the_file_does_not_block_the_one_process_decode(tmp_path, launches):
    """Audio that starts 6 s into the file: the first 1 s segment needs audio that ffmpeg
    only writes after 60 more frames, more than the pipe and ffmpeg's queues hold. Frames
    are read ahead instead of waiting (a deadlock would end as `timeout`); the clock stays exact."""
    fps, delay, flashes, n = 10.0, 6.0, [65, 71, 72], 80
    frames = pattern_frames(n, 96, 128, seed=4)          # 36 KB frames: the pipe holds < 2
    audio = np.zeros(int((n / fps - delay) * 16000), np.float32)
    t = np.arange(audio.size) / 16000
    for f in flashes:
        frames[f] = 255
        a = int(round((f / fps - delay) * 16000))
        audio[a:a + 1600] = 0.5 * np.sin(2 * np.pi * 1000 * t[a:a + 1600])
    path = write_video(str(tmp_path / "late.mp4"), frames, fps, audio, codec="h264", audio_codec="aac",
                       audio_delay=delay)
    cfg = dataclasses.replace(cfg_for(fps=fps, min_frames=8, max_seconds=1.0), timeout_base_s=30.0)
    clips(path, cfg)                                      # learn the layout: the next run is one process
    before = len(launches)
    got = clips(path, cfg)
    assert len(launches) - before == 1
    assert [c.first_frame for c in got] == list(range(0, n, 10))
    frames_out = np.concatenate([c.frames for c in got])
    white = [int(i) for i in np.flatnonzero(frames_out.reshape(n, -1).mean(axis=1) > 240)]
    mel = np.concatenate([c.mel for c in got], axis=1)
    energy = (10.0 ** (mel.astype(np.float64) / 10.0)).reshape(80, n, 10).sum(axis=(0, 2))
    assert white == flashes
    assert [int(i) for i in np.flatnonzero(energy > 0.5 * energy.max())] == flashes


@pytest.mark.parametrize("name", ["x:clip.mp4", "pipe:c/a.mp4"])
def test_relative_names_with_a_colon_are_files_not_protocols(tmp_path, monkeypatch, name):
    """`x:clip.mp4` (or a folder `pipe:c/`) given relative: ffmpeg would take `x:` for a
    protocol ("Protocol not found"); probe, decode and the faces reader all read the file."""
    from avprep.faces.video import read_frames
    (tmp_path / name).parent.mkdir(exist_ok=True)
    write_video(str(tmp_path / name), pattern_frames(12, 32, 48), 10.0, tone(1.2))
    monkeypatch.chdir(tmp_path)
    assert probe(name).video.width == 48
    got = clips(name, cfg_for(min_frames=8))
    assert [c.num_frames for c in got] == [12] and got[0].mel is not None
    assert read_frames(name)[0].shape == (12, 32, 48, 3)
