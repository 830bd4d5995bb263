"""Calibration strategies: registered pieces composed into presets (see STRATEGIES.md)."""

from workbench.strategies import estimators  # noqa: F401  (registers the pieces)
from workbench.strategies.base import (
    PRESETS,
    REGISTRY,
    Advantages,
    GroupBatch,
    Strategy,
    build_strategy,
    preset,
)

preset("grpo", "grpo", doc="Group-normalised advantages (Shao et al. 2024).")

__all__ = ["PRESETS", "REGISTRY", "Advantages", "GroupBatch", "Strategy", "build_strategy", "preset"]
