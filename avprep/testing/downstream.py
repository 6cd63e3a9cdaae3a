"""Tiny downstream corpora in the exact UCF101, HMDB51 and ESC-50 layouts
(../shared/paper/DOWNSTREAM.md), for tests and demos; and "which colour sounds", avcorr
clips labelled by their sounding colour (as shards, or as an ESC-50-layout corpus).

Each writer returns a `Corpus` recording what it wrote and what a recipe must make of it:
every file's listed name, path (None: listed but missing on purpose), label, split roles
and whether it has an audio track, plus files that no list names. The videos are small
generated clips (pattern frames, a per-file tone); some have no audio track.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from avprep.testing import avcorr
from avprep.testing.synthetic import pattern_frames, write_video


@dataclass
class Entry:
    item_id: str                  # what the recipe's item_id must be
    path: str | None              # the file written; None: listed but missing
    label: str | None = None
    label_index: int | None = None
    splits: dict[str, str] = field(default_factory=dict)   # expected extra["splits"]
    extra: dict = field(default_factory=dict)              # other expected extras (ESC-50)
    has_audio: bool = True
    listed: bool = True           # False: a file that no list names (an `unlisted` failure)


@dataclass
class Corpus:
    root: str                     # the folder given to the recipe
    lists: str                    # the split-list folder (ESC-50: meta/esc50.csv)
    entries: list[Entry]

    @property
    def present(self) -> list[Entry]:
        return [e for e in self.entries if e.listed and e.path is not None]

    @property
    def missing(self) -> list[Entry]:
        return [e for e in self.entries if e.path is None]

    @property
    def unlisted(self) -> list[Entry]:
        return [e for e in self.entries if not e.listed]

    def entry(self, item_id: str) -> Entry:
        return next(e for e in self.entries if e.item_id == item_id)


def tone(seconds: float, sample_rate: int, hz: float) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_clip(path: str, seed: int, has_audio: bool, seconds: float = 4.0, fps: float = 10.0,
               width: int = 64, height: int = 48) -> str:
    """A small .avi (MPEG-4 video, PCM audio unless `has_audio` is false)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = pattern_frames(int(round(seconds * fps)), height, width, seed)
    audio = tone(seconds, 16000, 200.0 + 50 * seed) if has_audio else None
    return write_video(path, frames, fps, audio, codec="mpeg4", audio_codec="pcm")


