"""Calibration strategies: registered pieces composed into presets (formulas and sources in
docs/strategies.md).

Importing this package is torch-free (the dashboard reads ``catalog``); the torch
implementations load on first use of ``build_strategy`` and friends.
"""

from workbench.strategies.catalog import KINDS, PIECES, PRESETS, catalog, describe_params, split_composition

_LAZY = {"Advantages", "GroupBatch", "Strategy", "TokenBatch", "TokenShaping", "build_strategy", "REGISTRY"}

__all__ = ["KINDS", "PIECES", "PRESETS", "catalog", "describe_params", "split_composition", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        from workbench.strategies import base, pieces  # noqa: F401  (pieces registers the implementations)

        return getattr(base, name)
    raise AttributeError(name)
