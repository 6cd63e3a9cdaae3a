"""Looking at built shards: inspect (counts), verify (the format's full check and the sample
counts the build recorded), both through avprep.format's validator."""
from __future__ import annotations

import glob
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import webdataset as wds

from avprep.format import (FORMAT_VERSION, META, FormatError, SampleMeta, brace_paths, expand_shards,
                           is_command_or_url, parse_meta, verify_sample)

MANIFEST = "manifest.json"
# What reading a damaged or missing tar raises (webdataset passes tarfile's errors on).
TAR_ERRORS = (OSError, ValueError, EOFError, tarfile.TarError)


def tar_error(exc: BaseException) -> str:
    """`Type: message` of a damaged tar's error. webdataset's carry (message @ file object,
    file object, name): the message alone, without the file object's repr."""
    message = exc.args[0] if len(exc.args) > 1 and isinstance(exc.args[0], str) else str(exc)
    return f"{type(exc).__name__}: {message.split(' @ <')[0]}"


def iter_raw(shards: list[str]) -> Iterator[dict]:
    """Raw samples of shard paths from `expand_shards` (bytes only; nothing decoded, nothing
    unpickled). Raises TAR_ERRORS for a damaged tar."""
    ds = wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples())
    yield from ds


def read_meta(sample: dict) -> SampleMeta:
    """The metadata of a raw sample (FormatError if it breaks a rule)."""
    if META not in sample:
        raise FormatError("missing_member", META)
    return parse_meta(sample[META])


def stats_path(shard: str) -> str | None:
    """The per-shard stats file a build writes beside `shard` (None for a URL or non-tar)."""
    if is_command_or_url(shard) or not shard.endswith(".tar"):
        return None
    return shard[:-4] + ".stats.json"


def read_json(path: str) -> object:
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


# ---- inspect ------------------------------------------------------------------------------

@dataclass
class Inspection:
    shards: int = 0
    samples: int = 0
    seconds: float = 0.0
    sources: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    visual_only: int = 0                                 # samples without audio (has_audio false)
    audio_only: int = 0                                  # samples without frames (has_video false)
    failures: Counter = field(default_factory=Counter)
    inputs: Counter = field(default_factory=Counter)
    bad: Counter = field(default_factory=Counter)        # samples whose metadata breaks a rule, by reason
    unreadable: list[str] = field(default_factory=list)  # shards (or stats files) that could not be read

    @property
    def ok(self) -> bool:
        """False when a shard or stats file could not be read: the counts are incomplete."""
        return not self.unreadable

    def report(self) -> str:
        lines = [f"{self.shards} shards, {self.samples} samples, {self.seconds / 3600:.3f} hours"]
        lines.append("sources: " + ", ".join(f"{k}={v}" for k, v in sorted(self.sources.items())))
        if any(self.splits):
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in sorted(self.splits.items(), key=str)))
        if self.visual_only or self.audio_only:
            lines.append(f"visual-only samples (no audio): {self.visual_only}, "
                         f"audio-only samples (no video): {self.audio_only}")
        if self.inputs:
            lines.append("inputs: " + ", ".join(f"{k}={v}" for k, v in sorted(self.inputs.items())))
        if self.failures:
            lines.append("failure reasons: " + ", ".join(f"{k}={v}" for k, v in self.failures.most_common()))
        if self.bad:
            lines.append(f"bad samples (not counted above; run avprep verify): "
                         + ", ".join(f"{k}={v}" for k, v in self.bad.most_common()))
        for where in self.unreadable:
            lines.append(f"unreadable: {where}")
        return "\n".join(lines)


def inspect_shards(spec: str | list[str], allow_commands: bool = False) -> Inspection:
    """Counts from each sample's metadata and each shard's stats file; a sample or file that
    cannot be read is counted as such, never a crash."""
    shards = expand_shards(spec, allow_commands)
    res = Inspection(shards=len(shards))
    for shard in shards:
        try:
            for sample in iter_raw([shard]):
                _inspect_sample(sample, res)
        except TAR_ERRORS as exc:
            res.unreadable.append(f"{shard}: {tar_error(exc)}")
        _inspect_stats(shard, res)
    return res


