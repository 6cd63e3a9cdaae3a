"""The build: recipe items -> shard tasks -> shards, stats and a failures table.

A shard task is a pure function of its slice of the input list and the config, so the
result does not depend on the worker count or on interruptions. No exception escapes a
task for bad input: every input ends as ok, failed or missing, with a reason stored as
data. An output problem (full disk, read-only folder) is not the input's fault: it stops
the build with one line (fsio.OutputError) and the finished shards stay for the rerun.

The build holds the output folder's lock (`OUT/.lock`) from start to end, so two builds
never write into one folder; every file is written through avprep.fsio (a temporary name
unique to the writing process, fsync, rename).
"""
from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import json
import os
import tarfile
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from avprep import fsio
from avprep.clips import Clip, iter_clips
from avprep.config import BuildConfig, ConfigError, check_ray_address, validate
from avprep.items import SourceItem, text
from avprep.probe import MediaError
from avprep.format import FRAMES, MEL
from avprep.shards import FORMAT_VERSION, ShardWriter, encode_clip

TABLES = ("plan.json", "outcomes.jsonl", "failures.csv", "summary.json", "manifest.json")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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


def plan_shards(items: Sequence[SourceItem], cfg: BuildConfig, out_dir: str, root: str) -> list[ShardTask]:
    n = cfg.videos_per_shard
    return [ShardTask(i // n, tuple(items[i:i + n]), out_dir, root, cfg) for i in range(0, len(items), n)]


# ---------------------------------------------------------------- one shard (runs in a worker)

def run_shard(task: ShardTask) -> dict:
    """Write one shard and its stats; returns the stats. Never raises for bad input."""
    _remove(task.stats_path)        # an old stats file must not vouch for the new tar
    writer = ShardWriter(task.tar_path)
    outcomes = []
    try:
        for item in task.items:
            outcome, samples = process_item(item, task.cfg, task.root)
            for sample in samples:
                writer.write(sample)
            outcomes.append(outcome)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    stats = shard_stats(task, outcomes, writer)
    fsio.atomic_write_json(task.stats_path, stats)
    return stats


def process_item(item: SourceItem, cfg: BuildConfig, root: str = "") -> tuple[dict, list[dict]]:
    """All samples of one input, or none: an input is ok or failed as a whole.

    `root` is the folder the stored source path is relative to. A full disk raises
    OutputError (it is not the input's fault); any other error is recorded. The outcome's
    text (path, message) is valid UTF-8 even for a file name that is not."""
    outcome, samples = _process_item(item, cfg, root)
    return {k: text(v) if isinstance(v, str) else v for k, v in outcome.items()}, samples


def _process_item(item: SourceItem, cfg: BuildConfig, root: str) -> tuple[dict, list[dict]]:
    rel = text(_relpath(item.path, root))
    outcome = {"item_id": item.item_id, "source": item.source, "path": rel, "split": item.split,
               "status": "ok", "reason": None, "message": None, "samples": 0, "seconds": 0.0, "streams": None}
    if item.missing:
        outcome.update(status="missing", reason="missing", message="file listed by the recipe is not there")
        return outcome, []
    if item.failed:
        outcome.update(status="failed", reason=item.failed[0], message=item.failed[1])
        return outcome, []
    samples, kind = [], None
    try:
        for clip in iter_clips(item, cfg):
            samples.append(_encode(clip, cfg, rel))
            outcome["seconds"] += clip.num_frames / clip.fps
            kind = streams(samples[-1])
    except MediaError as e:
        outcome.update(status="failed", reason=e.reason, message=e.message)
        return outcome, []
    except fsio.OutputError:
        raise
    except OSError as e:
        if e.errno in DISK_FULL:
            raise fsio.OutputError(fsio.describe_os_error(e, e.filename or tempfile.gettempdir())) from e
        return _error(outcome, e), []
    except Exception as e:  # a worker boundary: an unexpected error is recorded, not raised
        return _error(outcome, e), []
    outcome["samples"] = len(samples)
    outcome["seconds"] = round(outcome["seconds"], 3)
    outcome["streams"] = kind
    return outcome, samples


def streams(sample: dict) -> str:
    """What an encoded sample holds: "video" (visual-only: no mel member), "audio" (audio-only:
    no frames member) or "audio+video"."""
    if FRAMES not in sample and MEL in sample:
        return "audio"
    return "video" if FRAMES in sample and MEL not in sample else "audio+video"


def _error(outcome: dict, e: BaseException) -> dict:
    outcome.update(status="failed", reason="error", message=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=6))
    return outcome


def _encode(clip: Clip, cfg: BuildConfig, rel: str) -> dict:
    if cfg.crop.kind == "none":
        return encode_clip(clip, cfg, rel)
    from avprep.faces.stage import crop_clip  # dlib is loaded only by crop builds
    extra = clip.item.extra
    hint = (extra["face_x"], extra["face_y"]) if "face_x" in extra and "face_y" in extra else None
    out = crop_clip(clip, cfg.crop, hint)
    return encode_clip(clip, cfg, rel, frames=out.frames, arrays=out.arrays, crop=out.meta)


def _relpath(path: str, root: str) -> str:
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise fsio.OutputError(fsio.describe_os_error(exc, path)) from exc


def shard_stats(task: ShardTask, outcomes: list[dict], writer: ShardWriter) -> dict:
    counts = Counter(o["status"] for o in outcomes)
    return {"shard": task.name + ".tar", "index": task.index, "inputs": len(outcomes),
            "samples": writer.count, "tar_bytes": writer.nbytes, "tar_sha256": writer.sha256,
            "ok": counts["ok"], "failed": counts["failed"], "missing": counts["missing"],
            "seconds": round(sum(o["seconds"] for o in outcomes), 3), "outcomes": outcomes}


# ---------------------------------------------------------------- finished shards

def finished_stats(task: ShardTask, count_samples: bool = True) -> dict | None:
    """The shard's stats if it is finished, else None.

    Finished: its stats file reads, names this shard and its number of inputs, and the tar
    exists with the byte size the stats record (`tar_bytes`); with `count_samples` the tar's
    headers must also hold the recorded number of samples."""
    try:
        with open(task.stats_path, encoding="utf-8") as f:
            stats = json.load(f)
        size = os.path.getsize(task.tar_path)
    except (OSError, ValueError):
        return None
    if not isinstance(stats, dict) or stats.get("shard") != task.name + ".tar" \
            or stats.get("inputs") != len(task.items) or stats.get("tar_bytes") != size:
        return None
    if count_samples and count_tar_samples(task.tar_path) != stats.get("samples"):
        return None
    return stats


def count_tar_samples(path: str) -> int | None:
    """Samples in a shard (runs of members with one key), reading headers only; None if unreadable."""
    count, last = 0, None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key = member.name.split(".", 1)[0]
                if key != last:
                    count, last = count + 1, key
    except (OSError, tarfile.TarError):
        return None
    return count


# ---------------------------------------------------------------- executors

def run_local(tasks: list[ShardTask], workers: int, on_done: Callable[[dict], None]) -> None:
    if workers <= 1:
        for task in tasks:
            on_done(run_shard(task))
        return
    import concurrent.futures as cf
    import multiprocessing as mp
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_die_with_parent,
                                initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(run_shard, t) for t in tasks]
        try:
            for fut in cf.as_completed(futures):
                on_done(fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _die_with_parent(parent: int) -> None:
    """Start of a pool worker: have the kernel kill it when the build process dies (Linux).

    Without this a killed build leaves its workers waiting forever, and they keep the
    inherited output lock, so no rerun could start."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:          # the build died before prctl took effect
        os._exit(1)


def run_ray(tasks: list[ShardTask], address: str, on_done: Callable[[dict], None]) -> None:
    """The same shard tasks on a Ray cluster (`auto`, `ray://host:port`, or `local`).

    Output paths must be on storage every node sees (a shared file system)."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--ray needs the ray package: pip install 'ray>=2.9'") from e
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as e:   # no cluster there, bad address
            raise ConfigError(f"--ray {address}: cannot reach a Ray cluster ({e}); start one (ray start "
                              "--head) or check the address; the build resumes when rerun") from None
    remote = ray.remote(num_cpus=1, max_retries=2)(run_shard)
    pending = [remote.remote(t) for t in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                stats = ray.get(done[0])
            except Exception as e:      # a task's OutputError arrives wrapped, with its traceback
                cause = getattr(e, "cause", None)
                if isinstance(cause, fsio.OutputError):
                    raise fsio.OutputError(str(cause)) from None
                raise
            on_done(stats)
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
    """Build (or resume) shards for `items` in `out_dir`, holding its lock throughout.

    Raises ConfigError for a resume that is not the same build, fsio.OutputError for an
    output folder in use, unwritable or full (finished shards are kept for the rerun)."""
    validate(cfg)
    check_ray_address(ray_address)
    items = mark_duplicate_keys(list(items), root)
    with fsio.OutputLock(out_dir, "avprep build"):
        tasks = plan_shards(items, cfg, out_dir, root)
        _check_plan(out_dir, make_plan(items, cfg, recipe, root, len(tasks)), tasks)
        fsio.remove_stale_temps(out_dir, output_names(tasks))
        todo = [t for t in tasks if finished_stats(t) is None]
        bar = _Progress(len(items), len(items) - sum(len(t.items) for t in todo), progress)
        try:
            if ray_address:
                run_ray(todo, ray_address, bar.update)
            else:
                run_local(todo, workers or os.cpu_count() or 1, bar.update)
        finally:
            bar.close()
        summary = finalize(tasks, out_dir, cfg, recipe)
    return BuildResult(out_dir, [t.tar_path for t in tasks], summary)


def mark_duplicate_keys(items: list[SourceItem], root: str = "") -> list[SourceItem]:
    """Inputs whose sample key an earlier input already has (`a.mp4` beside `a.mkv`) become
    `duplicate_key` failures naming both paths; the first one is built. The same input
    listed twice is a recipe bug and refused (ConfigError)."""
    first: dict[str, SourceItem] = {}
    out = []
    for item in items:
        key = item.key_stem()
        prev = first.get(key)
        if prev is None:
            first[key] = item
        else:
            if prev == item:
                raise ConfigError(f"the input list holds {item.source}/{item.item_id} ({item.path}) twice "
                                  f"(same sample key {key!r}); a recipe must list each input once")
            a, b = _relpath(prev.path, root), _relpath(item.path, root)
            item = dataclasses.replace(item, failed=(
                "duplicate_key", f"{b} and {a} have the same sample key {key}; only {a} is built "
                                 "(rename one of them to build both)"))
        out.append(item)
    return out


def output_names(tasks: list[ShardTask]) -> set[str]:
    """Every file name the build writes into its output folder (besides `.lock`)."""
    names = set(TABLES)
    for t in tasks:
        names |= {t.name + ".tar", t.name + ".stats.json"}
    return names


# ---------------------------------------------------------------- the plan (what a resume must match)

def make_plan(items: list[SourceItem], cfg: BuildConfig, recipe: str, root: str, num_shards: int) -> dict:
    """plan.json: the options, the corpus folder and every input's identity and file state."""
    abs_root = os.path.abspath(root) if root else ""
    return {"format_version": FORMAT_VERSION, "recipe": recipe, "config": cfg.to_dict(),
            "root": abs_root, "inputs": len(items), "shards": num_shards,
            "inputs_sha256": _digest(_identity(i, abs_root) for i in items),
            "files_sha256": _digest(_file_state(i, abs_root) for i in items)}


def _digest(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _identity(item: SourceItem, abs_root: str) -> str:
    """What the recipe says about an input (not its file's contents)."""
    return json.dumps([item.source, item.item_id, _relpath(os.path.abspath(item.path), abs_root), item.labels,
                       item.start, item.end, item.split, item.extra, item.missing, item.failed],
                      sort_keys=True, default=str)


def _file_state(item: SourceItem, abs_root: str) -> str:
    """An input file's size and mtime (ns); `missing` for inputs that are not there."""
    path = _relpath(os.path.abspath(item.path), abs_root)
    if item.missing:
        return f"{path}\tmissing"
    if item.failed:
        return f"{path}\tfailed {item.failed[0]}"
    try:
        st = os.stat(item.path)
    except OSError:
        return f"{path}\tmissing"
    return f"{path}\t{st.st_size}\t{st.st_mtime_ns}"


def _check_plan(out_dir: str, plan: dict, tasks: list[ShardTask]) -> None:
    """A resumed build must be the same build: same options, corpus folder, inputs and files.
    A new build must not replace files it did not make (`--out` equal to the corpus folder)."""
    path = os.path.join(out_dir, "plan.json")
    plan = json.loads(json.dumps(plan))
    if not os.path.exists(path):
        _refuse_foreign_files(out_dir, tasks)
        fsio.atomic_write_json(path, plan)
        return
    old = fsio.read_json(path)
    if old != plan:
        raise ConfigError(f"{out_dir} holds a build with other inputs or options ({plan_difference(old, plan)}); "
                          "use another --out folder to start a new build")


def plan_difference(old, new: dict) -> str:
    """What differs between two plans, in a few words (the first difference that explains it)."""
    if not isinstance(old, dict) or set(old) != set(new):
        return "its plan.json is not one of this avprep version"
    if old["root"] != new["root"]:
        return f"corpus folder {old['root']} then, {new['root']} now"
    options = ("format_version", "recipe", "config")
    changed = _changes({k: old[k] for k in options}, {k: new[k] for k in options})
    if changed:
        return "options " + ", ".join(f"{k.removeprefix('config.')} {a!r} -> {b!r}"
                                      for k, (a, b) in list(changed.items())[:4])
    if old["inputs"] != new["inputs"]:
        return f"{old['inputs']} inputs then, {new['inputs']} now"
    if old["inputs_sha256"] != new["inputs_sha256"]:
        return "another input list of the same length"
    if old["files_sha256"] != new["files_sha256"]:
        return ("the input files differ in size or modification time from those the build started with: "
                "restore them to resume")
    return "another shard count"


def _changes(old: dict, new: dict, prefix: str = "") -> dict:
    out = {}
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_changes(a, b, f"{prefix}{k}."))
        elif a != b:
            out[prefix + k] = (a, b)
    return out


def _refuse_foreign_files(out_dir: str, tasks: list[ShardTask]) -> None:
    clash = sorted(n for n in output_names(tasks) if os.path.lexists(os.path.join(out_dir, n)))
    if clash:
        more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
        raise fsio.OutputError(f"{out_dir} already holds {clash[0]}{more}, which this build would replace, "
                               "but no plan.json of an avprep build; choose a new or empty --out folder")


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


# ---------------------------------------------------------------- tables

def finalize(tasks: list[ShardTask], out_dir: str, cfg: BuildConfig, recipe: str) -> dict:
    """Rebuild outcomes.jsonl, failures.csv, summary.json and manifest.json from shard stats."""
    stats = [s for s in (finished_stats(t, count_samples=False) for t in tasks) if s is not None]
    outcomes = [dict(o, shard=s["shard"]) for s in stats for o in s["outcomes"]]
    _write_outcomes(os.path.join(out_dir, "outcomes.jsonl"), outcomes)
    _write_failures(os.path.join(out_dir, "failures.csv"), outcomes)
    summary = summarize(outcomes, len(tasks), len(stats))
    fsio.atomic_write_json(os.path.join(out_dir, "summary.json"), summary)
    if summary["shards_finished"] == summary["shards"]:
        fsio.atomic_write_json(os.path.join(out_dir, "manifest.json"), {
            "format_version": FORMAT_VERSION, "recipe": recipe, "config": cfg.to_dict(),
            "shards": [{"name": s["shard"], "samples": s["samples"], "inputs": s["inputs"],
                        "bytes": s["tar_bytes"], "sha256": s["tar_sha256"]} for s in stats],
            "samples": summary["samples"]})
    return summary


def load_stats(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def summarize(outcomes: list[dict], num_shards: int, finished: int) -> dict:
    status = Counter(o["status"] for o in outcomes)
    reasons = Counter(o["reason"] for o in outcomes if o["status"] != "ok")
    return {"shards": num_shards, "shards_finished": finished, "inputs": len(outcomes),
            "ok": status["ok"], "failed": status["failed"], "missing": status["missing"],
            "samples": sum(o["samples"] for o in outcomes),
            "visual_only": sum(o["samples"] for o in outcomes if o.get("streams") == "video"),
            "audio_only": sum(o["samples"] for o in outcomes if o.get("streams") == "audio"),
            "hours": round(sum(o["seconds"] for o in outcomes) / 3600, 4),
            "reasons": dict(sorted(reasons.items()))}


def _write_outcomes(path: str, outcomes: Iterable[dict]) -> None:
    with fsio.atomic_writer(path, "w") as f:
        for o in outcomes:
            f.write(json.dumps(o, sort_keys=True) + "\n")


def _write_failures(path: str, outcomes: Iterable[dict]) -> None:
    with fsio.atomic_writer(path, "w") as f:
        w = csv.writer(f)
        w.writerow(["shard", "item_id", "source", "path", "status", "reason", "message"])
        for o in outcomes:
            if o["status"] != "ok":
                w.writerow([o["shard"], o["item_id"], o["source"], o["path"], o["status"], o["reason"],
                            o["message"]])


def format_summary(summary: dict) -> str:
    lines = [f"{summary['inputs']} inputs: {summary['ok']} ok, {summary['failed']} failed, "
             f"{summary['missing']} missing; {summary['samples']} samples, {summary['hours']:.3f} h "
             f"in {summary['shards_finished']}/{summary['shards']} shards"]
    if summary.get("visual_only") or summary.get("audio_only"):
        lines.append(f"  samples without audio (visual-only): {summary['visual_only']}, "
                     f"without video (audio-only): {summary['audio_only']}")
    lines += [f"  {reason}: {n}" for reason, n in summary["reasons"].items()]
    return "\n".join(lines)
