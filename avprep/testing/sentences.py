"""A tiny synthetic "sentence" corpus for CTC: each letter is a coloured frame held for a
few frames, written as real format-v1 shards (visual-only samples with `extra.text`).

Letters A-H have eight distinct colours (plus per-pixel noise); inside a word a black
frame separates letters (so a doubled letter shows twice); a space between words is a
black-and-white checkerboard held for two frames. Sentences are 2-3 words of 1-3 letters,
so a model must read the sequence, not a single frame. `bad_samples` adds what the
sentence task must skip with a reason: no transcript, a transcript longer than CTC can
fit into the frames, characters outside the vocabulary, and an utterance of ~90 frames
(longer than any sentence above, ~40 at most: over a `task.max_frames` of 60).
"""
from __future__ import annotations

import os

import numpy as np

LETTERS = "ABCDEFGH"
COLOURS = {"A": (230, 40, 40), "B": (40, 200, 40), "C": (40, 60, 230), "D": (230, 220, 40),
           "E": (220, 40, 220), "F": (40, 220, 220), "G": (250, 140, 20), "H": (140, 70, 20)}
FPS = 25.0


def make_text(rng: np.random.Generator) -> str:
    words = int(rng.integers(2, 4))
    return " ".join("".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 4)))) for _ in range(words))


def _frame(colour, size: int, rng: np.random.Generator) -> np.ndarray:
    img = np.empty((size, size, 3), np.float32)
    img[:] = colour
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _checker(size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size] // max(1, size // 4)
    return np.repeat((((y + x) % 2) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def render(text: str, rng: np.random.Generator, size: int = 32, hold: tuple[int, int] = (2, 3)) -> np.ndarray:
    """(T, size, size, 3) uint8 RGB frames showing `text` (letters A-H and spaces)."""
    black = np.zeros((size, size, 3), np.uint8)
    frames = [black]
    for i, c in enumerate(text):
        if c == " ":
            frames += [_checker(size)] * 2
            continue
        frames += [_frame(COLOURS[c], size, rng) for _ in range(int(rng.integers(hold[0], hold[1] + 1)))]
        if i + 1 < len(text) and text[i + 1] != " ":
            frames.append(black)
    frames.append(black)
    return np.stack(frames)


def sentence_sample(key: str, frames: np.ndarray, text: str, split: str) -> dict:
    """A visual-only format sample made by the format's encoder, transcript in extra.text."""
    from avprep.format import SampleMeta, SourceVideo, encode_sample
    n, h, w = frames.shape[:3]
    source = SourceVideo(width=int(w), height=int(h), sar="1", rotation=0, fps=FPS, codec="rawvideo",
                         audio_codec=None, audio_channels=None, audio_sample_rate=None)
    meta = SampleMeta(key=key, source="sentences", item_id=f"main/{key}", split=split, source_path=f"{key}.mp4",
                      segment=0, first_frame=0, fps=FPS, start_time=0.0, end_time=round(n / FPS, 6),
                      cut_start=None, cut_end=None, has_audio=False, sample_rate=16000, hop_length=160,
                      n_fft=400, n_mels=80, mel_per_frame=4, labels={}, extra={"text": text, "set": "main"},
                      source_video=source)
    return encode_sample(meta, frames, None, 90)


def make_samples(n: int, seed: int, split: str, size: int = 32) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        text = make_text(rng)
        out.append(sentence_sample(f"sent_{split}_{seed}_{i:04d}", render(text, rng, size), text, split))
    return out


def bad_samples(size: int = 32) -> dict[str, dict]:
    """Samples the sentence task must skip, by the reason it must give."""
    rng = np.random.default_rng(99)
    short = render("AB", rng, size)                                   # ~8 frames
    long_text = "ABCDEFGH ABCDEFGH ABCDEFGH"                                  # ~90 frames
    return {"no_transcript": sentence_sample("bad_empty", render("AB", rng, size), "", "train"),
            "too_long": sentence_sample("bad_long", render(long_text, rng, size), long_text, "train"),
            "ctc_too_short": sentence_sample("bad_short", short, "ABCDEFGH ABCDEFGH", "train"),
            "bad_transcript": sentence_sample("bad_chars", render("AB", rng, size), "A+B", "train")}


def write_shards(samples: list[dict], out_dir: str, prefix: str, per_shard: int = 32) -> list[str]:
    """`{prefix}-NNNNNN.tar` shards of the given samples."""
    import webdataset as wds
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for s in range(0, len(samples), per_shard):
        path = os.path.join(out_dir, f"{prefix}-{s // per_shard:06d}.tar")
        with wds.TarWriter(path) as sink:
            for sample in samples[s:s + per_shard]:
                sink.write(sample)
        paths.append(path)
    return paths
