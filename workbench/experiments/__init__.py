"""Experiments: strategies × seeds (× parameter values) as one unit, and what they show.

- ``sweep``: plan and run an experiment (``workbench sweep``), locally or on Ray.
- ``analysis``: per-cell means and 95% intervals over seeds, paired effects (torch-free).
- ``reproduce``: the fixed experiment and simulator suite behind ``workbench reproduce``.
"""

from workbench.experiments.sweep import Sweep, SweepResult, SweepSpec, run_sweep

__all__ = ["Sweep", "SweepResult", "SweepSpec", "run_sweep"]
