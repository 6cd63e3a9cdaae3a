"""Loader clips per CPU-second of one process (= one DataLoader worker), optionally side by
side with another version of glcm/data.py.

    .venv/bin/python bench/bench_loader.py --shards '/tmp/mshards/videos-{000000..000001}.tar' \\
        [--against old_data.py] [--repeat 5] [--batches 10] [--workers 1] [--shuffle-buffer 20]

`glcm bench --skip-model` reports wall-clock clips/s, which on a shared machine moves with
the other jobs; this counts the process's own CPU time (the work a dedicated core would
do), and with `--against FILE` (e.g. `git show REV:glcm/data.py > FILE`) alternates passes
of both versions over the same shards, so their ratio is measured under the same load.
Each pass: the full pipeline of glcm.data.make_dataset (tar reading, shuffle buffer,
JPEG decoding of the 32-frame window, crop/flip/grey, mel slice, collation), default
data config with a 20-sample shuffle buffer, batch 32. With `--workers 1` the same
pipeline runs in a real DataLoader worker process and the CPU time counted is that
worker's, so the cost of handing batches to the training process is included. With
`--no-decode` every JPEG "decode" only allocates the frame it would give (cv2.imdecode
replaced, its size read from the header): what is left is the loader's own overhead.
With `--workers 1` the worker's peak resident memory (VmHWM) is printed too: with a large
`--shuffle-buffer` (and `--batches` enough to fill it: it grows by one sample a clip) it
shows what the buffer holds.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avprep.format import jpeg_size  # noqa: E402
from glcm.config import GLCMConfig  # noqa: E402
import glcm.data as current  # noqa: E402


def load_version(path: str):
    """Another glcm/data.py, imported as a module of its own."""
    spec = importlib.util.spec_from_file_location("data_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module              # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def no_decode(buf, flags) -> np.ndarray | None:
    """cv2.imdecode's stand-in for --no-decode: an uninitialised frame of the JPEG's size."""
    size = jpeg_size(buf.data)
    if size is None:
        return None
    return np.empty(size if flags == cv2.IMREAD_GRAYSCALE else (*size, 3), np.uint8)


def one_pass(data, shards: str, batches: int, seed: int, buffer: int) -> tuple[float, float, float, float]:
    """(clips per CPU-second, clips per wall-second, nan: no worker's memory, KB read per
    clip) after one warm-up batch."""
    cfg = GLCMConfig()
    cfg.data.shuffle_buffer, cfg.data.initial_buffer, cfg.data.seed = buffer, 5, seed
    spec = data.ClipSpec.from_config(cfg.data, cfg.model.mel_per_frame, cfg.model.n_mels)
    it = iter(data.make_dataset(shards, cfg.data, 32, spec, epoch_batches=batches + 1))
    next(it)
    cpu, wall, read, n = time.process_time(), time.perf_counter(), bytes_read(os.getpid()), 0
    for batch in it:
        n += batch["frames"].shape[0]
    kb = (bytes_read(os.getpid()) - read) / 1024 / n
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall), float("nan"), kb


def worker_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bytes_read(pid: int) -> int:
    """Bytes a process has read through read/pread calls (rchar, Linux /proc; from files,
    page cache included, and pipes)."""
    with open(f"/proc/{pid}/io") as f:
        return int(next(line.split()[1] for line in f if line.startswith("rchar:")))


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM, Linux /proc), in MB."""
    with open(f"/proc/{pid}/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    return int(kb) / 1024


def one_worker_pass(data, shards: str, batches: int, seed: int, buffer: int) -> tuple[float, float, float, float]:
    """As one_pass, through a real DataLoader with one worker process: clips per CPU-second
    of that worker (its batches reach this process, shared-memory transfer included),
    clips per wall-second seen here, the worker's peak resident memory in MB and the KB
    it read per clip."""
    cfg = GLCMConfig()
    cfg.data.shuffle_buffer, cfg.data.initial_buffer, cfg.data.seed, cfg.data.workers = buffer, 5, seed, 1
    spec = data.ClipSpec.from_config(cfg.data, cfg.model.mel_per_frame, cfg.model.n_mels)
    loader = data.make_loader(shards, cfg.data, 32, spec, epoch_batches=batches + 1)
    it = iter(loader)
    next(it)
    pid = it._workers[0].pid
    cpu, wall, read, n = worker_cpu(pid), time.perf_counter(), bytes_read(pid), 0
    for batch in it:
        n += batch["frames"].shape[0]
    used, peak, kb = worker_cpu(pid) - cpu, peak_rss_mb(pid), (bytes_read(pid) - read) / 1024 / n
    data.shutdown_loader(loader)
    return n / used, n / (time.perf_counter() - wall), peak, kb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", required=True)
    ap.add_argument("--against", help="another glcm/data.py to alternate with")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--workers", type=int, choices=(0, 1), default=0,
                    help="1: through a DataLoader with one worker process (CPU of that worker)")
    ap.add_argument("--shuffle-buffer", type=int, default=20, help="data.shuffle_buffer (samples)")
    ap.add_argument("--no-decode", action="store_true",
                    help="JPEGs are not decoded (frames only allocated): the loader's overhead alone")
    args = ap.parse_args()
    if args.shuffle_buffer < 1 or args.batches < 1 or args.repeat < 1:
        ap.error("--shuffle-buffer, --batches and --repeat must be at least 1")
    if args.no_decode:
        cv2.imdecode = no_decode                 # DataLoader workers are forked: they inherit it
    measure = one_worker_pass if args.workers else one_pass
    versions = {"current": current}
    if args.against:
        versions["against"] = load_version(args.against)
    results = {name: [] for name in versions}
    for r in range(args.repeat):
        order = list(versions) if r % 2 == 0 else list(versions)[::-1]
        for name in order:
            results[name].append(measure(versions[name], args.shards, args.batches, r, args.shuffle_buffer))
    for name, runs in results.items():
        cpu, wall, peak, kb = (np.array(column) for column in zip(*runs))
        memory = f", worker's peak RSS {np.median(peak):.0f} MB" if args.workers else ""
        memory += f", {np.median(kb):.0f} KB read a clip"
        print(f"{name:>8s}: {np.median(cpu):6.1f} clips per CPU-second (passes {min(cpu):.0f}-{max(cpu):.0f}), "
              f"{np.median(wall):6.1f} per wall-second (median of {len(runs)} passes of {args.batches} batches){memory}")
    if args.against:
        ratio = np.median(np.array([c for c, *_ in results["current"]]) / np.array([c for c, *_ in results["against"]]))
        print(f"current / against: {ratio:.2f}x clips per CPU-second (median of the pass pairs)")
    where = ("one DataLoader worker" if args.workers else "one process") + (", JPEGs not decoded" if args.no_decode else "")
    print(f"({where}, cv2 single-threaded, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")


if __name__ == "__main__":
    try:
        main()
    except current.NoBatchError as exc:
        raise SystemExit(f"error: {exc}: give --shards avprep shards that hold audio-visual samples") from None
