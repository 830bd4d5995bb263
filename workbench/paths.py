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
