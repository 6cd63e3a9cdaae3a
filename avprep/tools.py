"""Looking at built shards: inspect (counts), verify (every sample decodes and aligns), preview."""
from __future__ import annotations

import glob
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import webdataset as wds

from avprep.shards import FORMAT_VERSION, decode_jpegs, load_npy

MEMBERS = ("frames.mjpeg", "mel.npy", "json")


def expand_shards(spec: str | list[str]) -> list[str]:
    """A folder, a glob, a brace pattern ('x-{000000..000009}.tar') or a list -> shard paths."""
    if isinstance(spec, list):
        return [p for s in spec for p in expand_shards(s)]
    if "{" in spec:
        return list(wds.shardlists.expand_urls(spec))
    if "://" in spec or spec.startswith("pipe:"):
        return [spec]
    found = []
    for path in sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]:
        if os.path.isdir(path):
            found += sorted(glob.glob(os.path.join(path, "*.tar")))
        elif os.path.exists(path):
            found.append(path)
    if not found:
        raise FileNotFoundError(f"no shards found at {spec!r} (give a folder, a glob or a brace pattern)")
    return found


def iter_raw(shards: list[str]) -> Iterator[dict]:
    """Raw samples (bytes only; nothing decoded, nothing unpickled)."""
    ds = wds.WebDataset(shards, shardshuffle=False, empty_check=False)
    yield from ds


def read_meta(sample: dict) -> dict:
    meta = json.loads(sample["json"])
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unknown format_version {meta.get('format_version')!r}")
    return meta


@dataclass
class Inspection:
    shards: int = 0
    samples: int = 0
    seconds: float = 0.0
    sources: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    inputs: Counter = field(default_factory=Counter)

    def report(self) -> str:
        lines = [f"{self.shards} shards, {self.samples} samples, {self.seconds / 3600:.3f} hours"]
        lines.append("sources: " + ", ".join(f"{k}={v}" for k, v in sorted(self.sources.items())))
        if any(self.splits):
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in sorted(self.splits.items(), key=str)))
        if self.inputs:
            lines.append("inputs: " + ", ".join(f"{k}={v}" for k, v in sorted(self.inputs.items())))
        if self.failures:
            lines.append("failure reasons: " + ", ".join(f"{k}={v}" for k, v in self.failures.most_common()))
        return "\n".join(lines)


def inspect_shards(spec: str | list[str]) -> Inspection:
    shards = expand_shards(spec)
    res = Inspection(shards=len(shards))
    for sample in iter_raw(shards):
        meta = read_meta(sample)
        res.samples += 1
        res.seconds += meta["num_frames"] / meta["fps"]
        res.sources[meta["source"]] += 1
        res.splits[meta.get("split")] += 1
    for shard in shards:
        stats_path = shard[:-4] + ".stats.json" if shard.endswith(".tar") else None
        if stats_path and os.path.exists(stats_path):
            with open(stats_path) as f:
                for o in json.load(f)["outcomes"]:
                    res.inputs[o["status"]] += 1
                    if o["status"] != "ok":
                        res.failures[o["reason"]] += 1
    return res


def check_sample(sample: dict) -> dict:
    """Decode one sample fully; raise ValueError naming what is wrong."""
    missing = [m for m in MEMBERS if m not in sample]
    if missing:
        raise ValueError(f"missing members {missing}")
    meta = read_meta(sample)
    offsets = meta["frame_offsets"]
    t = meta["num_frames"]
    if len(offsets) != t + 1 or offsets[-1] != len(sample["frames.mjpeg"]):
        raise ValueError("frame_offsets do not match frames.mjpeg")
    frames = decode_jpegs(sample["frames.mjpeg"], offsets)
    if frames.shape[1:3] != (meta["height"], meta["width"]):
        raise ValueError(f"frames are {frames.shape[1:3]}, metadata says {(meta['height'], meta['width'])}")
    mel = load_npy(sample["mel.npy"])
    k = meta["mel_per_frame"]
    if mel.shape != (meta["n_mels"], t * k):
        raise ValueError(f"mel shape {mel.shape} != ({meta['n_mels']}, {t}*{k}): not aligned with the frames")
    if k * meta["hop_length"] * meta["fps"] != meta["sample_rate"]:
        raise ValueError("mel_per_frame * hop * fps != sample_rate")
    if not np.isfinite(mel.astype(np.float32)).all():
        raise ValueError("mel has non-finite values")
    return meta


@dataclass
class Verification:
    checked: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad


def verify_shards(spec: str | list[str]) -> Verification:
    res = Verification()
    for shard in expand_shards(spec):
        try:
            for sample in iter_raw([shard]):
                res.checked += 1
                try:
                    check_sample(sample)
                except (ValueError, KeyError) as e:
                    res.bad.append((f"{shard}:{sample.get('__key__')}", str(e)))
        except (OSError, ValueError, tarfile.TarError) as e:   # unreadable tar
            res.bad.append((shard, f"unreadable shard: {e}"))
    return res