def _inspect_sample(sample: dict, res: Inspection) -> None:
    try:
        meta = read_meta(sample)
    except FormatError as exc:
        res.bad[exc.reason] += 1
        return
    res.samples += 1
    res.seconds += meta.num_frames / meta.fps
    res.sources[meta.source] += 1
    res.splits[meta.split] += 1
    res.visual_only += not meta.has_audio
    res.audio_only += not meta.has_video


def _inspect_stats(shard: str, res: Inspection) -> None:
    path = stats_path(shard)
    if path is None or not os.path.exists(path):
        return
    try:
        outcomes = read_json(path)["outcomes"]
        rows = [(o["status"], o.get("reason")) for o in outcomes]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        res.unreadable.append(f"{path}: {type(exc).__name__}: {exc}")
        return
    for status, reason in rows:
        res.inputs[status] += 1
        if status != "ok":
            res.failures[reason] += 1


# ---- verify -------------------------------------------------------------------------------

@dataclass
class Verification:
    shards: int = 0
    checked: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)   # (where, why): samples, shards, manifest
    notes: list[str] = field(default_factory=list)             # checks that could not be done

    @property
    def ok(self) -> bool:
        return not self.bad

    def summary(self) -> str:
        line = (f"{'OK' if self.ok else 'FAILED'}: {self.shards} shards, {self.checked} samples checked, "
                f"{len(self.bad)} bad")
        return line + (f", {len(self.notes)} checks not done" if self.notes else "")


def verify_shards(spec: str | list[str], allow_commands: bool = False) -> Verification:
    """Every sample passes the format's full check (verify_sample), keys are unique, and
    every shard holds the samples its build recorded: against manifest.json when `spec`
    is a build folder (missing, extra or short shards are bad; so is a missing manifest),
    against each tar's sibling stats file for a glob or brace pattern (noted where there is
    none). ValueError for a command/URL spec without `allow_commands`."""
    res = Verification()
    keys: dict[str, str] = {}
    for shard, expected in _plan(spec, allow_commands, res):
        res.shards += 1
        _verify_shard(shard, expected, res, keys)
    return res


def _plan(spec: str | list[str], allow_commands: bool, res: Verification) -> list[tuple[str, int | None]]:
    """(shard, expected sample count or None) for each shard that `spec` names."""
    plan = []
    for item in [spec] if isinstance(spec, str) else spec:
        if not is_command_or_url(item) and os.path.isdir(item):
            plan += _folder_plan(item, res)
        else:
            plan += _pattern_plan(item, allow_commands, res)
    return plan


def _pattern_plan(spec: str, allow_commands: bool, res: Verification) -> list[tuple[str, int | None]]:
    if "{" in spec and not is_command_or_url(spec):
        paths = brace_paths(spec)
        for path in paths:
            if not os.path.isfile(path):
                res.bad.append((path, f"missing shard of {spec}"))
        shards = [p for p in paths if os.path.isfile(p)]
    else:
        try:
            shards = expand_shards(spec, allow_commands)
        except FileNotFoundError as exc:
            res.bad.append((spec, str(exc)))
            return []
    plan = []
    for shard in shards:
        plan.append((shard, _stats_samples(shard, res, required=False)))
    if shards and glob.has_magic(spec) and not is_command_or_url(spec):
        res.notes.append(f"{spec}: a glob cannot tell whether shards are missing; "
                         "give the build folder to check against its manifest.json")
    return plan


