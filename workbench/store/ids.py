"""Run ids: one scheme for every way a run starts (CLI, Python, the dashboard)."""

from __future__ import annotations

import secrets
import time

from workbench.store._codec import slug


def new_run_id(label: str | None = None) -> str:
    """``<date>-<time>-<label>-<4 hex>``: sortable by start, readable, unique. ``label`` is the
    run's name, else its strategy (callers pass ``name or strategy``)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(label or 'run')}-{secrets.token_hex(2)}"
