"""A folder of awkward and broken inputs, each with the outcome the pipeline must record.

`make_bad_inputs(folder)` returns {file name: expected reason}, where the reason is one of
the outcome codes of avprep (probe.py / clips.py: missing, empty, corrupt, unreadable,
no_video, no_audio, no_frames, too_short, decode_error, error) or None for inputs that
must succeed (status ok). `EXPECT` holds further facts about the ok ones (frame count,
output size) that tests check.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import soundfile as sf

from avprep.probe import ffmpeg_exe
from avprep.testing.synthetic import pattern_frames, write_video

FPS = 10.0
SR = 16000
W, H = 96, 64

# Names that must pass through every subprocess call as plain data.
STRANGE_NAMES = (
    "with space.mp4",
    "ünïcödé 视频.mp4",
    "quote's \"double\".mp4",
    "-x.mp4",
    "$(rm -rf).mp4",
    "semi;colon && echo pwned.mp4",
    "back`tick`.mp4",
)

# For the ok inputs: (num_frames, width, height) of the single sample they give at 10 fps,
# short_side 128. Filled in by make_bad_inputs.
EXPECT: dict[str, tuple[int, int, int]] = {}


def _tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _ff(*args: str) -> None:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                          capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {args}: {proc.stderr.decode(errors='replace')[-400:]}")


def _good(path: str, seconds: float = 4.0, seed: int = 0, codec: str = "h264", audio_codec: str = "aac",
          audio: bool = True, w: int = W, h: int = H, extra_args: list[str] | None = None) -> str:
    frames = pattern_frames(int(round(seconds * FPS)), h, w, seed=seed)
    return write_video(path, frames, FPS, _tone(seconds) if audio else None, SR, codec=codec,
                       audio_codec=audio_codec, extra_args=extra_args)


def _find_atom(data: bytes, name: bytes) -> tuple[int, int]:
    """Offset and size of a top-level MP4 atom."""
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == name:
            return pos, size
        if size < 8:
            break
        pos += size
    raise ValueError(f"no {name!r} atom")


def make_bad_inputs(folder: str) -> dict[str, str | None]:
    os.makedirs(folder, exist_ok=True)
    p = lambda name: os.path.join(folder, name)  # noqa: E731
    expected: dict[str, str | None] = {}
    EXPECT.clear()

    # --- good reference inputs in the same shard (must still land)
    _good(p("good_a.mp4"), seed=1)
    expected["good_a.mp4"] = None
    EXPECT["good_a.mp4"] = (40, 192, 128)

    # --- files that are not media at all
    open(p("empty.mp4"), "wb").close()
    expected["empty.mp4"] = "empty"

    with open(p("random_bytes.mp4"), "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    expected["random_bytes.mp4"] = "corrupt"

    with open(p("text_file.mkv"), "w") as f:
        f.write("this is not a video\n" * 200)
    expected["text_file.mkv"] = "corrupt"

    os.makedirs(p("folder_named_like_a_video.mp4"))
    expected["folder_named_like_a_video.mp4"] = "unreadable"

    # --- broken containers
    src = _good(p(".src_trunc.mp4"), seed=2)          # moov at the end (ffmpeg's default)
    data = open(src, "rb").read()
    os.remove(src)
    with open(p("truncated_half.mp4"), "wb") as f:
        f.write(data[:len(data) // 2])                 # the moov atom is cut away
    expected["truncated_half.mp4"] = "corrupt"

    off, size = _find_atom(data, b"moov")
    with open(p("moov_removed.mp4"), "wb") as f:
        f.write(data[:off] + data[off + size:])
    expected["moov_removed.mp4"] = "corrupt"

    # corrupt middle: garbage over the middle third of a raw h264 elementary stream in
    # Matroska. The decoder conceals the damage and ffmpeg still delivers every frame with
    # its timestamp, so the honest outcome is ok with all frames (damaged pixels in some).
    src = _good(p(".src_mid.mkv"), seed=3)
    data = bytearray(open(src, "rb").read())
    os.remove(src)
    a, b = len(data) // 3, 2 * len(data) // 3
    data[a:b] = np.random.default_rng(3).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    with open(p("corrupt_middle.mkv"), "wb") as f:
        f.write(bytes(data))
    expected["corrupt_middle.mkv"] = "CORRUPT_MIDDLE"   # decided by the test (see test_bad_inputs)

    # --- missing streams
    _good(p("video_no_audio.mp4"), seed=4, audio=False)
    expected["video_no_audio.mp4"] = "no_audio"

    sf.write(p("audio_only.flac"), _tone(4.0), SR)
    expected["audio_only.flac"] = "no_video"
    sf.write(p("audio_only.wav"), _tone(4.0), SR)
    expected["audio_only.wav"] = "no_video"
    _ff("-i", p("audio_only.wav"), "-c:a", "aac", "-b:a", "64k", p("audio_only.m4a"))
    expected["audio_only.m4a"] = "no_video"
    _ff("-i", p("audio_only.wav"), "-c:a", "aac", "-b:a", "64k", p("audio_only_named.mp4"))
    expected["audio_only_named.mp4"] = "no_video"

    # --- too short: 2 s at 10 fps = 20 frames < 32; and a long video with 1 s of audio
    _good(p("too_short.mp4"), seconds=2.0, seed=5)
    expected["too_short.mp4"] = "too_short"
    frames = pattern_frames(60, H, W, seed=6)
    write_video(p("audio_1s_video_6s.mp4"), frames, FPS, _tone(1.0), SR, codec="h264", audio_codec="aac")
    expected["audio_1s_video_6s.mp4"] = "too_short"
    write_video(p("audio_4s_video_6s.mkv"), frames, FPS, _tone(4.0), SR, codec="h264", audio_codec="flac")
    expected["audio_4s_video_6s.mkv"] = None
    EXPECT["audio_4s_video_6s.mkv"] = (40, 192, 128)   # frames cut to the audio

    # --- other codecs and containers that must work
    _good(p("vp9.webm"), seed=7, codec="vp9", audio_codec="opus")
    expected["vp9.webm"] = None
    EXPECT["vp9.webm"] = (40, 192, 128)
    _good(p("mpeg4.avi"), seed=8, codec="mpeg4", audio_codec="mp3")
    expected["mpeg4.avi"] = None
    EXPECT["mpeg4.avi"] = (40, 192, 128)   # ffmpeg's AVI/mpeg4 pair may add one repeated frame
    _good(p("mjpeg.mov"), seed=9, codec="mjpeg", audio_codec="pcm")
    expected["mjpeg.mov"] = None
    EXPECT["mjpeg.mov"] = (40, 192, 128)

    # --- geometry: rotation metadata, non-square pixels, huge dimensions in a tiny file
    src = _good(p(".src_rot.mp4"), seed=10)
    _ff("-display_rotation", "90", "-i", src, "-c", "copy", p("rotated_90.mp4"))
    os.remove(src)
    expected["rotated_90.mp4"] = None
    EXPECT["rotated_90.mp4"] = (40, 128, 192)          # 96x64 shown as 64x96

    src = _good(p(".src_sar.mp4"), seed=11)             # 96x64 stored, SAR 2:1 -> 192x64 shown
    _ff("-i", src, "-c", "copy", "-bsf:v", "h264_metadata=sample_aspect_ratio=2/1", p("sar_2_1.mp4"))
    os.remove(src)
    expected["sar_2_1.mp4"] = None
    EXPECT["sar_2_1.mp4"] = (40, 384, 128)

    _ff("-f", "lavfi", "-i", "color=c=0x3366cc:s=4000x3000:r=2:d=4", "-f", "lavfi",
        "-i", f"sine=frequency=500:sample_rate={SR}:duration=4", "-c:v", "libx264", "-preset", "ultrafast",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", p("huge_dims_tiny_file.mp4"))
    expected["huge_dims_tiny_file.mp4"] = None
    EXPECT["huge_dims_tiny_file.mp4"] = (40, 170, 128)

    # --- variable frame rate: 1 s at 5 fps, then 1 s at 20 fps, then 2 s at 10 fps
    frames = pattern_frames(5 + 20 + 20, H, W, seed=12)
    pts = [i * 0.2 for i in range(5)] + [1 + i * 0.05 for i in range(20)] + [2 + i * 0.1 for i in range(20)]
    _write_vfr(p("vfr.mkv"), frames, pts, _tone(4.0))
    expected["vfr.mkv"] = None
    EXPECT["vfr.mkv"] = (40, 192, 128)

    # --- strange names (must succeed, nothing may be executed)
    for i, name in enumerate(STRANGE_NAMES):
        _good(p(name), seed=20 + i)
        expected[name] = None
        EXPECT[name] = (40, 192, 128)
    return expected


def _write_vfr(path: str, frames: np.ndarray, pts: list[float], audio: np.ndarray) -> None:
    """Frames shown at the given times (seconds), via an ffconcat list of still images."""
    import tempfile

    import cv2
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["ffconcat version 1.0"]
        ends = pts[1:] + [pts[-1] + 0.1]
        for i, (frame, t0, t1) in enumerate(zip(frames, pts, ends)):
            name = os.path.join(tmp, f"f{i:04d}.png")
            cv2.imwrite(name, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            lines += [f"file '{name}'", f"duration {t1 - t0:.6f}"]
        lines.append(f"file '{name}'")
        listing = os.path.join(tmp, "list.txt")
        with open(listing, "w") as f:
            f.write("\n".join(lines) + "\n")
        wav = os.path.join(tmp, "a.wav")
        sf.write(wav, audio, SR)
        _ff("-f", "concat", "-safe", "0", "-i", listing, "-i", wav, "-fps_mode", "vfr", "-c:v", "libx264",
            "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "flac", "-map", "0:v", "-map", "1:a", path)
