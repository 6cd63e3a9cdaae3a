"""Audio/video alignment on the shared clock (docs/format.md, "Alignment contract")."""
from __future__ import annotations

import numpy as np
import pytest

from avprep.audio import mel_of_signal
from avprep.clips import iter_clips
from avprep.config import AudioConfig, BuildConfig, ClipConfig, VideoConfig
from avprep.items import SourceItem
from avprep.testing.synthetic import flash_clip, pattern_frames, write_video


def cfg_for(fps=10.0, min_frames=8, max_seconds=10.0) -> BuildConfig:
    return BuildConfig(video=VideoConfig(fps=fps, short_side=0), audio=AudioConfig(),
                       clip=ClipConfig(max_seconds=max_seconds, min_frames=min_frames))


def clips(path, cfg):
    return list(iter_clips(SourceItem(path=str(path), source="t", item_id="x"), cfg))


def frame_energy(mel_db: np.ndarray, k: int) -> np.ndarray:
    power = 10.0 ** (mel_db.astype(np.float64) / 10.0)
    t = mel_db.shape[1] // k
    return power[:, :t * k].reshape(mel_db.shape[0], t, k).sum(axis=(0, 2))


def loud_frames(mel_db: np.ndarray, k: int) -> list[int]:
    e = frame_energy(mel_db, k)
    return [int(i) for i in np.flatnonzero(e > 0.5 * e.max())]


def white_frames(frames: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(frames.reshape(len(frames), -1).min(axis=1) >= 250)]


@pytest.mark.parametrize("fps,k,flashes", [(10.0, 10, (12, 13, 30)), (25.0, 4, (7, 31, 32, 60))])
def test_tone_burst_lands_on_flash_frames(tmp_path, fps, k, flashes):
    fc = flash_clip(seconds=4.0, fps=fps, flash_frames=flashes, height=64, width=96)
    path = write_video(str(tmp_path / "flash.mkv"), fc.frames, fps, fc.audio)
    (clip,) = clips(path, cfg_for(fps=fps))
    assert clip.first_frame == 0
    assert clip.num_frames == int(4.0 * fps)
    assert clip.mel.shape == (80, clip.num_frames * k)
    assert np.array_equal(clip.frames, fc.frames)
    assert white_frames(clip.frames) == list(flashes)
    assert loud_frames(clip.mel, k) == list(flashes)
    e = frame_energy(clip.mel, k)
    quiet = np.delete(e, list(flashes))
    assert e[list(flashes)].min() > 20 * quiet.max()   # neighbours only see window leakage


def _shifted_flash(tmp_path, audio_delay=0.0, video_delay=0.0, fps=10.0):
    """Flash frames and tone bursts that coincide in the container's time although the
    streams start at different times. The shared clock starts with the earliest stream, so
    the video starts (video_delay - min(delays)) * fps frames after it."""
    flashes = [6, 17, 18]
    n = 40
    frames = pattern_frames(n, 64, 96, seed=2)
    sr = 16000
    vshift = int(round((video_delay - min(video_delay, audio_delay)) * fps))
    audio = np.zeros(int((n / fps + video_delay + 0.5) * sr), np.float32)
    t = np.arange(audio.size) / sr
    for f in flashes:
        frames[f] = 255
        a = int(round((video_delay + f / fps - audio_delay) * sr))   # in the audio's own time
        b = a + int(round(sr / fps))
        audio[a:b] = 0.5 * np.sin(2 * np.pi * 1000 * t[a:b])
    path = write_video(str(tmp_path / f"d_{audio_delay}_{video_delay}.mkv"), frames, fps, audio,
                       audio_delay=audio_delay, video_delay=video_delay)
    return path, frames, flashes, vshift


@pytest.mark.parametrize("audio_delay,video_delay", [(0.5, 0.0), (0.0, 0.5), (0.3, 0.0), (0.0, 1.5), (0.7, 0.2)])
def test_streams_starting_late_stay_aligned(tmp_path, audio_delay, video_delay):
    path, frames, flashes, vshift = _shifted_flash(tmp_path, audio_delay, video_delay)
    (clip,) = clips(path, cfg_for())
    assert clip.first_frame == vshift                      # the video starts vshift frames late
    assert np.array_equal(clip.frames, frames[:clip.num_frames])
    assert white_frames(clip.frames) == flashes
    assert loud_frames(clip.mel, 10) == flashes


