#!/usr/bin/env bash
# One entry point for a fresh machine: sets up .venv (python3 -m venv + pip install), then
#   ./run.sh demo [avprep demo options]   build the built-in K-AV demo corpus into shards and train on it (CPU)
#   ./run.sh test [pytest options]        run all tests
#   ./run.sh setup                        only create/update the virtual environment
set -euo pipefail
cd "$(dirname "$0")"
VENV=${AVPREP_VENV:-.venv}
PY=${PYTHON:-python3}
# torch: the CPU build where pip can find one (this project's machines carry torch 2.13.0+cpu),
# else whatever `torch` resolves to. Override with TORCH_SPEC, e.g. TORCH_SPEC='torch==2.5.1'.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

setup() {
  local stamp="$VENV/.avprep-installed"
  local want
  want=$(cat pyproject.toml run.sh | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" || "$VENV/bin/python" -m pip install -q torch
  fi
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  demo) setup; exec "$VENV/bin/avprep" demo "$@" ;;
  test) setup; exec "$VENV/bin/python" -m pytest -q "$@" ;;
  *) echo "usage: ./run.sh demo|test|setup [options]" >&2; exit 2 ;;
esac
