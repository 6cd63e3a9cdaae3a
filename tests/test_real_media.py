"""Real recordings from ../shared/media (skipped where that folder is absent)."""
from __future__ import annotations

import numpy as np
import pytest

from avprep.audio import mel_of_signal
from avprep.clips import iter_clips
from avprep.config import BuildConfig, ClipConfig
from avprep.decode import AudioReader
from avprep.items import SourceItem
from avprep.pipeline import process_item
from avprep.probe import MediaError, probe

from conftest import media_file

pytestmark = pytest.mark.real_media


def item(path):
    return SourceItem(path=str(path), source="real", item_id=path.stem)


def outcome(path, cfg=BuildConfig()):
    return process_item(item(path), cfg, str(path.parent))


def whole_mel(path, cfg, seconds):
    reader = AudioReader(str(path), cfg.audio.sample_rate)
    try:
        signal = reader.read(0, int(seconds * cfg.audio.sample_rate))
    finally:
        reader.close()
    return mel_of_signal(signal, cfg.audio)


def test_grid_default_min_frames_is_too_short():
    path = media_file("grid", "swwp2s.mpg")
    o, samples = outcome(path)
    assert (o["status"], o["reason"], samples) == ("failed", "too_short", [])
    assert "min_frames 32" in o["message"]


@pytest.fixture(scope="module")
def grid_clip():
    path = media_file("grid", "swwp2s.mpg")
    cfg = BuildConfig(clip=ClipConfig(min_frames=16))
    (clip,) = list(iter_clips(item(path), cfg))
    return path, cfg, clip


def test_grid_with_lower_min_frames(grid_clip):
    path, cfg, clip = grid_clip
    assert clip.first_frame == 0
    assert clip.num_frames in (29, 30)          # 3 s of video, 2.98 s of audio
    assert clip.frames.shape[1:] == (128, 160, 3)    # 360x288 at short side 128
    assert clip.mel.shape == (80, clip.num_frames * 10)
    assert clip.info.audio.channels == "stereo" and clip.info.video.fps == 25.0


def test_grid_speech_onset_lands_on_its_frame(grid_clip):
    path, cfg, clip = grid_clip
    words = [ln.split() for ln in (path.parent / "swwp2s.align").read_text().splitlines() if ln.strip()]
    onset = next(int(s) for s, e, w in words if w != "sil") / 1000 / 25       # 0.49 s
    assert onset == pytest.approx(0.49)
    onset_frame = int(onset * 10)                                              # frame 4 covers [0.4, 0.5)
    # the fricative /s/ of "set" shows in the upper mel bands; speech energy rises there
    power = 10 ** (clip.mel.astype(np.float64) / 10)
    db = 10 * np.log10(power[40:].sum(axis=0))
    silence = np.median(db[:onset_frame * 10 - 5])                            # leading silence
    first_loud = int(np.flatnonzero(db > silence + 20)[0])
    # the first loud column is at the annotated onset (column 49 = 0.49 s), within the
    # annotation's own precision (forced alignment, 2 video frames at 25 fps = 80 ms)
    assert abs(first_loud - onset * 100) <= 8, (first_loud, onset * 100)
    assert first_loud // 10 in (onset_frame, onset_frame + 1)
    assert db[:onset_frame * 10 - 5].max() < silence + 10                     # quiet before
    per_frame = db[:clip.num_frames * 10].reshape(-1, 10).mean(axis=1)
    assert per_frame[onset_frame + 1: onset_frame + 5].mean() > per_frame[:onset_frame].max() + 10
    # and the clip's columns are the whole recording's columns
    whole = whole_mel(path, cfg, 2.5)
    assert np.abs(clip.mel[:, :200] - whole[:, :200]).max() < 0.3


def test_big_buck_bunny_sar_and_downmix():
    path = media_file("misc", "big_buck_bunny_small.mp4")
    info = probe(str(path))
    assert info.video.sar == pytest.approx(4 / 3)
    assert info.video.display_size in ((427, 240), (426, 240))     # 320 x 4/3 = 426.7, rounded either way
    assert info.audio.channels == "5.1" and info.audio.sample_rate == 48000
    (clip,) = list(iter_clips(item(path), BuildConfig()))
    assert clip.frames.shape[1:] == (128, 228, 3)
    assert clip.num_frames in (52, 53)          # 5.31 s at 10 fps
    assert clip.mel.shape == (80, clip.num_frames * 10)
    assert np.isfinite(clip.mel).all() and clip.mel.max() > -40    # the downmix is not silent


def test_hamilton_late_video_start():
    path = media_file("misc", "short_hamilton_clip.mp4")
    info = probe(str(path))
    assert info.video.start == pytest.approx(0.852, abs=1e-3)
    assert info.audio.start == pytest.approx(0.008, abs=1e-3)
    cfg = BuildConfig()
    clips = list(iter_clips(item(path), cfg))
    # video starts at 0.852 - 0.008 = 0.844 s on the shared clock: nothing is on screen at 0.8 s,
    # so the first frame is n = 9 (the picture on screen at 0.9 s)
    assert clips[0].first_frame == 9
    assert clips[0].frames.shape[1:] == (128, 228, 3)
    total = sum(c.num_frames for c in clips)
    assert 90 <= total <= 92                    # frames 8 .. ~99 of a 10.02 s file
    assert clips[-1].first_frame + clips[-1].num_frames <= 101
    whole = whole_mel(path, cfg, 10.0)
    c = clips[0]
    cols = slice(c.first_frame * 10, (c.first_frame + c.num_frames) * 10)
    n = min(c.mel.shape[1], whole[:, cols].shape[1])
    assert n >= 800
    assert np.abs(c.mel[:, :n] - whole[:, cols][:, :n]).max() < 0.3


def test_mot20_without_audio_is_recorded():
    path = media_file("misc", "MOT20-05-raw_even_shorter.mp4")
    o, samples = outcome(path)
    assert (o["status"], o["reason"], samples) == ("failed", "no_audio", [])
    assert "audio" in o["message"]


def test_mot20_frames_without_audio_requirement():
    from avprep.config import AudioConfig
    path = media_file("misc", "MOT20-05-raw_even_shorter.mp4")
    cfg = BuildConfig(audio=AudioConfig(require_audio=False))
    (clip,) = list(iter_clips(item(path), cfg))
    # 127 source frames, the last at 5.08 s lasting 40 ms: on screen at 0.0 .. 5.1 s -> 52 frames
    assert clip.num_frames == 52 and clip.frames.shape[1:] == (128, 196, 3)


def test_librispeech_flac_is_no_video():
    path = media_file("misc", "116-288045-0000.flac")
    o, samples = outcome(path)
    assert (o["status"], o["reason"]) == ("failed", "no_video")
    with pytest.raises(MediaError) as e:
        list(iter_clips(item(path), BuildConfig()))
    assert e.value.reason == "no_video"
