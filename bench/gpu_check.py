"""One GPU check, ready for the day a device is lent: prints one JSON object with

- GLCM training clips/s at batch 32 and 64 for fp32, bf16, bf16 + channels_last_3d and
  bf16 + channels_last_3d + torch.compile, each with its peak GPU memory (timed by
  `glcm.bench.model_rate`, the loop `glcm bench` uses: random clips, forward, both
  losses, backward, Adam);
- one finetuning task's clips/s (UCF101-sized head on the visual encoders, from scratch);
- a short `torchrun` run (one process): an NCCL all-reduce, then `glcm train` on synthetic
  shards that checkpoints, and the same command with --resume that continues from it.

    bench/gpu_check.sh                     # on one H100/H200, after ./run.sh setup (< 8 min)
    GPU_CHECK_CPU=1 bench/gpu_check.sh     # the same code paths on the CPU, tiny preset (~1 min)

Steps and the time budget are options (`--help`); a variant that does not fit the budget
is listed as skipped, never guessed. Nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {   # name -> config overrides
    "fp32": ["train.precision=fp32", "train.channels_last=false", "train.compile=false"],
    "bf16": ["train.precision=bf16", "train.channels_last=false", "train.compile=false"],
    "bf16+channels_last_3d": ["train.precision=bf16", "train.channels_last=true", "train.compile=false"],
    "bf16+channels_last_3d+compile": ["train.precision=bf16", "train.channels_last=true", "train.compile=true"],
}


def options() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", default=os.environ.get("GPU_CHECK_CPU") == "1",
                    help="CPU path with the tiny preset (also GPU_CHECK_CPU=1)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per figure (default 20 GPU, 3 CPU)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the training figures (default 330 GPU, 40 CPU); the rest is skipped")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return ap.parse_args()


def main() -> None:
    args = options()
    import torch
    started = time.perf_counter()
    cpu = args.cpu
    if not cpu and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device here; GPU_CHECK_CPU=1 runs the CPU path"}))
        raise SystemExit(2)
    device = torch.device("cpu") if cpu else torch.device("cuda", 0)
    steps = args.steps or (3 if cpu else 20)
    plan = {"preset": "tiny" if cpu else None, "batches": (4, 8) if cpu else (32, 64), "steps": steps,
            "warmup": 1 if cpu else 5, "budget": args.budget or (40.0 if cpu else 330.0)}
    out = {"mode": "cpu, tiny preset (code-path check, not a GPU figure)" if cpu else "cuda, full GLCM",
           "device": "cpu" if cpu else torch.cuda.get_device_name(0), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if not cpu else None,
           "steps": steps, "train": train_figures(plan, device)}
    out["finetune"] = finetune_figure(plan, device)
    out["torchrun"] = torchrun_check(cpu)
    out["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def train_figures(plan: dict, device) -> list[dict]:
    """clips/s and peak memory per (batch, variant), within the time budget."""
    import torch
    from glcm.bench import model_rate
    from glcm.config import load_config
    rows, t0 = [], time.perf_counter()
    for batch in plan["batches"]:
        for name, sets in VARIANTS.items():
            row = {"batch": batch, "variant": name}
            rows.append(row)
            if device.type == "cpu" and "compile" in name:
                row["skipped"] = "torch.compile is not timed on the CPU path"
                continue
            if time.perf_counter() - t0 > plan["budget"]:
                row["skipped"] = f"time budget of {plan['budget']:.0f} s used up"
                continue
            cfg = load_config(None, sets + [f"train.batch_size={batch}"], plan["preset"])
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            try:
                row["clips_per_s"] = round(model_rate(cfg, device, plan["steps"], plan["warmup"]), 1)
            except Exception as exc:            # a failed variant is reported, the others still run
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            row["seconds"] = round(time.perf_counter() - t, 1)
            if device.type == "cuda":
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    return rows


def finetune_figure(plan: dict, device) -> dict:
    """clips/s of finetuning training steps (UCF101 head, from scratch) on random clips."""
    import torch
    from glcm.config import load_finetune_config
    from glcm.finetune import FinetuneTrainer
    batch = plan["batches"][0]
    row = {"task": "ucf101 (101 classes, global+local features, full finetuning, bf16 on CUDA)", "batch": batch}
    try:
        cfg = load_finetune_config(None, ["task.name=ucf101", "task.init=scratch", f"train.batch_size={batch}"],
                                   plan["preset"])
        trainer = FinetuneTrainer(cfg, device, load_weights=False)
        t, c = cfg.data.frames, cfg.data.crop
        data = {"frames": torch.randint(0, 256, (batch, t, c, c, 3), dtype=torch.uint8),
                "label": torch.randint(0, 101, (batch,))}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(plan["warmup"]):
            trainer.batch_step(data)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(plan["steps"]):
            trainer.batch_step(data)
        sync()
        row["clips_per_s"] = round(plan["steps"] * batch / (time.perf_counter() - t0), 1)
        if device.type == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return row


def torchrun_check(cpu: bool) -> dict:
    """torchrun, one process: the collective backend, then train -> checkpoint -> resume."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    backend = "gloo" if cpu else "nccl"
    result: dict = {"backend": backend}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        probe = _run([torchrun, "--standalone", "--nproc-per-node", "1", __file__, "--collective", backend])
        result["collective"] = probe
        shards = _synthetic_shards(Path(tmp) / "shards")
        run = Path(tmp) / "run"
        device = "cpu" if cpu else "cuda"
        base = [torchrun, "--standalone", "--nproc-per-node", "1", "-m", "cli.glcm_cli", "train",
                "--shards", shards, "--out", str(run), "--preset", "tiny", "--device", device, "--workers", "1",
                "--batch-size", "8", "--set", "train.checkpoint_every=4", "--set", "train.log_every=2",
                "--set", "train.warmup_steps=2", "--set", "data.shuffle_buffer=16", "--set", "data.initial_buffer=4"]
        result["first"] = _run(base + ["--steps", "6"])
        result["checkpoint_after_first"] = (run / "checkpoint.pt").is_file()
        result["resumed"] = _run(base + ["--steps", "10", "--resume"])
        steps = _logged_steps(run / "log.jsonl")
        result["logged_steps"] = steps
        result["ok"] = (result["first"]["rc"] == 0 and result["resumed"]["rc"] == 0
                        and result["checkpoint_after_first"] and steps[-1:] == [10] and 6 in steps
                        and steps == sorted(set(steps)))
    result["note"] = ("glcm joins a process group only when WORLD_SIZE > 1, so the one-process training run "
                      "does not itself use NCCL; the collective check above does")
    return result


