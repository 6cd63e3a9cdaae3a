#!/usr/bin/env bash
# GLCM on one GPU in one go (under 8 minutes on an H100/H200): training clips/s at batch 32
# and 64 (fp32, bf16, bf16 + channels_last_3d, + torch.compile), peak memory, one finetuning
# task's clips/s, and a one-process torchrun run (NCCL all-reduce; train, checkpoint, resume).
# Prints one JSON object. Needs only the repository and `./run.sh setup` (.venv).
#   bench/gpu_check.sh [--json out.json] [--steps N] [--budget SECONDS]
#   GPU_CHECK_CPU=1 bench/gpu_check.sh      # the same code paths on the CPU, tiny preset
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    echo "no .venv here: run ./run.sh setup first" >&2
    exit 2
fi
exec .venv/bin/python bench/gpu_check.py "$@"