def _write_lines(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\r\n" for line in lines))      # the originals have CRLF line ends


# ---- UCF101 -------------------------------------------------------------------------------

UCF_CLASSES = ("ApplyEyeMakeup", "HandstandPushups", "YoYo")


def make_ucf101_corpus(base: str, seconds: float = 4.0) -> Corpus:
    """base/UCF-101/<Class>/v_<Class>_gNN_c01.avi and base/ucfTrainTestlist/.

    Three classes x groups g01, g02; split s tests group g01 in splits 1 and 3 and g02 in
    split 2. HandstandPushups files are named v_HandStandPushups_* while the lists say
    v_HandstandPushups_*; files of odd number have no audio track; YoYo g02 is listed but
    missing; YoYo g03 exists but no list names it."""
    root, lists = os.path.join(base, "UCF-101"), os.path.join(base, "ucfTrainTestlist")
    roles = {1: {"1": "test", "2": "train", "3": "test"}, 2: {"1": "train", "2": "test", "3": "train"}}
    entries, n = [], 0
    for label_index, cls in enumerate(UCF_CLASSES):
        file_cls = "HandStandPushups" if cls == "HandstandPushups" else cls
        for group in (1, 2):
            listed = f"{cls}/v_{cls}_g{group:02d}_c01.avi"
            path = None if (cls, group) == ("YoYo", 2) else os.path.join(root, cls, f"v_{file_cls}_g{group:02d}_c01.avi")
            has_audio = n % 2 == 0
            if path:
                write_clip(path, n, has_audio, seconds)
            entries.append(Entry(listed[:-4], path, cls, label_index, dict(roles[group]), has_audio=has_audio))
            n += 1
    stray = os.path.join(root, "YoYo", "v_YoYo_g03_c01.avi")
    write_clip(stray, n, True, seconds)
    entries.append(Entry("YoYo/v_YoYo_g03_c01", stray, listed=False))
    _write_lines(os.path.join(lists, "classInd.txt"), [f"{i + 1} {c}" for i, c in enumerate(UCF_CLASSES)])
    for split in ("1", "2", "3"):
        listed_here = [e for e in entries if e.listed]
        _write_lines(os.path.join(lists, f"trainlist0{split}.txt"),
                     [f"{e.item_id}.avi {e.label_index + 1}" for e in listed_here if e.splits[split] == "train"])
        _write_lines(os.path.join(lists, f"testlist0{split}.txt"),
                     [f"{e.item_id}.avi" for e in listed_here if e.splits[split] == "test"])
    return Corpus(root, lists, entries)


# ---- HMDB51 -------------------------------------------------------------------------------

HMDB_VIDEOS = {     # class -> video names (real-style names; one starts with '#', as in HMDB's clap)
    "chew": ("Chewing_Gum_chew_h_nm_np1_fr_med_0", "#20_Rhythm_chew_u_nm_np1_fr_goo_0"),
    "brush_hair": ("April_09_brush_hair_u_nm_np1_ba_goo_0", "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0"),
    "cartwheel": ("Bodenturnen_cartwheel_f_cm_np1_le_med_0", "Cartwheel_Tutorial_cartwheel_f_cm_np1_ri_med_1"),
}
HMDB_TAGS = ({"1": "1", "2": "2", "3": "0"}, {"1": "2", "2": "0", "3": "1"})   # per video, split -> tag
_TAG_ROLES = {"0": "unused", "1": "train", "2": "test"}


def make_hmdb51_corpus(base: str, seconds: float = 4.0) -> Corpus:
    """base/hmdb51_org/<class>/<video>.avi and base/testTrainMulti_7030_splits/
    <class>_test_split{1,2,3}.txt (lines `<video>.avi <tag>`).

    Classes are written out of sorted order (label_index is the sorted place); files of odd
    number have no audio track; the second cartwheel video is listed but missing; one chew
    file exists that no split file names."""
    root, lists = os.path.join(base, "hmdb51_org"), os.path.join(base, "testTrainMulti_7030_splits")
    order = sorted(HMDB_VIDEOS)
    entries, n = [], 0
    for cls, videos in HMDB_VIDEOS.items():
        for j, video in enumerate(videos):
            path = None if (cls, j) == ("cartwheel", 1) else os.path.join(root, cls, video + ".avi")
            has_audio = n % 2 == 0
            if path:
                write_clip(path, n, has_audio, seconds)
            splits = {s: _TAG_ROLES[t] for s, t in HMDB_TAGS[j].items()}
            entries.append(Entry(f"{cls}/{video}", path, cls, order.index(cls), splits, has_audio=has_audio))
            n += 1
        for split in ("1", "2", "3"):
            _write_lines(os.path.join(lists, f"{cls}_test_split{split}.txt"),
                         [f"{video}.avi {HMDB_TAGS[j][split]} " for j, video in enumerate(videos)])
    stray = os.path.join(root, "chew", "Unlisted_chew_h_nm_np1_fr_med_2.avi")
    write_clip(stray, n, True, seconds)
    entries.append(Entry("chew/Unlisted_chew_h_nm_np1_fr_med_2", stray, listed=False))
    return Corpus(root, lists, entries)


# ---- ESC-50 -------------------------------------------------------------------------------

ESC50_ROWS = (   # filename, fold, target, category, esc10, src_file, take
    ("1-100032-A-0.wav", 1, 0, "dog", True, "100032", "A"),
    ("1-100038-A-14.wav", 1, 14, "chirping_birds", False, "100038", "A"),
    ("2-100648-A-43.wav", 2, 43, "car_horn", False, "100648", "A"),
    ("3-100018-B-25.wav", 3, 25, "footsteps", False, "100018", "B"),
    ("5-9032-A-0.wav", 5, 0, "dog", True, "9032", "A"),
)


def make_esc50_corpus(base: str, seconds: float = 5.0, sample_rate: int = 44100) -> Corpus:
    """base/ESC-50/audio/*.wav (mono, 44.1 kHz, 5 s tones) and meta/esc50.csv. The last row's
    WAV is missing; one WAV in audio/ has no row."""
    root = os.path.join(base, "ESC-50")
    audio, meta = os.path.join(root, "audio"), os.path.join(root, "meta", "esc50.csv")
    os.makedirs(audio, exist_ok=True)
    entries = []
    for n, (name, fold, target, category, esc10, src, take) in enumerate(ESC50_ROWS):
        path = None if n == len(ESC50_ROWS) - 1 else os.path.join(audio, name)
        if path:
            sf.write(path, tone(seconds, sample_rate, 300.0 + 40 * target), sample_rate, subtype="PCM_16")
        entries.append(Entry(name[:-4], path, category, target,
                             extra={"fold": fold, "esc10": esc10, "take": take, "src_file": src}))
    stray = os.path.join(audio, "4-999999-A-7.wav")
    sf.write(stray, tone(seconds, sample_rate, 500.0), sample_rate, subtype="PCM_16")
    entries.append(Entry("audio/4-999999-A-7", stray, listed=False))
    os.makedirs(os.path.dirname(meta), exist_ok=True)
    with open(meta, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for name, fold, target, category, esc10, src, take in ESC50_ROWS:
            w.writerow([name, fold, target, category, str(esc10), src, take])
    return Corpus(root, meta, entries)


# ---- "which colour sounds": labelled avcorr clips (pretraining-helps test, bench, demo) --------

COLOURS = tuple(avcorr.PALETTE)          # label_index order


def colour_label(colour: str) -> dict:
    return {"label": colour, "label_index": COLOURS.index(colour)}


def write_colour_shards(out_dir: str, count: int, seed: int, test_every: int = 4, **clip_kw) -> str:
    """avcorr clips (avprep.testing.avcorr, format-v1 samples) labelled by the sounding
    colour (8 classes, chance 1/8): every `test_every`-th clip is a test clip (split 1
    `test`, fold 1), the others train (split 1 `train`, fold 2), so one shard serves a
    video task (`--split 1`) and an audio task (`--fold 1`). Returns the shard's path."""
    import json

    import webdataset as wds

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "colours-000000.tar")
    with wds.TarWriter(path) as sink:
        for i, clip in enumerate(avcorr.make_clips(count, seed=seed, **clip_kw)):
            sample = avcorr.clip_sample(clip, f"colour_{i:04d}", f"clip_{i:04d}.mkv")
            meta = json.loads(sample["json"])
            test = i % test_every == 0
            meta["labels"] = colour_label(clip.colour)
            meta["extra"] = {"splits": {"1": "test" if test else "train"}, "fold": 1 if test else 2}
            sink.write({**sample, "json": json.dumps(meta, sort_keys=True).encode()})
    return path


def make_colour_esc50_corpus(base: str, count: int, seed: int, seconds: float = 5.0,
                             sample_rate: int = 44100, **clip_kw) -> Corpus:
    """base/ESC-50/audio/{fold}-{clip}-A-{target}.wav + meta/esc50.csv (the ESC-50 layout)
    holding the sound tracks of `count` avcorr clips: target = the sounding colour's index,
    category = its name (8 of ESC-50's 50 targets used). Folds 1-5 in turn (clip i in fold
    1 + i % 5), so `--fold 1` tests on a fifth of them."""
    root = os.path.join(base, "ESC-50")
    audio, meta = os.path.join(root, "audio"), os.path.join(root, "meta", "esc50.csv")
    os.makedirs(audio, exist_ok=True)
    os.makedirs(os.path.dirname(meta), exist_ok=True)
    clips = avcorr.make_clips(count, seed=seed, min_seconds=seconds, max_seconds=seconds,
                              sample_rate=sample_rate, **clip_kw)
    entries, rows = [], []
    for i, clip in enumerate(clips):
        fold, label = 1 + i % 5, colour_label(clip.colour)
        name = f"{fold}-{100000 + i}-A-{label['label_index']}.wav"
        sf.write(os.path.join(audio, name), clip.audio, sample_rate, subtype="PCM_16")
        entries.append(Entry(name[:-4], os.path.join(audio, name), clip.colour, label["label_index"],
                             extra={"fold": fold, "esc10": False, "take": "A", "src_file": str(100000 + i)}))
        rows.append([name, fold, label["label_index"], clip.colour, "False", str(100000 + i), "A"])
    with open(meta, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return Corpus(root, meta, entries)