def _run(args: list[str]) -> dict:
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    row = {"rc": proc.returncode, "seconds": round(time.perf_counter() - t, 1)}
    try:
        row["last"] = json.loads(lines[-1]) if lines else None
    except ValueError:
        row["last"] = lines[-1][:300]
    if proc.returncode != 0:
        row["stderr"] = proc.stderr.strip()[-600:]
    return row


def _synthetic_shards(folder: Path) -> str:
    from avprep.testing import avcorr
    clips = avcorr.make_clips(16, seed=0, min_seconds=4.0, max_seconds=4.0, size=64, obj=16)
    avcorr.write_shards(clips, str(folder), per_shard=8, prefix="check", annotations=False)
    return str(folder)


def _logged_steps(path: Path) -> list[int]:
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def collective(backend: str) -> None:
    """Run by torchrun: one all-reduce through `backend` in a one-process group."""
    import torch
    import torch.distributed as dist
    dist.init_process_group(backend)
    device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
    x = torch.ones(4, device=device)
    dist.all_reduce(x)
    ok = bool((x == dist.get_world_size()).all())
    print(json.dumps({"world_size": dist.get_world_size(), "all_reduce_ok": ok, "backend": dist.get_backend()}))
    dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--collective":
        collective(sys.argv[2])
    else:
        main()
