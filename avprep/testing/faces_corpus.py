"""Tiny LRW and DFDC corpora cut from the real talking heads in ../shared/media, in the
datasets' exact layouts (../shared/paper/DOWNSTREAM.md), for tests and demos.

* LRW: `lipread_mp4/<WORD>/{train,val,test}/<WORD>_NNNNN.mp4` (1.16 s = 29 frames at 25 fps,
  256x256, AAC audio) plus a `.txt` whose line 5 reads `Duration: <s> seconds`.
* DFDC: `dfdc_train_part_N/*.mp4` (1.6 s at the source's 25 fps, 360x288) and a
  `metadata.json` per part (REAL / FAKE, `split`, `original` on the fakes), plus Chugh et
  al. style list files `train.txt` / `test.txt` (lines `<id>.dfdc_train_part_NN`). A FAKE
  is its original re-encoded with a visible colour and sharpness change (a stand-in for a
  face swap: the labels, not the manipulation, are what the tests check). One REAL entry
  is the MOT20 clip, which has no audio track: the build records it as a failure.

The sources are GRID clips (one frontal talker, 360x288, 25 fps, 3 s); every cut is made
with ffmpeg from an argument list (ffmpeg-python compiles it, as avprep.testing.synthetic
does). Each writer returns a `FacesCorpus` recording what a recipe must make of it.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field

import ffmpeg

from avprep.probe import ffmpeg_exe

# LRW: (word, split, GRID source, start second); two words, label = sorted place.
LRW_CLIPS = (
    ("BLUE", "train", "bbaf2n", 0.5), ("BLUE", "val", "swwp2s", 0.4), ("BLUE", "test", "lbax4n", 0.9),
    ("PLACE", "train", "lbbc2a", 0.3), ("PLACE", "test", "bbaf2n", 1.6),
)
# DFDC: (part, file, label, GRID source or None for the MOT20 clip, original of a FAKE, list role)
DFDC_VIDEOS = (
    (0, "aaaaaaaaaa.mp4", "REAL", "bbaf2n", None, "train"),
    (0, "bbbbbbbbbb.mp4", "FAKE", "bbaf2n", "aaaaaaaaaa.mp4", "train"),
    (1, "cccccccccc.mp4", "REAL", "lbax4n", None, "test"),
    (1, "dddddddddd.mp4", "FAKE", "lbax4n", "cccccccccc.mp4", "test"),
    (1, "eeeeeeeeee.mp4", "REAL", None, None, "test"),          # no audio track: a recorded failure
)
# Video filter chains as (filter, options): LRW's 256x256 from the GRID frame's centre, and the
# FAKE stand-in manipulation.
LRW_FILTERS = (("crop", {"w": 288, "h": 288, "x": 36, "y": 0}), ("scale", {"w": 256, "h": 256}))
FAKE_FILTERS = (("eq", {"saturation": 1.6, "gamma": 1.2}),
                ("unsharp", {"luma_msize_x": 5, "luma_msize_y": 5, "luma_amount": 1.5}))
MOT20 = ("misc", "MOT20-05-raw_even_shorter.mp4")


@dataclass
class FaceClip:
    item_id: str            # what the recipe's item_id must be
    path: str
    label: str
    label_index: int
    split: str | None       # LRW: the split folder; DFDC: the Chugh list the video is on
    extra: dict = field(default_factory=dict)   # expected extras (LRW word_duration, DFDC original)
    ok: bool = True         # False: the build must record a failure (no audio)


@dataclass
class FacesCorpus:
    root: str                                       # the folder given to the recipe
    clips: list[FaceClip]
    lists: dict[str, str] = field(default_factory=dict)   # DFDC: role -> Chugh list file

    def built(self, split: str | None = None) -> list[FaceClip]:
        """The clips a build must turn into samples (of one split / list role)."""
        return [c for c in self.clips if c.ok and (split is None or c.split == split)]


def cut(source: str, path: str, start: float, seconds: float, filters=(), frames: int = 0) -> str:
    """`seconds` of `source` from `start` as H.264 (+ AAC when it has audio) at 25 fps, the
    video through `filters` ((name, options) pairs); `frames` > 0 caps the frame count."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    src = ffmpeg.input(source, ss=start, t=seconds)
    video = src.video
    for name, options in filters:
        video = video.filter(name, **options)
    streams = [video, src.audio] if _has_audio(source) else [video]
    out = ffmpeg.output(*streams, path, r=25, vcodec="libx264", preset="ultrafast", crf=18, pix_fmt="yuv420p",
                        acodec="aac", **({"vframes": frames} if frames else {}))
    out = out.global_args("-hide_banner", "-loglevel", "error", "-y")
    proc = subprocess.run(out.compile(cmd=ffmpeg_exe()), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed cutting {source}: {proc.stderr.decode(errors='replace')[-400:]}")
    return path


def _has_audio(source: str) -> bool:
    return not source.endswith(MOT20[1])


def make_lrw_corpus(base: str, media: str, clips=LRW_CLIPS) -> FacesCorpus:
    """base/lipread_mp4/<WORD>/<split>/<WORD>_NNNNN.{mp4,txt} cut from media/grid; 256x256
    (the centre 288x288 of the GRID frame, scaled). Word durations 0.30 s, 0.35 s, ..."""
    root = os.path.join(base, "lipread_mp4")
    words = sorted({c[0] for c in clips})
    out = []
    for num, (word, split, source, start) in enumerate(clips, 1):
        stem, duration = f"{word}_{num:05d}", round(0.30 + 0.05 * (num - 1), 2)
        folder = os.path.join(root, word, split)
        cut(os.path.join(media, "grid", f"{source}.mpg"), os.path.join(folder, f"{stem}.mp4"), start, 1.16,
            LRW_FILTERS, frames=29)
        with open(os.path.join(folder, f"{stem}.txt"), "w", encoding="utf-8") as f:
            f.write(f"Text: {word}\nConf: 3\n\n\nDuration: {duration:.2f} seconds\n")
        out.append(FaceClip(f"{word}/{split}/{stem}", os.path.join(folder, f"{stem}.mp4"), word, words.index(word),
                            split, {"word_duration": duration}))
    return FacesCorpus(base, out)


def make_dfdc_corpus(base: str, media: str, videos=DFDC_VIDEOS, seconds: float = 1.6) -> FacesCorpus:
    """base/dfdc_train_part_{0,1}/ with metadata.json, and base/{train,test}.txt lists."""
    meta: dict[int, dict] = {}
    out, lines = [], {"train": [], "test": []}
    for part, name, label, source, original, role in videos:
        part_dir = os.path.join(base, f"dfdc_train_part_{part}")
        src = os.path.join(media, *MOT20) if source is None else os.path.join(media, "grid", f"{source}.mpg")
        start = 0.0 if source is None else 0.6 if label == "FAKE" else 0.3
        cut(src, os.path.join(part_dir, name), start, seconds, FAKE_FILTERS if label == "FAKE" else ())
        entry = {"label": label, "split": "train", **({"original": original} if original else {})}
        meta.setdefault(part, {})[name] = entry
        extra = {"part": f"dfdc_train_part_{part}",
                 **({"original": f"dfdc_train_part_{part}/{original}"} if original else {})}
        out.append(FaceClip(f"dfdc_train_part_{part}/{name}", os.path.join(part_dir, name), label,
                            int(label == "FAKE"), role, extra, ok=source is not None))
        lines[role].append(f"{name[:-4]}.dfdc_train_part_{part:02d}")
    for part, entries in meta.items():
        with open(os.path.join(base, f"dfdc_train_part_{part}", "metadata.json"), "w", encoding="utf-8") as f:
            json.dump(entries, f)
    lists = {}
    for role, names in lines.items():
        lists[role] = os.path.join(base, f"{role}.txt")
        with open(lists[role], "w", encoding="utf-8") as f:
            f.write("".join(n + "\n" for n in names))
    return FacesCorpus(base, out, lists)
