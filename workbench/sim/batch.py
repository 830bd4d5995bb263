"""Many simulator runs stepped together: one run per seed, the tensor work done once.

    from workbench.sim import SimBatch, SimConfig
    runs = SimBatch(SimConfig(strategy="iac", coupling=0.5), seeds=range(10))
    runs.train(2000)                       # 10 runs x 2,000 sampled steps
    runs.series("sim/success")             # [S, steps] numpy array, one row per seed
    runs.sims[3].pass_at_k(64)             # each run is a Simulator (read it as usual)

Each run has its own world (the seed draws it), problem draws, samples and parameters,
and gets exactly the records it would get as ``Simulator(config.replace(seed=k))``
stepped alone (up to float rounding: the same code, ``workbench.sim.engine.sampled_step``,
with S runs stacked along a leading dimension instead of one). Their parameters live in
one [S, P, M] tensor with one optimiser (Adam and SGD act elementwise, so this is S
independent optimisers). Strategies whose groups are independent go through the strategy
registry in one call for all runs; the others (seeded random rewards, per-problem
history, batch-normalised factors) in one call per run. The natural-gradient update and
``expected_step`` stay with a lone ``Simulator``. Shapes: S runs, P problems, M modes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from workbench.errors import ConfigError
from workbench.sim.config import SimConfig
from workbench.sim.engine import Simulator, _Stack, sampled_step
from workbench.sim.policy import one_thread


class SimBatch:
    """S simulator runs that differ only by their seed; ``step()`` returns their S records."""

    def __init__(self, config: SimConfig | dict | None = None, seeds: Iterable[int] = range(8), **overrides: Any):
        config = SimConfig.coerce(config, **overrides)
        seeds = [int(k) for k in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"SimBatch seeds: expected distinct integers, at least one (got {seeds})")
        if config.update == "natural":
            raise ConfigError("SimBatch: the natural-gradient update solves a system per run; use one Simulator per "
                              "seed for update='natural'")
        self.config = config.validate()
        self.sims = [Simulator(config.replace(seed=k)) for k in seeds]
        S = len(self.sims)
        P, M = self.sims[0].policy.shape
        self.a = torch.zeros(S, P, M, dtype=torch.float64, requires_grad=True)   # [S, P, M] private parameters
        self.s = torch.zeros(S, M, dtype=torch.float64, requires_grad=True)      # [S, M] shared by mode index
        for i, sim in enumerate(self.sims):     # each run reads (never trains) its slice of the stacked parameters
            sim.policy.a, sim.policy.s = self.a.detach()[i], self.s.detach()[i]
            sim.optimizer, sim._batch = None, self
        self._stack = _Stack(torch.stack([sim.policy.base_logp for sim in self.sims]),
                             torch.stack([sim._rewards for sim in self.sims]),
                             torch.stack([sim._correct for sim in self.sims]))
        self.optimizer = torch.optim.Adam([self.a, self.s], lr=config.lr) if config.optimizer == "adam" else None

    @property
    def seeds(self) -> list[int]:
        return [sim.config.seed for sim in self.sims]

    @property
    def step_count(self) -> int:
        return self.sims[0].step_count

    def set_strategy(self, spec: str, **params: Any) -> None:
        """Switch every run's strategy from the next step on."""
        for sim in self.sims:
            sim.set_strategy(spec, **params)
        self.config.strategy, self.config.strategy_params = spec, dict(params)

    def step(self) -> list[dict]:
        """One sampled training step of every run; their S records."""
        with one_thread():
            return sampled_step(self.sims, self.a, self.s, self._stack, self._descend)

    def run(self, n: int) -> Iterator[list[dict]]:
        for _ in range(int(n)):
            yield self.step()

    def train(self, n: int) -> "SimBatch":
        for _ in self.run(n):
            pass
        return self

    def series(self, key: str) -> np.ndarray:
        """The per-step values of ``key`` for every run: [S, steps] (NaN where a step lacks it)."""
        return np.array([[r.get(key, np.nan) for r in sim.records] for sim in self.sims], dtype=np.float64)

    def _descend(self, loss: torch.Tensor, rows: torch.Tensor, logp_full: torch.Tensor) -> None:
        self.a.grad = self.s.grad = None
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
            return
        with torch.no_grad():
            for p in (self.a, self.s):
                p.sub_(self.config.lr * p.grad)

    def __repr__(self) -> str:
        c = self.config
        return (f"SimBatch(S={len(self.sims)}, P={c.problems}, M={c.modes}, coupling={c.coupling}, "
                f"G={c.group_size}, strategy={c.strategy!r}, step={self.step_count})")