def test_segment_mel_equals_whole_signal_mel(tmp_path):
    fc = flash_clip(seconds=4.0, fps=10.0, flash_frames=(3, 20, 21, 35), height=64, width=96)
    rng = np.random.default_rng(0)
    audio = fc.audio + 0.05 * rng.standard_normal(fc.audio.size).astype(np.float32)
    path = write_video(str(tmp_path / "m.mkv"), fc.frames, 10.0, audio)
    cfg = cfg_for(max_seconds=1.6, min_frames=8)             # segments of 16 frames
    got = clips(path, cfg)
    assert [c.first_frame for c in got] == [0, 16, 32]
    assert [c.num_frames for c in got] == [16, 16, 8]
    pcm = np.round(np.clip(audio, -1, 1) * 32767) / 32768    # the file stores 16-bit PCM
    whole = mel_of_signal(pcm.astype(np.float32), cfg.audio)
    for c in got:
        cols = slice(c.first_frame * 10, (c.first_frame + c.num_frames) * 10)
        # same samples, same windows: equal up to float32 rounding (largest at quiet bins)
        diff = np.abs(c.mel - whole[:, cols])
        assert diff.max() < 0.3 and np.median(diff) < 0.01, (diff.max(), np.median(diff))


def test_multi_segment_split_25s(tmp_path):
    n = 250
    frames = pattern_frames(n, 32, 48, seed=1)
    t = np.arange(25 * 16000) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)
    path = write_video(str(tmp_path / "long.mkv"), frames, 10.0, audio)
    got = clips(path, cfg_for(min_frames=32))
    assert [c.segment for c in got] == [0, 1, 2]
    assert [c.first_frame for c in got] == [0, 100, 200]
    assert [c.num_frames for c in got] == [100, 100, 50]
    assert [c.mel.shape[1] for c in got] == [1000, 1000, 500]
    for c in got:
        assert np.array_equal(c.frames, frames[c.first_frame:c.first_frame + c.num_frames])


def test_short_last_segment_is_dropped(tmp_path):
    frames = pattern_frames(120, 32, 48, seed=2)               # 12 s -> 10 s + 2 s (20 < 32 frames)
    t = np.arange(12 * 16000) / 16000
    path = write_video(str(tmp_path / "l.mkv"), frames, 10.0, (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    got = clips(path, cfg_for(min_frames=32))
    assert [(c.first_frame, c.num_frames) for c in got] == [(0, 100)]


def test_frames_beyond_audio_are_cut(tmp_path):
    frames = pattern_frames(60, 32, 48, seed=3)
    audio = np.full(int(4.05 * 16000), 0.1, np.float32)        # audio ends mid-frame 40
    path = write_video(str(tmp_path / "cut.mkv"), frames, 10.0, audio)
    (clip,) = clips(path, cfg_for())
    assert clip.num_frames == 40
    assert clip.mel.shape == (80, 400)


def test_log_mel_is_librosas_bit_for_bit():
    """avprep.audio writes out librosa's STFT, Slaney filters and dB in numpy (no librosa,
    scipy or numba at start-up); the columns must stay exactly librosa's."""
    import librosa
    from avprep.audio import context, log_mel
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    quiet = (1e-6 * rng.standard_normal(8000)).astype(np.float32)
    for cfg in (AudioConfig(), AudioConfig(sample_rate=22050, n_fft=1024, hop_length=441, n_mels=128)):
        basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
        left, right = context(cfg)
        for signal in (noise, quiet, np.zeros(4000, np.float32)):
            cols = (signal.size - left - right) // cfg.hop_length
            spec = librosa.stft(signal[:cols * cfg.hop_length + left + right], n_fft=cfg.n_fft,
                                hop_length=cfg.hop_length, center=False, window="hann")
            want = librosa.power_to_db(basis @ (np.abs(spec) ** 2), ref=1.0, amin=1e-10, top_db=None)
            got = log_mel(signal, cols, cfg)
            assert got.dtype == np.float32 and np.array_equal(got, want)
