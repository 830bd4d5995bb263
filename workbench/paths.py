"""Where the workbench finds its shipped data and writes its runs."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository's ``data/`` folder (embedded models and fixed task splits).
#: ``WORKBENCH_DATA`` overrides it, e.g. for an installed copy that keeps data elsewhere.
DATA_DIR = Path(os.environ.get("WORKBENCH_DATA", Path(__file__).resolve().parents[1] / "data"))

#: Fixed task splits, one folder per task family: ``data/tasks/<family>/<split>.jsonl``.
TASKS_DIR = DATA_DIR / "tasks"

#: Embedded base models: ``data/models/<name>/`` (safetensors + config + tokenizer).
MODELS_DIR = DATA_DIR / "models"

#: The default run store folder (relative to the working directory).
DEFAULT_WORKSPACE = Path(os.environ.get("WORKBENCH_WORKSPACE", "runs"))

#: The source checkout this package runs from (None for an installed copy).
_ROOT = Path(__file__).resolve().parents[1]
CHECKOUT = _ROOT if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "workbench").is_dir() else None


def notebook_workspace() -> Path:
    """The run store a notebook writes to: ``$WORKBENCH_WORKSPACE`` when set, else the
    checkout's ``runs/`` (the store ``make run`` and the CLI started at the checkout's root
    use, so the dashboard shows the notebooks' runs), else ``./runs``. A notebook's kernel
    starts in ``notebooks/``, so a plain ``"runs"`` would put a second store there."""
    env = os.environ.get("WORKBENCH_WORKSPACE")
    if env:
        return Path(env).expanduser().resolve()
    return (CHECKOUT / "runs") if CHECKOUT is not None else Path("runs").resolve()