def _stats_samples(shard: str, res: Verification, required: bool) -> int | None:
    """The `samples` count of the shard's stats file; None (noted, or bad if `required`) if absent."""
    path = stats_path(shard)
    if path is None or not os.path.exists(path):
        why = f"no stats file beside it{'' if path else ' (not a local .tar)'}: sample count not checked"
        if required:
            res.bad.append((shard, why))
        else:
            res.notes.append(f"{shard}: {why}")
        return None
    try:
        samples = read_json(path)["samples"]
        if type(samples) is not int or samples < 0:
            raise ValueError(f"samples is {samples!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        res.bad.append((path, f"unreadable stats file ({type(exc).__name__}: {exc})"))
        return None
    return samples


def _folder_plan(folder: str, res: Verification) -> list[tuple[str, int | None]]:
    """A build folder: its manifest.json names every shard and its sample count."""
    folder = os.path.abspath(folder)
    try:
        tars = sorted(p for p in (os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".tar"))
                      if os.path.isfile(p))     # a FIFO named x.tar would block the read forever
    except OSError as exc:
        res.bad.append((folder, f"cannot list the folder: {exc.strerror or exc}"))
        return []
    manifest_path = os.path.join(folder, MANIFEST)
    if not os.path.exists(manifest_path):
        res.bad.append((folder, f"no {MANIFEST}: not a finished build, so missing shards cannot be "
                        "detected; its shards are checked against their stats files"))
        return [(t, _stats_samples(t, res, required=False)) for t in tars]
    try:
        listed = _manifest_shards(manifest_path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        res.bad.append((manifest_path, f"unreadable manifest ({type(exc).__name__}: {exc})"))
        return [(t, _stats_samples(t, res, required=True)) for t in tars]
    plan = []
    for name, samples in listed.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            res.bad.append((path, f"missing: {MANIFEST} lists it with {samples} samples"))
            continue
        stats = _stats_samples(path, res, required=True)
        if stats is not None and stats != samples:
            res.bad.append((path, f"its stats file says {stats} samples, {MANIFEST} says {samples}"))
        plan.append((path, samples))
    for path in tars:
        if os.path.basename(path) not in listed:
            res.bad.append((path, f"not listed in {MANIFEST} (a stray shard a glob would read)"))
    return plan


def _manifest_shards(path: str) -> dict[str, int]:
    """{shard file name: samples} from a manifest; ValueError/KeyError/TypeError if malformed."""
    manifest = read_json(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format_version {manifest.get('format_version')!r}, this avprep reads {FORMAT_VERSION}")
    listed = {}
    for entry in manifest["shards"]:
        name, samples = entry["name"], entry["samples"]
        if not isinstance(name, str) or os.path.basename(name) != name or not name.endswith(".tar"):
            raise ValueError(f"shard name {name!r} is not a .tar file name in the folder")
        if type(samples) is not int or samples < 0:
            raise ValueError(f"{name}: samples {samples!r}")
        listed[name] = samples
    if sum(listed.values()) != manifest["samples"]:
        raise ValueError(f"samples {manifest['samples']!r} != the sum over its shards {sum(listed.values())}")
    return listed


def _verify_shard(shard: str, expected: int | None, res: Verification, keys: dict[str, str]) -> None:
    count = 0
    try:
        for sample in iter_raw([shard]):
            count += 1
            _verify_sample(shard, sample, res, keys)
    except TAR_ERRORS as exc:
        res.bad.append((shard, f"unreadable shard after {count} samples: {tar_error(exc)}"))
        return
    finally:
        res.checked += count
    if expected is not None and count != expected:
        res.bad.append((shard, f"holds {count} samples, the build wrote {expected} (truncated or replaced?)"))


def _verify_sample(shard: str, sample: dict, res: Verification, keys: dict[str, str]) -> None:
    key = sample.get("__key__", "?")
    where = f"{shard}:{key}"
    try:
        verify_sample(sample)
    except FormatError as exc:
        res.bad.append((where, str(exc)))
    if key in keys:
        res.bad.append((where, f"duplicate key (also in {keys[key]})"))
    keys.setdefault(key, shard)
