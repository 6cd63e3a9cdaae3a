"""GLCM throughput: loader clips/s per worker and model training clips/s on this device.

    python bench/bench_glcm.py [--shards 'x-{000000..000009}.tar'] [--set train.precision=bf16] ...

Same options as `glcm bench` (see `glcm bench --help`); prints figures, asserts nothing.
"""
from __future__ import annotations

import sys

from cli.glcm_cli import app

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]])
