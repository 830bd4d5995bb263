#!/usr/bin/env bash
# One-time set-up on a fresh clone: a virtual environment in .venv with the CPU build of
# torch 2.13.0 (from the local wheel cache on these machines) and the workbench installed
# in editable mode with its dev extras. Re-running is cheap: it reinstalls only when
# pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.workbench-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (torch 2.13.0 CPU, transformers, peft, datasets, ...)" >&2
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
# Install torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
echo "$want" > "$stamp"
