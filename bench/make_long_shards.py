"""Shards of long samples for the loader benchmarks, made from one real sample: its JPEG
frames repeated to `--frames` (a 10 s K-AV sample at 10 fps has 100) and its mel tiled to
match, written as `--shards` tars of `--samples` samples each.

    .venv/bin/python bench/make_long_shards.py /tmp/mshards/videos-000000.tar /tmp/mshards100
    .venv/bin/python bench/bench_loader.py --shards '/tmp/mshards100/v-{000000..000001}.tar' \\
        --workers 1 --shuffle-buffer 1000 --batches 40
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import webdataset as wds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avprep.format import FRAMES, MEL, MEL_DTYPE, FormatError, open_sample  # noqa: E402
from glcm.data import read_shard  # noqa: E402


def first_sample(tar: str) -> dict:
    """The first sample of `tar`; SystemExit with one line when there is none."""
    def stop(exc: Exception) -> bool:
        raise SystemExit(f"error: {tar}: cannot be read ({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc.args[0]})")
    raw = next(iter(read_shard(tar, stop)), None)
    if raw is None:
        raise SystemExit(f"error: {tar} holds no sample: give an avprep shard")
    return raw


def long_sample(raw: dict, frames: int) -> tuple[dict, bytes, bytes]:
    """(metadata dict, frames member, mel member) with the sample's frames repeated to `frames`."""
    try:
        sample = open_sample(raw, require_video=True, require_audio=True)
    except FormatError as exc:
        raise SystemExit(f"error: the first sample cannot be used ({exc}): give an audio-visual avprep shard") from None
    meta = sample.meta
    jpegs = [bytes(memoryview(raw[FRAMES])[meta.frame_offsets[i]:meta.frame_offsets[i + 1]])
             for i in range(meta.num_frames)]
    chosen = [jpegs[i % len(jpegs)] for i in range(frames)]
    offsets = np.concatenate([[0], np.cumsum([len(j) for j in chosen])]).tolist()
    mel = sample.mel()
    tiled = np.concatenate([mel] * -(-frames // meta.num_frames), axis=1)[:, :frames * meta.mel_per_frame]
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(tiled, dtype=MEL_DTYPE))
    fields = json.loads(raw["json"])
    fields.update(num_frames=frames, frame_offsets=offsets)
    return fields, b"".join(chosen), buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tar", help="a shard to take the first sample from")
    ap.add_argument("out", help="folder for the new shards")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--samples", type=int, default=20, help="samples per shard")
    args = ap.parse_args()
    fields, frames, mel = long_sample(first_sample(args.tar), args.frames)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for t in range(args.shards):
        with wds.TarWriter(str(Path(args.out) / f"v-{t:06d}.tar")) as sink:
            for j in range(args.samples):
                fields["key"] = f"s{t}_{j}"
                sink.write({"__key__": fields["key"], "json": json.dumps(fields).encode(), MEL: mel, FRAMES: frames})
    print(f"{args.shards} shards of {args.samples} samples, {args.frames} frames "
          f"({len(frames) / args.frames / 1024:.1f} KiB a frame) in {args.out}")


if __name__ == "__main__":
    main()
