"""A run's strategies: the one in force, the ones switched away from, and their state.

A strategy's own state (e.g. DLC's memory network) survives a switch: the strategy
switched away from is kept, and switching back to it reuses its state objects. A
checkpoint holds the state of every strategy the run has used, as
``{strategy name: {piece: state_dict}}``; after a resume, a strategy's saved state waits
until that strategy first creates the piece, which then starts from it.
"""

from __future__ import annotations

from typing import Any

from workbench.seeding import row_seed
from workbench.strategies.base import Strategy, build_strategy


class StrategyRoster:
    """The strategy in force (``current``), the strategies switched away from with their
    state, and strategy state read from a checkpoint that no strategy has claimed yet.

    ``seed``: the run's seed; a sampling calibration is seeded from it and the strategy's name.
    """

    def __init__(self, spec: str, params: dict[str, Any] | None = None, *, seed: int):
        self.current: Strategy = build_strategy(spec, params)
        self.seed = int(seed)
        self._kept: dict[str, Strategy] = {}          # strategies switched away from, with their state
        self._pending: dict[str, dict] = {}           # {strategy name: {piece: state_dict}} from a checkpoint

    def switch(self, spec: str, params: dict[str, Any] | None = None) -> Strategy:
        """Make ``spec`` (with ``params``) the strategy in force and return it. The one it
        replaces is kept; a strategy used before gets its state objects back."""
        new = build_strategy(spec, params)
        self._kept[self.current.name] = self.current
        old = self._kept.get(new.name)          # the parsed name: a spec as typed may differ
        if old is not None:
            new.state = old.state
        self.current = new
        return new

    def sampler(self, context: dict[str, Any]):
        """The current strategy's sampling calibration, or None without one: created on
        first use with ``context`` (vocab_size, pad_id, device), starting from the state a
        checkpoint saved for it when there is one."""
        strat = self.current
        if strat.sampling is None:
            return None
        piece = strat.sampling[0].name
        fresh = piece not in strat.state
        sampler = strat.sampler({**context, "seed": row_seed(self.seed, "sampler", strat.name)})
        pending = self._pending.get(strat.name, {}).pop(piece, None)
        if fresh and pending is not None:
            sampler.load_state_dict(pending)
        return sampler

    def state_dicts(self) -> dict[str, dict]:
        """``{strategy name: {piece: state_dict}}`` of every strategy with state (the
        checkpoint's strategy_state.pt), including state read back and not yet claimed."""
        out: dict[str, dict] = {k: dict(v) for k, v in self._pending.items() if v}
        for strat in [*self._kept.values(), self.current]:
            for piece, obj in strat.state.items():
                out.setdefault(strat.name, {})[piece] = obj.state_dict()
        return out

    def restore(self, states: dict[str, dict], spec: str | None = None, params: dict[str, Any] | None = None) -> None:
        """Take a checkpoint's strategy states (claimed when each strategy first creates its
        piece) and, when ``spec`` is given, make it the strategy in force (built afresh)."""
        self._pending = states
        if spec:
            self.current = build_strategy(spec, params)
