"""The build: recipe items -> shard tasks -> shards, stats and a failures table.

A shard task is a pure function of its slice of the input list and the config, so the
result does not depend on the worker count or on interruptions. No exception escapes a
task: every input ends as ok, failed or missing, with a reason stored as data.
"""
from __future__ import annotations

import csv
import json
import os
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from avprep.clips import Clip, iter_clips
from avprep.config import BuildConfig, ConfigError, validate
from avprep.items import SourceItem
from avprep.probe import MediaError
from avprep.shards import FORMAT_VERSION, ShardWriter, encode_clip, write_json_atomic


@dataclass(frozen=True)
class ShardTask:
    index: int
    items: tuple[SourceItem, ...]
    out_dir: str
    root: str               # recipe root; source paths are stored relative to it
    cfg: BuildConfig

    @property
    def name(self) -> str:
        return f"{self.cfg.shard_prefix}-{self.index:06d}"

    @property
    def tar_path(self) -> str:
        return os.path.join(self.out_dir, self.name + ".tar")

    @property
    def stats_path(self) -> str:
        return os.path.join(self.out_dir, self.name + ".stats.json")

    def finished(self) -> bool:
        return os.path.exists(self.stats_path) and os.path.exists(self.tar_path)


def plan_shards(items: Sequence[SourceItem], cfg: BuildConfig, out_dir: str, root: str) -> list[ShardTask]:
    n = cfg.videos_per_shard
    return [ShardTask(i // n, tuple(items[i:i + n]), out_dir, root, cfg) for i in range(0, len(items), n)]


# ---------------------------------------------------------------- one shard (runs in a worker)

def run_shard(task: ShardTask) -> dict:
    """Write one shard and its stats; returns the stats. Never raises for bad input."""
    writer = ShardWriter(task.tar_path)
    outcomes = []
    try:
        for item in task.items:
            outcome, samples = process_item(item, task)
            for sample in samples:
                writer.write(sample)
            outcomes.append(outcome)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    stats = shard_stats(task, outcomes, writer.count)
    write_json_atomic(task.stats_path, stats)
    return stats


def process_item(item: SourceItem, task: ShardTask) -> tuple[dict, list[dict]]:
    """All samples of one input, or none: an input is ok or failed as a whole."""
    rel = _relpath(item.path, task.root)
    outcome = {"item_id": item.item_id, "source": item.source, "path": rel, "split": item.split,
               "status": "ok", "reason": None, "message": None, "samples": 0, "seconds": 0.0}
    if item.missing:
        outcome.update(status="missing", reason="missing", message="file listed by the recipe is not there")
        return outcome, []
    samples = []
    try:
        for clip in iter_clips(item, task.cfg):
            samples.append(_encode(clip, task.cfg, rel))
            outcome["seconds"] += clip.num_frames / clip.fps
    except MediaError as e:
        outcome.update(status="failed", reason=e.reason, message=e.message)
        return outcome, []
    except Exception as e:  # a worker boundary: an unexpected error is recorded, not raised
        outcome.update(status="failed", reason="error", message=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc(limit=6))
        return outcome, []
    outcome["samples"] = len(samples)
    outcome["seconds"] = round(outcome["seconds"], 3)
    return outcome, samples


def _encode(clip: Clip, cfg: BuildConfig, rel: str) -> dict:
    if cfg.crop.kind == "none":
        return encode_clip(clip, cfg, rel)
    from avprep.faces.stage import crop_clip  # dlib is loaded only by crop builds
    extra = clip.item.extra
    hint = (extra["face_x"], extra["face_y"]) if "face_x" in extra and "face_y" in extra else None
    out = crop_clip(clip, cfg.crop, hint)
    return encode_clip(clip, cfg, rel, frames=out.frames, extra_members=out.members,
                       extra_meta={"crop": out.meta})


def _relpath(path: str, root: str) -> str:
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def shard_stats(task: ShardTask, outcomes: list[dict], num_samples: int) -> dict:
    counts = Counter(o["status"] for o in outcomes)
    return {"shard": task.name + ".tar", "index": task.index, "inputs": len(outcomes),
            "samples": num_samples, "ok": counts["ok"], "failed": counts["failed"],
            "missing": counts["missing"], "seconds": round(sum(o["seconds"] for o in outcomes), 3),
            "outcomes": outcomes}


# ---------------------------------------------------------------- executors

def run_local(tasks: list[ShardTask], workers: int, on_done: Callable[[dict], None]) -> None:
    if workers <= 1:
        for task in tasks:
            on_done(run_shard(task))
        return
    import concurrent.futures as cf
    import multiprocessing as mp
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(run_shard, t) for t in tasks]
        try:
            for fut in cf.as_completed(futures):
                on_done(fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def run_ray(tasks: list[ShardTask], address: str, on_done: Callable[[dict], None]) -> None:
    """The same shard tasks on a Ray cluster (`auto`, `ray://host:port`, or `local`).

    Output paths must be on storage every node sees (a shared file system)."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--ray needs the ray package: pip install 'ray>=2.9'") from e
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1, max_retries=2)(run_shard)
    pending = [remote.remote(t) for t in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_done(ray.get(done[0]))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


# ---------------------------------------------------------------- the whole build

@dataclass
class BuildResult:
    out_dir: str
    shards: list[str]
    summary: dict


def build_dataset(items: Sequence[SourceItem], out_dir: str, cfg: BuildConfig, *, workers: int | None = None,
                  ray_address: str | None = None, root: str = "", recipe: str = "custom",
                  progress: bool = True) -> BuildResult:
    """Build (or resume) shards for `items` in `out_dir`."""
    validate(cfg)
    items = list(items)
    _check_keys(items)
    os.makedirs(out_dir, exist_ok=True)
    tasks = plan_shards(items, cfg, out_dir, root)
    _check_plan(out_dir, cfg, recipe, items, len(tasks))
    _remove_stale_tmp(out_dir)
    todo = [t for t in tasks if not t.finished()]
    bar = _Progress(len(items), sum(len(t.items) for t in tasks if t not in todo), progress)
    try:
        if ray_address:
            run_ray(todo, ray_address, bar.update)
        else:
            run_local(todo, workers or os.cpu_count() or 1, bar.update)
    finally:
        bar.close()
    summary = finalize(tasks, out_dir, cfg, recipe)
    return BuildResult(out_dir, [t.tar_path for t in tasks], summary)


def _check_keys(items: list[SourceItem]) -> None:
    seen: dict[str, str] = {}
    for item in items:
        stem = item.key_stem()
        if stem in seen:
            raise ConfigError(f"two inputs map to the same sample key {stem!r}: "
                              f"{seen[stem]!r} and {item.item_id!r}")
        seen[stem] = item.item_id


def _check_plan(out_dir: str, cfg: BuildConfig, recipe: str, items: list[SourceItem], num_shards: int) -> None:
    """A resumed build must be the same build: same options and the same input list."""
    import hashlib
    digest = hashlib.sha256("\n".join(f"{i.source}/{i.item_id}" for i in items).encode()).hexdigest()
    plan = {"format_version": FORMAT_VERSION, "recipe": recipe, "config": cfg.to_dict(),
            "inputs": len(items), "inputs_sha256": digest, "shards": num_shards}
    path = os.path.join(out_dir, "plan.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != json.loads(json.dumps(plan)):
            raise ConfigError(f"{out_dir} holds a build with other inputs or options "
                              "(see its plan.json); use another --out folder to start a new build")
        return
    write_json_atomic(path, plan)


def _remove_stale_tmp(out_dir: str) -> None:
    for name in os.listdir(out_dir):
        if name.startswith(".") and name.endswith(".tmp"):
            os.remove(os.path.join(out_dir, name))


class _Progress:
    def __init__(self, total: int, done: int, enabled: bool):
        from tqdm import tqdm
        self.bar = tqdm(total=total, initial=done, unit="video", disable=not enabled, dynamic_ncols=True,
                        smoothing=0.1)
        self.failed = 0
        self.start = time.time()

    def update(self, stats: dict) -> None:
        self.failed += stats["failed"] + stats["missing"]
        self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(stats["inputs"])

    def close(self) -> None:
        self.bar.close()


def finalize(tasks: list[ShardTask], out_dir: str, cfg: BuildConfig, recipe: str) -> dict:
    """Rebuild outcomes.jsonl, failures.csv, summary.json and manifest.json from shard stats."""
    stats = [load_stats(t.stats_path) for t in tasks if t.finished()]
    outcomes = [dict(o, shard=s["shard"]) for s in stats for o in s["outcomes"]]
    _write_outcomes(os.path.join(out_dir, "outcomes.jsonl"), outcomes)
    _write_failures(os.path.join(out_dir, "failures.csv"), outcomes)
    summary = summarize(outcomes, len(tasks), len(stats))
    write_json_atomic(os.path.join(out_dir, "summary.json"), summary)
    if summary["shards_finished"] == summary["shards"]:
        write_json_atomic(os.path.join(out_dir, "manifest.json"), {
            "format_version": FORMAT_VERSION, "recipe": recipe, "config": cfg.to_dict(),
            "shards": [{"name": s["shard"], "samples": s["samples"], "inputs": s["inputs"]} for s in stats],
            "samples": summary["samples"]})
    return summary


def load_stats(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def summarize(outcomes: list[dict], num_shards: int, finished: int) -> dict:
    status = Counter(o["status"] for o in outcomes)
    reasons = Counter(o["reason"] for o in outcomes if o["status"] != "ok")
    return {"shards": num_shards, "shards_finished": finished, "inputs": len(outcomes),
            "ok": status["ok"], "failed": status["failed"], "missing": status["missing"],
            "samples": sum(o["samples"] for o in outcomes),
            "hours": round(sum(o["seconds"] for o in outcomes) / 3600, 4),
            "reasons": dict(sorted(reasons.items()))}


def _write_outcomes(path: str, outcomes: Iterable[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for o in outcomes:
            f.write(json.dumps(o, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _write_failures(path: str, outcomes: Iterable[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["shard", "item_id", "source", "path", "status", "reason", "message"])
        for o in outcomes:
            if o["status"] != "ok":
                w.writerow([o["shard"], o["item_id"], o["source"], o["path"], o["status"], o["reason"],
                            o["message"]])
    os.replace(tmp, path)


def format_summary(summary: dict) -> str:
    lines = [f"{summary['inputs']} inputs: {summary['ok']} ok, {summary['failed']} failed, "
             f"{summary['missing']} missing; {summary['samples']} samples, {summary['hours']:.3f} h "
             f"in {summary['shards_finished']}/{summary['shards']} shards"]
    lines += [f"  {reason}: {n}" for reason, n in summary["reasons"].items()]
    return "\n".join(lines)
